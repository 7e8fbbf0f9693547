//! The org's picklists and the contract's values: Status and Priority both ways, Origin from
//! the channel. Each is a setting of `Value=name` pairs, comma-separated, so orgs with their own
//! picklist values (`On Hold`, `Waiting on Customer`, `Twitter`) map them without code.

use switchboard_plugin_sdk::helpdesk::{TicketPriority, TicketStatus};
use switchboard_plugin_sdk::prelude::*;

pub const DEFAULT_STATUS_MAP: &str = "New=new, Working=open, Escalated=pending, Closed=closed";
pub const DEFAULT_PRIORITY_MAP: &str = "Low=low, Medium=normal, High=high";
/// Every channel files cases as `Web`, a value every org has; `*` is the fallback.
pub const DEFAULT_ORIGIN_MAP: &str = "*=Web";

/// Parsed `Value=name` pairs, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct PicklistMap<T> {
    pairs: Vec<(String, T)>,
}

impl<T> PicklistMap<T> {
    /// The pairs of setting `setting`, each name read with `read`; a name it does not know is
    /// an error saying what it should be (`expected`).
    fn parse(
        setting: &str,
        raw: &str,
        read: fn(&str) -> Option<T>,
        expected: &str,
    ) -> Result<Self> {
        let pairs = pairs(setting, raw)?
            .into_iter()
            .map(|(value, name)| {
                let known = read(&name).ok_or_else(|| {
                    ConnectorError::invalid(setting, format!("`{name}` is not {expected}"))
                })?;
                Ok((value, known))
            })
            .collect::<Result<_>>()?;
        Ok(Self { pairs })
    }
}

fn pairs(setting: &str, raw: &str) -> Result<Vec<(String, String)>> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (value, name) = item.split_once('=').ok_or_else(|| {
                ConnectorError::invalid(setting, format!("`{item}` is not `Value=name`"))
            })?;
            let (value, name) = (value.trim(), name.trim());
            if value.is_empty() || name.is_empty() {
                return Err(ConnectorError::invalid(
                    setting,
                    format!("`{item}` is not `Value=name`"),
                ));
            }
            Ok((value.to_string(), name.to_string()))
        })
        .collect()
}

pub fn status_name(status: TicketStatus) -> &'static str {
    match status {
        TicketStatus::New => "new",
        TicketStatus::Open => "open",
        TicketStatus::Pending => "pending",
        TicketStatus::OnHold => "on-hold",
        TicketStatus::Solved => "solved",
        TicketStatus::Closed => "closed",
    }
}

fn parse_status(name: &str) -> Option<TicketStatus> {
    Some(match name.to_ascii_lowercase().replace('_', "-").as_str() {
        "new" => TicketStatus::New,
        "open" => TicketStatus::Open,
        "pending" => TicketStatus::Pending,
        "on-hold" | "hold" | "onhold" => TicketStatus::OnHold,
        "solved" => TicketStatus::Solved,
        "closed" => TicketStatus::Closed,
        _ => return None,
    })
}

fn parse_priority(name: &str) -> Option<TicketPriority> {
    Some(match name.to_ascii_lowercase().as_str() {
        "low" => TicketPriority::Low,
        "normal" => TicketPriority::Normal,
        "high" => TicketPriority::High,
        "urgent" => TicketPriority::Urgent,
        _ => return None,
    })
}

impl PicklistMap<TicketStatus> {
    pub fn statuses(setting: &str, raw: &str) -> Result<Self> {
        Self::parse(
            setting,
            raw,
            parse_status,
            "a status (new, open, pending, on-hold, solved, closed)",
        )
    }

    /// The picklist value for a status. A status the org has no value for falls back to the
    /// nearest one it has: on-hold to pending to open, solved to closed and back, new to open.
    pub fn write(&self, status: TicketStatus, setting: &str) -> Result<&str> {
        let chain: &[TicketStatus] = match status {
            TicketStatus::New => &[TicketStatus::New, TicketStatus::Open],
            TicketStatus::Open => &[TicketStatus::Open],
            TicketStatus::Pending => &[TicketStatus::Pending, TicketStatus::Open],
            TicketStatus::OnHold => &[
                TicketStatus::OnHold,
                TicketStatus::Pending,
                TicketStatus::Open,
            ],
            TicketStatus::Solved => &[TicketStatus::Solved, TicketStatus::Closed],
            TicketStatus::Closed => &[TicketStatus::Closed, TicketStatus::Solved],
        };
        chain
            .iter()
            .find_map(|wanted| self.pairs.iter().find(|(_, s)| s == wanted))
            .map(|(value, _)| value.as_str())
            .ok_or_else(|| {
                ConnectorError::invalid(
                    setting,
                    format!("no Case Status is mapped to `{}`", status_name(status)),
                )
            })
    }

    /// The status of a picklist value; values the map doesn't name are open, or closed when
    /// Salesforce says the case is (`IsClosed`).
    pub fn read(&self, value: Option<&str>, is_closed: Option<bool>) -> TicketStatus {
        let mapped = value.and_then(|v| {
            self.pairs
                .iter()
                .find(|(p, _)| p.eq_ignore_ascii_case(v))
                .map(|(_, s)| *s)
        });
        match (mapped, is_closed) {
            (Some(status), _) => status,
            (None, Some(true)) => TicketStatus::Closed,
            (None, _) => TicketStatus::Open,
        }
    }
}

impl PicklistMap<TicketPriority> {
    pub fn priorities(setting: &str, raw: &str) -> Result<Self> {
        Self::parse(
            setting,
            raw,
            parse_priority,
            "a priority (low, normal, high, urgent)",
        )
    }

    /// The picklist value for a priority; urgent falls back to high, the others to normal.
    pub fn write(&self, priority: TicketPriority) -> Option<&str> {
        let chain: &[TicketPriority] = match priority {
            TicketPriority::Urgent => &[TicketPriority::Urgent, TicketPriority::High],
            other => &[other, TicketPriority::Normal],
        };
        chain
            .iter()
            .find_map(|wanted| self.pairs.iter().find(|(_, p)| p == wanted))
            .map(|(value, _)| value.as_str())
    }

    pub fn read(&self, value: Option<&str>) -> Option<TicketPriority> {
        let value = value?;
        self.pairs
            .iter()
            .find(|(p, _)| p.eq_ignore_ascii_case(value))
            .map(|(_, priority)| *priority)
    }
}

/// `channel=Origin` pairs with a `*` fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginMap {
    pairs: Vec<(String, String)>,
}

impl OriginMap {
    pub fn parse(setting: &str, raw: &str) -> Result<Self> {
        Ok(Self {
            pairs: pairs(setting, raw)?,
        })
    }

    /// The Case Origin for a channel (`telegram`), if any.
    pub fn origin(&self, channel: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(channel))
            .or_else(|| self.pairs.iter().find(|(c, _)| c == "*"))
            .map(|(_, origin)| origin.as_str())
    }
}

/// The three mappings an installation's settings hold, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Mappings {
    pub statuses: PicklistMap<TicketStatus>,
    pub priorities: PicklistMap<TicketPriority>,
    pub origins: OriginMap,
}

impl Mappings {
    /// Parses the `status_map`, `priority_map` and `origin_map` settings' values.
    pub fn parse(status_map: &str, priority_map: &str, origin_map: &str) -> Result<Self> {
        Ok(Self {
            statuses: PicklistMap::statuses("status_map", status_map)?,
            priorities: PicklistMap::priorities("priority_map", priority_map)?,
            origins: OriginMap::parse("origin_map", origin_map)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_statuses_map_both_ways() {
        let map = PicklistMap::statuses("status_map", DEFAULT_STATUS_MAP).expect("map");
        let to = |s| map.write(s, "status_map").expect("value");
        assert_eq!(to(TicketStatus::New), "New");
        assert_eq!(to(TicketStatus::Open), "Working");
        assert_eq!(to(TicketStatus::Pending), "Escalated");
        assert_eq!(to(TicketStatus::OnHold), "Escalated");
        assert_eq!(to(TicketStatus::Solved), "Closed");
        assert_eq!(to(TicketStatus::Closed), "Closed");
        assert_eq!(map.read(Some("working"), Some(false)), TicketStatus::Open);
        assert_eq!(map.read(Some("Closed"), Some(true)), TicketStatus::Closed);
        // Values the org added but the map doesn't name.
        assert_eq!(map.read(Some("On Hold"), Some(false)), TicketStatus::Open);
        assert_eq!(map.read(Some("Resolved"), Some(true)), TicketStatus::Closed);
    }

    #[test]
    fn custom_statuses_and_bad_maps() {
        let map = PicklistMap::statuses(
            "status_map",
            "New=new,Working=open,Waiting on Customer=pending,On Hold=on_hold,Resolved=solved,Closed=closed",
        )
        .expect("map");
        assert_eq!(map.write(TicketStatus::OnHold, "s").ok(), Some("On Hold"));
        assert_eq!(map.write(TicketStatus::Solved, "s").ok(), Some("Resolved"));
        assert_eq!(
            map.read(Some("Waiting on Customer"), None),
            TicketStatus::Pending
        );
        let only_open = PicklistMap::statuses("s", "Working=open").expect("map");
        assert!(matches!(
            only_open.write(TicketStatus::Closed, "status_map"),
            Err(ConnectorError::InvalidInput(f)) if f.field == "status_map"
        ));
        for bad in ["New", "New=nieuw", "=open"] {
            assert!(
                matches!(
                    PicklistMap::statuses("status_map", bad),
                    Err(ConnectorError::InvalidInput(f)) if f.field == "status_map"
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn priorities_and_origins() {
        let map = PicklistMap::priorities("p", DEFAULT_PRIORITY_MAP).expect("map");
        assert_eq!(map.write(TicketPriority::Urgent), Some("High"));
        assert_eq!(map.write(TicketPriority::Normal), Some("Medium"));
        assert_eq!(map.read(Some("LOW")), Some(TicketPriority::Low));
        assert_eq!(map.read(Some("Critical")), None);
        assert_eq!(map.read(None), None);

        let origins = OriginMap::parse("o", "telegram=Telegram, *=Web").expect("map");
        assert_eq!(origins.origin("Telegram"), Some("Telegram"));
        assert_eq!(origins.origin("x"), Some("Web"));
        assert_eq!(OriginMap::parse("o", "").expect("empty").origin("x"), None);
    }
}
