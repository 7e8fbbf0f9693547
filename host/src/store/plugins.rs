//! The `plugins` table.

use sqlx::Row;

use super::{Db, StoreError};
use crate::manifest::PluginManifest;

/// A plugin to install.
#[derive(Debug, Clone)]
pub struct NewPlugin<'a> {
    pub manifest: &'a PluginManifest,
    pub contract: &'a str,
    pub sha256: &'a str,
    pub approved_hosts: &'a [String],
    pub wasm: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallOutcome {
    /// The first version of this plugin id: it is active.
    InstalledActive,
    /// Another version is active and stays so until the admin switches.
    InstalledInactive,
    /// The same id, version and digest were already installed.
    AlreadyInstalled,
}

/// A stored plugin, without its wasm bytes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginRecord {
    pub plugin_id: String,
    pub version: String,
    pub kind: String,
    pub contract: String,
    pub sha256: String,
    pub active: bool,
    pub approved_hosts: Vec<String>,
    pub installed_at: String,
    pub manifest: PluginManifest,
}

/// One event in a plugin's history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    pub version: String,
    /// `installed`, or `replaced-dev` for a rebuilt component swapped in under the same version.
    pub event: String,
    pub old_sha256: Option<String>,
    pub new_sha256: String,
    pub at: String,
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn record_history(
    tx: &mut super::Tx,
    manifest: &PluginManifest,
    event: &str,
    old_sha256: Option<&str>,
    new_sha256: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO plugin_history (plugin_id, version, event, old_sha256, new_sha256, at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&manifest.id)
    .bind(&manifest.version)
    .bind(event)
    .bind(old_sha256)
    .bind(new_sha256)
    .bind(now_text())
    .execute(&mut *tx.inner)
    .await?;
    Ok(())
}

const COLUMNS: &str = "plugin_id, version, kind, contract, sha256, manifest_json, approved_hosts, active, installed_at";

fn record(row: &sqlx::sqlite::SqliteRow) -> Result<PluginRecord, StoreError> {
    let manifest: String = row.try_get("manifest_json")?;
    let approved: String = row.try_get("approved_hosts")?;
    Ok(PluginRecord {
        plugin_id: row.try_get("plugin_id")?,
        version: row.try_get("version")?,
        kind: row.try_get("kind")?,
        contract: row.try_get("contract")?,
        sha256: row.try_get("sha256")?,
        active: row.try_get("active")?,
        installed_at: row.try_get("installed_at")?,
        manifest: serde_json::from_str(&manifest)
            .map_err(|e| StoreError::Corrupt(format!("manifest_json: {e}")))?,
        approved_hosts: serde_json::from_str(&approved)
            .map_err(|e| StoreError::Corrupt(format!("approved_hosts: {e}")))?,
    })
}

impl Db {
    /// Stores a plugin. The first version of an id becomes active; later ones wait.
    pub async fn install_plugin(
        &self,
        plugin: NewPlugin<'_>,
    ) -> Result<InstallOutcome, StoreError> {
        let mut tx = self.begin().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM plugins WHERE plugin_id = ? AND version = ?")
                .bind(&plugin.manifest.id)
                .bind(&plugin.manifest.version)
                .fetch_optional(&mut *tx.inner)
                .await?;
        if let Some(sha) = existing {
            if sha == plugin.sha256 {
                return Ok(InstallOutcome::AlreadyInstalled);
            }
            return Err(StoreError::Conflict(format!(
                "{} {} is already installed with a different digest ({sha}); give the new build a new version (or, on a development hub, `plugin install --replace --dev`)",
                plugin.manifest.id, plugin.manifest.version
            )));
        }
        let has_active: bool =
            sqlx::query_scalar("SELECT COUNT(*) > 0 FROM plugins WHERE plugin_id = ? AND active")
                .bind(&plugin.manifest.id)
                .fetch_one(&mut *tx.inner)
                .await?;
        let manifest = serde_json::to_string(plugin.manifest)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let approved = serde_json::to_string(plugin.approved_hosts)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO plugins (plugin_id, version, kind, contract, sha256, manifest_json, approved_hosts, wasm, active, installed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&plugin.manifest.id)
        .bind(&plugin.manifest.version)
        .bind(plugin.manifest.kind.as_str())
        .bind(plugin.contract)
        .bind(plugin.sha256)
        .bind(manifest)
        .bind(approved)
        .bind(plugin.wasm)
        .bind(!has_active)
        .bind(now_text())
        .execute(&mut *tx.inner)
        .await?;
        record_history(&mut tx, plugin.manifest, "installed", None, plugin.sha256).await?;
        tx.commit().await?;
        Ok(if has_active {
            InstallOutcome::InstalledInactive
        } else {
            InstallOutcome::InstalledActive
        })
    }

    pub async fn list_plugins(&self) -> Result<Vec<PluginRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM plugins ORDER BY plugin_id, installed_at"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// The active version of `plugin_id`, or the given version, with its wasm bytes.
    pub async fn load_plugin(
        &self,
        plugin_id: &str,
        version: Option<&str>,
    ) -> Result<(PluginRecord, Vec<u8>), StoreError> {
        let row = self.plugin_row(plugin_id, version, ", wasm").await?;
        Ok((record(&row)?, row.try_get("wasm")?))
    }

    /// The active version of `plugin_id`, or the given version, without its wasm bytes.
    pub async fn plugin_record(
        &self,
        plugin_id: &str,
        version: Option<&str>,
    ) -> Result<PluginRecord, StoreError> {
        record(&self.plugin_row(plugin_id, version, "").await?)
    }

    /// One plugin row: the given version, or the active one when `version` is `None`.
    async fn plugin_row(
        &self,
        plugin_id: &str,
        version: Option<&str>,
        extra_columns: &str,
    ) -> Result<sqlx::sqlite::SqliteRow, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}{extra_columns} FROM plugins \
             WHERE plugin_id = ? AND (version = ? OR (? IS NULL AND active))"
        ))
        .bind(plugin_id)
        .bind(version)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| {
            StoreError::NotFound(match version {
                Some(v) => format!("plugin {plugin_id} {v} is not installed"),
                None => format!("plugin `{plugin_id}` is not installed"),
            })
        })
    }

    /// Makes `version` the active version of `plugin_id`.
    pub async fn activate_plugin(&self, plugin_id: &str, version: &str) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE plugins SET active = FALSE WHERE plugin_id = ? AND active")
            .bind(plugin_id)
            .execute(&mut *tx.inner)
            .await?;
        let updated =
            sqlx::query("UPDATE plugins SET active = TRUE WHERE plugin_id = ? AND version = ?")
                .bind(plugin_id)
                .bind(version)
                .execute(&mut *tx.inner)
                .await?
                .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!(
                "plugin {plugin_id} {version} is not installed"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Replaces the hosts an admin approved for one version.
    pub async fn set_approved_hosts(
        &self,
        plugin_id: &str,
        version: &str,
        hosts: &[String],
    ) -> Result<(), StoreError> {
        let approved =
            serde_json::to_string(hosts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let updated = sqlx::query(
            "UPDATE plugins SET approved_hosts = ? WHERE plugin_id = ? AND version = ?",
        )
        .bind(approved)
        .bind(plugin_id)
        .bind(version)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!(
                "plugin {plugin_id} {version} is not installed"
            )));
        }
        Ok(())
    }

    /// Swaps the component of an installed version for a rebuilt one with the same id and
    /// version, for development; the swap is recorded in the plugin's history. Returns the
    /// digest it replaced, or `None` when that build was already the installed one.
    pub async fn replace_plugin_dev(
        &self,
        plugin: NewPlugin<'_>,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.begin().await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM plugins WHERE plugin_id = ? AND version = ?")
                .bind(&plugin.manifest.id)
                .bind(&plugin.manifest.version)
                .fetch_optional(&mut *tx.inner)
                .await?;
        let Some(old) = existing else {
            return Err(StoreError::NotFound(format!(
                "{} {} is not installed, so there is nothing to replace; install it without --replace",
                plugin.manifest.id, plugin.manifest.version
            )));
        };
        if old == plugin.sha256 {
            return Ok(None);
        }
        let manifest = serde_json::to_string(plugin.manifest)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let approved = serde_json::to_string(plugin.approved_hosts)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "UPDATE plugins SET kind = ?, contract = ?, sha256 = ?, manifest_json = ?, \
             approved_hosts = ?, wasm = ? WHERE plugin_id = ? AND version = ?",
        )
        .bind(plugin.manifest.kind.as_str())
        .bind(plugin.contract)
        .bind(plugin.sha256)
        .bind(manifest)
        .bind(approved)
        .bind(plugin.wasm)
        .bind(&plugin.manifest.id)
        .bind(&plugin.manifest.version)
        .execute(&mut *tx.inner)
        .await?;
        record_history(
            &mut tx,
            plugin.manifest,
            "replaced-dev",
            Some(&old),
            plugin.sha256,
        )
        .await?;
        tx.commit().await?;
        Ok(Some(old))
    }

    /// A plugin's history, oldest first.
    pub async fn plugin_history(&self, plugin_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT version, event, old_sha256, new_sha256, at FROM plugin_history \
             WHERE plugin_id = ? ORDER BY id",
        )
        .bind(plugin_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(HistoryEntry {
                    version: row.try_get("version")?,
                    event: row.try_get("event")?,
                    old_sha256: row.try_get("old_sha256")?,
                    new_sha256: row.try_get("new_sha256")?,
                    at: row.try_get("at")?,
                })
            })
            .collect()
    }

    /// Approves again an installed build (same id, version and digest): stores the manifest
    /// it describes now and the origins approved with it, replacing both.
    pub async fn reapprove_plugin(
        &self,
        manifest: &PluginManifest,
        sha256: &str,
        approved_hosts: &[String],
    ) -> Result<(), StoreError> {
        let manifest_json =
            serde_json::to_string(manifest).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let approved = serde_json::to_string(approved_hosts)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let updated = sqlx::query(
            "UPDATE plugins SET manifest_json = ?, approved_hosts = ? \
             WHERE plugin_id = ? AND version = ? AND sha256 = ?",
        )
        .bind(manifest_json)
        .bind(approved)
        .bind(&manifest.id)
        .bind(&manifest.version)
        .bind(sha256)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound(format!(
                "plugin {} {} with digest {sha256} is not installed",
                manifest.id, manifest.version
            )));
        }
        Ok(())
    }

    /// Removes one version, or every version when `version` is `None`. Returns how many went.
    pub async fn remove_plugin(
        &self,
        plugin_id: &str,
        version: Option<&str>,
    ) -> Result<u64, StoreError> {
        let removed = match version {
            Some(version) => {
                let others: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM plugins p WHERE p.plugin_id = ? AND p.version <> ? \
                     AND EXISTS (SELECT 1 FROM plugins a WHERE a.plugin_id = ? AND a.version = ? AND a.active)",
                )
                .bind(plugin_id)
                .bind(version)
                .bind(plugin_id)
                .bind(version)
                .fetch_one(&self.pool)
                .await?;
                if others > 0 {
                    return Err(StoreError::Conflict(format!(
                        "{plugin_id} {version} is the active version; activate another version first, \
                         or remove all versions"
                    )));
                }
                sqlx::query("DELETE FROM plugins WHERE plugin_id = ? AND version = ?")
                    .bind(plugin_id)
                    .bind(version)
                    .execute(&self.pool)
                    .await?
            }
            None => sqlx::query("DELETE FROM plugins WHERE plugin_id = ?").bind(plugin_id).execute(&self.pool).await?,
        }
        .rows_affected();
        if removed == 0 {
            return Err(StoreError::NotFound(format!(
                "plugin `{plugin_id}` is not installed"
            )));
        }
        Ok(removed)
    }
}

impl super::Tx {
    /// The manifest of the plugin version an installation uses (pinned, or active).
    pub async fn manifest_of_installation(
        &mut self,
        installation_id: &str,
    ) -> Result<Option<PluginManifest>, StoreError> {
        let manifest: Option<String> = sqlx::query_scalar(
            "SELECT p.manifest_json FROM installations i JOIN plugins p ON p.plugin_id = i.plugin_id \
             AND ((i.plugin_version IS NULL AND p.active) OR p.version = i.plugin_version) WHERE i.id = ?",
        )
        .bind(installation_id)
        .fetch_optional(&mut *self.inner)
        .await?;
        manifest
            .map(|m| {
                serde_json::from_str(&m)
                    .map_err(|e| StoreError::Corrupt(format!("manifest_json: {e}")))
            })
            .transpose()
    }
}
