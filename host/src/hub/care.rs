//! What contract 0.3 asks of the hub: conversation ownership (replies held while another app
//! owns the conversation), delivery statuses of sent messages, the channel's capabilities
//! checked before a send, the customer context of inbound messages, and billable calls
//! counted per installation.

use std::sync::{Arc, Weak};

use serde::{Deserialize, Serialize};

use super::{now_ms, Hub, Inner};
use crate::manifest::ChannelCapabilities;
use crate::runtime::latest::{
    AuthorSignals, CustomerContext, DeliveryState, DeliveryStatus, OwnershipChange, Referral,
    SocialEvent,
};
use crate::runtime::MeterSink;
use crate::store::{OwnershipChange as Applied, StoreError, Tx};

// ----- ownership ------------------------------------------------------------------------------

/// The `last_error` and held reason of a reply held for a conversation the hub does not own.
pub(crate) fn not_owned_reason(owner: Option<&str>) -> String {
    format!(
        "held: another app owns this conversation ({}); the reply is sent when the hub owns it again",
        owner.unwrap_or("the network did not say which")
    )
}

/// Applies an event's ownership to its conversation (inside the event's transaction).
pub(crate) async fn apply_event_ownership(
    tx: &mut Tx,
    installation: &str,
    ev: &SocialEvent,
) -> Result<(), StoreError> {
    let applied = tx
        .set_ownership(
            installation,
            &ev.thread_id,
            ev.owned,
            None,
            ev.created_at as i64,
        )
        .await?;
    log_applied(&ev.thread_id, ev.owned, &applied);
    Ok(())
}

fn log_applied(thread: &str, owned: bool, applied: &Applied) {
    match applied {
        Applied::Returned {
            conversation,
            released,
        } => tracing::info!(
            %conversation, released, "the hub owns the conversation again; held replies are due"
        ),
        Applied::Applied(conversation) if !owned => tracing::info!(
            %conversation, "another app owns the conversation; replies are held"
        ),
        Applied::NoConversation => tracing::info!(
            thread = %crate::runtime::bounds::truncate(thread, 128),
            owned,
            "ownership change for a thread the hub has no conversation for; its first message sets it"
        ),
        Applied::Stale(conversation) => tracing::debug!(
            %conversation, "an older ownership report than the last applied; ignored"
        ),
        Applied::Applied(_) => {}
    }
}

/// Applies what a webhook or a poll page reported beside its events: ownership changes and
/// delivery statuses.
pub(crate) async fn apply_reports(
    hub: &Hub,
    installation: &str,
    statuses: &[DeliveryStatus],
    ownership: &[OwnershipChange],
) -> Result<(), StoreError> {
    let mut released = false;
    for change in ownership {
        let mut tx = hub.inner.db.begin().await?;
        let applied = tx
            .set_ownership(
                installation,
                &change.thread_id,
                change.owned,
                change.owner.as_deref(),
                change.at as i64,
            )
            .await?;
        tx.commit().await?;
        log_applied(&change.thread_id, change.owned, &applied);
        released |= matches!(applied, Applied::Returned { .. });
    }
    if released {
        hub.inner.outbox.notify_one();
    }
    for status in statuses {
        let state = delivery_state_name(status.state);
        let found = hub
            .inner
            .db
            .record_delivery_status(
                installation,
                &status.message_id,
                state,
                status.reason.as_deref(),
                status.at as i64,
            )
            .await?;
        match found {
            Some(row) => tracing::debug!(row, state, "delivery status recorded"),
            None => tracing::warn!(
                %installation,
                message = %crate::runtime::bounds::truncate(&status.message_id, 128),
                state,
                "delivery status for a message the hub did not send; not recorded"
            ),
        }
    }
    Ok(())
}

pub(crate) fn delivery_state_name(state: DeliveryState) -> &'static str {
    match state {
        DeliveryState::Sent => "sent",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Read => "read",
        DeliveryState::Failed => "failed",
    }
}

// ----- capabilities ---------------------------------------------------------------------------

/// The visibility a reply to a conversation goes out with: its own, or private for a public
/// conversation when the link asks for private replies.
pub(crate) fn answer_visibility(conversation_visibility: &str, private_replies: bool) -> &str {
    if private_replies && conversation_visibility == "public" {
        "private"
    } else {
        conversation_visibility
    }
}

/// Whether the network can take this reply, from the manifest's channel capabilities; the
/// error says what the network lacks. `parts` is how many messages the reply needs.
pub(crate) fn check_reply(
    channel: &ChannelCapabilities,
    kind: &str,
    conversation_visibility: &str,
    answer_visibility: &str,
    attachments: usize,
    parts: usize,
    since_inbound_ms: Option<i64>,
) -> Result<(), String> {
    let public = answer_visibility == "public";
    if !public && conversation_visibility == "public" {
        let Some(rule) = &channel.private_reply_to_public else {
            return Err(format!(
                "the network has no private reply to a public `{kind}` (channel capabilities: \
                 private-reply-to-public is none)"
            ));
        };
        if let (Some(window), Some(age)) = (rule.window_seconds, since_inbound_ms) {
            if age > (window as i64).saturating_mul(1000) {
                return Err(format!(
                    "a private reply to a public `{kind}` is possible within {window} s of it; \
                     the customer wrote {} s ago ({})",
                    age / 1000,
                    rule.note
                ));
            }
        }
        if let Some(max) = rule.max_messages {
            if parts > max as usize {
                return Err(format!(
                    "a private reply to a public `{kind}` may be at most {max} message(s); this \
                     reply needs {parts} ({})",
                    rule.note
                ));
            }
        }
    }
    let kinds = if public {
        &channel.public_reply_kinds
    } else {
        &channel.private_reply_kinds
    };
    let how = if public { "publicly" } else { "privately" };
    if !kinds.iter().any(|k| k == kind) {
        return Err(format!(
            "the network cannot answer a `{kind}` {how} (channel capabilities: {} [{}])",
            if public {
                "public-reply-kinds"
            } else {
                "private-reply-kinds"
            },
            kinds.join(", ")
        ));
    }
    if let Some(max) = channel.max_attachments {
        if attachments > max as usize {
            return Err(format!(
                "the reply has {attachments} attachment(s); the network takes at most {max} per message"
            ));
        }
    }
    Ok(())
}

/// [`check_reply`] for a conversation, with its social installation's stored manifest.
pub(crate) async fn check_reply_in(
    tx: &mut Tx,
    conversation: &crate::store::ConversationRow,
    answer_visibility: &str,
    attachments: usize,
    parts: usize,
    now: i64,
) -> Result<Result<(), String>, StoreError> {
    let Some(manifest) = tx
        .manifest_of_installation(&conversation.social_installation_id)
        .await?
    else {
        return Ok(Ok(()));
    };
    Ok(check_reply(
        &manifest.channel(),
        &conversation.message_kind,
        &conversation.visibility,
        answer_visibility,
        attachments,
        parts,
        conversation.last_inbound_at.map(|at| now - at),
    ))
}

/// A stored social event written before contract 0.3 (an older hub's intake), read through
/// the 0.2 type and adapted.
pub(crate) fn stored_v0_2_event(payload: &str) -> Option<SocialEvent> {
    use crate::runtime::contract::adapter::Adapt;
    use crate::runtime::contract::v0_2::social::exports::switchboard::connector::social_connector as old;
    serde_json::from_str::<old::SocialEvent>(payload)
        .ok()
        .map(Adapt::adapt)
}

// ----- customer context -----------------------------------------------------------------------

/// What the network said about a message's author and origin, as stored with the message and
/// passed to the helpdesk; `None` when it said nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessageContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follower_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses_brand: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral: Option<Referral>,
}

impl MessageContext {
    pub(crate) fn of(ev: &SocialEvent) -> Option<Self> {
        let context = Self {
            follower_count: ev.author_signals.follower_count,
            verified: ev.author_signals.verified,
            verification_kind: ev.author_signals.verification_kind.clone(),
            addresses_brand: ev.addresses_brand,
            referral: ev.referral.clone(),
        };
        let empty = context.follower_count.is_none()
            && context.verified.is_none()
            && context.verification_kind.is_none()
            && context.addresses_brand.is_none()
            && context.referral.is_none();
        (!empty).then_some(context)
    }

    /// The contract's record for the helpdesk's `new-ticket`.
    pub(crate) fn to_contract(&self) -> CustomerContext {
        CustomerContext {
            author_signals: AuthorSignals {
                follower_count: self.follower_count,
                verified: self.verified,
                verification_kind: self.verification_kind.clone(),
            },
            addresses_brand: self.addresses_brand,
            referral: self.referral.clone(),
        }
    }
}

// ----- billable calls -------------------------------------------------------------------------

/// Counts the billable calls plugins report: in `/metrics` at once, and in the store per
/// installation (written in the background; a failed write is logged).
pub(crate) struct HubMeter {
    pub(crate) hub: Weak<Inner>,
}

impl HubMeter {
    pub(crate) fn sink(hub: &Arc<Inner>) -> Arc<dyn MeterSink> {
        Arc::new(Self {
            hub: Arc::downgrade(hub),
        })
    }
}

impl MeterSink for HubMeter {
    fn billable(&self, installation_id: &str, kind: &str, count: u64) {
        let Some(inner) = self.hub.upgrade() else {
            return;
        };
        inner.metrics.billable(installation_id, kind, count);
        let (installation, kind) = (installation_id.to_string(), kind.to_string());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(%installation, %kind, count, "billable calls reported outside the runtime; not stored");
            return;
        };
        runtime.spawn(async move {
            if let Err(error) = inner
                .db
                .add_billable_calls(&installation, &kind, count, now_ms())
                .await
            {
                tracing::warn!(%installation, %kind, count, %error, "could not store billable calls");
            }
        });
    }
}

// ----- admin views ----------------------------------------------------------------------------

/// Who owns a conversation.
#[derive(Debug, Clone, Serialize)]
pub struct OwnershipView {
    /// False while another app owns it (Meta standby, LINE `mode: standby`).
    pub owned: bool,
    /// The app that owns it then, when the network says.
    pub owner: Option<String>,
}

/// One part of an agent's reply on its way to the network.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub outbox_id: i64,
    pub message_id: Option<String>,
    /// 1-based part of `parts`.
    pub part: u32,
    pub parts: u32,
    /// pending, done or dead.
    pub status: String,
    /// Set while the row waits for the hub to own the conversation.
    pub held: Option<String>,
    pub last_error: Option<String>,
    /// What the network reported after the send: sent, delivered, read or failed.
    pub delivery_state: Option<String>,
    pub delivery_reason: Option<String>,
    pub delivery_at: Option<String>,
}

/// The ownership and deliveries of a conversation, and the context of its messages.
pub(crate) async fn conversation_details(
    hub: &Hub,
    conversation_id: &str,
    messages: &mut [super::MessageView],
) -> Result<(OwnershipView, Vec<DeliveryView>), super::HubError> {
    let db = &hub.inner.db;
    let contexts: std::collections::HashMap<String, String> = db
        .message_contexts(conversation_id)
        .await?
        .into_iter()
        .collect();
    for message in messages.iter_mut() {
        if let Some(json) = contexts.get(&message.id) {
            message.context = serde_json::from_str(json).ok();
        }
    }
    let ownership = db.ownership(conversation_id).await?;
    let deliveries = db
        .deliveries_of_conversation(conversation_id)
        .await?
        .into_iter()
        .map(|row| {
            let part: Option<super::outbox::SendMessagePayload> =
                serde_json::from_str(&row.payload).ok();
            DeliveryView {
                outbox_id: row.id,
                message_id: row.message_id,
                part: part.as_ref().map_or(0, |p| p.part),
                parts: part.as_ref().map_or(0, |p| p.parts),
                status: row.status,
                held: row.held_reason,
                last_error: row.last_error,
                delivery_state: row.delivery_state,
                delivery_reason: row.delivery_reason,
                delivery_at: row.delivery_at.map(super::iso),
            }
        })
        .collect();
    Ok((
        OwnershipView {
            owned: ownership.owned,
            owner: ownership.owner,
        },
        deliveries,
    ))
}

/// Billable calls of one installation, per kind.
#[derive(Debug, Clone, Serialize)]
pub struct BillableCallsView {
    pub installation_id: String,
    pub calls: std::collections::BTreeMap<String, i64>,
}

impl Hub {
    /// The billable calls an installation's plugin reported, per kind, since it was created.
    pub async fn billable_calls(
        &self,
        installation_id: &str,
    ) -> Result<BillableCallsView, super::HubError> {
        // Names a missing installation rather than answering with nothing.
        self.inner.db.get_installation(installation_id).await?;
        Ok(BillableCallsView {
            installation_id: installation_id.to_string(),
            calls: self
                .inner
                .db
                .billable_calls(installation_id)
                .await?
                .into_iter()
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::PrivateReplyRule;

    fn channel(private_reply: Option<PrivateReplyRule>) -> ChannelCapabilities {
        ChannelCapabilities {
            public_reply_kinds: vec!["post".into(), "comment".into()],
            private_reply_kinds: vec!["direct-message".into(), "comment".into()],
            private_reply_to_public: private_reply,
            edits: false,
            deletes: false,
            max_attachments: Some(1),
            text_unit: "chars".into(),
        }
    }

    #[test]
    fn a_private_reply_to_a_public_post_needs_the_capability() {
        let none = channel(None);
        let error = check_reply(&none, "comment", "public", "private", 0, 1, Some(0))
            .expect_err("no private reply");
        assert!(error.contains("no private reply"), "{error}");
        let rule = channel(Some(PrivateReplyRule {
            window_seconds: Some(7 * 86_400),
            max_messages: Some(1),
            note: "once, within 7 days".into(),
        }));
        assert!(check_reply(&rule, "comment", "public", "private", 0, 1, Some(1000)).is_ok());
        let late = check_reply(
            &rule,
            "comment",
            "public",
            "private",
            0,
            1,
            Some(8 * 86_400_000),
        )
        .expect_err("too late");
        assert!(late.contains("within 604800 s"), "{late}");
        let long = check_reply(&rule, "comment", "public", "private", 0, 2, Some(0))
            .expect_err("two messages");
        assert!(long.contains("at most 1 message"), "{long}");
    }

    #[test]
    fn events_stored_by_a_0_2_hub_are_read_with_0_3_defaults() {
        let stored = r#"{"message_id":"m1","thread_id":"t1","parent_id":null,"kind":"DirectMessage",
            "visibility":"Private","author":{"external_id":"u1","network":"telegram","handle":null,
            "display_name":"Aiko"},"is_echo":false,"created_at":1000,"text":"hi","attachments":[],
            "reply_handle":null}"#;
        assert!(serde_json::from_str::<SocialEvent>(stored).is_err());
        let event = stored_v0_2_event(stored).expect("a 0.2 event");
        assert_eq!(event.message_id, "m1");
        assert!(event.owned);
        assert!(event.referral.is_none() && event.addresses_brand.is_none());
        assert!(MessageContext::of(&event).is_none());
    }

    #[test]
    fn kinds_and_attachments_are_checked() {
        let c = channel(None);
        assert!(check_reply(&c, "post", "public", "public", 1, 3, None).is_ok());
        let dm = check_reply(&c, "direct-message", "private", "public", 0, 1, None)
            .expect_err("no public DM answer");
        assert!(
            dm.contains("cannot answer a `direct-message` publicly"),
            "{dm}"
        );
        let files = check_reply(&c, "post", "public", "public", 2, 1, None).expect_err("two files");
        assert!(files.contains("at most 1"), "{files}");
    }
}
