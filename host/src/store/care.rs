//! What contract 0.3 adds to the store: who owns a conversation, outbox rows held while the
//! hub does not, delivery statuses of sent messages, the customer context of inbound
//! messages, and billable calls per installation.

use super::{Db, StoreError, Tx};

/// The `next_attempt_at` of a held row: never due until released.
const HELD_UNTIL: i64 = i64::MAX / 2;

/// Who owns a conversation, as the admin API shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Ownership {
    pub owned: bool,
    pub owner: Option<String>,
    pub ownership_at: i64,
}

/// A sent part of a reply, with what the network reported about it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub message_id: Option<String>,
    pub status: String,
    pub held_reason: Option<String>,
    pub last_error: Option<String>,
    pub delivery_state: Option<String>,
    pub delivery_reason: Option<String>,
    pub delivery_at: Option<i64>,
    pub payload: String,
}

/// Delivery states in the order they can follow each other; a report never moves a row back
/// (statuses arrive out of order and twice: a `delivered` after `read` changes nothing).
fn state_rank(state: &str) -> i64 {
    match state {
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        "failed" => 4,
        _ => 0,
    }
}

impl Tx {
    /// Sets who owns the conversation `(installation, thread)` when `at` is not older than
    /// the last change applied. Returns the conversation id when ownership came back to the
    /// hub, so its held rows can be released.
    pub async fn set_ownership(
        &mut self,
        installation_id: &str,
        thread_id: &str,
        owned: bool,
        owner: Option<&str>,
        at: i64,
    ) -> Result<OwnershipChange, StoreError> {
        let before: Option<(String, bool, i64)> = sqlx::query_as(
            "SELECT id, owned, ownership_at FROM conversations \
             WHERE social_installation_id = ? AND thread_id = ?",
        )
        .bind(installation_id)
        .bind(thread_id)
        .fetch_optional(&mut *self.inner)
        .await?;
        let Some((id, was_owned, last_at)) = before else {
            return Ok(OwnershipChange::NoConversation);
        };
        if at < last_at {
            return Ok(OwnershipChange::Stale(id));
        }
        sqlx::query("UPDATE conversations SET owned = ?, owner = ?, ownership_at = ? WHERE id = ?")
            .bind(owned)
            .bind(if owned { None } else { owner })
            .bind(at)
            .bind(&id)
            .execute(&mut *self.inner)
            .await?;
        if owned && !was_owned {
            let released = self.release_held(&id).await?;
            return Ok(OwnershipChange::Returned {
                conversation: id,
                released,
            });
        }
        Ok(OwnershipChange::Applied(id))
    }

    /// Makes the held rows of a conversation due again.
    async fn release_held(&mut self, conversation_id: &str) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE outbox SET held_reason = NULL, next_attempt_at = updated_at \
             WHERE conversation_id = ? AND status = 'pending' AND held_reason IS NOT NULL",
        )
        .bind(conversation_id)
        .execute(&mut *self.inner)
        .await?
        .rows_affected())
    }

    /// Stores an inbound message's customer context (JSON).
    pub async fn set_message_context(
        &mut self,
        message_id: &str,
        context_json: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE messages SET context_json = ? WHERE id = ?")
            .bind(context_json)
            .bind(message_id)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    /// Queues a side effect that is refused before any attempt: a dead letter at once, with
    /// the reason, for an admin to see (and retry once the reason is gone).
    pub async fn insert_dead_outbox(
        &mut self,
        row: &super::NewOutbox,
        error: &str,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO outbox (kind, installation_id, conversation_id, ticket_id, message_id, idempotency_key, \
             payload, status, attempts, next_attempt_at, last_error, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 'dead', 0, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(row.kind)
        .bind(&row.installation_id)
        .bind(&row.conversation_id)
        .bind(&row.ticket_id)
        .bind(&row.message_id)
        .bind(&row.idempotency_key)
        .bind(&row.payload)
        .bind(row.now)
        .bind(error)
        .bind(row.now)
        .bind(row.now)
        .execute(&mut *self.inner)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Links a network id the hub posted to the outbox row that posted it.
    pub async fn link_sent_id(
        &mut self,
        installation_id: &str,
        external_id: &str,
        outbox_id: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE own_ids SET outbox_id = ? WHERE installation_id = ? AND external_id = ?",
        )
        .bind(outbox_id)
        .bind(installation_id)
        .bind(external_id)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }
}

/// What [`Tx::set_ownership`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnershipChange {
    /// The hub has no conversation for the thread (yet): nothing to hold or release.
    NoConversation,
    /// An older report than the one applied last; ignored.
    Stale(String),
    Applied(String),
    /// The hub owns the conversation again; `released` held rows are due.
    Returned {
        conversation: String,
        released: u64,
    },
}

impl Db {
    /// Holds a pending row without spending its attempt: it is not tried until released.
    pub async fn hold_outbox_row(&self, id: i64, reason: &str, now: i64) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE outbox SET attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
             held_reason = ?, last_error = ?, next_attempt_at = ?, \
             lease_owner = NULL, lease_until = NULL, updated_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(reason)
        .bind(reason)
        .bind(HELD_UNTIL)
        .bind(now)
        .bind(id)
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    /// Whether the hub owns the conversation.
    pub async fn ownership(&self, conversation_id: &str) -> Result<Ownership, StoreError> {
        sqlx::query_as("SELECT owned, owner, ownership_at FROM conversations WHERE id = ?")
            .bind(conversation_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("conversation `{conversation_id}`")))
    }

    /// Records what the network reported about the message it knows as `external_id`.
    /// Returns the outbox row it belongs to, or `None` when the hub did not post that id.
    pub async fn record_delivery_status(
        &self,
        installation_id: &str,
        external_id: &str,
        state: &str,
        reason: Option<&str>,
        at: i64,
    ) -> Result<Option<i64>, StoreError> {
        let _turn = self.write_turn().await;
        let outbox_id: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT outbox_id FROM own_ids WHERE installation_id = ? AND external_id = ?",
        )
        .bind(installation_id)
        .bind(external_id)
        .fetch_optional(&self.writes)
        .await?;
        let Some(Some(outbox_id)) = outbox_id else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE outbox SET delivery_state = ?, delivery_reason = ?, delivery_at = ? \
             WHERE id = ? AND (delivery_state IS NULL OR \
                 (CASE delivery_state WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 \
                  WHEN 'failed' THEN 4 ELSE 0 END) < ?)",
        )
        .bind(state)
        .bind(reason)
        .bind(at)
        .bind(outbox_id)
        .bind(state_rank(state))
        .execute(&self.writes)
        .await?;
        Ok(Some(outbox_id))
    }

    /// The send-message rows of a conversation, oldest first.
    pub async fn deliveries_of_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, message_id, status, held_reason, last_error, delivery_state, \
             delivery_reason, delivery_at, payload FROM outbox \
             WHERE conversation_id = ? AND kind = 'send-message' ORDER BY id",
        )
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The customer context stored with the messages of a conversation, by message id.
    pub async fn message_contexts(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<(String, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, context_json FROM messages \
             WHERE conversation_id = ? AND context_json IS NOT NULL",
        )
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The customer context of one message, if any.
    pub async fn message_context(&self, message_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT context_json FROM messages WHERE id = ?")
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await?
                .flatten(),
        )
    }

    /// Adds `count` billable calls of `kind` to an installation's total.
    pub async fn add_billable_calls(
        &self,
        installation_id: &str,
        kind: &str,
        count: u64,
        now: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "INSERT INTO billable_calls (installation_id, kind, count, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (installation_id, kind) DO UPDATE SET count = count + excluded.count, \
             updated_at = excluded.updated_at",
        )
        .bind(installation_id)
        .bind(kind)
        .bind(count.min(i64::MAX as u64) as i64)
        .bind(now)
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    /// Billable calls per kind of one installation.
    pub async fn billable_calls(
        &self,
        installation_id: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT kind, count FROM billable_calls WHERE installation_id = ? ORDER BY kind",
        )
        .bind(installation_id)
        .fetch_all(&self.pool)
        .await?)
    }
}
