//! The outbox: every side effect as a row, claimed by workers with a lease, delivered in
//! order per conversation and target, retried, and dead-lettered.

use super::{Db, StoreError, Tx};

/// A side effect to perform, written with the state that caused it.
#[derive(Debug, Clone)]
pub struct NewOutbox {
    /// `create-ticket`, `add-comment` or `send-message`.
    pub kind: &'static str,
    /// The installation the effect goes to.
    pub installation_id: String,
    pub conversation_id: String,
    pub ticket_id: Option<String>,
    pub message_id: Option<String>,
    pub idempotency_key: String,
    pub payload: String,
    pub now: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub installation_id: String,
    pub conversation_id: String,
    pub ticket_id: Option<String>,
    pub message_id: Option<String>,
    pub idempotency_key: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub done_at: Option<i64>,
    pub attempt_started_at: Option<i64>,
    /// When the first attempt whose outcome is unknown started: it may have taken effect.
    pub unconfirmed_since: Option<i64>,
}

/// Counts for health and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboxStats {
    pub pending: i64,
    pub dead: i64,
    /// When the oldest pending row was written, if any.
    pub oldest_pending_at: Option<i64>,
}

impl Tx {
    /// Queues a side effect; false when a row with the same idempotency key exists.
    pub async fn insert_outbox(&mut self, row: &NewOutbox) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO outbox (kind, installation_id, conversation_id, ticket_id, message_id, idempotency_key, \
             payload, status, attempts, next_attempt_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(row.kind)
        .bind(&row.installation_id)
        .bind(&row.conversation_id)
        .bind(&row.ticket_id)
        .bind(&row.message_id)
        .bind(&row.idempotency_key)
        .bind(&row.payload)
        .bind(row.now)
        .bind(row.now)
        .bind(row.now)
        .execute(&mut *self.inner)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// Marks a row delivered. Only a pending row changes, so a row an admin discarded
    /// meanwhile stays discarded.
    pub async fn complete_outbox(&mut self, id: i64, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET status = 'done', done_at = ?, updated_at = ?, lease_owner = NULL, lease_until = NULL, \
             last_error = NULL WHERE id = ? AND status = 'pending'",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Records the helpdesk's id and link of a ticket the hub created, and hands the changes
    /// about that ticket that arrived before it was recorded back to the processor. Returns
    /// how many were handed back.
    pub async fn set_ticket_created(
        &mut self,
        ticket_id: &str,
        external_id: &str,
        url: Option<&str>,
        now: i64,
    ) -> Result<u64, StoreError> {
        let helpdesk: Option<String> = sqlx::query_scalar(
            "UPDATE tickets SET external_id = ?, url = ?, updated_at = ? WHERE id = ? \
             RETURNING helpdesk_installation_id",
        )
        .bind(external_id)
        .bind(url)
        .bind(now)
        .bind(ticket_id)
        .fetch_optional(&mut *self.inner)
        .await?;
        let Some(helpdesk) = helpdesk else {
            return Ok(0);
        };
        let requeued = sqlx::query(
            "UPDATE inbound_events SET processed_at = NULL, outcome = NULL, held_for = NULL \
             WHERE installation_id = ? AND held_for = ?",
        )
        .bind(&helpdesk)
        .bind(external_id)
        .execute(&mut *self.inner)
        .await?
        .rows_affected();
        Ok(requeued)
    }

    /// Records a delivered message's id on the other side (when the first one is known).
    pub async fn set_message_delivered(
        &mut self,
        message_id: &str,
        helpdesk_comment_id: Option<&str>,
        social_message_id: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE messages SET state = 'delivered', delivered_at = ?, \
             helpdesk_comment_id = COALESCE(helpdesk_comment_id, ?), \
             social_message_id = COALESCE(social_message_id, ?) WHERE id = ?",
        )
        .bind(now)
        .bind(helpdesk_comment_id)
        .bind(social_message_id)
        .bind(message_id)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Turns the pending add-comment row `row_id`, whose ticket the helpdesk closed, into the
    /// create-ticket row of `new_ticket_id`. The row keeps its place in the conversation's
    /// order; the rows and undelivered messages behind it that were bound for the closed
    /// ticket go to the new one.
    pub async fn refile_on_new_ticket(
        &mut self,
        row_id: i64,
        closed_ticket_id: &str,
        new_ticket_id: &str,
        idempotency_key: &str,
        payload: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE outbox SET kind = 'create-ticket', ticket_id = ?, idempotency_key = ?, payload = ?, \
             attempts = 0, next_attempt_at = ?, lease_owner = NULL, lease_until = NULL, last_error = NULL, \
             attempt_started_at = NULL, unconfirmed_since = NULL, updated_at = ? WHERE id = ?",
        )
        .bind(new_ticket_id)
        .bind(idempotency_key)
        .bind(payload)
        .bind(now)
        .bind(now)
        .bind(row_id)
        .execute(&mut *self.inner)
        .await?;
        sqlx::query(
            "UPDATE outbox SET ticket_id = ?, updated_at = ? \
             WHERE ticket_id = ? AND kind = 'add-comment' AND status = 'pending'",
        )
        .bind(new_ticket_id)
        .bind(now)
        .bind(closed_ticket_id)
        .execute(&mut *self.inner)
        .await?;
        sqlx::query(
            "UPDATE messages SET ticket_id = ? \
             WHERE ticket_id = ? AND direction = 'inbound' AND state = 'pending'",
        )
        .bind(new_ticket_id)
        .bind(closed_ticket_id)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// True when no outbox row of `message_id` is still pending (all parts delivered).
    pub async fn message_fully_delivered(&mut self, message_id: &str) -> Result<bool, StoreError> {
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM outbox WHERE message_id = ? AND status <> 'done'",
        )
        .bind(message_id)
        .fetch_one(&mut *self.inner)
        .await?;
        Ok(pending == 0)
    }
}

impl Db {
    /// Claims up to `limit` due rows for `owner` until `lease_until`, counting an attempt on
    /// each, oldest first. A row is due when its time has come, nobody holds a live lease on
    /// it, its installation is active (enabled, not waiting for OAuth2 reauthorization), and
    /// no older row of the same conversation and target is still pending: that is what keeps
    /// one conversation's effects in order while others proceed (a claimed row stays pending
    /// until it is completed).
    pub async fn claim_outbox(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        let mut tx = self.begin().await?;
        let mut rows: Vec<OutboxRow> = sqlx::query_as(
            "UPDATE outbox SET lease_owner = ?, lease_until = ?, attempts = attempts + 1, updated_at = ?, \
             unconfirmed_since = CASE WHEN lease_until IS NOT NULL \
                 THEN COALESCE(unconfirmed_since, attempt_started_at) ELSE unconfirmed_since END, \
             attempt_started_at = ? \
             WHERE id IN (SELECT o.id FROM outbox o \
                 WHERE o.status = 'pending' AND o.next_attempt_at <= ? \
                 AND (o.lease_until IS NULL OR o.lease_until < ?) \
                 AND o.installation_id IN (SELECT id FROM active_installations) \
                 AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.status = 'pending' \
                     AND p.conversation_id = o.conversation_id AND p.installation_id = o.installation_id \
                     AND p.id < o.id) \
                 ORDER BY o.next_attempt_at, o.id LIMIT ?) \
             AND status = 'pending' AND (lease_until IS NULL OR lease_until < ?) \
             RETURNING *",
        )
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(limit.min(i64::MAX as usize) as i64)
        .bind(now)
        .fetch_all(&mut *tx.inner)
        .await?;
        tx.commit().await?;
        // RETURNING gives no order guarantee.
        rows.sort_by_key(|r| (r.next_attempt_at, r.id));
        Ok(rows)
    }

    /// Extends `owner`'s lease on row `id` to `lease_until`. False when the row is no longer
    /// pending under that lease.
    pub async fn renew_outbox_lease(
        &self,
        id: i64,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let renewed = sqlx::query(
            "UPDATE outbox SET lease_until = ? WHERE id = ? AND lease_owner = ? AND status = 'pending'",
        )
        .bind(lease_until)
        .bind(id)
        .bind(owner)
        .execute(&self.writes)
        .await?
        .rows_affected();
        Ok(renewed == 1)
    }

    /// When the next pending row becomes due (for the workers' sleep).
    ///
    /// A leased row is due again when its lease runs out, not before, and rows of installations
    /// that are off (disabled, waiting for OAuth2 reauthorization) are not due: counting either
    /// as due made idle workers poll in a loop.
    pub async fn next_outbox_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > next_attempt_at \
             THEN lease_until ELSE next_attempt_at END) FROM outbox WHERE status = 'pending' \
             AND installation_id IN (SELECT id FROM active_installations)",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Puts a failed row back for a later attempt, releasing the lease. `unconfirmed`: the
    /// attempt may have taken effect all the same (see [`OutboxRow::unconfirmed_since`]).
    pub async fn retry_outbox_later(
        &self,
        id: i64,
        next_attempt_at: i64,
        error: &str,
        unconfirmed: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE outbox SET next_attempt_at = ?, last_error = ?, lease_owner = NULL, lease_until = NULL, \
             unconfirmed_since = CASE WHEN ? THEN COALESCE(unconfirmed_since, attempt_started_at) \
                 ELSE unconfirmed_since END, \
             updated_at = ? WHERE id = ? AND status = 'pending'",
        )
        .bind(next_attempt_at)
        .bind(error)
        .bind(unconfirmed)
        .bind(now)
        .bind(id)
        .execute(&self.writes)
        .await?;
        Ok(())
    }

    /// Makes a row a dead letter with its last error; its message is marked dead too.
    /// `unconfirmed` as for [`Db::retry_outbox_later`]: an admin's retry must look first.
    pub async fn dead_letter_outbox(
        &self,
        id: i64,
        error: &str,
        unconfirmed: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let message_id: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE outbox SET status = 'dead', last_error = ?, lease_owner = NULL, lease_until = NULL, \
             unconfirmed_since = CASE WHEN ? THEN COALESCE(unconfirmed_since, attempt_started_at) \
                 ELSE unconfirmed_since END, updated_at = ? \
             WHERE id = ? AND status = 'pending' RETURNING message_id",
        )
        .bind(error)
        .bind(unconfirmed)
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx.inner)
        .await?;
        if let Some(Some(message_id)) = message_id {
            sqlx::query("UPDATE messages SET state = 'dead' WHERE id = ? AND state = 'pending'")
                .bind(message_id)
                .execute(&mut *tx.inner)
                .await?;
        }
        tx.commit().await
    }

    pub async fn list_dead_letters(&self) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM outbox WHERE status = 'dead' ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Puts a dead letter back in the queue with its attempts reset.
    pub async fn retry_dead_letter(&self, id: i64, now: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let message_id: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, lease_owner = NULL, \
             lease_until = NULL, updated_at = ? WHERE id = ? AND status = 'dead' RETURNING message_id",
        )
        .bind(now)
        .bind(now)
        .bind(id)
        .fetch_optional(&mut *tx.inner)
        .await?;
        set_dead_message_state(&mut tx, id, message_id, "pending").await?;
        tx.commit().await
    }

    /// Drops a dead letter for good; its message is marked discarded.
    pub async fn discard_dead_letter(&self, id: i64) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let message_id: Option<Option<String>> = sqlx::query_scalar(
            "DELETE FROM outbox WHERE id = ? AND status = 'dead' RETURNING message_id",
        )
        .bind(id)
        .fetch_optional(&mut *tx.inner)
        .await?;
        set_dead_message_state(&mut tx, id, message_id, "discarded").await?;
        tx.commit().await
    }

    pub async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        // Each through its partial index: the delivered rows, nearly all of the table, are
        // never read (counting past them took up to 156 ms once the table was large).
        let (pending, oldest): (i64, Option<i64>) =
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM outbox WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?;
        let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status = 'dead'")
            .fetch_one(&self.pool)
            .await?;
        Ok(OutboxStats {
            pending,
            dead,
            oldest_pending_at: oldest,
        })
    }

    /// Releases leases of workers that died: expired ones, or all when `all` (at the start of
    /// the only host of a SQLite database). What those workers were doing may have taken
    /// effect, so the rows are marked unconfirmed.
    pub async fn release_outbox_leases(&self, now: i64, all: bool) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        Ok(sqlx::query(
            "UPDATE outbox SET lease_owner = NULL, lease_until = NULL, \
             unconfirmed_since = COALESCE(unconfirmed_since, attempt_started_at) \
             WHERE status = 'pending' AND lease_until IS NOT NULL AND (? OR lease_until < ?)",
        )
        .bind(all)
        .bind(now)
        .execute(&self.writes)
        .await?
        .rows_affected())
    }

    pub async fn outbox_rows_of_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<OutboxRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM outbox WHERE conversation_id = ? ORDER BY id")
                .bind(conversation_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

/// After a dead letter was taken back (`Some`) or found missing (`None`): moves the message
/// the row delivered, if any, from `dead` to `state`.
async fn set_dead_message_state(
    tx: &mut Tx,
    dead_letter: i64,
    message_id: Option<Option<String>>,
    state: &str,
) -> Result<(), StoreError> {
    let Some(message_id) = message_id else {
        return Err(StoreError::NotFound(format!(
            "dead letter {dead_letter} does not exist"
        )));
    };
    if let Some(message_id) = message_id {
        sqlx::query("UPDATE messages SET state = ? WHERE id = ? AND state = 'dead'")
            .bind(state)
            .bind(message_id)
            .execute(&mut *tx.inner)
            .await?;
    }
    Ok(())
}
