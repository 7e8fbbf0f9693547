//! Contract 0.3 next to 0.2: a 0.2 component and a 0.3 one load and work side by side, and
//! what 0.3 adds works in the hub: author signals and referral stored and shown, conversation
//! ownership holding replies, delivery statuses, channel capabilities checked before a send,
//! billable calls counted, and replies split leaving the plugin's per-part reserve.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::support::{world_with, World, ZD};
use serde_json::{json, Value};
use switchboard::hub::{LinkSettings, NewInstallation, NewLink, WebhookRequest};
use switchboard::runtime::{ContractVersion, Installation, MeterSink};
use switchboard_testkit::{self as common, recorder::Recorder};

const CARE: &str = "care";
const CARE_PLUGIN: &str = "tests/plugins/care03";
/// The care03 plugin's text limit, its per-part reserve, and the mention it prefixes.
const MAX_LENGTH: usize = 100;
const RESERVE: usize = 24;

#[derive(Default)]
struct Counted(Mutex<Vec<(String, String, u64)>>);

impl MeterSink for Counted {
    fn billable(&self, installation_id: &str, kind: &str, count: u64) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((
            installation_id.into(),
            kind.into(),
            count,
        ));
    }
}

fn webhook(body: Value) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: String::new(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&body).expect("json"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_2_and_a_0_3_component_load_and_work_side_by_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = common::runtime(dir.path());
    let old = common::load(&runtime, &common::component_once("tests/plugins/misbehave")).await;
    let new = common::load(&runtime, &common::component_once(CARE_PLUGIN)).await;
    assert_eq!(old.contract(), ContractVersion::V0_2);
    assert_eq!(new.contract(), ContractVersion::V0_3);

    // The 0.2 manifest, adapted: capabilities derived, nothing billable, no reserve.
    let derived = old.manifest().channel.clone().expect("derived channel");
    assert!(derived.private_reply_to_public.is_none());
    assert_eq!(derived.public_reply_kinds.len(), 3);
    assert!(old.manifest().billable_kinds.is_empty());
    assert!(old
        .manifest()
        .text_limits
        .iter()
        .all(|l| l.reserve_per_part == 0));
    // The 0.3 manifest as declared.
    let declared = new.manifest().channel.clone().expect("declared channel");
    assert_eq!(declared.max_attachments, Some(1));
    assert_eq!(new.manifest().billable_kinds[0].name, "post-create");
    assert!(new
        .manifest()
        .text_limits
        .iter()
        .all(|l| l.reserve_per_part == RESERVE as u32));

    // Both answer calls through the same runtime: the 0.2 one through the adapter.
    let old_conn = runtime
        .social(
            &old,
            &Installation {
                id: "old".into(),
                settings: [("secret_token".to_string(), "s3cret".to_string())].into(),
                ..Default::default()
            },
        )
        .expect("bind 0.2");
    let page = old_conn.poll("quiet", None).await.expect("0.2 poll");
    assert!(page.events.is_empty() && !page.has_more);
    assert!(page.statuses.is_empty() && page.ownership_changes.is_empty());

    let meter = Arc::new(Counted::default());
    let api = Recorder::start(200, json!({"ok": true})).await;
    let new_conn = runtime
        .social(
            &new,
            &Installation {
                id: "new".into(),
                settings: BTreeMap::from([
                    ("api_base".to_string(), api.url.clone()),
                    ("brand_handle".to_string(), "acme".to_string()),
                ]),
                approved_hosts: vec!["{api_base}".into()],
                meter: Some(meter.clone()),
                ..Default::default()
            },
        )
        .expect("bind 0.3");
    let outcome = new_conn
        .handle_webhook(webhook(json!({"events": [{
            "id": "m1", "thread": "t1", "kind": "post", "text": "@Acme my parcel?", "at": 1000,
            "author": {"id": "u1", "handle": "aiko", "followers": 1200, "verified": true},
            "referral": {"source": "ad", "id": "ad-7", "headline": "Winter sale"}
        }]})))
        .await
        .expect("0.3 webhook");
    let event = &outcome.events[0];
    assert_eq!(event.author_signals.follower_count, Some(1200));
    assert_eq!(event.addresses_brand, Some(true));
    assert_eq!(
        event.referral.as_ref().and_then(|r| r.source_id.as_deref()),
        Some("ad-7")
    );
    let counted = meter.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(counted.is_empty(), "{counted:?}");
}

/// The hub with the Zendesk (0.2) helpdesk and the care03 (0.3) network linked to it; the
/// care03 API is a recorder.
async fn care_world(link: LinkSettings) -> (World, Recorder) {
    let w = world_with(LinkSettings::default()).await;
    let api = Recorder::start(200, json!({"ok": true})).await;
    w.hub
        .install_plugin(&common::component_once(CARE_PLUGIN), true)
        .await
        .expect("install care03");
    w.hub
        .create_installation(NewInstallation {
            id: CARE.into(),
            plugin_id: "test.care03".into(),
            settings: BTreeMap::from([
                ("api_base".to_string(), api.url.clone()),
                ("brand_handle".to_string(), "acme".to_string()),
            ]),
            enabled: None,
            deadline_ms: None,
        })
        .await
        .expect("care installation");
    w.hub
        .create_link(NewLink {
            id: "care-to-zd".into(),
            social_installation: CARE.into(),
            helpdesk_installation: ZD.into(),
            settings: link,
        })
        .await
        .expect("link");
    (w, api)
}

async fn deliver(w: &World, body: Value) {
    w.hub
        .handle_webhook(CARE, webhook(body))
        .await
        .expect("webhook");
    w.settle().await;
}

/// A customer's message on thread `t1`.
fn customer(id: &str, kind: &str, text: &str, at: u64) -> Value {
    json!({"events": [{
        "id": id, "thread": "t1", "kind": kind, "text": text, "at": at,
        "author": {"id": "u1", "handle": "aiko", "name": "Aiko", "followers": 1200, "verified": true},
        "referral": {"source": "ad", "id": "ad-7", "headline": "Winter sale"}
    }]})
}

async fn care_conversation(w: &World) -> switchboard::hub::ConversationDetail {
    let id = w
        .hub
        .list_conversations()
        .await
        .expect("conversations")
        .into_iter()
        .find(|c| c.social_installation_id == CARE)
        .expect("the care conversation")
        .id;
    w.hub.get_conversation(&id).await.expect("conversation")
}

fn sent_bodies(api: &Recorder) -> Vec<Value> {
    api.requests()
        .iter()
        .filter(|r| r.path == "/send")
        .map(|r| serde_json::from_slice(&r.body).expect("send body"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_stored_and_a_long_reply_leaves_the_reserve_in_every_part() {
    let (w, api) = care_world(LinkSettings::default()).await;
    deliver(
        &w,
        customer("m1", "post", "@acme where is my parcel?", 1000),
    )
    .await;
    assert_eq!(w.tickets().len(), 1);

    // Stored with the message, shown by the admin API, and on the ticket's way to the helpdesk.
    let detail = care_conversation(&w).await;
    let context = serde_json::to_value(&detail.messages[0].context).expect("json");
    assert_eq!(context["follower_count"], 1200);
    assert_eq!(context["verified"], true);
    assert_eq!(context["addresses_brand"], true);
    assert_eq!(context["referral"]["source_id"], "ad-7");
    let rows = w
        .hub
        .db()
        .outbox_rows_of_conversation(&detail.conversation.id)
        .await
        .expect("outbox");
    let create: Value = serde_json::from_str(&rows[0].payload).expect("payload");
    assert_eq!(create["context"]["referral"]["headline"], "Winter sale");
    assert!(detail.ownership.owned);

    // An agent's long reply: parts of at most 100 - 24 chars, so the `@aiko ` mention fits.
    let agent = w.human_agent().await;
    let reply = "Thank you for waiting. ".repeat(14);
    w.comment_as(w.ticket_id(0), agent, &reply, true).await;
    w.helpdesk_cycle().await;
    let sent = sent_bodies(&api);
    assert!(sent.len() >= 4, "{sent:#?}");
    for (index, body) in sent.iter().enumerate() {
        let text = body["text"].as_str().expect("text");
        let agent_part = text.strip_prefix("@aiko ").expect("mention");
        assert!(text.chars().count() <= MAX_LENGTH, "{text:?}");
        assert!(
            agent_part.chars().count() <= MAX_LENGTH - RESERVE,
            "{agent_part:?}"
        );
        assert_eq!(body["part"], format!("{}/{}", index + 1, sent.len()));
    }
    let detail = care_conversation(&w).await;
    assert!(
        detail.deliveries.iter().all(|d| d.status == "done"),
        "{:#?}",
        detail.deliveries
    );

    // A status reported later is stored on the sent part, never moved back by a late one.
    let key = sent[0]["idempotency_key"].as_str().expect("key");
    deliver(
        &w,
        json!({"statuses": [
            {"id": format!("sent:{key}"), "state": "read", "at": 5000},
            {"id": format!("sent:{key}"), "state": "delivered", "at": 4000},
            {"id": "sent:unknown", "state": "read", "at": 5000}
        ]}),
    )
    .await;
    let detail = care_conversation(&w).await;
    assert_eq!(detail.deliveries[0].delivery_state.as_deref(), Some("read"));
    assert_eq!(detail.deliveries[1].delivery_state, None);

    // One billable call per part, per installation, in the admin API and /metrics.
    let parts = sent.len() as i64;
    // Stored in the background: wait for it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let calls = w.hub.billable_calls(CARE).await.expect("billable calls");
        if calls.calls.get("post-create") == Some(&parts) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{calls:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let metrics = w.hub.render_metrics();
    assert!(
        metrics.contains(&format!(
            "switchboard_billable_calls_total{{installation=\"care\",kind=\"post-create\"}} {parts}"
        )),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_wait_while_another_app_owns_the_conversation() {
    let (w, api) = care_world(LinkSettings::default()).await;
    deliver(&w, customer("m1", "post", "hello", 1000)).await;
    // Another app takes the thread (Meta's handover: standby).
    deliver(
        &w,
        json!({"ownership": [{"thread": "t1", "owned": false, "owner": "inbox-app", "at": 2000}]}),
    )
    .await;
    let agent = w.human_agent().await;
    w.comment_as(w.ticket_id(0), agent, "We are on it.", true)
        .await;
    w.helpdesk_cycle().await;
    assert!(sent_bodies(&api).is_empty(), "sent while not owned");
    let detail = care_conversation(&w).await;
    assert!(!detail.ownership.owned);
    assert_eq!(detail.ownership.owner.as_deref(), Some("inbox-app"));
    let held = &detail.deliveries[0];
    assert_eq!(held.status, "pending");
    assert!(
        held.held
            .as_deref()
            .is_some_and(|h| h.contains("another app owns")),
        "{held:#?}"
    );
    // An older report cannot undo it; the thread coming back sends the reply.
    deliver(
        &w,
        json!({"ownership": [{"thread": "t1", "owned": true, "at": 1500}]}),
    )
    .await;
    assert!(sent_bodies(&api).is_empty());
    deliver(
        &w,
        json!({"ownership": [{"thread": "t1", "owned": true, "at": 3000}]}),
    )
    .await;
    let sent = sent_bodies(&api);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let detail = care_conversation(&w).await;
    assert_eq!(detail.deliveries[0].status, "done");
    assert_eq!(detail.deliveries[0].held, None);

    // A message that arrives on the standby channel says so itself.
    let mut standby = customer("m2", "post", "still there?", 4000);
    standby["events"][0]["owned"] = json!(false);
    deliver(&w, standby).await;
    assert!(!care_conversation(&w).await.ownership.owned);
    w.comment_as(w.ticket_id(0), agent, "Yes, one moment.", true)
        .await;
    w.helpdesk_cycle().await;
    assert_eq!(sent_bodies(&api).len(), 1, "sent while on standby");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_reply_the_network_lacks_is_refused_before_sending() {
    let (w, api) = care_world(LinkSettings {
        private_replies: true,
        ..LinkSettings::default()
    })
    .await;
    deliver(&w, customer("m1", "comment", "@acme broken again", 1000)).await;
    let agent = w.human_agent().await;
    w.comment_as(
        w.ticket_id(0),
        agent,
        "Sorry, writing to you privately.",
        true,
    )
    .await;
    w.helpdesk_cycle().await;
    assert!(sent_bodies(&api).is_empty());
    let dead = w.hub.list_dead_letters().await.expect("dead letters");
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("refused before sending") && error.contains("private-reply-to-public"),
        "{error}"
    );
    assert_eq!(dead[0].attempts, 0, "never tried: {dead:#?}");
}
