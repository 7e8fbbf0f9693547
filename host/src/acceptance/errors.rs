//! Error mapping: every failure a service can answer with becomes the `connector-error` variant
//! the hub acts on (retry, wait, ask the admin, give up). No service needed: the runtime's HTTP
//! layer answers the plugin's requests with scripted faults.

use super::{connector_variant, CheckResult, Target};
use crate::manifest::PluginKind;
use crate::runtime::bindings::http::{HttpError, Response};
use crate::runtime::latest::{self, ConnectorError, SocialIdentity};
use crate::runtime::{CallError, HelpdeskConnector, SocialConnector};

const GROUP: &str = "error-mapping";

/// One scripted answer and the variants it may become.
struct Fault {
    name: String,
    answer: Result<Response, HttpError>,
    expected: &'static [&'static str],
    /// The retry delay a `rate-limited` must carry, in ms (inclusive range).
    delay_ms: Option<(u64, u64)>,
    fix: &'static str,
}

fn json_response(status: u16, headers: &[(&str, String)], body: &str) -> Response {
    let mut all = vec![("content-type".to_string(), "application/json".to_string())];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.clone())));
    Response {
        status,
        headers: all,
        body: body.as_bytes().to_vec(),
    }
}

fn error_body(status: u16) -> String {
    format!(
        r#"{{"error":"scripted {status} from switchboard plugin test","message":"scripted {status}","error_code":{status},"ok":false,"description":"scripted {status}"}}"#
    )
}

fn faults() -> Vec<Fault> {
    let status = |code: u16, expected: &'static [&'static str], fix: &'static str| Fault {
        name: code.to_string(),
        answer: Ok(json_response(code, &[], &error_body(code))),
        expected,
        delay_ms: None,
        fix,
    };
    let now = chrono::Utc::now();
    let in_two_minutes = (now + chrono::Duration::seconds(120))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let reset_epoch = (now.timestamp() + 90).to_string();
    let rate_limited = "map 429 to `rate-limited` with the delay the service asks for \
                        (`http::status_error` reads `Retry-After`; read the service's own \
                        header or body field first when it has one)";
    vec![
        status(
            401,
            &["unauthorized"],
            "map 401 to `unauthorized`: the admin must fix the credentials; retrying cannot",
        ),
        status(
            403,
            &["unauthorized", "policy"],
            "map 403 to `unauthorized` (or `policy` when the service says a rule refused it)",
        ),
        status(
            404,
            &["not-found"],
            "map 404 to `not-found`, so the hub stops asking for what is gone (a 404 from a \
             stream or a send, which names no single record, may also be `unauthorized`: the \
             account or endpoint is wrong)",
        ),
        status(
            409,
            &["transient", "invalid-input"],
            "map 409 to `transient` (a conflict clears on retry) or `invalid-input`",
        ),
        status(
            422,
            &["invalid-input"],
            "map 422 to `invalid-input` naming the field: the same request would fail again",
        ),
        Fault {
            name: "429 with Retry-After in seconds".into(),
            answer: Ok(json_response(
                429,
                &[("retry-after", "7".into())],
                &error_body(429),
            )),
            expected: &["rate-limited"],
            delay_ms: Some((7_000, 8_000)),
            fix: rate_limited,
        },
        Fault {
            name: "429 with Retry-After as an HTTP date".into(),
            answer: Ok(json_response(
                429,
                &[("retry-after", in_two_minutes)],
                &error_body(429),
            )),
            expected: &["rate-limited"],
            delay_ms: Some((100_000, 125_000)),
            fix: rate_limited,
        },
        Fault {
            name: "429 with X-RateLimit-Reset".into(),
            answer: Ok(json_response(
                429,
                &[
                    ("x-ratelimit-reset", reset_epoch),
                    ("x-ratelimit-remaining", "0".into()),
                ],
                &error_body(429),
            )),
            expected: &["rate-limited"],
            delay_ms: None,
            fix: rate_limited,
        },
        Fault {
            name: "429 with retry_after in the body".into(),
            answer: Ok(json_response(
                429,
                &[],
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 42","retry_after":42,"parameters":{"retry_after":42}}"#,
            )),
            expected: &["rate-limited"],
            delay_ms: None,
            fix: rate_limited,
        },
        status(
            500,
            &["transient"],
            "map 5xx to `transient`: the hub retries with backoff",
        ),
        status(
            503,
            &["transient"],
            "map 5xx to `transient`: the hub retries with backoff",
        ),
        Fault {
            name: "timeout".into(),
            answer: Err(HttpError::Timeout(
                "scripted timeout from switchboard plugin test".into(),
            )),
            expected: &["transient"],
            delay_ms: None,
            fix: "map the host's `timeout` to `transient` (the SDK's `send()` does)",
        },
        Fault {
            name: "malformed body".into(),
            answer: Ok(Response {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: br#"{"messages": [{"id": "#.to_vec(),
            }),
            expected: &["fatal", "transient"],
            delay_ms: None,
            fix: "return an error for a body that does not parse (`Response::json` gives \
                  `fatal`); never succeed with what could be read, which drops data silently",
        },
    ]
}

/// An operation that talks to the service.
enum Operation {
    Poll(String),
    Send,
    GetTicket,
    PollChanges(String),
    FindRequester,
}

impl Operation {
    /// Whether the operation names one record, so a 404 can only mean that record is gone.
    /// Elsewhere a 404 says the account or the endpoint is wrong (Telegram answers 404 to a
    /// revoked bot token), which `unauthorized` reports as well.
    fn names_a_record(&self) -> bool {
        matches!(self, Operation::GetTicket)
    }

    fn name(&self) -> String {
        match self {
            Operation::Poll(stream) => format!("poll `{stream}`"),
            Operation::Send => "send".into(),
            Operation::GetTicket => "get-ticket".into(),
            Operation::PollChanges(stream) => format!("poll-changes `{stream}`"),
            Operation::FindRequester => "find-or-create-requester".into(),
        }
    }
}

enum Connector {
    Social(SocialConnector),
    Helpdesk(HelpdeskConnector),
}

async fn call(
    connector: &Connector,
    operation: &Operation,
    target: &Target<'_>,
) -> Result<(), CallError> {
    let network = target.plugin.manifest().id.clone();
    match (connector, operation) {
        (Connector::Social(c), Operation::Poll(stream)) => c.poll(stream, None).await.map(drop),
        (Connector::Social(c), Operation::Send) => c
            .send(&super::sending::sample_message(
                target,
                "errors",
                "Switchboard acceptance check",
            ))
            .await
            .map(drop),
        (Connector::Helpdesk(c), Operation::GetTicket) => c.get_ticket("1").await.map(drop),
        (Connector::Helpdesk(c), Operation::PollChanges(stream)) => {
            c.poll_changes(stream, None).await.map(drop)
        }
        (Connector::Helpdesk(c), Operation::FindRequester) => c
            .find_or_create_requester(&latest::RequesterRequest {
                identity: SocialIdentity {
                    external_id: "switchboard-acceptance".into(),
                    network,
                    handle: None,
                    display_name: Some("Acceptance Check".into()),
                },
                external_id: "switchboard-acceptance".into(),
            })
            .await
            .map(drop),
        _ => Ok(()),
    }
}

pub async fn check(target: &Target<'_>) -> Vec<CheckResult> {
    let manifest = target.plugin.manifest();
    let first_stream = manifest.streams.first().map(|s| s.name.clone());
    let (connector, operations) = match target.plugin.kind() {
        PluginKind::Social => {
            let mut operations = Vec::new();
            operations.extend(first_stream.map(Operation::Poll));
            operations.push(Operation::Send);
            (target.social().map(Connector::Social), operations)
        }
        PluginKind::Helpdesk => {
            let mut operations = vec![Operation::GetTicket, Operation::FindRequester];
            operations.extend(first_stream.map(Operation::PollChanges));
            (target.helpdesk().map(Connector::Helpdesk), operations)
        }
    };
    let connector = match connector {
        Ok(connector) => connector,
        Err(error) => {
            return vec![CheckResult::fail(
                GROUP,
                "settings",
                format!("the plugin cannot be bound to the given settings: {error:#}"),
                "pass the settings the plugin requires with -s KEY=VALUE or --settings-file",
            )]
        }
    };
    let mut results = Vec::new();
    for fault in faults() {
        target.tap.set_fault(fault.answer.clone());
        let mut problems = Vec::new();
        let mut judged = 0;
        for operation in &operations {
            target.tap.take_seen();
            let result = call(&connector, operation, target).await;
            let requests = target.tap.take_seen().len();
            if requests == 0 {
                // It never asked the service, so this fault cannot reach it.
                if let Err(error) = &result {
                    tracing::debug!(%error, "no request made under fault");
                }
                continue;
            }
            judged += 1;
            let got = match &result {
                Ok(()) => "ok".to_string(),
                Err(CallError::Connector(error)) => connector_variant(error).to_string(),
                Err(other) => format!("a host failure ({other})"),
            };
            let also_unauthorized = fault.name == "404" && !operation.names_a_record();
            let accepted = fault.expected.contains(&got.as_str())
                || (also_unauthorized && got == "unauthorized");
            if !accepted {
                let detail = match &result {
                    Err(CallError::Connector(error)) => {
                        format!(": {}", crate::runtime::describe_error(error))
                    }
                    _ => String::new(),
                };
                problems.push(format!(
                    "{} answered {} became `{got}`{detail}, expected {}",
                    operation.name(),
                    fault.name,
                    fault
                        .expected
                        .iter()
                        .map(|v| format!("`{v}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ));
                continue;
            }
            if let (
                Some((least, most)),
                Err(CallError::Connector(ConnectorError::RateLimited(r))),
            ) = (fault.delay_ms, &result)
            {
                if !(least..=most).contains(&r.retry_after_ms) {
                    problems.push(format!(
                        "{} answered {} asked to retry after {} ms, expected {least}-{most} ms",
                        operation.name(),
                        fault.name,
                        r.retry_after_ms
                    ));
                }
            }
        }
        let check = format!("{} -> {}", fault.name, fault.expected.join(" or "));
        results.push(if judged == 0 {
            CheckResult::skip(
                GROUP,
                check,
                "no operation made an HTTP request, so no fault could reach the plugin",
            )
        } else if problems.is_empty() {
            CheckResult::pass(GROUP, check)
        } else {
            CheckResult::fail(GROUP, check, problems.join("; "), fault.fix)
        });
    }
    target.tap.clear_fault();
    target.tap.take_seen();
    results
}
