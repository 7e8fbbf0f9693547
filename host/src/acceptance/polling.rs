//! Polling: a cursor resumes where it stopped, no event comes twice across pages, `has-more`
//! tells the truth, and a stream with nothing new gives an empty page.

use crate::runtime::latest;
use std::collections::BTreeSet;

use super::{CheckResult, Target};
use crate::manifest::PluginKind;
use crate::runtime::{CallError, HelpdeskConnector, SocialConnector};

const GROUP: &str = "polling";

/// What polling saw, for the checks that follow (sending needs a conversation).
#[derive(Debug, Default)]
pub struct Seen {
    pub events: Vec<latest::SocialEvent>,
    /// Where the first stream's polling ended.
    pub end_cursor: Option<String>,
}

struct Page {
    ids: Vec<String>,
    next_cursor: Option<String>,
    has_more: bool,
    events: Vec<latest::SocialEvent>,
}

enum Poller {
    Social(SocialConnector),
    Helpdesk(HelpdeskConnector),
}

impl Poller {
    async fn poll(&self, stream: &str, cursor: Option<&str>) -> Result<Page, CallError> {
        match self {
            Poller::Social(c) => {
                let page = c.poll(stream, cursor).await?;
                Ok(Page {
                    ids: page.events.iter().map(|e| e.message_id.clone()).collect(),
                    next_cursor: page.next_cursor,
                    has_more: page.has_more,
                    events: page.events,
                })
            }
            Poller::Helpdesk(c) => {
                let page = c.poll_changes(stream, cursor).await?;
                Ok(Page {
                    ids: page.changes.iter().map(|c| c.change_id.clone()).collect(),
                    next_cursor: page.next_cursor,
                    has_more: page.has_more,
                    events: Vec::new(),
                })
            }
        }
    }
}

pub async fn check(target: &Target<'_>, results: &mut Vec<CheckResult>) -> Seen {
    let mut seen = Seen::default();
    let streams: Vec<String> = target
        .plugin
        .manifest()
        .streams
        .iter()
        .map(|s| s.name.clone())
        .collect();
    if streams.is_empty() {
        results.push(CheckResult::skip(
            GROUP,
            "streams",
            "the plugin declares no streams",
        ));
        return seen;
    }
    let poller = match target.plugin.kind() {
        PluginKind::Social => target.social().map(Poller::Social),
        PluginKind::Helpdesk => target.helpdesk().map(Poller::Helpdesk),
    };
    let poller = match poller {
        Ok(poller) => poller,
        Err(error) => {
            results.push(CheckResult::fail(
                GROUP,
                "settings",
                format!("the plugin cannot be bound to the given settings: {error:#}"),
                "pass the settings the plugin requires",
            ));
            return seen;
        }
    };
    for (index, stream) in streams.iter().enumerate() {
        let (events, end) = check_stream(target, &poller, stream, results).await;
        if index == 0 {
            seen.end_cursor = end;
        }
        seen.events.extend(events);
    }
    target.tap.take_seen();
    seen
}

/// The hub's rule: a page without a cursor keeps the one it was polled with.
fn next(page: &Page, cursor: &Option<String>) -> Option<String> {
    page.next_cursor.clone().or_else(|| cursor.clone())
}

async fn check_stream(
    target: &Target<'_>,
    poller: &Poller,
    stream: &str,
    results: &mut Vec<CheckResult>,
) -> (Vec<latest::SocialEvent>, Option<String>) {
    let name = |check: &str| format!("{check} ({stream})");
    let max_pages = target.options.max_pages.max(2);
    let mut cursor: Option<String> = None;
    let mut ids = BTreeSet::new();
    let mut repeated = Vec::new();
    let mut events = Vec::new();
    let mut dishonest = Vec::new();
    let mut after_first: Option<(Option<String>, Vec<String>)> = None;
    let mut pages = 0;
    loop {
        let page = match poller.poll(stream, cursor.as_deref()).await {
            Ok(page) => page,
            Err(error) => {
                results.push(CheckResult::fail(
                    GROUP,
                    name("polls"),
                    format!("poll from cursor {cursor:?} failed after {pages} pages: {error}"),
                    "make sure the settings reach a working service (simulator, fixtures or \
                     test account); run `plugin exec ... poll --trace-http` to see the requests",
                ));
                return (events, cursor);
            }
        };
        pages += 1;
        for id in &page.ids {
            if !ids.insert(id.clone()) {
                repeated.push(id.clone());
            }
        }
        let next_cursor = next(&page, &cursor);
        if pages == 1 {
            after_first = Some((next_cursor.clone(), page.ids.clone()));
        }
        if page.has_more && next_cursor == cursor {
            dishonest.push(format!(
                "page {pages} says has-more but keeps the cursor {cursor:?}: the hub would read \
                 the same page forever"
            ));
        }
        let has_more = page.has_more;
        events.extend(page.events);
        cursor = next_cursor;
        if !has_more || !dishonest.is_empty() {
            break;
        }
        if pages >= max_pages {
            dishonest.push(format!(
                "still has-more after {pages} pages (--max-pages); a stream must end"
            ));
            break;
        }
    }
    results.push(CheckResult::pass(GROUP, name("polls")));
    results.push(if repeated.is_empty() {
        CheckResult::pass(GROUP, name("no-event-twice"))
    } else {
        CheckResult::fail(
            GROUP,
            name("no-event-twice"),
            format!(
                "across {pages} pages these ids came more than once: {}",
                repeated.join(", ")
            ),
            "return from each cursor only what follows it, and keep ids stable",
        )
    });
    // Polling again where it stopped must give nothing already seen.
    let again = match poller.poll(stream, cursor.as_deref()).await {
        Ok(page) => page,
        Err(error) => {
            results.push(CheckResult::fail(
                GROUP,
                name("cursor-resumes"),
                format!("polling again from the final cursor {cursor:?} failed: {error}"),
                "accept every cursor the plugin itself returned",
            ));
            return (events, cursor);
        }
    };
    if again.has_more && again.ids.is_empty() && next(&again, &cursor) == cursor {
        dishonest.push("an empty page at the end says has-more".into());
    }
    results.push(if dishonest.is_empty() {
        CheckResult::pass(GROUP, name("has-more-honest"))
    } else {
        CheckResult::fail(
            GROUP,
            name("has-more-honest"),
            dishonest.join("; "),
            "set has-more only when a poll right away would return more, and return the \
             cursor to continue from with it",
        )
    });
    let mut old: Vec<String> = again
        .ids
        .iter()
        .filter(|id| ids.contains(*id))
        .cloned()
        .collect();
    if let Some((Some(first_cursor), first_ids)) = &after_first {
        if pages > 1 {
            match poller.poll(stream, Some(first_cursor)).await {
                Ok(page) => old.extend(page.ids.into_iter().filter(|id| first_ids.contains(id))),
                Err(error) => old.push(format!(
                    "(polling from the first page's cursor failed: {error})"
                )),
            }
        }
    }
    results.push(if old.is_empty() {
        CheckResult::pass(GROUP, name("cursor-resumes"))
    } else {
        CheckResult::fail(
            GROUP,
            name("cursor-resumes"),
            format!(
                "polling from a cursor it returned gave events from before it: {}",
                old.join(", ")
            ),
            "encode in the cursor where the last page ended (an id, a timestamp with the ids \
             at it, or the service's own cursor) and resume after it",
        )
    });
    let fresh = again.ids.iter().any(|id| !ids.contains(id));
    results.push(if fresh {
        CheckResult::skip(
            GROUP,
            name("empty-at-the-end"),
            "new events arrived while the suite ran, so the end of the stream was not empty",
        )
    } else if again.has_more {
        CheckResult::fail(
            GROUP,
            name("empty-at-the-end"),
            "a stream with nothing new answered has-more",
            "answer an empty page with has-more false when nothing is new",
        )
    } else {
        CheckResult::pass(GROUP, name("empty-at-the-end"))
    });
    (events, cursor)
}
