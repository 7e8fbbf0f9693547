//! The installation's typed settings, and every call the plugin makes to Salesforce through
//! the host. What to send and how to read the answers is in `api.rs` and `mapping.rs`; which
//! comments an earlier attempt posted is decided in `look_back.rs`.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use switchboard_plugin_sdk::helpdesk::TicketState;
use switchboard_plugin_sdk::http::{self, Request, Response};
use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::time;

use crate::api::{self, path_segment, record_id, QueryPage, Upserted, SALESFORCE};
use crate::changes::Mark;
use crate::manifest::{manifest, settings};
use crate::mapping::Mappings;

/// Rows per query batch: a batch of long CaseComments stays well under the host's response
/// cap (200 × 4 KB), where Salesforce's default of 2,000 might not.
const QUERY_BATCH_SIZE: &str = "batchSize=200";

/// Warn when the day's API allocation is this full (percent).
const USAGE_WARNING_PERCENT: u64 = 90;

/// The settings the plugin reads (the OAuth ones are the host's).
#[derive(Debug, Deserialize)]
struct Settings {
    instance_url: String,
    api_version: String,
    client_name: String,
    contact_external_id_field: String,
    case_external_id_field: String,
    status_map: String,
    priority_map: String,
    origin_map: String,
    integration_user_id: Option<String>,
    initial_lookback_secs: u64,
}

/// One Salesforce org, as an installation's settings describe it, checked once per call.
pub struct Account {
    instance: String,
    version: String,
    client: String,
    pub contact_field: String,
    pub case_field: String,
    pub mappings: Mappings,
    integration_user_id: Option<String>,
    initial_lookback_secs: u64,
}

impl Account {
    /// The org of the installation `ctx` is for; bad or missing settings are `InvalidInput`
    /// naming the setting.
    pub fn of(ctx: &Context) -> Result<Self> {
        let settings: Settings = ctx.parse_settings_with_defaults(&manifest().settings)?;
        let instance = settings.instance_url.trim().trim_end_matches('/');
        if !(instance.starts_with("https://") || instance.starts_with("http://")) {
            return Err(ConnectorError::invalid(
                settings::INSTANCE_URL,
                format!("`{instance}` is not a URL like https://acme.my.salesforce.com"),
            ));
        }
        let raw_version = settings.api_version.trim();
        let number = raw_version.trim_start_matches(['v', 'V']);
        let valid = number.split_once('.').is_some_and(|(major, minor)| {
            major.parse::<u32>().is_ok_and(|m| m >= 20) && minor.parse::<u32>().is_ok()
        });
        if !valid {
            return Err(ConnectorError::invalid(
                settings::API_VERSION,
                format!("`{raw_version}` is not an API version like v60.0"),
            ));
        }
        let integration_user_id = match &settings.integration_user_id {
            Some(id) => Some(record_id(settings::INTEGRATION_USER_ID, id, "005", "User")?),
            None => None,
        };
        Ok(Self {
            instance: instance.to_string(),
            version: format!("v{number}"),
            client: settings.client_name.trim().to_string(),
            contact_field: api::api_name(
                settings::CONTACT_EXTERNAL_ID_FIELD,
                &settings.contact_external_id_field,
            )?
            .to_string(),
            case_field: api::api_name(
                settings::CASE_EXTERNAL_ID_FIELD,
                &settings.case_external_id_field,
            )?
            .to_string(),
            mappings: Mappings::parse(
                &settings.status_map,
                &settings.priority_map,
                &settings.origin_map,
            )?,
            integration_user_id,
            initial_lookback_secs: settings.initial_lookback_secs,
        })
    }

    /// Where agents open case `id`.
    pub fn case_url(&self, id: &str) -> String {
        format!("{}/lightning/r/Case/{id}/view", self.instance)
    }

    /// Epoch ms the first poll starts from.
    pub fn initial_since(&self) -> u64 {
        now_ms().saturating_sub(self.initial_lookback_secs.saturating_mul(1000))
    }

    /// Posts one CaseComment; answers its id.
    pub fn post_comment(&self, case_id: &str, body: &str, public: bool) -> Result<String> {
        let body = json!({
            "ParentId": case_id,
            "CommentBody": body,
            "IsPublished": public,
        });
        let response = SALESFORCE
            .check(self.send(http::post(self.url("/sobjects/CaseComment")).json(&body))?)?;
        let saved: api::SaveResult = SALESFORCE.parse(&response, "CaseComment")?;
        Ok(saved.id)
    }

    /// Writes the changed `fields` of case `case_id`.
    pub fn update_case(&self, case_id: &str, fields: Map<String, Value>) -> Result<()> {
        SALESFORCE.check(
            self.send(
                http::patch(self.url(&format!("/sobjects/Case/{case_id}")))
                    .json(&Value::Object(fields)),
            )?,
        )?;
        Ok(())
    }

    /// `{instance}/services/data/v60.0{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/services/data/{}{path}", self.instance, self.version)
    }

    /// Every request names the client, so Salesforce (and CDC's `changeOrigin`) can tell the
    /// hub's writes apart.
    pub fn request(&self, request: Request) -> Request {
        request
            .header("Accept", "application/json")
            .header("Sforce-Call-Options", format!("client={}", self.client))
    }

    pub fn send(&self, request: Request) -> Result<Response> {
        let response = self.request(request).send()?;
        if let Some((used, max)) = api::api_usage(&response) {
            if max > 0 && used * 100 >= max * USAGE_WARNING_PERCENT {
                log_warn!(
                    "Salesforce daily API allocation nearly used",
                    used = used,
                    max = max
                );
            }
        }
        Ok(response)
    }

    /// Upserts `object` by its external id field; returns the record id and whether it was
    /// created.
    pub fn upsert(
        &self,
        object: &str,
        field: &str,
        setting: &str,
        value: &str,
        body: &Value,
    ) -> Result<(String, bool)> {
        let path = format!("/sobjects/{object}/{field}/{}", path_segment(value));
        let response = self.send(http::patch(self.url(&path)).json(body))?;
        match api::upserted(&response, object, field, value, setting)? {
            Upserted::Created(id) => Ok((id, true)),
            Upserted::Updated(Some(id)) => Ok((id, false)),
            // API v45.0 and older answer 204 without the id: read it by the external id.
            Upserted::Updated(None) => {
                let read = SALESFORCE
                    .check(self.send(http::get(self.url(&format!("{path}?fields=Id"))))?)?;
                let record: Value = SALESFORCE.parse(&read, object)?;
                let id = api::text(&record, "Id").ok_or_else(|| {
                    ConnectorError::fatal(format!("Salesforce returned a {object} without an Id"))
                })?;
                Ok((id.to_string(), false))
            }
        }
    }

    pub fn case_state(&self, case_id: &str) -> Result<TicketState> {
        let fields = format!(
            "Id,Status,IsClosed,Priority,SystemModstamp,{}",
            self.case_field
        );
        let response = SALESFORCE.check(self.send(http::get(
            self.url(&format!("/sobjects/Case/{case_id}?fields={fields}")),
        ))?)?;
        let record: Value = SALESFORCE.parse(&response, "Case")?;
        let statuses = &self.mappings.statuses;
        let priorities = &self.mappings.priorities;
        Ok(TicketState {
            id: api::text(&record, "Id").unwrap_or(case_id).to_string(),
            status: statuses.read(
                api::text(&record, "Status"),
                record.get("IsClosed").and_then(Value::as_bool),
            ),
            priority: priorities.read(api::text(&record, "Priority")),
            external_id: api::text(&record, &self.case_field).map(str::to_string),
            updated_at: api::text(&record, "SystemModstamp")
                .and_then(time::parse_iso8601_ms)
                .unwrap_or(0),
        })
    }

    /// The integration user's id: the setting, else the token's user from userinfo.
    pub fn integration_user(&self) -> Result<String> {
        if let Some(id) = &self.integration_user_id {
            return Ok(id.clone());
        }
        let response = self.send(http::get(format!(
            "{}/services/oauth2/userinfo",
            self.instance
        )))?;
        if response.status == 401 || response.status == 403 {
            return Err(ConnectorError::unauthorized(
                "Salesforce did not accept the session for userinfo; reconnect the installation",
            ));
        }
        let info: Value = SALESFORCE.parse(&SALESFORCE.check(response)?, "userinfo")?;
        api::text(&info, "user_id")
            .map(str::to_string)
            .ok_or_else(|| ConnectorError::fatal("Salesforce userinfo has no user_id"))
    }

    /// Every row of a query, batch by batch.
    pub fn query_all(&self, soql: &str) -> Result<Vec<Value>> {
        let request = http::get(self.url("/query"))
            .query("q", soql)
            .header("Sforce-Query-Options", QUERY_BATCH_SIZE);
        let mut page: QueryPage =
            SALESFORCE.parse(&SALESFORCE.check(self.send(request)?)?, "query result")?;
        let mut records = std::mem::take(&mut page.records);
        while let (false, Some(next)) = (page.done, page.next_records_url.take()) {
            let response = self.send(http::get(format!("{}{next}", self.instance)))?;
            page = SALESFORCE.parse(&SALESFORCE.check(response)?, "query batch")?;
            records.append(&mut page.records);
        }
        Ok(records)
    }

    /// One batch of a query: the next batch of a running one, else a new one.
    pub fn query_batch(&self, mark: &mut Mark, soql: impl Fn(&str) -> String) -> Result<QueryPage> {
        if let Some(next) = mark.next.clone() {
            let response = self.send(http::get(format!("{}{next}", self.instance)))?;
            // An idle locator expires after 15 minutes: start over from the mark.
            let expired = response.status == 400
                && api::first_error(&response.body)
                    .is_some_and(|e| e.error_code == "INVALID_QUERY_LOCATOR");
            if !expired {
                return SALESFORCE.parse(&SALESFORCE.check(response)?, "query batch");
            }
            log_info!("query locator expired; querying again");
            mark.next = None;
        }
        let request = http::get(self.url("/query"))
            .query("q", soql(&mark.start_literal()))
            .header("Sforce-Query-Options", QUERY_BATCH_SIZE);
        SALESFORCE.parse(&SALESFORCE.check(self.send(request)?)?, "query result")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let account = Account::of(&Context::new(
            "i",
            [
                ("instance_url", "https://acme.my.salesforce.com/"),
                ("api_version", "61.0"),
            ],
        ))
        .expect("account");
        assert_eq!(
            account.url("/query"),
            "https://acme.my.salesforce.com/services/data/v61.0/query"
        );
        assert_eq!(account.case_field, "Switchboard_External_Id__c");
        for (key, value) in [
            ("instance_url", "acme.my.salesforce.com"),
            ("api_version", "latest"),
            ("case_external_id_field", "Bad Field"),
        ] {
            let mut settings =
                std::collections::BTreeMap::from([("instance_url", "https://x.example")]);
            settings.insert(key, value);
            let ctx = Context::new("i", settings);
            assert!(
                matches!(Account::of(&ctx), Err(ConnectorError::InvalidInput(f)) if f.field == key),
                "{key}={value}"
            );
        }
        assert!(matches!(
            Account::of(&Context::new("i", [("login_url", "x")])),
            Err(ConnectorError::InvalidInput(f)) if f.field == "instance_url"
        ));
    }
}
