//! The admin operations: plugins, installations, links, jobs, conversations, dead letters,
//! quarantined events, health and metrics. The server's admin API and the CLI call these; each
//! checks its input and reads or writes through the store.

use std::collections::{BTreeMap, HashMap};

use super::{
    helpdesk_changes, iso, now_ms, scheduler, ConversationDetail, ConversationView, DeadLetterView,
    Health, Hub, HubError, InstallationView, JobRunView, JobView, LinkSettings, LinkView,
    MessageView, NewInstallation, NewLink, QuarantinedEventView, TestReport, TicketView,
};
use crate::manifest::PluginKind;
use crate::runtime::Installation;
use crate::schedule::Schedule;
use crate::store::{
    InstallOutcome, InstallationRow, LinkRow, NewJob, NewPlugin, PluginRecord, StoreError,
};

impl Hub {
    // ----- plugins ---------------------------------------------------------------------------

    /// Installs a component. With `approve_all` false it is stored with no approved hosts,
    /// and makes no HTTP request until an admin approves them.
    pub async fn install_plugin(
        &self,
        wasm: &[u8],
        approve_all: bool,
    ) -> Result<PluginRecord, HubError> {
        let (plugin, _) = self
            .inner
            .runtime
            .load(wasm)
            .await
            .map_err(|e| HubError::Invalid(e.to_string()))?;
        let manifest = plugin.manifest();
        let approved = if approve_all {
            manifest.requested_origins()
        } else {
            Vec::new()
        };
        let outcome = self
            .inner
            .db
            .install_plugin(NewPlugin {
                manifest,
                contract: plugin.contract().package(),
                sha256: plugin.sha256(),
                approved_hosts: &approved,
                wasm,
            })
            .await?;
        if outcome == InstallOutcome::AlreadyInstalled && approve_all {
            // Approving again also approves the manifest the component describes now.
            self.inner
                .db
                .reapprove_plugin(manifest, plugin.sha256(), &approved)
                .await?;
        }
        self.forget_bindings();
        self.cache_plugin(plugin.clone());
        Ok(self
            .inner
            .db
            .plugin_record(&manifest.id, Some(&manifest.version))
            .await?)
    }

    pub async fn list_plugins(&self) -> Result<Vec<PluginRecord>, HubError> {
        Ok(self.inner.db.list_plugins().await?)
    }

    /// The active version of a plugin.
    pub async fn get_plugin(&self, plugin_id: &str) -> Result<PluginRecord, HubError> {
        Ok(self.inner.db.plugin_record(plugin_id, None).await?)
    }

    /// Approves `hosts` (which must be among the manifest's `http_hosts`) for one version,
    /// replacing the previous approval.
    pub async fn approve_plugin(
        &self,
        plugin_id: &str,
        version: &str,
        hosts: Vec<String>,
    ) -> Result<PluginRecord, HubError> {
        let record = self
            .inner
            .db
            .plugin_record(plugin_id, Some(version))
            .await?;
        let requested = &record.manifest.requested_origins();
        if let Some(unknown) = hosts.iter().find(|h| !requested.contains(h)) {
            return Err(HubError::Invalid(format!(
                "`{unknown}` is not among the hosts {plugin_id} {version} requests: {}",
                requested.join(", ")
            )));
        }
        self.inner
            .db
            .set_approved_hosts(plugin_id, version, &hosts)
            .await?;
        self.forget_bindings();
        Ok(self
            .inner
            .db
            .plugin_record(plugin_id, Some(version))
            .await?)
    }

    /// Removes one version, or all. Refused while installations use the plugin.
    pub async fn remove_plugin(
        &self,
        plugin_id: &str,
        version: Option<&str>,
    ) -> Result<u64, HubError> {
        let users = self
            .inner
            .db
            .count_installations_of_plugin(plugin_id)
            .await?;
        if version.is_none() && users > 0 {
            return Err(HubError::Conflict(format!(
                "{users} installation(s) use `{plugin_id}`; it cannot be removed while in use"
            )));
        }
        let removed = self.inner.db.remove_plugin(plugin_id, version).await?;
        self.forget_bindings();
        Ok(removed)
    }
    // ----- installations ---------------------------------------------------------------------

    /// Creates an installation of the plugin's active version. Settings are checked against
    /// the manifest (required keys, unknown keys, templates); secret ones are encrypted. One
    /// polling job per stream is created with the manifest's default schedule.
    pub async fn create_installation(
        &self,
        new: NewInstallation,
    ) -> Result<InstallationView, HubError> {
        check_slug("installation id", &new.id)?;
        if let Some(ms) = new.deadline_ms {
            if !(100..=60_000).contains(&ms) {
                return Err(HubError::Invalid(format!(
                    "deadline_ms {ms} is out of range: a plugin call's deadline is 100 to 60000 ms"
                )));
            }
        }
        let record = match self.inner.db.plugin_record(&new.plugin_id, None).await {
            Ok(record) => record,
            Err(StoreError::NotFound(m)) => return Err(HubError::Invalid(m)),
            Err(e) => return Err(e.into()),
        };
        let manifest = &record.manifest;
        let mut plain = BTreeMap::new();
        let mut secret = BTreeMap::new();
        for (key, value) in &new.settings {
            let spec = manifest.setting(key).ok_or_else(|| {
                HubError::Invalid(format!(
                    "setting `{key}` is not declared by {}; it takes: {}",
                    manifest.id,
                    manifest
                        .settings
                        .iter()
                        .map(|s| s.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if spec.secret {
                secret.insert(key.clone(), value.clone());
            } else {
                plain.insert(key.clone(), value.clone());
            }
        }
        for spec in &manifest.settings {
            let given = new.settings.get(&spec.key).is_some_and(|v| !v.is_empty());
            if spec.required && !given && spec.default.is_none() {
                return Err(HubError::Invalid(format!(
                    "setting `{}` ({}) is required",
                    spec.key, spec.label
                )));
            }
        }
        // Binding checks the templates (hosts, credentials) against these settings.
        let plugin = self.loaded_plugin(&record).await?;
        let probe = Installation {
            id: new.id.clone(),
            settings: new.settings.clone(),
            approved_hosts: record.approved_hosts.clone(),
            limits: None,
            ..Default::default()
        };
        let bound = match manifest.kind {
            PluginKind::Social => self.inner.runtime.social(&plugin, &probe).map(drop),
            PluginKind::Helpdesk => self.inner.runtime.helpdesk(&plugin, &probe).map(drop),
        };
        bound.map_err(|e| {
            HubError::Invalid(format!("settings do not fit {}: {e:#}", manifest.id))
        })?;

        let now = now_ms();
        let sealed = if secret.is_empty() {
            None
        } else {
            Some(self.inner.secrets.seal(&new.id, &secret)?)
        };
        let row = InstallationRow {
            id: new.id.clone(),
            plugin_id: record.plugin_id.clone(),
            plugin_version: None,
            kind: manifest.kind.as_str().to_string(),
            settings: plain,
            secrets: sealed,
            enabled: new.enabled.unwrap_or(true),
            deadline_ms: new.deadline_ms.map(|ms| ms as i64),
            memory_bytes: None,
            created_at: now,
            updated_at: now,
        };
        let mut jobs = Vec::new();
        for stream in &manifest.streams {
            let schedule = Schedule::parse(&stream.default_schedule, None)
                .map_err(|e| HubError::Invalid(format!("stream `{}`: {e}", stream.name)))?;
            jobs.push(NewJob {
                id: scheduler::job_id(&new.id, &stream.name),
                installation_id: new.id.clone(),
                stream: stream.name.clone(),
                schedule: stream.default_schedule.clone(),
                time_zone: "UTC".into(),
                next_run_at: schedule.next_after(now),
            });
        }
        self.inner.db.create_installation(&row, &jobs).await?;
        tracing::info!(installation = %row.id, plugin = %row.plugin_id, "installation created");
        self.installation_view(row).await
    }

    pub async fn list_installations(&self) -> Result<Vec<InstallationView>, HubError> {
        let mut views = Vec::new();
        for row in self.inner.db.list_installations().await? {
            views.push(self.installation_view(row).await?);
        }
        Ok(views)
    }

    pub async fn get_installation(&self, id: &str) -> Result<InstallationView, HubError> {
        let row = self.inner.db.get_installation(id).await?;
        self.installation_view(row).await
    }

    async fn installation_view(&self, row: InstallationRow) -> Result<InstallationView, HubError> {
        let version = match &row.plugin_version {
            Some(v) => v.clone(),
            None => match self.inner.db.plugin_record(&row.plugin_id, None).await {
                Ok(record) => record.version,
                Err(StoreError::NotFound(_)) => String::new(),
                Err(e) => return Err(e.into()),
            },
        };
        let mut settings = row.settings.clone();
        if let Some(sealed) = &row.secrets {
            // Only the keys are shown; opening the blob is not needed for that, but a blob that
            // no longer opens (wrong key) is worth saying.
            match self.inner.secrets.open(&row.id, sealed) {
                Ok(secrets) => {
                    settings.extend(secrets.into_keys().map(|k| (k, SECRET_MASK.to_string())))
                }
                Err(error) => {
                    tracing::warn!(installation = %row.id, %error, "secret settings do not open")
                }
            }
        }
        let oauth = self.oauth_view(&row).await?;
        Ok(InstallationView {
            needs_reauthorization: oauth.as_ref().is_some_and(|o| o.needs_reauthorization),
            oauth,
            webhook_path: format!("/webhooks/{}", row.id),
            deadline_ms: row.deadline_ms,
            pinned: row.plugin_version.is_some(),
            plugin_version: version,
            id: row.id,
            plugin_id: row.plugin_id,
            kind: row.kind,
            enabled: row.enabled,
            settings,
            created_at: iso(row.created_at),
        })
    }

    /// Polls the first stream from the saved cursor without saving anything: checks that the
    /// credentials and hosts work.
    pub async fn test_installation(&self, id: &str) -> Result<TestReport, HubError> {
        self.forget_bindings();
        let bound = self.bind(id).await?;
        let Some(stream) = bound.manifest().streams.first().map(|s| s.name.clone()) else {
            return Ok(TestReport {
                ok: true,
                detail: "the plugin has no stream to poll; settings are valid".into(),
            });
        };
        let cursor = self.inner.db.get_cursor(id, &stream).await?;
        let result = match bound.installation.kind.as_str() {
            "social" => self
                .social_connector(&bound)?
                .poll(&stream, cursor.as_deref())
                .await
                .map(|p| {
                    format!(
                        "polled `{stream}`: {} event(s), more: {}",
                        p.events.len(),
                        p.has_more
                    )
                }),
            _ => self
                .helpdesk_connector(&bound)?
                .poll_changes(&stream, cursor.as_deref())
                .await
                .map(|p| {
                    format!(
                        "polled `{stream}`: {} change(s), more: {}",
                        p.changes.len(),
                        p.has_more
                    )
                }),
        };
        Ok(match result {
            Ok(detail) => TestReport { ok: true, detail },
            Err(error) => TestReport {
                ok: false,
                detail: error.to_string(),
            },
        })
    }

    pub async fn set_installation_enabled(
        &self,
        id: &str,
        enabled: bool,
    ) -> Result<InstallationView, HubError> {
        self.inner
            .db
            .set_installation_enabled(id, enabled, now_ms())
            .await?;
        self.forget_bindings();
        if enabled {
            self.inner.outbox.notify_one();
        }
        self.get_installation(id).await
    }

    // ----- links -----------------------------------------------------------------------------

    /// Links a social installation to the helpdesk its conversations are filed in.
    pub async fn create_link(&self, new: NewLink) -> Result<LinkView, HubError> {
        check_slug("link id", &new.id)?;
        let kind_of = |id: String| async move {
            match self.inner.db.get_installation(&id).await {
                Ok(row) => Ok(row.kind),
                Err(StoreError::NotFound(m)) => Err(HubError::Invalid(m)),
                Err(e) => Err(e.into()),
            }
        };
        if kind_of(new.social_installation.clone()).await? != "social" {
            return Err(HubError::Invalid(format!(
                "`{}` is not a social installation",
                new.social_installation
            )));
        }
        if kind_of(new.helpdesk_installation.clone()).await? != "helpdesk" {
            return Err(HubError::Invalid(format!(
                "`{}` is not a helpdesk installation",
                new.helpdesk_installation
            )));
        }
        if let Some(priority) = &new.settings.priority {
            if helpdesk_changes::priority(priority).is_none() {
                return Err(HubError::Invalid(format!(
                    "priority `{priority}` is not one of low, normal, high, urgent"
                )));
            }
        }
        let row = LinkRow {
            id: new.id,
            social_installation_id: new.social_installation,
            helpdesk_installation_id: new.helpdesk_installation,
            settings_json: serde_json::to_string(&new.settings).map_err(anyhow::Error::from)?,
            created_at: now_ms(),
        };
        let waiting = self.inner.db.create_link(&row).await?;
        if waiting > 0 {
            tracing::info!(link = %row.id, messages = waiting, "syncing messages that arrived before the link");
            self.inner.inbound.notify_one();
        }
        link_view(row)
    }

    pub async fn list_links(&self) -> Result<Vec<LinkView>, HubError> {
        self.inner
            .db
            .list_links()
            .await?
            .into_iter()
            .map(link_view)
            .collect()
    }

    pub async fn delete_link(&self, id: &str) -> Result<(), HubError> {
        Ok(self.inner.db.delete_link(id).await?)
    }

    // ----- jobs ------------------------------------------------------------------------------

    pub async fn list_jobs(&self) -> Result<Vec<JobView>, HubError> {
        let mut last: HashMap<String, JobRunView> = self
            .inner
            .db
            .last_job_runs()
            .await?
            .into_iter()
            .map(|r| (r.job_id.clone(), JobRunView::from(r)))
            .collect();
        Ok(self
            .inner
            .db
            .list_jobs()
            .await?
            .into_iter()
            .map(|job| {
                let run = last.remove(&job.id);
                JobView::new(job, run)
            })
            .collect())
    }

    /// Runs a job now and waits for the run. `Conflict` while it is already running.
    pub async fn run_job_now(&self, id: &str) -> Result<JobRunView, HubError> {
        scheduler::run_now(self, id).await
    }

    pub async fn set_job_paused(&self, id: &str, paused: bool) -> Result<JobView, HubError> {
        let job = self.inner.db.get_job(id).await?;
        // Resuming starts from the next slot, not from the ones missed while paused.
        let next = if paused {
            None
        } else {
            Schedule::parse(&job.schedule, Some(&job.time_zone))
                .map_err(|e| HubError::Invalid(e.to_string()))?
                .next_after(now_ms())
        };
        self.inner.db.set_job_paused(id, paused, next).await?;
        self.job_view(id).await
    }

    /// Changes a job's cron expression and (optionally) time zone.
    pub async fn set_job_schedule(
        &self,
        id: &str,
        schedule: &str,
        time_zone: Option<&str>,
    ) -> Result<JobView, HubError> {
        let job = self.inner.db.get_job(id).await?;
        let time_zone = time_zone.unwrap_or(&job.time_zone);
        let parsed = Schedule::parse(schedule, Some(time_zone))
            .map_err(|e| HubError::Invalid(e.to_string()))?;
        self.inner
            .db
            .set_job_schedule(id, schedule, time_zone, parsed.next_after(now_ms()))
            .await?;
        self.job_view(id).await
    }

    async fn job_view(&self, id: &str) -> Result<JobView, HubError> {
        let job = self.inner.db.get_job(id).await?;
        let last = self
            .inner
            .db
            .job_runs(id, 1)
            .await?
            .into_iter()
            .next()
            .map(JobRunView::from);
        Ok(JobView::new(job, last))
    }

    // ----- conversations ---------------------------------------------------------------------

    /// The most recently active conversations (up to 1000), with their current ticket.
    pub async fn list_conversations(&self) -> Result<Vec<ConversationView>, HubError> {
        let conversations = self.inner.db.list_conversations(1000).await?;
        let ids: Vec<String> = conversations.iter().map(|c| c.id.clone()).collect();
        let mut current: HashMap<String, TicketView> = self
            .inner
            .db
            .current_tickets_of(&ids)
            .await?
            .into_iter()
            .map(|t| (t.conversation_id.clone(), TicketView::from(t)))
            .collect();
        Ok(conversations
            .into_iter()
            .map(|c| {
                let ticket = current.remove(&c.id);
                ConversationView::new(c, ticket)
            })
            .collect())
    }

    /// One conversation with all its tickets and messages.
    pub async fn get_conversation(&self, id: &str) -> Result<ConversationDetail, HubError> {
        let conversation = self.inner.db.get_conversation(id).await?;
        let tickets: Vec<TicketView> = self
            .inner
            .db
            .conversation_tickets(id)
            .await?
            .into_iter()
            .map(TicketView::from)
            .collect();
        let mut messages: Vec<MessageView> = self
            .inner
            .db
            .conversation_messages(id)
            .await?
            .into_iter()
            .map(MessageView::from)
            .collect();
        let (ownership, deliveries) =
            super::care::conversation_details(self, id, &mut messages).await?;
        let current = tickets.iter().find(|t| t.is_current).cloned();
        Ok(ConversationDetail {
            conversation: ConversationView::new(conversation, current),
            tickets,
            messages,
            ownership,
            deliveries,
        })
    }

    // ----- dead letters ----------------------------------------------------------------------

    pub async fn list_dead_letters(&self) -> Result<Vec<DeadLetterView>, HubError> {
        Ok(self
            .inner
            .db
            .list_dead_letters()
            .await?
            .into_iter()
            .map(DeadLetterView::from)
            .collect())
    }

    /// Puts a dead letter back in the queue with its attempts reset.
    pub async fn retry_dead_letter(&self, id: i64) -> Result<(), HubError> {
        self.inner.db.retry_dead_letter(id, now_ms()).await?;
        self.inner.outbox.notify_one();
        Ok(())
    }

    pub async fn discard_dead_letter(&self, id: i64) -> Result<(), HubError> {
        Ok(self.inner.db.discard_dead_letter(id).await?)
    }

    // ----- quarantined events ----------------------------------------------------------------

    /// Inbound events set aside after failing every try.
    pub async fn list_quarantined_events(&self) -> Result<Vec<QuarantinedEventView>, HubError> {
        Ok(self
            .inner
            .db
            .list_quarantined_events()
            .await?
            .into_iter()
            .map(QuarantinedEventView::from)
            .collect())
    }

    /// Hands a quarantined event back to the processor (once its cause is fixed).
    pub async fn retry_quarantined_event(&self, id: i64) -> Result<(), HubError> {
        self.inner.db.retry_quarantined_event(id).await?;
        self.inner.inbound.notify_one();
        Ok(())
    }

    // ----- health and metrics ----------------------------------------------------------------

    pub async fn health(&self) -> Health {
        let database = self.inner.db.ping().await.is_ok();
        let stats = self.inner.db.outbox_stats().await.unwrap_or_default();
        let inbound = self
            .inner
            .db
            .count_pending_inbound_events()
            .await
            .unwrap_or_default();
        let quarantined = self
            .inner
            .db
            .count_quarantined_events()
            .await
            .unwrap_or_default();
        Health {
            ok: database,
            database,
            inbound_pending: inbound.max(0) as u64,
            inbound_quarantined: quarantined.max(0) as u64,
            outbox_pending: stats.pending.max(0) as u64,
            dead_letters: stats.dead.max(0) as u64,
        }
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.render()
    }
}

/// How secret settings are shown back.
pub const SECRET_MASK: &str = "********";

fn check_slug(what: &str, value: &str) -> Result<(), HubError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(HubError::Invalid(format!(
            "{what} `{value}` must be 1-64 characters of a-z, 0-9 and `-`"
        )))
    }
}

fn link_view(row: LinkRow) -> Result<LinkView, HubError> {
    let settings: LinkSettings = serde_json::from_str(&row.settings_json)
        .map_err(|e| anyhow::anyhow!("link `{}` has corrupt settings: {e}", row.id))?;
    Ok(LinkView {
        id: row.id,
        social_installation: row.social_installation_id,
        helpdesk_installation: row.helpdesk_installation_id,
        settings,
        created_at: iso(row.created_at),
    })
}
