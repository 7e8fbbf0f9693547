//! Admission of plugin calls to the pool of instances.
//!
//! Every call runs in an instance of the engine's fixed pool ([`EngineLimits::max_instances`]),
//! and a call that finds the pool full would fail. So before it instantiates, a call takes:
//! 1. a permit of its installation, so one busy installation (a helpdesk whose API hangs, a
//!    burst of webhooks) cannot hold more than [`AdmissionConfig::per_installation`] instances;
//! 2. a permit of the pool: webhook calls take only from the shared part, while background calls
//!    (outbox deliveries, scheduled polls, loads) may also take from the part reserved for them,
//!    so a flood of webhooks never stops delivery.
//!
//! A call without a free permit waits in a FIFO queue (tokio's semaphores are fair) for at most
//! [`AdmissionConfig::queue_timeout`], then fails with [`CallError::Busy`], which says which
//! limit it was. Both permits are held until the call's store (and so its instance) is dropped.
//!
//! Which kind a call is comes from the task it runs in: the HTTP server runs webhook handlers
//! inside [`as_webhook`]; everything else counts as background work.
//!
//! [`EngineLimits::max_instances`]: super::engine::EngineLimits::max_instances

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::CallError;

/// Limits of call admission; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Calls one installation may run at once.
    pub per_installation: u32,
    /// Instances of the pool that webhook calls cannot take, kept for the outbox and the
    /// scheduler.
    pub reserved_for_background: u32,
    /// How long a call waits for a free instance before it fails.
    pub queue_timeout: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            per_installation: 32,
            reserved_for_background: 32,
            queue_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a call was refused without running: it waited for a free instance too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Busy {
    #[error(
        "installation `{installation}` already runs its limit of {limit} plugin calls at once \
         (its service may be slow); this call waited {} s in its queue and was refused",
        .waited.as_secs_f32()
    )]
    Installation {
        installation: String,
        limit: u32,
        waited: Duration,
    },
    #[error(
        "all {shared} plugin instances that webhooks may use are busy ({reserved} more are kept \
         for the outbox and the scheduler); this call waited {} s in the queue and was refused",
        .waited.as_secs_f32()
    )]
    WebhookPool {
        shared: u32,
        reserved: u32,
        waited: Duration,
    },
    #[error(
        "all {total} plugin instances are busy; this call waited {} s in the queue and was refused",
        .waited.as_secs_f32()
    )]
    Pool { total: u32, waited: Duration },
}

impl Busy {
    /// How long the queue made the call wait: a fair hint for a sender's `Retry-After`.
    pub fn waited(&self) -> Duration {
        match self {
            Busy::Installation { waited, .. }
            | Busy::WebhookPool { waited, .. }
            | Busy::Pool { waited, .. } => *waited,
        }
    }
}

tokio::task_local! {
    static WEBHOOK: ();
}

/// Runs `future` with its plugin calls admitted as webhook calls, which cannot take the
/// instances reserved for background work.
pub async fn as_webhook<F: Future>(future: F) -> F::Output {
    WEBHOOK.scope((), future).await
}

fn is_webhook() -> bool {
    WEBHOOK.try_with(|_| ()).is_ok()
}

/// The permits a running call holds; dropping it lets the next queued call in.
pub(crate) struct Admitted {
    _installation: OwnedSemaphorePermit,
    _pool: OwnedSemaphorePermit,
}

/// The pool's permits, and each installation's.
pub(crate) struct Admission {
    config: AdmissionConfig,
    total: u32,
    /// `total - reserved` permits: what webhook calls may use.
    shared: Arc<Semaphore>,
    /// Permits only background calls may use.
    reserved: Arc<Semaphore>,
    /// One semaphore per installation id, kept for the life of the process (installations
    /// are few, and a binding made again later must share its predecessor's permits).
    installations: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Admission {
    pub(crate) fn new(total_instances: u32, config: AdmissionConfig) -> Self {
        let total = total_instances.max(1);
        // At least one instance stays available to webhooks.
        let reserved = config.reserved_for_background.min(total - 1);
        let config = AdmissionConfig {
            per_installation: config.per_installation.max(1),
            reserved_for_background: reserved,
            ..config
        };
        Self {
            total,
            shared: Arc::new(Semaphore::new((total - reserved) as usize)),
            reserved: Arc::new(Semaphore::new(reserved as usize)),
            installations: Mutex::default(),
            config,
        }
    }

    /// The semaphore of one installation.
    pub(crate) fn installation(&self, id: &str) -> Arc<Semaphore> {
        let mut map = self
            .installations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.entry(id.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.per_installation as usize)))
            .clone()
    }

    /// Waits for a free instance for a call of `installation_id`, within the queue timeout.
    pub(crate) async fn admit(
        &self,
        installation_id: &str,
        installation: &Arc<Semaphore>,
    ) -> Result<Admitted, CallError> {
        let webhook = is_webhook();
        let waited = self.config.queue_timeout;
        let Ok(own) = tokio::time::timeout(waited, installation.clone().acquire_owned()).await
        else {
            return Err(CallError::Busy(Busy::Installation {
                installation: installation_id.to_string(),
                limit: self.config.per_installation,
                waited,
            }));
        };
        // The semaphores are never closed, so acquiring only ends with a permit.
        let own = own.map_err(|_| closed())?;
        let pool = async {
            if webhook {
                self.shared.clone().acquire_owned().await
            } else {
                tokio::select! {
                    permit = self.shared.clone().acquire_owned() => permit,
                    permit = self.reserved.clone().acquire_owned() => permit,
                }
            }
        };
        // The installation's turn came, so the pool's wait gets the whole timeout again: the
        // two queues are different causes, reported separately.
        match tokio::time::timeout(waited, pool).await {
            Ok(Ok(pool)) => Ok(Admitted {
                _installation: own,
                _pool: pool,
            }),
            Ok(Err(_)) => Err(closed()),
            Err(_) if webhook => Err(CallError::Busy(Busy::WebhookPool {
                shared: self.total - self.config.reserved_for_background,
                reserved: self.config.reserved_for_background,
                waited,
            })),
            Err(_) => Err(CallError::Busy(Busy::Pool {
                total: self.total,
                waited,
            })),
        }
    }
}

fn closed() -> CallError {
    CallError::Trap("the plugin instance pool was closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(per_installation: u32, reserved: u32) -> AdmissionConfig {
        AdmissionConfig {
            per_installation,
            reserved_for_background: reserved,
            queue_timeout: Duration::from_millis(50),
        }
    }

    #[tokio::test]
    async fn an_installation_at_its_limit_waits_then_is_refused_with_its_name() {
        let admission = Admission::new(8, config(2, 2));
        let busy = admission.installation("busy");
        let _a = admission.admit("busy", &busy).await.expect("first");
        let _b = admission.admit("busy", &busy).await.expect("second");
        let refused = admission.admit("busy", &busy).await.err().expect("refused");
        let message = refused.to_string();
        assert!(matches!(
            refused,
            CallError::Busy(Busy::Installation { limit: 2, .. })
        ));
        assert!(
            message.contains("`busy`") && message.contains("limit of 2"),
            "{message}"
        );
        // Another installation is not affected.
        let other = admission.installation("other");
        admission
            .admit("other", &other)
            .await
            .expect("other installation");
    }

    #[tokio::test]
    async fn webhooks_cannot_take_the_reserved_instances() {
        let admission = Admission::new(4, config(10, 2));
        let hooks = admission.installation("hooks");
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(
                as_webhook(admission.admit("hooks", &hooks))
                    .await
                    .expect("shared"),
            );
        }
        let refused = as_webhook(admission.admit("hooks", &hooks))
            .await
            .err()
            .expect("full");
        assert!(
            matches!(
                refused,
                CallError::Busy(Busy::WebhookPool {
                    shared: 2,
                    reserved: 2,
                    ..
                })
            ),
            "{refused}"
        );
        // Background work still gets the two reserved instances, and then waits too.
        let worker = admission.installation("worker");
        held.push(
            admission
                .admit("worker", &worker)
                .await
                .expect("reserved 1"),
        );
        held.push(
            admission
                .admit("worker", &worker)
                .await
                .expect("reserved 2"),
        );
        let refused = admission
            .admit("worker", &worker)
            .await
            .err()
            .expect("all busy");
        assert!(
            matches!(refused, CallError::Busy(Busy::Pool { total: 4, .. })),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_queued_call_runs_when_an_instance_is_freed() {
        let admission = Arc::new(Admission::new(
            2,
            AdmissionConfig {
                queue_timeout: Duration::from_secs(30),
                ..config(1, 0)
            },
        ));
        let one = admission.installation("one");
        let first = admission.admit("one", &one).await.expect("first");
        let queued = tokio::spawn({
            let (admission, one) = (admission.clone(), one.clone());
            async move { admission.admit("one", &one).await.map(drop) }
        });
        tokio::task::yield_now().await;
        assert!(!queued.is_finished());
        drop(first);
        queued
            .await
            .expect("join")
            .expect("admitted after the first call ended");
    }
}
