//! Sending: the idempotency key reaches the service, a text over the declared limit is refused
//! with `invalid-input` before the service sees it, and echoes of the plugin's own sends are
//! flagged `is-echo`.

use super::polling::Seen;
use super::{connector_variant, CheckResult, Target};
use crate::runtime::latest::{self, ConnectorError, SocialIdentity};
use crate::runtime::CallError;

const GROUP: &str = "sending";

/// Where the suite sends: `--thread`, else the first conversation polling saw.
fn thread_of(target: &Target<'_>, seen: Option<&Seen>) -> (String, Option<SocialIdentity>) {
    if let Some(thread) = &target.options.thread_id {
        return (thread.clone(), None);
    }
    match seen.and_then(|s| s.events.iter().find(|e| !e.is_echo)) {
        Some(event) => (event.thread_id.clone(), Some(event.author.clone())),
        None => ("switchboard-acceptance".into(), None),
    }
}

/// A message for the checks; `purpose` makes its idempotency key distinct.
pub(crate) fn sample_message(
    target: &Target<'_>,
    purpose: &str,
    text: &str,
) -> latest::OutboundMessage {
    message_to(target, None, purpose, text)
}

fn message_to(
    target: &Target<'_>,
    seen: Option<&Seen>,
    purpose: &str,
    text: &str,
) -> latest::OutboundMessage {
    let (thread_id, author) = thread_of(target, seen);
    let recipient = author.unwrap_or_else(|| SocialIdentity {
        external_id: "switchboard-acceptance".into(),
        network: target.plugin.manifest().id.clone(),
        handle: None,
        display_name: None,
    });
    latest::OutboundMessage {
        idempotency_key: format!("switchboard-acceptance-{}-{purpose}", target.options.run_id),
        thread_id,
        reply_to: None,
        kind: latest::MessageKind::DirectMessage,
        recipient: Some(recipient),
        text: text.into(),
        attachments: Vec::new(),
        // Just now, so no reply window is closed.
        last_inbound_at: Some(super::helpdesk::now_ms()),
        reply_handle: None,
        visibility: latest::Visibility::Private,
        part: latest::MessagePart { index: 1, count: 1 },
    }
}

pub async fn check(target: &Target<'_>, seen: &Seen) -> Vec<CheckResult> {
    if target.options.read_only {
        return vec![CheckResult::skip(
            GROUP,
            "sending",
            "--read-only: nothing is sent",
        )];
    }
    let connector = match target.social() {
        Ok(connector) => connector,
        Err(error) => {
            return vec![CheckResult::fail(
                GROUP,
                "settings",
                format!("{error:#}"),
                "pass the settings the plugin requires",
            )]
        }
    };
    let mut results = Vec::new();
    let manifest = target.plugin.manifest();

    // Over the limit: refused before the service is asked.
    let mut problems = Vec::new();
    for limit in &manifest.text_limits {
        let text = "x".repeat(limit.max_length as usize + 1);
        let mut message = message_to(target, Some(seen), "over-limit", &text);
        if limit.visibility == "public" {
            message.kind = latest::MessageKind::Comment;
        }
        target.tap.take_seen();
        let result = connector.send(&message).await;
        let requests = target.tap.take_seen();
        match &result {
            Err(CallError::Connector(ConnectorError::InvalidInput(_))) if requests.is_empty() => {}
            Err(CallError::Connector(ConnectorError::InvalidInput(_))) => problems.push(format!(
                "{} characters for `{}` messages were refused, but only after {} request(s) to \
                 the service",
                limit.max_length + 1,
                limit.visibility,
                requests.len()
            )),
            other => problems.push(format!(
                "{} characters for `{}` messages (limit {} {}) gave {}",
                limit.max_length + 1,
                limit.visibility,
                limit.max_length,
                limit.unit,
                match other {
                    Ok(_) => "success: the service took it".to_string(),
                    Err(CallError::Connector(e)) => format!("`{}`", connector_variant(e)),
                    Err(e) => format!("a host failure ({e})"),
                }
            )),
        }
    }
    results.push(if manifest.text_limits.is_empty() {
        CheckResult::skip(
            GROUP,
            "over-limit-refused",
            "the manifest declares no text limit",
        )
    } else if problems.is_empty() {
        CheckResult::pass(GROUP, "over-limit-refused")
    } else {
        CheckResult::fail(
            GROUP,
            "over-limit-refused",
            problems.join("; "),
            "measure the text in the declared unit first and return \
             `ConnectorError::invalid(\"text\", ..)` when it is over the limit, without calling \
             the service",
        )
    });

    // A plain send, whose idempotency key should reach the service.
    let message = message_to(target, Some(seen), "send", "Switchboard acceptance check");
    target.tap.take_seen();
    let sent = connector.send(&message).await;
    let exchanges = target.tap.take_seen();
    let sent_ids = match sent {
        Ok(sent) => {
            let key = &message.idempotency_key;
            let carried = exchanges.iter().any(|e| {
                e.request.url.contains(key.as_str())
                    || e.request
                        .headers
                        .iter()
                        .any(|(_, v)| v.contains(key.as_str()))
                    || e.request.body.text().contains(key.as_str())
            });
            results.push(if carried {
                CheckResult::pass(GROUP, "idempotency-key-forwarded")
            } else {
                CheckResult::warn(
                    GROUP,
                    "idempotency-key-forwarded",
                    format!(
                        "the idempotency key was in none of the {} request(s); fine only when the \
                         service has no idempotency mechanism (then say so in the README)",
                        exchanges.len()
                    ),
                )
            });
            sent.message_ids
        }
        Err(error) => {
            results.push(CheckResult::fail(
                GROUP,
                "idempotency-key-forwarded",
                format!(
                    "sending a short message to thread `{}` failed: {error}",
                    message.thread_id
                ),
                "pass --thread with a conversation the test account may write to, and check \
                 `plugin exec ... send --trace-http`",
            ));
            Vec::new()
        }
    };

    // The plugin's own send must come back flagged as an echo, where polling shows it.
    let mut events: Vec<&latest::SocialEvent> = seen.events.iter().collect();
    let mut polled = Vec::new();
    if let Some(stream) = manifest.streams.first() {
        if let Ok(page) = connector
            .poll(&stream.name, seen.end_cursor.as_deref())
            .await
        {
            polled = page.events;
        }
    }
    events.extend(polled.iter());
    let echoes: Vec<&&latest::SocialEvent> = events
        .iter()
        .filter(|e| sent_ids.contains(&e.message_id))
        .collect();
    results.push(if sent_ids.is_empty() {
        CheckResult::skip(GROUP, "echo-flagged", "nothing was sent")
    } else if echoes.is_empty() {
        CheckResult::skip(
            GROUP,
            "echo-flagged",
            "the sent message did not come back in a poll (networks that never show the \
             brand's own messages pass this way)",
        )
    } else if echoes.iter().all(|e| e.is_echo) {
        CheckResult::pass(GROUP, "echo-flagged")
    } else {
        CheckResult::fail(
            GROUP,
            "echo-flagged",
            format!(
                "the plugin's own message(s) {:?} came back without is-echo",
                echoes
                    .iter()
                    .filter(|e| !e.is_echo)
                    .map(|e| e.message_id.as_str())
                    .collect::<Vec<_>>()
            ),
            "set is-echo on every event the brand's own account wrote (compare the author with \
             the account's id): the hub would file its own replies as new customer messages",
        )
    });
    target.tap.take_seen();
    results
}
