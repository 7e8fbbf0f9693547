//! Webhook delivery: the simulator POSTs queued updates to the bot's URL.
//!
//! Like Telegram, it sends the next update of a chat only after the previous one was
//! answered with 2xx, works on up to `max_connections` chats at once, and retries failures
//! (non-2xx, refused connections, timeouts) with growing delays. One worker task serves one
//! webhook generation: `setWebhook`/`deleteWebhook` bump the generation and the old worker
//! exits, aborting its in-flight requests.

use std::collections::HashSet;
use std::sync::{Arc, Weak};

use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::state::Webhook;
use super::{Inner, Simulator};

/// The header carrying `setWebhook`'s `secret_token`.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

/// Starts delivering to `hook` for webhook `generation`.
pub fn spawn_worker(sim: &Simulator, generation: u64, hook: Webhook) {
    let worker = Worker {
        inner: Arc::downgrade(&sim.inner),
        wake: sim.inner.webhook_wake.clone(),
        http: sim.inner.http.clone(),
        generation,
        hook: Arc::new(hook),
    };
    tokio::spawn(worker.run());
}

struct Worker {
    /// Weak, so a dropped simulator takes its worker with it.
    inner: Weak<Inner>,
    wake: Arc<Notify>,
    http: reqwest::Client,
    generation: u64,
    hook: Arc<Webhook>,
}

/// The result of one delivery attempt: the update and the failure, if any.
type Attempt = (i64, Result<(), String>);

impl Worker {
    async fn run(self) {
        let mut in_flight: JoinSet<Attempt> = JoinSet::new();
        loop {
            let mut woken = std::pin::pin!(self.wake.notified());
            woken.as_mut().enable();
            let Some(next_retry) = self.dispatch(&mut in_flight) else {
                return;
            };
            tokio::select! {
                _ = woken => {}
                Some(done) = in_flight.join_next() => {
                    if let Ok(attempt) = done {
                        self.record(attempt);
                    }
                }
                _ = sleep_until(next_retry) => {}
            }
        }
    }

    /// Starts a delivery for the head update of every idle chat, within `max_connections`.
    /// Returns when the next retry is due, or `None` when this worker should stop.
    fn dispatch(&self, in_flight: &mut JoinSet<Attempt>) -> Option<Option<Instant>> {
        let inner = self.inner.upgrade()?;
        let mut state = inner.state();
        if state.webhook_generation != self.generation {
            return None;
        }
        state.prune(inner.base.clock.now_ms(), inner.config.update_retention);
        let now = Instant::now();
        let mut next_retry: Option<Instant> = None;
        let mut busy_chats = HashSet::new();
        let mut connections = in_flight.len();
        for update in state.updates.iter_mut() {
            // Only the oldest pending update of each chat may be sent.
            if !busy_chats.insert(update.chat_id) || update.in_flight {
                continue;
            }
            if let Some(at) = update.retry_at.filter(|&at| at > now) {
                next_retry = Some(next_retry.map_or(at, |n| n.min(at)));
                continue;
            }
            if connections >= self.hook.max_connections {
                break;
            }
            connections += 1;
            update.in_flight = true;
            let request = deliver(
                self.http.clone(),
                self.hook.clone(),
                inner.config.webhook_timeout,
                update.update_id,
                update.body.clone(),
            );
            in_flight.spawn(request);
        }
        Some(next_retry)
    }

    /// Drops an acknowledged update, or schedules the retry of a failed one.
    fn record(&self, (update_id, outcome): Attempt) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let now_secs = inner.base.clock.now_ms() / 1000;
        let mut state = inner.state();
        if state.webhook_generation != self.generation {
            return;
        }
        let Some(index) = state.updates.iter().position(|u| u.update_id == update_id) else {
            return;
        };
        match outcome {
            Ok(()) => {
                state.updates.remove(index);
            }
            Err(message) => {
                let update = &mut state.updates[index];
                update.in_flight = false;
                update.failed_attempts += 1;
                let doublings = update.failed_attempts.saturating_sub(1).min(16);
                let delay = inner
                    .config
                    .webhook_retry_initial
                    .saturating_mul(1 << doublings);
                update.retry_at = Some(Instant::now() + delay.min(inner.config.webhook_retry_max));
                tracing::debug!(update_id, %message, "telegram webhook delivery failed");
                state.last_webhook_error = Some((now_secs, message));
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One POST of one update, described the way `getWebhookInfo.last_error_message` does.
async fn deliver(
    http: reqwest::Client,
    hook: Arc<Webhook>,
    timeout: std::time::Duration,
    update_id: i64,
    body: Value,
) -> Attempt {
    let mut request = http.post(&hook.url).timeout(timeout).json(&body);
    if let Some(secret) = &hook.secret_token {
        request = request.header(SECRET_HEADER, secret);
    }
    let outcome = match request.send().await {
        Ok(response) if response.status().is_success() => Ok(()),
        Ok(response) => Err(format!(
            "Wrong response from the webhook: {}",
            response.status()
        )),
        Err(err) if err.is_timeout() => Err("Read timeout expired".to_string()),
        Err(err) if err.is_connect() => Err("Connection refused".to_string()),
        Err(err) => Err(format!("Failed to deliver the update: {err}")),
    };
    (update_id, outcome)
}
