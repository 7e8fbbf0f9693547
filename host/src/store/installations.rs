//! Installations, links and poll cursors.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{json_corrupt, Db, StoreError, Tx};
use crate::store::jobs::NewJob;

/// An installation as stored. Secret settings stay sealed here; the hub opens them.
#[derive(Debug, Clone)]
pub struct InstallationRow {
    pub id: String,
    pub plugin_id: String,
    /// `None` follows the plugin's active version.
    pub plugin_version: Option<String>,
    pub kind: String,
    /// Non-secret settings.
    pub settings: BTreeMap<String, String>,
    /// Sealed secret settings (see [`crate::secrets`]).
    pub secrets: Option<Vec<u8>>,
    pub enabled: bool,
    pub deadline_ms: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A link as stored; its settings are JSON the hub interprets.
#[derive(Debug, Clone)]
pub struct LinkRow {
    pub id: String,
    pub social_installation_id: String,
    pub helpdesk_installation_id: String,
    pub settings_json: String,
    pub created_at: i64,
}

const INSTALLATION_COLUMNS: &str =
    "id, plugin_id, plugin_version, kind, settings_json, secrets, enabled, \
     deadline_ms, memory_bytes, created_at, updated_at";

fn installation(row: &sqlx::sqlite::SqliteRow) -> Result<InstallationRow, StoreError> {
    let settings: String = row.try_get("settings_json")?;
    Ok(InstallationRow {
        id: row.try_get("id")?,
        plugin_id: row.try_get("plugin_id")?,
        plugin_version: row.try_get("plugin_version")?,
        kind: row.try_get("kind")?,
        settings: serde_json::from_str(&settings)
            .map_err(|e| json_corrupt("installations.settings_json", e))?,
        secrets: row.try_get("secrets")?,
        enabled: row.try_get("enabled")?,
        deadline_ms: row.try_get("deadline_ms")?,
        memory_bytes: row.try_get("memory_bytes")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn link(row: &sqlx::sqlite::SqliteRow) -> Result<LinkRow, StoreError> {
    Ok(LinkRow {
        id: row.try_get("id")?,
        social_installation_id: row.try_get("social_installation_id")?,
        helpdesk_installation_id: row.try_get("helpdesk_installation_id")?,
        settings_json: row.try_get("settings_json")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Db {
    /// Stores a new installation together with its polling jobs.
    pub async fn create_installation(
        &self,
        row: &InstallationRow,
        jobs: &[NewJob],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT id FROM installations WHERE id = ?")
                .bind(&row.id)
                .fetch_optional(&mut *tx.inner)
                .await?;
        if exists.is_some() {
            return Err(StoreError::Conflict(format!(
                "installation `{}` already exists",
                row.id
            )));
        }
        let settings =
            serde_json::to_string(&row.settings).map_err(|e| json_corrupt("settings", e))?;
        sqlx::query(&format!("INSERT INTO installations ({INSTALLATION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .bind(&row.id)
            .bind(&row.plugin_id)
            .bind(&row.plugin_version)
            .bind(&row.kind)
            .bind(settings)
            .bind(&row.secrets)
            .bind(row.enabled)
            .bind(row.deadline_ms)
            .bind(row.memory_bytes)
            .bind(row.created_at)
            .bind(row.updated_at)
            .execute(&mut *tx.inner)
            .await?;
        for job in jobs {
            tx.insert_job(job).await?;
        }
        tx.commit().await
    }

    pub async fn get_installation(&self, id: &str) -> Result<InstallationRow, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {INSTALLATION_COLUMNS} FROM installations WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("installation `{id}` does not exist")))?;
        installation(&row)
    }

    pub async fn list_installations(&self) -> Result<Vec<InstallationRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {INSTALLATION_COLUMNS} FROM installations ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(installation).collect()
    }

    /// How many installations use `plugin_id`.
    pub async fn count_installations_of_plugin(&self, plugin_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM installations WHERE plugin_id = ?")
                .bind(plugin_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn set_installation_enabled(
        &self,
        id: &str,
        enabled: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let updated =
            sqlx::query("UPDATE installations SET enabled = ?, updated_at = ? WHERE id = ?")
                .bind(enabled)
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!(
                "installation `{id}` does not exist"
            )));
        }
        Ok(())
    }

    /// Saves a link, and hands the social installation's messages that arrived while it had
    /// none back to the processor. Returns how many were handed back.
    pub async fn create_link(&self, row: &LinkRow) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let taken: Option<String> =
            sqlx::query_scalar("SELECT id FROM links WHERE id = ? OR social_installation_id = ?")
                .bind(&row.id)
                .bind(&row.social_installation_id)
                .fetch_optional(&mut *tx.inner)
                .await?;
        if let Some(existing) = taken {
            return Err(StoreError::Conflict(if existing == row.id {
                format!("link `{existing}` already exists")
            } else {
                format!(
                    "installation `{}` is already linked by `{existing}`; a social installation feeds one helpdesk",
                    row.social_installation_id
                )
            }));
        }
        sqlx::query(
            "INSERT INTO links (id, social_installation_id, helpdesk_installation_id, settings_json, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&row.id)
        .bind(&row.social_installation_id)
        .bind(&row.helpdesk_installation_id)
        .bind(&row.settings_json)
        .bind(row.created_at)
        .execute(&mut *tx.inner)
        .await?;
        let requeued = sqlx::query(
            "UPDATE inbound_events SET processed_at = NULL, outcome = NULL \
             WHERE installation_id = ? AND outcome = 'unlinked'",
        )
        .bind(&row.social_installation_id)
        .execute(&mut *tx.inner)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(requeued)
    }

    pub async fn list_links(&self) -> Result<Vec<LinkRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM links ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(link).collect()
    }

    pub async fn delete_link(&self, id: &str) -> Result<(), StoreError> {
        let deleted = sqlx::query("DELETE FROM links WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("link `{id}` does not exist")));
        }
        Ok(())
    }

    /// The saved cursor of a stream (`None` when never polled, or saved as none).
    pub async fn get_cursor(
        &self,
        installation_id: &str,
        stream: &str,
    ) -> Result<Option<String>, StoreError> {
        let cursor: Option<Option<String>> = sqlx::query_scalar(
            "SELECT cursor FROM cursors WHERE installation_id = ? AND stream = ?",
        )
        .bind(installation_id)
        .bind(stream)
        .fetch_optional(&self.pool)
        .await?;
        Ok(cursor.flatten())
    }
}

impl Tx {
    /// The link that feeds from `social_installation_id`, if any.
    pub async fn link_for_social(
        &mut self,
        social_installation_id: &str,
    ) -> Result<Option<LinkRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM links WHERE social_installation_id = ?")
            .bind(social_installation_id)
            .fetch_optional(&mut *self.inner)
            .await?;
        row.as_ref().map(link).transpose()
    }

    /// Saves a poll cursor; called in the transaction that stores the page's events.
    pub async fn save_cursor(
        &mut self,
        installation_id: &str,
        stream: &str,
        cursor: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO cursors (installation_id, stream, cursor, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (installation_id, stream) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(installation_id)
        .bind(stream)
        .bind(cursor)
        .bind(now)
        .execute(&mut *self.inner)
        .await?;
        Ok(())
    }
}
