//! Webhooks: a forged or unsigned request is refused with `unauthorized`, a handshake is
//! answered, a replayed delivery gives the same event ids.

use super::{connector_variant, CheckResult, Target, WebhookSample};
use crate::manifest::PluginKind;
use crate::runtime::latest::{ConnectorError, WebhookRequest, WebhookResponse};
use crate::runtime::CallError;

const GROUP: &str = "webhooks";

/// What a webhook call gave: the answer and the ids of what it carried.
async fn deliver(
    target: &Target<'_>,
    request: WebhookRequest,
) -> anyhow::Result<Result<(WebhookResponse, Vec<String>), CallError>> {
    Ok(match target.plugin.kind() {
        PluginKind::Social => target.social()?.handle_webhook(request).await.map(|o| {
            let ids = o.events.iter().map(|e| e.message_id.clone()).collect();
            (o.response, ids)
        }),
        PluginKind::Helpdesk => target.helpdesk()?.handle_webhook(request).await.map(|o| {
            let ids = o.changes.iter().map(|c| c.change_id.clone()).collect();
            (o.response, ids)
        }),
    })
}

fn outcome_name(result: &Result<(WebhookResponse, Vec<String>), CallError>) -> String {
    match result {
        Ok((response, _)) => format!("accepted it (answered {})", response.status),
        Err(CallError::Connector(error)) => format!("`{}`", connector_variant(error)),
        Err(other) => format!("a host failure ({other})"),
    }
}

/// Headers that say nothing about who sent a request.
const PLAIN_HEADERS: &[&str] = &["content-type", "content-length", "user-agent", "accept"];

/// The delivery with every other header's value changed: signatures, tokens and timestamps no
/// longer match.
fn forged(sample: &WebhookSample) -> WebhookRequest {
    let mut request = sample.to_request();
    for (name, value) in &mut request.headers {
        if !PLAIN_HEADERS.contains(&name.as_str()) {
            let mut changed: Vec<char> = value.chars().collect();
            match changed.last_mut() {
                Some(last) => *last = if *last == '0' { '1' } else { '0' },
                None => changed.push('0'),
            }
            *value = changed.into_iter().collect();
        }
    }
    request
}

fn unsigned(sample: Option<&WebhookSample>) -> WebhookRequest {
    let body = sample.map_or_else(|| b"{}".to_vec(), |s| s.body.clone().into_bytes());
    WebhookRequest {
        method: "POST".into(),
        path: sample.map(|s| s.path.clone()).unwrap_or_default(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    }
}

fn refused(
    check: &str,
    what: &str,
    result: &Result<(WebhookResponse, Vec<String>), CallError>,
) -> CheckResult {
    match result {
        Err(CallError::Connector(ConnectorError::Unauthorized(_))) => {
            CheckResult::pass(GROUP, check)
        }
        other => CheckResult::fail(
            GROUP,
            check,
            format!(
                "{what} must be refused with `unauthorized`, the plugin gave {}",
                outcome_name(other)
            ),
            "verify the delivery's signature (or secret token) over the raw body before anything \
             else, with `signature::verify_*` in constant time, and return \
             `ConnectorError::unauthorized` when it is missing or wrong; refuse every delivery \
             when no secret is configured",
        ),
    }
}

pub async fn check(target: &Target<'_>) -> Vec<CheckResult> {
    if !target.plugin.manifest().accepts_webhooks {
        return vec![CheckResult::skip(
            GROUP,
            "webhooks",
            "the manifest says the plugin accepts no webhooks",
        )];
    }
    let mut results = Vec::new();
    let delivery = target.options.webhook_delivery.as_ref();
    let unsigned_result = deliver(target, unsigned(delivery)).await;
    results.push(match unsigned_result {
        Ok(result) => refused(
            "unsigned-refused",
            "a delivery without a signature",
            &result,
        ),
        Err(error) => CheckResult::fail(
            GROUP,
            "unsigned-refused",
            format!("{error:#}"),
            "pass the plugin's settings",
        ),
    });
    let need_sample = "pass --webhook-delivery FILE: a genuine signed delivery as JSON \
                       {method, path, query, headers, body}, as `plugin exec handle-webhook \
                       --input` takes it";
    match delivery {
        None => {
            results.push(CheckResult::skip(GROUP, "forged-refused", need_sample));
            results.push(CheckResult::skip(GROUP, "replay-same-ids", need_sample));
        }
        Some(sample) => {
            results.push(match deliver(target, forged(sample)).await {
                Ok(result) => refused(
                    "forged-refused",
                    "the delivery with its signature headers altered",
                    &result,
                ),
                Err(error) => CheckResult::fail(
                    GROUP,
                    "forged-refused",
                    format!("{error:#}"),
                    "pass the plugin's settings",
                ),
            });
            let first = deliver(target, sample.to_request()).await;
            let second = deliver(target, sample.to_request()).await;
            results.push(match (first, second) {
                (Ok(Ok((_, first))), Ok(Ok((_, second)))) if first == second => {
                    if first.is_empty() {
                        CheckResult::warn(
                            GROUP,
                            "replay-same-ids",
                            "the sample delivery carried no events, so ids could not be compared",
                        )
                    } else {
                        CheckResult::pass(GROUP, "replay-same-ids")
                    }
                }
                (Ok(Ok((_, first))), Ok(Ok((_, second)))) => CheckResult::fail(
                    GROUP,
                    "replay-same-ids",
                    format!("the same delivery gave ids {first:?}, then {second:?}"),
                    "derive event ids from the service's own ids, never from the time or a \
                     counter: the hub deduplicates redeliveries on them",
                ),
                (Ok(first), Ok(second)) => CheckResult::fail(
                    GROUP,
                    "replay-same-ids",
                    format!(
                        "the genuine delivery was not accepted: first {}, then {}",
                        outcome_name(&first),
                        outcome_name(&second)
                    ),
                    "check the sample's signature matches the webhook secret in the settings",
                ),
                (Err(error), _) | (_, Err(error)) => CheckResult::fail(
                    GROUP,
                    "replay-same-ids",
                    format!("{error:#}"),
                    "pass the plugin's settings",
                ),
            });
        }
    }
    match &target.options.webhook_handshake {
        None => results.push(CheckResult::skip(
            GROUP,
            "handshake-answered",
            "pass --webhook-handshake FILE: the service's subscription or verification request, \
             as JSON {method, path, query, headers, body}",
        )),
        Some(sample) => {
            let challenges: Vec<String> = sample
                .query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(key, _)| key.contains("challenge"))
                .map(|(_, value)| value.to_string())
                .collect();
            let result = deliver(target, sample.to_request()).await;
            results.push(match result {
                Ok(Ok((response, _)))
                    if (200..300).contains(&response.status)
                        && challenges.iter().all(|c| {
                            String::from_utf8_lossy(&response.body).contains(c.as_str())
                        }) =>
                {
                    CheckResult::pass(GROUP, "handshake-answered")
                }
                Ok(Ok((response, _))) => CheckResult::fail(
                    GROUP,
                    "handshake-answered",
                    format!(
                        "the handshake was answered {} with body {:?}{}",
                        response.status,
                        String::from_utf8_lossy(&response.body),
                        if challenges.is_empty() {
                            String::new()
                        } else {
                            format!(", which must echo {challenges:?}")
                        }
                    ),
                    "answer the handshake with a 2xx and the body the service expects (usually \
                     the challenge, echoed)",
                ),
                Ok(other) => CheckResult::fail(
                    GROUP,
                    "handshake-answered",
                    format!("the handshake got {}", outcome_name(&other)),
                    "recognise the handshake (by method, path or query) before checking for a \
                     delivery signature, and answer it",
                ),
                Err(error) => CheckResult::fail(
                    GROUP,
                    "handshake-answered",
                    format!("{error:#}"),
                    "pass the plugin's settings",
                ),
            });
        }
    }
    target.tap.take_seen();
    results
}
