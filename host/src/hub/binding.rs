//! Bindings: an installation with its decrypted settings and its loaded plugin, ready to call.
//!
//! Loading a plugin compiles it (or reads the compile cache), and binding an installation reads
//! its rows, decrypts its secrets and builds its HTTP policy, so both are cached: plugins by
//! digest for the life of the hub, bindings for a few seconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Hub, HubError};
use crate::manifest::PluginManifest;
use crate::runtime::{CallLimits, HelpdeskConnector, Installation, Plugin, SocialConnector};
use crate::store::{InstallationRow, PluginRecord};

/// A plugin bound to one installation, with what the hub knows about both.
pub(crate) struct Bound {
    pub(crate) installation: InstallationRow,
    pub(crate) plugin: Plugin,
    pub(crate) runtime_installation: Installation,
    /// The connector, prepared on first use (settings checked, HTTP policy built).
    social: std::sync::OnceLock<Result<Arc<SocialConnector>, String>>,
    helpdesk: std::sync::OnceLock<Result<Arc<HelpdeskConnector>, String>>,
}

impl Bound {
    pub(crate) fn manifest(&self) -> &PluginManifest {
        self.plugin.manifest()
    }
}

/// How long a binding is reused. Changes made through the hub drop bindings at once; this
/// bounds how long a change made elsewhere (the `plugin` CLI on the same database) goes
/// unseen.
const BINDING_TTL: Duration = Duration::from_secs(5);

/// Bound installations, so that a webhook or a delivery does not read the installation and
/// plugin rows, decrypt the secrets and rebuild the HTTP policy on every call.
#[derive(Default)]
pub(super) struct Bindings {
    entries: Mutex<HashMap<String, (std::time::Instant, Arc<Bound>)>>,
}

impl Bindings {
    fn get(&self, installation_id: &str) -> Option<Arc<Bound>> {
        let entries = self.entries.lock().ok()?;
        let (at, bound) = entries.get(installation_id)?;
        (at.elapsed() < BINDING_TTL).then(|| bound.clone())
    }

    fn put(&self, bound: Arc<Bound>) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                bound.installation.id.clone(),
                (std::time::Instant::now(), bound),
            );
        }
    }

    fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

impl Hub {
    pub(super) fn cache_plugin(&self, plugin: Plugin) {
        if let Ok(mut plugins) = self.inner.plugins.lock() {
            plugins.insert(plugin.sha256().to_string(), plugin);
        }
    }

    /// The loaded plugin for a stored record, from the cache or the database. It must
    /// describe exactly the manifest stored with the record, which is the one an admin
    /// approved: a component that now describes another (a clock-dependent `describe`, say)
    /// must not run with what nobody reviewed.
    pub(super) async fn loaded_plugin(&self, record: &PluginRecord) -> Result<Plugin, HubError> {
        let cached = self
            .inner
            .plugins
            .lock()
            .ok()
            .and_then(|p| p.get(&record.sha256).cloned());
        let plugin = match cached {
            Some(plugin) => plugin,
            None => {
                let (_, wasm) = self
                    .inner
                    .db
                    .load_plugin(&record.plugin_id, Some(&record.version))
                    .await?;
                let (plugin, _) = self.inner.runtime.load(&wasm).await.map_err(|e| {
                    anyhow::anyhow!(
                        "installed plugin {} {} failed to load: {e}",
                        record.plugin_id,
                        record.version
                    )
                })?;
                self.cache_plugin(plugin.clone());
                plugin
            }
        };
        if let Some(changed) = crate::manifest::differences(&record.manifest, plugin.manifest()) {
            return Err(HubError::Invalid(format!(
                "installed plugin {} {} is refused: its component describes a manifest that \
                 differs from the one an admin approved ({changed}); review it with `switchboard \
                 plugin inspect` and approve it again with `switchboard plugin install --approve` \
                 (or POST /api/v1/plugins?approve=all)",
                record.plugin_id, record.version
            )));
        }
        Ok(plugin)
    }

    /// An installation with its decrypted settings and its plugin, ready to call; reused for
    /// a few seconds (see [`BINDING_TTL`]).
    pub(crate) async fn bind(&self, installation_id: &str) -> Result<Arc<Bound>, HubError> {
        if let Some(bound) = self.inner.bindings.get(installation_id) {
            return Ok(bound);
        }
        let bound = Arc::new(self.load_binding(installation_id).await?);
        self.inner.bindings.put(bound.clone());
        Ok(bound)
    }

    /// Drops every cached binding; called after any change to installations or plugins.
    pub(crate) fn forget_bindings(&self) {
        self.inner.bindings.clear();
    }

    /// Loads an installation with its decrypted settings and its plugin, from the database.
    async fn load_binding(&self, installation_id: &str) -> Result<Bound, HubError> {
        let installation = self.inner.db.get_installation(installation_id).await?;
        let record = self
            .inner
            .db
            .plugin_record(
                &installation.plugin_id,
                installation.plugin_version.as_deref(),
            )
            .await?;
        let plugin = self.loaded_plugin(&record).await?;
        let mut settings = installation.settings.clone();
        if let Some(sealed) = &installation.secrets {
            settings.extend(self.inner.secrets.open(&installation.id, sealed)?);
        }
        let defaults = self.inner.runtime.config().default_limits;
        let limits = match (installation.deadline_ms, installation.memory_bytes) {
            (None, None) => None,
            (deadline, memory) => Some(CallLimits {
                deadline: deadline.map_or(defaults.deadline, |ms| {
                    Duration::from_millis(ms.max(1) as u64)
                }),
                memory_bytes: memory.map_or(defaults.memory_bytes, |b| b.max(0) as usize),
            }),
        };
        let token_source = self
            .oauth_token_source(
                &installation.id,
                plugin.manifest(),
                &settings,
                &record.approved_hosts,
            )
            .await?;
        let runtime_installation = Installation {
            id: installation.id.clone(),
            settings,
            approved_hosts: record.approved_hosts,
            limits,
            token_source,
            meter: Some(super::care::HubMeter::sink(&self.inner)),
        };
        Ok(Bound {
            installation,
            plugin,
            runtime_installation,
            social: Default::default(),
            helpdesk: Default::default(),
        })
    }

    pub(crate) fn social_connector(&self, bound: &Bound) -> Result<Arc<SocialConnector>, HubError> {
        bound
            .social
            .get_or_init(|| {
                self.inner
                    .runtime
                    .social(&bound.plugin, &bound.runtime_installation)
                    .map(Arc::new)
                    .map_err(|e| format!("installation `{}`: {e:#}", bound.installation.id))
            })
            .clone()
            .map_err(HubError::Invalid)
    }

    pub(crate) fn helpdesk_connector(
        &self,
        bound: &Bound,
    ) -> Result<Arc<HelpdeskConnector>, HubError> {
        bound
            .helpdesk
            .get_or_init(|| {
                self.inner
                    .runtime
                    .helpdesk(&bound.plugin, &bound.runtime_installation)
                    .map(Arc::new)
                    .map_err(|e| format!("installation `{}`: {e:#}", bound.installation.id))
            })
            .clone()
            .map_err(HubError::Invalid)
    }
}
