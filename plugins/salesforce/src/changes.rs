//! Polling: the `ticket-changes` cursor and turning queried CaseComments and Cases into the
//! hub's [`TicketChange`]s.
//!
//! Change ids:
//! - a comment is `comment:<CaseComment Id>` (edits of a comment keep its id, so the hub files
//!   it once);
//! - a status is `status:<Case Id>:<Status value>:<SystemModstamp in ms>`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchboard_plugin_sdk::helpdesk::{
    ChangeAuthor, ChangeKind, CommentChange, TicketChange, TicketStatus,
};
use switchboard_plugin_sdk::prelude::*;

use switchboard_plugin_sdk::time::parse_iso8601_ms as parse_ms;

use crate::api::{related, soql_datetime, text};
use crate::mapping::PicklistMap;

/// Where reading one object's changes stands.
///
/// Queries ask for `SystemModstamp >= <second of since>` (SOQL datetimes have whole seconds),
/// so records of that second come again; `seen` holds them, by id and modstamp, to skip them.
/// A record modified again gets a new modstamp and is read again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mark {
    /// SystemModstamp (epoch ms) of the newest record read.
    pub since: u64,
    #[serde(default)]
    pub seen: Vec<(String, u64)>,
    /// The `nextRecordsUrl` of a query being read, batch by batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

impl Mark {
    pub fn starting_at(since: u64) -> Self {
        Self {
            since,
            seen: Vec::new(),
            next: None,
        }
    }

    /// The SOQL literal a new query starts from.
    pub fn start_literal(&self) -> String {
        soql_datetime(self.since)
    }

    /// True when the record is new to this mark; records it.
    pub fn admit(&mut self, id: &str, modstamp: u64) -> bool {
        if self.seen.iter().any(|(i, m)| i == id && *m == modstamp) {
            return false;
        }
        self.seen.push((id.to_string(), modstamp));
        self.since = self.since.max(modstamp);
        let second = self.since / 1000 * 1000;
        self.seen.retain(|(_, m)| *m >= second);
        true
    }
}

/// The `ticket-changes` poll cursor: comments and cases are read separately.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub comments: Mark,
    pub cases: Mark,
}

/// What turning records into changes needs to know.
pub struct Reading<'a> {
    /// The Case external id field (its value is the ticket's external id).
    pub case_field: &'a str,
    /// The integration user: what it wrote are the hub's own echoes.
    pub integration_user: &'a str,
    pub statuses: &'a PicklistMap<TicketStatus>,
}

fn author(record: &Value, id_field: &str, relationship: &str) -> Option<ChangeAuthor> {
    let id = text(record, id_field)?;
    Some(ChangeAuthor {
        id: id.to_string(),
        name: related(record, relationship, "Name")
            .and_then(Value::as_str)
            .map(str::to_string),
        // CaseComments and Case edits come from users; only Standard ones are staff (portal
        // and guest users are customers).
        is_agent: related(record, relationship, "UserType")
            .and_then(Value::as_str)
            .is_none_or(|t| t == "Standard"),
    })
}

/// The SOQL of the comments query.
pub fn comments_query(case_field: &str, from: &str) -> String {
    format!(
        "SELECT Id, ParentId, CommentBody, IsPublished, CreatedById, CreatedBy.Name, \
         CreatedBy.UserType, CreatedDate, SystemModstamp, Parent.{case_field} FROM CaseComment \
         WHERE SystemModstamp >= {from} AND Parent.{case_field} != null \
         ORDER BY SystemModstamp ASC, Id ASC"
    )
}

/// The SOQL of the cases query.
pub fn cases_query(case_field: &str, from: &str) -> String {
    format!(
        "SELECT Id, Status, IsClosed, Priority, {case_field}, LastModifiedById, \
         LastModifiedBy.Name, LastModifiedBy.UserType, SystemModstamp FROM Case \
         WHERE SystemModstamp >= {from} AND {case_field} != null \
         ORDER BY SystemModstamp ASC, Id ASC"
    )
}

/// A queried CaseComment as a comment change; `None` for a record missing its basics.
pub fn comment_change(record: &Value, reading: &Reading) -> Option<TicketChange> {
    let id = text(record, "Id")?;
    let parent = text(record, "ParentId")?;
    let created_by = text(record, "CreatedById");
    Some(TicketChange {
        change_id: format!("comment:{id}"),
        ticket_id: parent.to_string(),
        external_id: related(record, "Parent", reading.case_field)
            .and_then(Value::as_str)
            .map(str::to_string),
        author: author(record, "CreatedById", "CreatedBy"),
        is_echo: created_by == Some(reading.integration_user),
        at: text(record, "CreatedDate").and_then(parse_ms).unwrap_or(0),
        kind: ChangeKind::Comment(CommentChange {
            comment_id: id.to_string(),
            body: text(record, "CommentBody").unwrap_or_default().to_string(),
            visibility: Visibility::public_if(
                record.get("IsPublished") == Some(&Value::Bool(true)),
            ),
            attachments: Vec::new(),
        }),
    })
}

/// A queried Case as its current status.
pub fn status_change(record: &Value, reading: &Reading) -> Option<TicketChange> {
    let id = text(record, "Id")?;
    let modstamp = text(record, "SystemModstamp").and_then(parse_ms)?;
    let value = text(record, "Status");
    let status = reading
        .statuses
        .read(value, record.get("IsClosed").and_then(Value::as_bool));
    Some(TicketChange {
        change_id: format!("status:{id}:{}:{modstamp}", value.unwrap_or_default()),
        ticket_id: id.to_string(),
        external_id: text(record, reading.case_field).map(str::to_string),
        author: author(record, "LastModifiedById", "LastModifiedBy"),
        is_echo: text(record, "LastModifiedById") == Some(reading.integration_user),
        at: modstamp,
        kind: ChangeKind::Status(status),
    })
}

/// The modstamp of a queried record, which moves the mark.
pub fn modstamp(record: &Value) -> Option<u64> {
    text(record, "SystemModstamp").and_then(parse_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::DEFAULT_STATUS_MAP;
    use serde_json::json;

    #[test]
    fn marks_skip_what_they_have_seen_within_the_second() {
        let mut mark = Mark::starting_at(1_000_000);
        assert!(mark.admit("a", 1_000_500));
        assert!(mark.admit("b", 1_000_500));
        assert!(!mark.admit("a", 1_000_500), "the same record again");
        assert!(mark.admit("a", 1_000_900), "modified again");
        assert_eq!(mark.start_literal(), soql_datetime(1_000_000));
        assert!(mark.admit("c", 1_002_100));
        assert_eq!(mark.since, 1_002_100);
        assert_eq!(
            mark.seen,
            vec![("c".to_string(), 1_002_100)],
            "older seconds are forgotten"
        );
        let cursor = Cursor {
            comments: mark.clone(),
            cases: Mark::starting_at(5),
        };
        let encoded = paging::encode_cursor(&cursor);
        assert_eq!(paging::decode_cursor::<Cursor>(&encoded).ok(), Some(cursor));
    }

    #[test]
    fn records_become_changes() {
        let statuses = PicklistMap::statuses("s", DEFAULT_STATUS_MAP).expect("map");
        let reading = Reading {
            case_field: "Ext__c",
            integration_user: "005A",
            statuses: &statuses,
        };
        let comment = json!({
            "attributes": {"type": "CaseComment"}, "Id": "00aX", "ParentId": "500X",
            "CommentBody": "We shipped it", "IsPublished": true, "CreatedById": "005B",
            "CreatedBy": {"attributes": {}, "Name": "Hana Agent", "UserType": "Standard"},
            "CreatedDate": "2024-05-01T09:14:57.000+0000", "SystemModstamp": "2024-05-01T09:14:57.000+0000",
            "Parent": {"attributes": {}, "Ext__c": "ticket:1"}
        });
        let change = comment_change(&comment, &reading).expect("change");
        assert_eq!(change.change_id, "comment:00aX");
        assert_eq!(change.ticket_id, "500X");
        assert_eq!(change.external_id.as_deref(), Some("ticket:1"));
        assert!(!change.is_echo);
        let author = change.author.expect("author");
        assert_eq!(
            (author.id.as_str(), author.name.as_deref(), author.is_agent),
            ("005B", Some("Hana Agent"), true)
        );
        assert!(
            matches!(change.kind, ChangeKind::Comment(c) if c.visibility == Visibility::Public && c.body == "We shipped it")
        );

        let mut mine = comment.clone();
        mine["CreatedById"] = json!("005A");
        mine["IsPublished"] = json!(false);
        let change = comment_change(&mine, &reading).expect("change");
        assert!(change.is_echo);
        assert!(
            matches!(change.kind, ChangeKind::Comment(c) if c.visibility == Visibility::Private)
        );

        let case = json!({
            "Id": "500X", "Status": "Escalated", "IsClosed": false, "Ext__c": "ticket:1",
            "LastModifiedById": "005A", "LastModifiedBy": {"Name": "Switchboard", "UserType": "Standard"},
            "SystemModstamp": "2024-05-01T09:14:57.250+0000"
        });
        let change = status_change(&case, &reading).expect("change");
        assert_eq!(change.change_id, "status:500X:Escalated:1714554897250");
        assert!(change.is_echo);
        assert!(matches!(
            change.kind,
            ChangeKind::Status(TicketStatus::Pending)
        ));
        assert!(status_change(&json!({"Id": "500X"}), &reading).is_none());
    }

    #[test]
    fn queries_name_the_external_id_field() {
        let q = comments_query("Ext__c", "2024-01-01T00:00:00Z");
        assert!(
            q.contains("Parent.Ext__c != null")
                && q.contains("SystemModstamp >= 2024-01-01T00:00:00Z")
        );
        assert!(cases_query("Ext__c", "x")
            .contains("FROM Case WHERE SystemModstamp >= x AND Ext__c != null"));
    }
}
