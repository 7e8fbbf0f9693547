//! OAuth2 grants (tokens sealed by the caller) and pending authorization requests.

use super::{Db, StoreError};

/// One installation's OAuth2 grant as stored; `tokens` is an encrypted blob.
#[derive(Clone, sqlx::FromRow)]
pub struct OAuthGrantRow {
    pub installation_id: String,
    pub flow: String,
    pub tokens: Option<Vec<u8>>,
    pub expires_at: Option<i64>,
    pub issued_at: Option<i64>,
    pub scopes: String,
    pub generation: i64,
    pub needs_reauth: bool,
    pub reauth_error: Option<String>,
    pub connected_at: Option<i64>,
    pub updated_at: i64,
}

// The blob is encrypted, but its size and bytes are still nobody's business in a log.
impl std::fmt::Debug for OAuthGrantRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthGrantRow")
            .field("installation_id", &self.installation_id)
            .field("flow", &self.flow)
            .field("expires_at", &self.expires_at)
            .field("generation", &self.generation)
            .field("needs_reauth", &self.needs_reauth)
            .field("reauth_error", &self.reauth_error)
            .finish_non_exhaustive()
    }
}

/// New tokens for a grant.
pub struct OAuthTokensUpdate<'a> {
    pub installation_id: &'a str,
    pub flow: &'a str,
    pub tokens: &'a [u8],
    pub expires_at: Option<i64>,
    pub issued_at: i64,
    pub scopes: &'a str,
    pub now: i64,
}

/// An authorization request started by an admin.
#[derive(Clone, sqlx::FromRow)]
pub struct OAuthStateRow {
    pub state: String,
    pub installation_id: String,
    pub verifier: Vec<u8>,
    pub redirect_uri: String,
    pub created_at: i64,
    pub expires_at: i64,
}

const GRANT_COLUMNS: &str = "installation_id, flow, tokens, expires_at, issued_at, scopes, \
     generation, needs_reauth, reauth_error, connected_at, updated_at";

impl Db {
    pub async fn get_oauth_grant(
        &self,
        installation_id: &str,
    ) -> Result<Option<OAuthGrantRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE installation_id = ?"
        ))
        .bind(installation_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// `(installation, needs_reauth)` of every grant, for the metrics.
    pub async fn oauth_reauth_flags(&self) -> Result<Vec<(String, bool)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT installation_id, needs_reauth FROM oauth_grants")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Stores the tokens of a new connection (an admin connected or reconnected): clears
    /// `needs_reauth` and starts a new generation. Returns the generation.
    pub async fn save_oauth_connection(
        &self,
        update: &OAuthTokensUpdate<'_>,
    ) -> Result<i64, StoreError> {
        let mut tx = self.begin().await?;
        let generation: i64 = sqlx::query_scalar(
            "INSERT INTO oauth_grants (installation_id, flow, tokens, expires_at, issued_at, scopes, \
             generation, needs_reauth, reauth_error, connected_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, 1, FALSE, NULL, ?, ?) \
             ON CONFLICT (installation_id) DO UPDATE SET flow = excluded.flow, tokens = excluded.tokens, \
             expires_at = excluded.expires_at, issued_at = excluded.issued_at, scopes = excluded.scopes, \
             generation = oauth_grants.generation + 1, needs_reauth = FALSE, reauth_error = NULL, \
             connected_at = excluded.connected_at, updated_at = excluded.updated_at \
             RETURNING generation",
        )
        .bind(update.installation_id)
        .bind(update.flow)
        .bind(update.tokens)
        .bind(update.expires_at)
        .bind(update.issued_at)
        .bind(update.scopes)
        .bind(update.now)
        .bind(update.now)
        .fetch_one(&mut *tx.inner)
        .await?;
        tx.commit().await?;
        Ok(generation)
    }

    /// Stores refreshed tokens if the grant is still at `generation` (nobody refreshed or
    /// reconnected meanwhile). Returns the new generation, or `None` when it was not.
    pub async fn save_oauth_refresh(
        &self,
        update: &OAuthTokensUpdate<'_>,
        generation: i64,
    ) -> Result<Option<i64>, StoreError> {
        let _turn = self.write_turn().await;
        Ok(sqlx::query_scalar(
            "UPDATE oauth_grants SET tokens = ?, expires_at = ?, issued_at = ?, scopes = ?, \
             generation = generation + 1, updated_at = ? \
             WHERE installation_id = ? AND generation = ? AND NOT needs_reauth RETURNING generation",
        )
        .bind(update.tokens)
        .bind(update.expires_at)
        .bind(update.issued_at)
        .bind(update.scopes)
        .bind(update.now)
        .bind(update.installation_id)
        .bind(generation)
        .fetch_optional(&self.writes)
        .await?)
    }

    /// Marks an installation as needing reauthorization (creating its grant row when it was
    /// never connected), unless its grant moved past `generation` meanwhile.
    pub async fn mark_oauth_reauth(
        &self,
        installation_id: &str,
        generation: Option<i64>,
        error: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let changed = match generation {
            Some(generation) => sqlx::query(
                "UPDATE oauth_grants SET needs_reauth = TRUE, reauth_error = ?, updated_at = ? \
                 WHERE installation_id = ? AND generation = ?",
            )
            .bind(error)
            .bind(now)
            .bind(installation_id)
            .bind(generation)
            .execute(&self.writes)
            .await?
            .rows_affected(),
            None => sqlx::query(
                "INSERT INTO oauth_grants (installation_id, flow, tokens, scopes, generation, \
                 needs_reauth, reauth_error, updated_at) VALUES (?, 'none', NULL, '', 0, TRUE, ?, ?) \
                 ON CONFLICT (installation_id) DO NOTHING",
            )
            .bind(installation_id)
            .bind(error)
            .bind(now)
            .execute(&self.writes)
            .await?
            .rows_affected(),
        };
        Ok(changed == 1)
    }

    /// Records an authorization request; expired ones are dropped on the way.
    pub async fn insert_oauth_state(&self, row: &OAuthStateRow) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM oauth_states WHERE expires_at < ?")
            .bind(row.created_at)
            .execute(&mut *tx.inner)
            .await?;
        sqlx::query(
            "INSERT INTO oauth_states (state, installation_id, verifier, redirect_uri, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&row.state)
        .bind(&row.installation_id)
        .bind(&row.verifier)
        .bind(&row.redirect_uri)
        .bind(row.created_at)
        .bind(row.expires_at)
        .execute(&mut *tx.inner)
        .await?;
        tx.commit().await
    }

    /// Takes an authorization request: it is deleted, so a state works once. An expired one
    /// is deleted and not returned.
    pub async fn take_oauth_state(
        &self,
        state: &str,
        now: i64,
    ) -> Result<Option<OAuthStateRow>, StoreError> {
        let mut tx = self.begin().await?;
        let row: Option<OAuthStateRow> = sqlx::query_as(
            "DELETE FROM oauth_states WHERE state = ? RETURNING state, installation_id, verifier, \
             redirect_uri, created_at, expires_at",
        )
        .bind(state)
        .fetch_optional(&mut *tx.inner)
        .await?;
        tx.commit().await?;
        Ok(row.filter(|r| r.expires_at >= now))
    }

    /// Puts a claimed outbox row back without counting the attempt, due again at
    /// `not_before` at the earliest: what stopped it is no fault of the row (its installation
    /// waits for reauthorization, or the hub had no plugin instance for it in time).
    pub async fn park_outbox_row(
        &self,
        id: i64,
        error: &str,
        not_before: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE outbox SET attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
             next_attempt_at = MAX(next_attempt_at, ?), \
             last_error = ?, lease_owner = NULL, lease_until = NULL, updated_at = ? \
             WHERE id = ? AND status = 'pending'",
        )
        .bind(not_before)
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.writes)
        .await?;
        Ok(())
    }
}
