//! What the sync engine keeps: inbound events, contacts and identities, requesters,
//! conversations, tickets, messages and the ids of what the hub posted itself.

use super::{Db, StoreError, Tx};

/// An event to add to the durable intake.
#[derive(Debug, Clone)]
pub struct NewInboundEvent {
    pub installation_id: String,
    /// Social message id or helpdesk change id: the deduplication key.
    pub external_id: String,
    /// `social` or `helpdesk`.
    pub kind: &'static str,
    /// `webhook` or `poll`.
    pub source: &'static str,
    pub payload: String,
    pub received_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InboundEvent {
    pub id: i64,
    pub installation_id: String,
    pub external_id: String,
    pub kind: String,
    pub source: String,
    pub payload: String,
    pub received_at: i64,
    pub processed_at: Option<i64>,
    pub outcome: Option<String>,
    pub conversation_id: Option<String>,
    /// Failed tries at processing it (see [`Db::record_inbound_failure`]).
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// What processing one claimed event came to.
#[derive(Debug, Clone)]
pub struct EventOutcome {
    pub id: i64,
    /// What processing did: `new-ticket …`, `echo`, `unlinked`, `unknown-ticket`, ...
    pub label: String,
    pub conversation: Option<String>,
    /// The helpdesk ticket id a change waits for, until the hub records that ticket.
    pub held_for: Option<String>,
}

/// A person as a network knows them, to find or create their contact.
#[derive(Debug, Clone)]
pub struct IdentityInput<'a> {
    pub network: &'a str,
    pub external_id: &'a str,
    pub handle: Option<&'a str>,
    pub display_name: Option<&'a str>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConversationRow {
    pub id: String,
    pub social_installation_id: String,
    pub thread_id: String,
    pub contact_id: String,
    pub channel: String,
    pub message_kind: String,
    pub visibility: String,
    pub reply_handle: Option<String>,
    pub last_inbound_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TicketRow {
    pub id: String,
    pub conversation_id: String,
    pub helpdesk_installation_id: String,
    pub external_id: Option<String>,
    pub url: Option<String>,
    pub status: String,
    pub status_at: i64,
    pub is_current: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    pub id: String,
    pub conversation_id: String,
    pub ticket_id: Option<String>,
    pub direction: String,
    pub visibility: String,
    pub author_name: Option<String>,
    pub text: String,
    pub attachments_json: String,
    pub social_installation_id: String,
    pub social_message_id: Option<String>,
    pub helpdesk_installation_id: String,
    pub helpdesk_comment_id: Option<String>,
    pub state: String,
    pub parts: i64,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// A contact's identity on one network.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdentityRow {
    pub network: String,
    pub external_id: String,
    pub contact_id: String,
    pub handle: Option<String>,
    pub display_name: Option<String>,
}

impl Tx {
    /// Remembers a contact's requester in a helpdesk, so the next ticket needs no lookup.
    pub async fn save_requester(
        &mut self,
        contact_id: &str,
        helpdesk_installation_id: &str,
        requester_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO requesters (contact_id, helpdesk_installation_id, requester_id, created_at) \
             VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(contact_id)
        .bind(helpdesk_installation_id)
        .bind(requester_id)
        .bind(now)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Adds events to the intake, skipping those already there. Returns how many were new.
    pub async fn insert_inbound_events(
        &mut self,
        events: &[NewInboundEvent],
    ) -> Result<u64, StoreError> {
        let mut inserted = 0;
        for event in events {
            inserted += sqlx::query(
                "INSERT INTO inbound_events (installation_id, external_id, kind, source, payload, received_at) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(&event.installation_id)
            .bind(&event.external_id)
            .bind(event.kind)
            .bind(event.source)
            .bind(&event.payload)
            .bind(event.received_at)
            .execute(&mut *self.inner)
            .await?
            .rows_affected();
        }
        Ok(inserted)
    }

    /// Claims the unprocessed events among `ids` for this transaction, in one statement.
    /// Returns the ids claimed; the others were handled by another processor already.
    pub async fn claim_inbound_events(
        &mut self,
        ids: &[i64],
        now: i64,
    ) -> Result<Vec<i64>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::QueryBuilder::new("UPDATE inbound_events SET processed_at = ");
        query
            .push_bind(now)
            .push(", outcome = 'processing' WHERE processed_at IS NULL AND id IN (");
        let mut list = query.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        query.push(") RETURNING id");
        Ok(query
            .build_query_scalar()
            .fetch_all(&mut *self.inner)
            .await?)
    }

    /// Hands claimed events back to the intake unprocessed.
    pub async fn release_inbound_events(&mut self, ids: &[i64]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut query = sqlx::QueryBuilder::new(
            "UPDATE inbound_events SET processed_at = NULL, outcome = NULL WHERE outcome = 'processing' AND id IN (",
        );
        let mut list = query.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        query.push(")");
        query.build().execute(&mut *self.inner).await?;
        Ok(())
    }

    /// Records what processing did with claimed events.
    pub async fn set_inbound_outcomes(
        &mut self,
        outcomes: &[EventOutcome],
    ) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        // One statement for the batch: a table of the outcomes, read back per row.
        let mut query =
            sqlx::QueryBuilder::new("WITH o (id, outcome, conversation_id, held_for) AS (");
        query.push_values(outcomes, |mut row, outcome| {
            row.push_bind(outcome.id)
                .push_bind(&outcome.label)
                .push_bind(&outcome.conversation)
                .push_bind(&outcome.held_for);
        });
        query.push(
            ") UPDATE inbound_events SET \
             outcome = (SELECT o.outcome FROM o WHERE o.id = inbound_events.id), \
             conversation_id = (SELECT o.conversation_id FROM o WHERE o.id = inbound_events.id), \
             held_for = (SELECT o.held_for FROM o WHERE o.id = inbound_events.id) \
             WHERE id IN (SELECT id FROM o)",
        );
        query.build().execute(&mut *self.inner).await?;
        Ok(())
    }

    /// The contact behind an identity, creating both when the identity is new (with
    /// `new_contact_id`); a known identity gets its handle and name refreshed.
    pub async fn upsert_identity(
        &mut self,
        identity: &IdentityInput<'_>,
        new_contact_id: &str,
        now: i64,
    ) -> Result<String, StoreError> {
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT contact_id FROM identities WHERE network = ? AND external_id = ?",
        )
        .bind(identity.network)
        .bind(identity.external_id)
        .fetch_optional(&mut *self.inner)
        .await?;
        if let Some(contact_id) = existing {
            sqlx::query(
                "UPDATE identities SET handle = COALESCE(?, handle), display_name = COALESCE(?, display_name), \
                 updated_at = ? WHERE network = ? AND external_id = ?",
            )
            .bind(identity.handle)
            .bind(identity.display_name)
            .bind(now)
            .bind(identity.network)
            .bind(identity.external_id)
            .execute(&mut *self.inner)
            .await?;
            return Ok(contact_id);
        }
        sqlx::query("INSERT INTO contacts (id, display_name, created_at) VALUES (?, ?, ?)")
            .bind(new_contact_id)
            .bind(identity.display_name.or(identity.handle))
            .bind(now)
            .execute(&mut *self.inner)
            .await?;
        sqlx::query(
            "INSERT INTO identities (network, external_id, contact_id, handle, display_name, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(identity.network)
        .bind(identity.external_id)
        .bind(new_contact_id)
        .bind(identity.handle)
        .bind(identity.display_name)
        .bind(now)
        .execute(&mut *self.inner)
        .await?;
        Ok(new_contact_id.to_string())
    }

    pub async fn find_conversation(
        &mut self,
        social_installation_id: &str,
        thread_id: &str,
    ) -> Result<Option<ConversationRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM conversations WHERE social_installation_id = ? AND thread_id = ?",
        )
        .bind(social_installation_id)
        .bind(thread_id)
        .fetch_optional(&mut *self.inner)
        .await?)
    }

    pub async fn insert_conversation(&mut self, row: &ConversationRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO conversations (id, social_installation_id, thread_id, contact_id, channel, message_kind, \
             visibility, reply_handle, last_inbound_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.id)
        .bind(&row.social_installation_id)
        .bind(&row.thread_id)
        .bind(&row.contact_id)
        .bind(&row.channel)
        .bind(&row.message_kind)
        .bind(&row.visibility)
        .bind(&row.reply_handle)
        .bind(row.last_inbound_at)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Records a customer message's time (for reply windows) and latest reply handle.
    pub async fn touch_conversation(
        &mut self,
        id: &str,
        last_inbound_at: i64,
        reply_handle: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE conversations SET last_inbound_at = CASE WHEN last_inbound_at IS NULL OR last_inbound_at < ? \
             THEN ? ELSE last_inbound_at END, reply_handle = COALESCE(?, reply_handle), updated_at = ? WHERE id = ?",
        )
        .bind(last_inbound_at)
        .bind(last_inbound_at)
        .bind(reply_handle)
        .bind(now)
        .bind(id)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    pub async fn get_conversation_tx(
        &mut self,
        id: &str,
    ) -> Result<Option<ConversationRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM conversations WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *self.inner)
            .await?)
    }

    pub async fn current_ticket(
        &mut self,
        conversation_id: &str,
    ) -> Result<Option<TicketRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM tickets WHERE conversation_id = ? AND is_current")
                .bind(conversation_id)
                .fetch_optional(&mut *self.inner)
                .await?,
        )
    }

    /// The conversation's newest ticket, current or not.
    pub async fn latest_ticket(
        &mut self,
        conversation_id: &str,
    ) -> Result<Option<TicketRow>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM tickets WHERE conversation_id = ? ORDER BY created_at DESC, id DESC LIMIT 1")
            .bind(conversation_id)
            .fetch_optional(&mut *self.inner)
            .await?)
    }

    pub async fn ticket_by_external_id(
        &mut self,
        helpdesk_installation_id: &str,
        external_id: &str,
    ) -> Result<Option<TicketRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM tickets WHERE helpdesk_installation_id = ? AND external_id = ?",
        )
        .bind(helpdesk_installation_id)
        .bind(external_id)
        .fetch_optional(&mut *self.inner)
        .await?)
    }

    pub async fn insert_ticket(&mut self, row: &TicketRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tickets (id, conversation_id, helpdesk_installation_id, external_id, url, status, status_at, \
             is_current, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.id)
        .bind(&row.conversation_id)
        .bind(&row.helpdesk_installation_id)
        .bind(&row.external_id)
        .bind(&row.url)
        .bind(&row.status)
        .bind(row.status_at)
        .bind(row.is_current)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }

    /// Sets a ticket's status (as of `status_at`) and whether it is its conversation's current
    /// ticket.
    pub async fn update_ticket_state(
        &mut self,
        id: &str,
        status: &str,
        status_at: i64,
        is_current: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tickets SET status = ?, status_at = ?, is_current = ?, updated_at = ? WHERE id = ?")
            .bind(status)
            .bind(status_at)
            .bind(is_current)
            .bind(now)
            .bind(id)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
    }

    /// Adds a message unless one with the same id on either side exists; false if it did.
    pub async fn insert_message(&mut self, row: &MessageRow) -> Result<bool, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO messages (id, conversation_id, ticket_id, direction, visibility, author_name, text, \
             attachments_json, social_installation_id, social_message_id, helpdesk_installation_id, \
             helpdesk_comment_id, state, parts, created_at, delivered_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&row.id)
        .bind(&row.conversation_id)
        .bind(&row.ticket_id)
        .bind(&row.direction)
        .bind(&row.visibility)
        .bind(&row.author_name)
        .bind(&row.text)
        .bind(&row.attachments_json)
        .bind(&row.social_installation_id)
        .bind(&row.social_message_id)
        .bind(&row.helpdesk_installation_id)
        .bind(&row.helpdesk_comment_id)
        .bind(&row.state)
        .bind(row.parts)
        .bind(row.created_at)
        .bind(row.delivered_at)
        .execute(&mut *self.inner)
        .await?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// True when the hub itself posted `external_id` on `installation_id`, or already holds a
    /// message with that id on that side.
    pub async fn is_known_id(
        &mut self,
        installation_id: &str,
        external_id: &str,
    ) -> Result<bool, StoreError> {
        let known: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM own_ids WHERE installation_id = ? AND external_id = ?) \
             OR EXISTS (SELECT 1 FROM messages WHERE social_installation_id = ? AND social_message_id = ?) \
             OR EXISTS (SELECT 1 FROM messages WHERE helpdesk_installation_id = ? AND helpdesk_comment_id = ?)",
        )
        .bind(installation_id)
        .bind(external_id)
        .bind(installation_id)
        .bind(external_id)
        .bind(installation_id)
        .bind(external_id)
        .fetch_one(&mut *self.inner)
        .await?;
        Ok(known)
    }

    pub async fn insert_own_id(
        &mut self,
        installation_id: &str,
        external_id: &str,
        message_id: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO own_ids (installation_id, external_id, message_id, created_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(installation_id)
        .bind(external_id)
        .bind(message_id)
        .bind(now)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }
}

impl Db {
    /// Unprocessed events, oldest first.
    pub async fn pending_inbound_events(
        &self,
        limit: i64,
    ) -> Result<Vec<InboundEvent>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM inbound_events WHERE processed_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Counts a failed try at processing event `id` with its error; after `max_attempts`
    /// tries the event is set aside as `quarantined` (processed, so nothing waits behind it).
    /// Returns whether it was quarantined now.
    pub async fn record_inbound_failure(
        &self,
        id: i64,
        error: &str,
        max_attempts: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let outcome: Option<Option<String>> = sqlx::query_scalar(
            "UPDATE inbound_events SET attempts = attempts + 1, last_error = ?, \
             processed_at = CASE WHEN attempts + 1 >= ? THEN ? ELSE NULL END, \
             outcome = CASE WHEN attempts + 1 >= ? THEN 'quarantined' ELSE NULL END \
             WHERE id = ? AND processed_at IS NULL RETURNING outcome",
        )
        .bind(super::stored_error(error))
        .bind(max_attempts)
        .bind(now)
        .bind(max_attempts)
        .bind(id)
        .fetch_optional(&self.writes)
        .await?;
        Ok(outcome.flatten().is_some())
    }

    /// Events set aside after failing every try, oldest first.
    pub async fn list_quarantined_events(&self) -> Result<Vec<InboundEvent>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM inbound_events WHERE outcome = 'quarantined' ORDER BY id LIMIT 1000",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn count_quarantined_events(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM inbound_events WHERE outcome = 'quarantined'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Hands a quarantined event back to the processor with its tries reset.
    pub async fn retry_quarantined_event(&self, id: i64) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        let updated = sqlx::query(
            "UPDATE inbound_events SET processed_at = NULL, outcome = NULL, attempts = 0 \
             WHERE id = ? AND outcome = 'quarantined'",
        )
        .bind(id)
        .execute(&self.writes)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!(
                "inbound event {id} is not quarantined"
            )));
        }
        Ok(())
    }

    pub async fn count_pending_inbound_events(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM inbound_events WHERE processed_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn get_conversation(&self, id: &str) -> Result<ConversationRow, StoreError> {
        sqlx::query_as("SELECT * FROM conversations WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("conversation `{id}` does not exist")))
    }

    /// Conversations, most recently active first.
    pub async fn list_conversations(&self, limit: i64) -> Result<Vec<ConversationRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM conversations ORDER BY updated_at DESC, id DESC LIMIT ?")
                .bind(limit)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn conversation_tickets(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<TicketRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM tickets WHERE conversation_id = ? ORDER BY created_at, id",
        )
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The current tickets of these conversations.
    pub async fn current_tickets_of(
        &self,
        conversation_ids: &[String],
    ) -> Result<Vec<TicketRow>, StoreError> {
        if conversation_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = sqlx::QueryBuilder::new(
            "SELECT * FROM tickets WHERE is_current AND conversation_id IN (",
        );
        let mut list = query.separated(", ");
        for id in conversation_ids {
            list.push_bind(id);
        }
        query.push(")");
        Ok(query.build_query_as().fetch_all(&self.pool).await?)
    }

    pub async fn conversation_messages(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<MessageRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY created_at, id",
        )
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn get_ticket(&self, id: &str) -> Result<TicketRow, StoreError> {
        sqlx::query_as("SELECT * FROM tickets WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("ticket `{id}` does not exist")))
    }

    /// The helpdesk ids of a conversation's tickets: what a retried create must not answer with.
    pub async fn helpdesk_ids_of_tickets(
        &self,
        conversation_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT external_id FROM tickets WHERE conversation_id = ? AND external_id IS NOT NULL",
        )
        .bind(conversation_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The helpdesk comment ids the hub knows on a ticket, newest first (at most `limit`): what
    /// a retried comment must not answer with.
    pub async fn helpdesk_ids_of_comments(
        &self,
        ticket_id: &str,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT helpdesk_comment_id FROM messages \
             WHERE ticket_id = ? AND helpdesk_comment_id IS NOT NULL ORDER BY created_at DESC LIMIT ?",
        )
        .bind(ticket_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn identity_of_contact(
        &self,
        contact_id: &str,
        network: &str,
    ) -> Result<Option<IdentityRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT network, external_id, contact_id, handle, display_name FROM identities \
             WHERE contact_id = ? AND network = ? ORDER BY updated_at DESC LIMIT 1",
        )
        .bind(contact_id)
        .bind(network)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The cached helpdesk requester of a contact.
    pub async fn get_requester(
        &self,
        contact_id: &str,
        helpdesk_installation_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT requester_id FROM requesters WHERE contact_id = ? AND helpdesk_installation_id = ?",
        )
        .bind(contact_id)
        .bind(helpdesk_installation_id)
        .fetch_optional(&self.pool)
        .await?)
    }
}
