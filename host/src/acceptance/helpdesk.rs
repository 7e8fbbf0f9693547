//! Helpdesk operations: find-or-create requester twice gives one requester, create with the
//! same idempotency key twice gives one ticket, notes stay private, status round-trips.

use super::polling::Seen;
use super::{CheckResult, Target};
use crate::runtime::latest::{self, SocialIdentity, Visibility};
use crate::runtime::HelpdeskConnector;

const GROUP: &str = "helpdesk";

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn settings_fix() -> &'static str {
    "make sure the settings reach a working service (simulator, fixtures or test account); \
     `plugin exec ... --trace-http` shows the requests"
}

pub async fn check(target: &Target<'_>, seen: &Seen) -> Vec<CheckResult> {
    if target.options.read_only {
        return vec![CheckResult::skip(
            GROUP,
            "operations",
            "--read-only: nothing is written",
        )];
    }
    let connector = match target.helpdesk() {
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
    let run = &target.options.run_id;
    let network = target.plugin.manifest().id.clone();
    let mut results = Vec::new();

    let request = latest::RequesterRequest {
        identity: SocialIdentity {
            external_id: format!("switchboard-acceptance-{run}"),
            network: network.clone(),
            handle: Some("acceptance".into()),
            display_name: Some("Switchboard Acceptance".into()),
        },
        external_id: format!("{network}:switchboard-acceptance-{run}"),
    };
    let first = connector.find_or_create_requester(&request).await;
    let second = connector.find_or_create_requester(&request).await;
    let requester_id = match (first, second) {
        (Ok(first), Ok(second)) if first.id == second.id && !second.created => {
            results.push(CheckResult::pass(GROUP, "requester-found-not-duplicated"));
            Some(first.id)
        }
        (Ok(first), Ok(second)) => {
            results.push(CheckResult::fail(
                GROUP,
                "requester-found-not-duplicated",
                format!(
                    "the same requester asked for twice gave `{}`, then `{}` (created: {})",
                    first.id, second.id, second.created
                ),
                "look the requester up by its external id (or identity) before creating one, \
                 and answer `created: false` when it exists",
            ));
            Some(first.id)
        }
        (Err(error), _) | (_, Err(error)) => {
            results.push(CheckResult::fail(
                GROUP,
                "requester-found-not-duplicated",
                format!("find-or-create-requester failed: {error}"),
                settings_fix(),
            ));
            None
        }
    };
    let Some(requester_id) = requester_id else {
        return results;
    };

    let started_at = now_ms();
    let ticket = latest::NewTicket {
        idempotency_key: format!("switchboard-acceptance-{run}-ticket"),
        external_id: format!("{network}:switchboard-acceptance-{run}"),
        requester_id,
        subject: "Switchboard acceptance check".into(),
        body: "A ticket filed by `switchboard plugin test`.".into(),
        visibility: Visibility::Public,
        attachments: Vec::new(),
        tags: vec!["switchboard-acceptance".into()],
        priority: None,
        status: None,
        channel: network.clone(),
        unconfirmed: None,
        customer_context: None,
    };
    let first = connector.create_ticket(&ticket).await;
    // The hub's retry of an attempt whose outcome it never learned.
    let retry = latest::NewTicket {
        unconfirmed: Some(latest::UnconfirmedAttempt {
            started_at,
            known_ids: Vec::new(),
        }),
        ..ticket.clone()
    };
    let second = connector.create_ticket(&retry).await;
    let ticket_id = match (first, second) {
        (Ok(first), Ok(second)) if first.id == second.id => {
            results.push(CheckResult::pass(GROUP, "ticket-created-once"));
            Some(first.id)
        }
        (Ok(first), Ok(second)) => {
            results.push(CheckResult::fail(
                GROUP,
                "ticket-created-once",
                format!(
                    "create-ticket with the same idempotency key twice made `{}` and `{}`",
                    first.id, second.id
                ),
                "send the idempotency key where the service has one; else, when `unconfirmed` \
                 is set, look for a ticket with this external id created since `started-at` \
                 and answer it",
            ));
            Some(first.id)
        }
        (Err(error), _) | (_, Err(error)) => {
            results.push(CheckResult::fail(
                GROUP,
                "ticket-created-once",
                format!("create-ticket failed: {error}"),
                settings_fix(),
            ));
            None
        }
    };
    let Some(ticket_id) = ticket_id else {
        return results;
    };

    results.push(note_stays_private(target, &connector, seen, &ticket_id).await);
    results.push(status_round_trips(&connector, &ticket_id).await);
    target.tap.take_seen();
    results
}

async fn note_stays_private(
    target: &Target<'_>,
    connector: &HelpdeskConnector,
    seen: &Seen,
    ticket_id: &str,
) -> CheckResult {
    let check = "note-stays-private";
    let body = format!(
        "Switchboard acceptance note {} (private)",
        target.options.run_id
    );
    let note = latest::NewComment {
        idempotency_key: format!("switchboard-acceptance-{}-note", target.options.run_id),
        ticket_id: ticket_id.to_string(),
        author: latest::CommentAuthor::Integration,
        body: body.clone(),
        visibility: Visibility::Private,
        attachments: Vec::new(),
        unconfirmed: None,
    };
    let comment = match connector.add_comment(&note).await {
        Ok(comment) => comment,
        Err(error) => {
            return CheckResult::fail(
                GROUP,
                check,
                format!("add-comment of a private note failed: {error}"),
                settings_fix(),
            )
        }
    };
    let Some(stream) = target.plugin.manifest().streams.first() else {
        return CheckResult::skip(GROUP, check, "no stream to read the note back from");
    };
    let mut cursor = seen.end_cursor.clone();
    for _ in 0..target.options.max_pages.max(1) {
        let page = match connector
            .poll_changes(&stream.name, cursor.as_deref())
            .await
        {
            Ok(page) => page,
            Err(error) => {
                return CheckResult::fail(
                    GROUP,
                    check,
                    format!("poll-changes after adding the note failed: {error}"),
                    settings_fix(),
                )
            }
        };
        let found = page.changes.iter().find_map(|change| match &change.kind {
            latest::ChangeKind::Comment(c)
                if c.comment_id == comment.id || c.body.contains(&body) =>
            {
                Some(c.visibility)
            }
            _ => None,
        });
        match found {
            Some(Visibility::Private) => return CheckResult::pass(GROUP, check),
            Some(Visibility::Public) => {
                return CheckResult::fail(
                    GROUP,
                    check,
                    format!(
                        "the private note `{}` came back from poll-changes as public",
                        comment.id
                    ),
                    "file `private` comments as internal notes (Zendesk `public: false`, \
                     Freshdesk `private: true`, RT `Comment`) and read the flag back: a note \
                     shown to the customer leaks what agents wrote for each other",
                )
            }
            None => {}
        }
        cursor = page.next_cursor.or(cursor);
        if !page.has_more {
            break;
        }
    }
    CheckResult::skip(
        GROUP,
        check,
        "the note did not come back from poll-changes (some helpdesks leave the integration's \
         own comments out)",
    )
}

async fn status_round_trips(connector: &HelpdeskConnector, ticket_id: &str) -> CheckResult {
    let check = "status-round-trips";
    let mut problems = Vec::new();
    for status in [latest::TicketStatus::Pending, latest::TicketStatus::Open] {
        let update = latest::TicketUpdate {
            ticket_id: ticket_id.to_string(),
            status: Some(status),
            priority: None,
            add_tags: Vec::new(),
            remove_tags: Vec::new(),
        };
        match connector.update_ticket(&update).await {
            Ok(state) if state.status == status => {}
            Ok(state) => problems.push(format!(
                "update-ticket to {status:?} answered {:?}",
                state.status
            )),
            Err(error) => problems.push(format!("update-ticket to {status:?} failed: {error}")),
        }
        match connector.get_ticket(ticket_id).await {
            Ok(state) if state.status == status => {}
            Ok(state) => problems.push(format!(
                "after update-ticket to {status:?}, get-ticket answered {:?}",
                state.status
            )),
            Err(error) => problems.push(format!("get-ticket failed: {error}")),
        }
    }
    if problems.is_empty() {
        CheckResult::pass(GROUP, check)
    } else {
        CheckResult::fail(
            GROUP,
            check,
            problems.join("; "),
            "map each `ticket-status` to the helpdesk's own status and back the same way, in \
             update-ticket, get-ticket and poll-changes",
        )
    }
}
