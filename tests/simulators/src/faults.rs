//! Fault injection and rate limiting shared by the simulators.
//!
//! Each simulator renders a fault in its own vendor's error shape; this module only decides
//! *whether* a request is faulted or limited. Tests drive it through the control API
//! (`/_control/faults`, `/_control/rate-limit`), mounted by [`control_routes`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde::Deserialize;

/// One injected fault, applied to the next matching API request.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this status code (and the vendor's error body for it).
    Status { status: u16 },
    /// Answer 429 with this Retry-After (Telegram: `parameters.retry_after`).
    RateLimited { retry_after_secs: u64 },
    /// Wait this long before handling the request normally.
    Delay { ms: u64 },
}

/// A fault request from the control API: `count` consecutive requests get the fault. `path`,
/// when set, restricts the fault to requests whose path contains it (e.g. `sendMessage`).
#[derive(Debug, Clone, Deserialize)]
pub struct FaultSpec {
    #[serde(flatten)]
    pub fault: Fault,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub path: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug)]
struct Window {
    started: Instant,
    used: u32,
}

/// Fault queue plus a fixed-window request budget.
#[derive(Debug)]
pub struct Faults {
    queue: Mutex<VecDeque<FaultSpec>>,
    /// Requests allowed per window; `None` means unlimited.
    budget: Mutex<Option<(u32, Duration)>>,
    window: Mutex<Window>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            budget: Mutex::new(None),
            window: Mutex::new(Window {
                started: Instant::now(),
                used: 0,
            }),
        }
    }
}

/// The outcome of the budget check for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Unlimited,
    /// Allowed; `limit` and `remaining` are reported in rate-limit headers.
    Allowed {
        limit: u32,
        remaining: u32,
        resets_in_secs: u64,
    },
    /// Over budget: answer 429 with this Retry-After.
    Exceeded {
        limit: u32,
        retry_after_secs: u64,
    },
}

impl Faults {
    pub fn inject(&self, spec: FaultSpec) {
        self.queue
            .lock()
            .expect("fault queue poisoned")
            .push_back(spec);
    }

    pub fn clear(&self) {
        self.queue.lock().expect("fault queue poisoned").clear();
        *self.budget.lock().expect("budget poisoned") = None;
    }

    /// Sets the budget to `limit` requests per `window`.
    pub fn set_budget(&self, limit: Option<u32>, window: Duration) {
        *self.budget.lock().expect("budget poisoned") = limit.map(|l| (l, window));
        let mut w = self.window.lock().expect("window poisoned");
        w.started = Instant::now();
        w.used = 0;
    }

    /// Takes the next fault that applies to `path`, if any.
    pub fn next_fault(&self, path: &str) -> Option<Fault> {
        let mut queue = self.queue.lock().expect("fault queue poisoned");
        let index = queue
            .iter()
            .position(|spec| spec.path.as_deref().is_none_or(|p| path.contains(p)))?;
        let spec = &mut queue[index];
        let fault = spec.fault.clone();
        spec.count = spec.count.saturating_sub(1);
        if spec.count == 0 {
            queue.remove(index);
        }
        Some(fault)
    }

    /// Counts one request against the budget.
    pub fn check_budget(&self) -> Budget {
        let Some((limit, window)) = *self.budget.lock().expect("budget poisoned") else {
            return Budget::Unlimited;
        };
        let mut w = self.window.lock().expect("window poisoned");
        let now = Instant::now();
        if now.duration_since(w.started) >= window {
            w.started = now;
            w.used = 0;
        }
        let left = window.saturating_sub(now.duration_since(w.started));
        // Round up so a client that waits Retry-After seconds lands in the next window.
        let resets_in_secs = left.as_millis().div_ceil(1000).max(1) as u64;
        if w.used >= limit {
            return Budget::Exceeded {
                limit,
                retry_after_secs: resets_in_secs,
            };
        }
        w.used += 1;
        Budget::Allowed {
            limit,
            remaining: limit - w.used,
            resets_in_secs,
        }
    }
}

#[derive(Debug, Deserialize)]
struct RateLimitSpec {
    /// Requests per window; absent or null removes the limit.
    limit: Option<u32>,
    #[serde(default = "sixty")]
    window_secs: u64,
}

fn sixty() -> u64 {
    60
}

/// `POST /_control/faults` (a [`FaultSpec`]), `DELETE /_control/faults` (clear faults and
/// limits), `POST /_control/rate-limit` (`{"limit": 10, "window_secs": 60}`).
pub fn control_routes<S>(
    faults: impl Fn(&S) -> Arc<Faults> + Clone + Send + Sync + 'static,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let inject = faults.clone();
    let clear = faults.clone();
    let limit = faults;
    Router::new()
        .route(
            "/_control/faults",
            post(
                move |State(s): State<S>, Json(spec): Json<FaultSpec>| async move {
                    inject(&s).inject(spec);
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/_control/faults",
            delete(move |State(s): State<S>| async move {
                clear(&s).clear();
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_control/rate-limit",
            post(
                move |State(s): State<S>, Json(spec): Json<RateLimitSpec>| async move {
                    limit(&s).set_budget(spec.limit, Duration::from_secs(spec.window_secs));
                    StatusCode::NO_CONTENT
                },
            ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_apply_in_order_and_by_path() {
        let f = Faults::default();
        f.inject(FaultSpec {
            fault: Fault::Status { status: 503 },
            count: 2,
            path: None,
        });
        f.inject(FaultSpec {
            fault: Fault::RateLimited {
                retry_after_secs: 3,
            },
            count: 1,
            path: Some("sendMessage".into()),
        });
        assert_eq!(f.next_fault("/getMe"), Some(Fault::Status { status: 503 }));
        assert_eq!(f.next_fault("/getMe"), Some(Fault::Status { status: 503 }));
        assert_eq!(f.next_fault("/getMe"), None);
        assert_eq!(
            f.next_fault("/sendMessage"),
            Some(Fault::RateLimited {
                retry_after_secs: 3
            })
        );
        assert_eq!(f.next_fault("/sendMessage"), None);
    }

    #[test]
    fn budget_is_enforced_per_window() {
        let f = Faults::default();
        assert_eq!(f.check_budget(), Budget::Unlimited);
        f.set_budget(Some(2), Duration::from_secs(60));
        assert!(matches!(
            f.check_budget(),
            Budget::Allowed { remaining: 1, .. }
        ));
        assert!(matches!(
            f.check_budget(),
            Budget::Allowed { remaining: 0, .. }
        ));
        assert!(matches!(
            f.check_budget(),
            Budget::Exceeded {
                limit: 2,
                retry_after_secs: 1..=60
            }
        ));
    }
}
