//! Retrying a comment after an attempt whose outcome the hub never learned.
//!
//! CaseComment inserts have no idempotency key, so a retry first reads the case's recent
//! comments and takes the parts of the comment that the earlier attempt already saved.
//!
//! - **Author**: only the integration user writes the hub's CaseComments (the customer's words
//!   too), so the query asks for its `CreatedById`; agents' comments never match.
//! - **Content**: the same `CommentBody` (compared exactly: SOQL's `=` ignores case, and a
//!   4,000-byte body doesn't fit in a query URL) and the same `IsPublished`.
//! - **Time and ids**: [`LookBack::may_be`]: created since the attempt started (less the
//!   slack), and not a comment the hub already maps to another message.

use serde_json::Value;
use switchboard_plugin_sdk::helpdesk::LookBack;

use switchboard_plugin_sdk::time::parse_iso8601_ms as parse_ms;

use crate::api::{soql_datetime, text};

/// The SOQL of the case's comments by `user` created since `since_ms`, oldest first (ids grow
/// with creation, which orders comments of the same second).
pub fn comments_since_query(case_id: &str, user: &str, since_ms: u64) -> String {
    format!(
        "SELECT Id, CommentBody, IsPublished, CreatedDate, CreatedById FROM CaseComment \
         WHERE ParentId = '{case_id}' AND CreatedById = '{user}' \
         AND CreatedDate >= {} ORDER BY CreatedDate ASC, Id ASC",
        soql_datetime(since_ms)
    )
}

/// The ids of the `parts` of a comment that earlier attempts already posted, from the queried
/// `records` (oldest first); `None` for the parts still to post.
///
/// Parts are posted one after another, each only once the one before was saved, so what an
/// attempt left is the first parts, in creation order: a part counts only when found after
/// the previous part's comment, and the search stops at the first part not found.
pub fn posted_parts(
    records: &[Value],
    parts: &[String],
    public: bool,
    earlier: &LookBack,
) -> Vec<Option<String>> {
    let mut candidates = records.iter().filter_map(|record| {
        let id = text(record, "Id")?;
        let created = text(record, "CreatedDate").and_then(parse_ms)?;
        let published = record.get("IsPublished").and_then(Value::as_bool)?;
        let body = record
            .get("CommentBody")
            .and_then(Value::as_str)
            .unwrap_or_default();
        (published == public && earlier.may_be(id, created)).then_some((id, body))
    });
    let mut found = vec![None; parts.len()];
    for (slot, part) in found.iter_mut().zip(parts) {
        match candidates.by_ref().find(|(_, body)| body == part) {
            Some((id, _)) => *slot = Some(id.to_string()),
            None => break,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchboard_plugin_sdk::helpdesk::{UnconfirmedAttempt, LOOK_BACK_SLACK_MS};

    /// 2024-05-01T09:14:57Z.
    const STARTED: u64 = 1_714_554_897_000;

    fn record(id: &str, body: &str, public: bool, created: &str) -> Value {
        json!({
            "attributes": {"type": "CaseComment"}, "Id": id, "CommentBody": body,
            "IsPublished": public, "CreatedDate": created, "CreatedById": "005A"
        })
    }

    fn parts(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn the_query_reads_the_integration_users_recent_comments_on_the_case() {
        assert_eq!(
            comments_since_query("500X", "005A", STARTED - LOOK_BACK_SLACK_MS + 999),
            "SELECT Id, CommentBody, IsPublished, CreatedDate, CreatedById FROM CaseComment \
             WHERE ParentId = '500X' AND CreatedById = '005A' \
             AND CreatedDate >= 2024-05-01T09:13:57Z ORDER BY CreatedDate ASC, Id ASC"
        );
    }

    #[test]
    fn matches_need_the_same_text_visibility_and_a_recent_unknown_id() {
        let attempt = UnconfirmedAttempt {
            started_at: STARTED,
            known_ids: vec!["00aKnown".into()],
        };
        let earlier = LookBack::of(Some(&attempt)).expect("unconfirmed");
        let records = [
            record("00aOld", "Hi", true, "2024-05-01T09:13:56.000+0000"),
            record("00aKnown", "Hi", true, "2024-05-01T09:14:58.000+0000"),
            record("00aNote", "Hi", false, "2024-05-01T09:14:58.000+0000"),
            record("00aCase", "hi", true, "2024-05-01T09:14:58.000+0000"),
            record("00aNoDate", "Hi", true, ""),
        ];
        assert_eq!(
            posted_parts(&records, &parts(&["Hi"]), true, &earlier),
            [None]
        );
        let mut records = records.to_vec();
        // Rounded down to the second, a little before the hub's start.
        records.push(record("00aHit", "Hi", true, "2024-05-01T09:14:56.000+0000"));
        assert_eq!(
            posted_parts(&records, &parts(&["Hi"]), true, &earlier),
            [Some("00aHit".to_string())]
        );
        assert_eq!(
            posted_parts(&records, &parts(&["Hi"]), false, &earlier),
            [Some("00aNote".to_string())]
        );
    }

    #[test]
    fn the_parts_found_are_the_first_ones_in_order() {
        let attempt = UnconfirmedAttempt {
            started_at: STARTED,
            known_ids: Vec::new(),
        };
        let earlier = LookBack::of(Some(&attempt)).expect("unconfirmed");
        let at = "2024-05-01T09:14:58.000+0000";
        let long = parts(&["one", "two", "one", "three"]);
        let records = [
            record("00a1", "one", true, at),
            record("00aAgentLike", "two", false, at),
            record("00a2", "two", true, at),
        ];
        assert_eq!(
            posted_parts(&records, &long, true, &earlier),
            [Some("00a1".into()), Some("00a2".into()), None, None],
            "the second `one` must come after `two`"
        );
        // A later part without the ones before it is not the attempt's.
        let records = [record("00a3", "three", true, at)];
        assert_eq!(
            posted_parts(&records, &long, true, &earlier),
            [None, None, None, None]
        );
        let records = [
            record("00a1", "one", true, at),
            record("00a2", "two", true, at),
            record("00a3", "one", true, at),
            record("00a4", "three", true, at),
        ];
        assert_eq!(
            posted_parts(&records, &long, true, &earlier),
            [
                Some("00a1".into()),
                Some("00a2".into()),
                Some("00a3".into()),
                Some("00a4".into())
            ]
        );
    }
}
