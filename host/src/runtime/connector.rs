//! Typed calls into a plugin bound to an installation: the one interface the rest of the host
//! uses to talk to connectors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::Store;

use super::bindings::helpdesk::exports::switchboard::connector::helpdesk_connector as hd;
use super::bindings::helpdesk::Helpdesk;
use super::bindings::social::exports::switchboard::connector::social_connector as so;
use super::bindings::social::Social;
use super::bindings::types::{ConnectorError, Manifest, WebhookRequest};
use super::bounds::{self, Bounded, Redactor};
use super::contract::adapter::Adapt;
use super::contract::v0_2;
use super::log::LogLine;
use super::state::PluginState;
use super::{CallError, Prepared, WorldPre};

pub use hd::{
    NewComment, NewTicket, PollPage as HelpdeskPollPage, RequesterRequest, TicketUpdate,
    WebhookOutcome as HelpdeskWebhookOutcome,
};
pub use so::{OutboundMessage, PollPage as SocialPollPage, WebhookOutcome as SocialWebhookOutcome};

/// Extra wall-clock time past the CPU deadline before a call is abandoned. Epoch interruption
/// cannot stop a plugin that is waiting in a host call; this timeout does.
const WALL_CLOCK_GRACE: Duration = Duration::from_millis(500);

/// A human-readable line for a plugin's typed error.
pub(crate) fn describe_error(error: &ConnectorError) -> String {
    match error {
        ConnectorError::Unauthorized(m) => format!("unauthorized: {m}"),
        ConnectorError::RateLimited(r) => format!(
            "rate limited, retry after {} ms: {}",
            r.retry_after_ms, r.message
        ),
        ConnectorError::NotFound(m) => format!("not found: {m}"),
        ConnectorError::InvalidInput(f) => format!("invalid input in `{}`: {}", f.field, f.message),
        ConnectorError::Policy(p) => format!("policy `{}`: {}", p.code, p.message),
        ConnectorError::Transient(m) => format!("transient failure: {m}"),
        ConnectorError::Fatal(m) => format!("fatal: {m}"),
    }
}

/// Runs `$body` (an async block using `$store`) in a fresh store under the call's limits and
/// turns every way it can end into a `CallError`.
macro_rules! in_fresh_store {
    ($prepared:expr, $logs:expr, |$store:ident| $body:expr) => {{
        let prepared: &Prepared = $prepared;
        let logs: Option<&Mutex<Vec<LogLine>>> = $logs;
        // Waits for a free instance first (see `admission`); the permit outlives the store.
        match prepared.admit().await {
            Err(busy) => Err(busy),
            Ok(_admitted) => {
                let mut store = prepared.new_store(logs.is_some());
                // Bounds what the call's result, and each import call (`log`, `http.send`),
                // may copy out of the plugin; wasmtime's default is 128 MiB.
                store.set_hostcall_fuel(bounds::MAX_CALL_COPY_BYTES);
                let outcome = {
                    let $store = &mut store;
                    tokio::time::timeout(prepared.limits.deadline + WALL_CLOCK_GRACE, async move {
                        $body
                    })
                    .await
                };
                prepared.finish(outcome, &mut store, logs)
            }
        }
    }};
}

impl Prepared {
    fn finish<R>(
        &self,
        outcome: Result<wasmtime::Result<R>, tokio::time::error::Elapsed>,
        store: &mut Store<PluginState>,
        logs: Option<&Mutex<Vec<LogLine>>>,
    ) -> Result<R, CallError> {
        if let Some(logs) = logs {
            let lines = store.data_mut().log.take_captured();
            if let Ok(mut logs) = logs.lock() {
                logs.extend(lines);
            }
        }
        let billable = std::mem::take(&mut store.data_mut().billable.reported);
        if let Some(meter) = &self.meter {
            // Counted whatever the call's outcome: the network billed the calls it made.
            for (kind, count) in billable {
                meter.billable(&self.context.installation_id, &kind, count);
            }
        }
        let state = store.data();
        match outcome {
            Err(_) => Err(CallError::Deadline(self.limits.deadline)),
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) if state.timed_out => Err(CallError::Deadline(self.limits.deadline)),
            Ok(Err(_)) if state.limiter.exceeded => {
                Err(CallError::MemoryCap(self.limits.memory_bytes))
            }
            Ok(Err(error)) => Err(classify_failure(&error)),
        }
    }

    /// The plugin's typed error, redacted and cut, or its result if it is within bounds.
    fn checked<T: Bounded>(
        &self,
        result: Result<Result<T, ConnectorError>, CallError>,
    ) -> Result<T, CallError> {
        match result? {
            Ok(value) => {
                value.check_bounds().map_err(CallError::OutputLimit)?;
                Ok(value)
            }
            Err(error) => Err(CallError::Connector(bounds::sanitize_error(
                error,
                &Redactor::new(&self.secrets),
            ))),
        }
    }
}

/// Tells a host limit (the instance pool, the copy budget) from the plugin's own trap, so that
/// the error says which it was rather than blaming the plugin or saying nothing.
fn classify_failure(error: &wasmtime::Error) -> CallError {
    // The full error holds the wasm backtrace, useful in debug logs only.
    tracing::debug!(error = %bounds::truncate(&format!("{error:?}"), 16 << 10), "plugin call failed");
    if let Some(pool) = error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return CallError::Capacity(pool.to_string());
    }
    for cause in error.chain() {
        if let Some(pool) = cause.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
            return CallError::Capacity(pool.to_string());
        }
        // wasmtime's error type for this is private; its message is stable.
        if cause
            .to_string()
            .contains("fuel allocated for hostcalls has been exhausted")
        {
            return CallError::CopyLimit(bounds::MAX_CALL_COPY_BYTES);
        }
    }
    CallError::Trap(trap_message(error))
}

fn trap_message(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return trap.to_string();
    }
    // A bare context line such as "error while executing at wasm backtrace:" says nothing:
    // name the first cause that says something, then the innermost one.
    let causes: Vec<String> = error
        .chain()
        .filter_map(|cause| {
            let line = cause.to_string();
            let line = line.lines().next().unwrap_or("").trim().to_string();
            (!line.is_empty() && !line.starts_with("error while executing")).then_some(line)
        })
        .collect();
    let message = match (causes.first(), causes.last()) {
        (Some(first), Some(last)) if first != last => format!("{first}: {last}"),
        (Some(first), _) => first.clone(),
        (None, _) => "the call failed without a cause (wasmtime gave no message)".to_string(),
    };
    bounds::truncate(&message, bounds::MAX_ERROR_BYTES)
}

pub(crate) async fn describe(prepared: &Prepared) -> Result<Manifest, CallError> {
    let manifest = describe_unchecked(prepared).await?;
    manifest.check_bounds().map_err(CallError::OutputLimit)?;
    Ok(manifest)
}

async fn describe_unchecked(prepared: &Prepared) -> Result<Manifest, CallError> {
    match &prepared.plugin.inner.pre {
        WorldPre::Social(pre) => in_fresh_store!(prepared, None, |store| {
            let b: Social = pre.instantiate_async(&mut *store).await?;
            b.switchboard_connector_social_connector()
                .call_describe(&mut *store)
                .await
        }),
        WorldPre::Helpdesk(pre) => in_fresh_store!(prepared, None, |store| {
            let b: Helpdesk = pre.instantiate_async(&mut *store).await?;
            b.switchboard_connector_helpdesk_connector()
                .call_describe(&mut *store)
                .await
        }),
        WorldPre::SocialV0_2(pre) => in_fresh_store!(prepared, None, |store| {
            let b: v0_2::social::Social = pre.instantiate_async(&mut *store).await?;
            b.switchboard_connector_social_connector()
                .call_describe(&mut *store)
                .await
        })
        .map(Adapt::adapt),
        WorldPre::HelpdeskV0_2(pre) => in_fresh_store!(prepared, None, |store| {
            let b: v0_2::helpdesk::Helpdesk = pre.instantiate_async(&mut *store).await?;
            b.switchboard_connector_helpdesk_connector()
                .call_describe(&mut *store)
                .await
        })
        .map(Adapt::adapt),
    }
}

/// Log lines kept across calls when capture is on (for `plugin exec`).
type CapturedLogs = Option<Arc<Mutex<Vec<LogLine>>>>;

fn take_captured(logs: &CapturedLogs) -> Vec<LogLine> {
    logs.as_ref()
        .and_then(|l| l.lock().ok().map(|mut l| std::mem::take(&mut *l)))
        .unwrap_or_default()
}

/// A social plugin bound to one installation.
pub struct SocialConnector {
    prepared: Arc<Prepared>,
    pre: wasmtime::component::InstancePre<PluginState>,
    logs: CapturedLogs,
}

/// A helpdesk plugin bound to one installation.
pub struct HelpdeskConnector {
    prepared: Arc<Prepared>,
    logs: CapturedLogs,
}

/// One export call on `pre` (an instance-pre of world `$world`), unchecked.
macro_rules! raw_call {
    ($self:ident, $pre:ident, $world:ty, $exports:ident, |$b:ident, $store:ident| $body:expr) => {{
        let logs = $self.logs.as_deref();
        in_fresh_store!(&$self.prepared, logs, |$store| {
            let instance: $world = $pre.instantiate_async(&mut *$store).await?;
            let $b = instance.$exports();
            $body.await
        })
    }};
}

/// One call of a world's export: `$current` on a 0.3 component; on a 0.2 one `$v0_2`, which
/// passes its arguments through [`down`], and whose result is adapted to 0.3 here. Then the
/// result is checked against the host's bounds.
macro_rules! versioned_call {
    ($self:ident, $current_variant:ident, $current_world:ty, $v0_2_variant:ident, $v0_2_world:ty,
     $exports:ident, |$b:ident, $store:ident| $current:expr, $v0_2:expr) => {{
        let raw = match &$self.prepared.plugin.inner.pre {
            WorldPre::$current_variant(pre) => {
                raw_call!($self, pre, $current_world, $exports, |$b, $store| $current)
            }
            WorldPre::$v0_2_variant(pre) => {
                raw_call!($self, pre, $v0_2_world, $exports, |$b, $store| $v0_2).map(Adapt::adapt)
            }
            _ => unreachable!("checked in new"),
        };
        $self.prepared.checked(raw)
    }};
}

macro_rules! social_call {
    ($self:ident, |$b:ident, $store:ident| $current:expr, $v0_2:expr) => {
        versioned_call!(
            $self,
            Social,
            Social,
            SocialV0_2,
            v0_2::social::Social,
            switchboard_connector_social_connector,
            |$b, $store| $current,
            $v0_2
        )
    };
}

macro_rules! helpdesk_call {
    ($self:ident, |$b:ident, $store:ident| $current:expr, $v0_2:expr) => {
        versioned_call!(
            $self,
            Helpdesk,
            Helpdesk,
            HelpdeskV0_2,
            v0_2::helpdesk::Helpdesk,
            switchboard_connector_helpdesk_connector,
            |$b, $store| $current,
            $v0_2
        )
    };
}

/// A 0.3 argument in its 0.2 form.
fn down<A: Clone + Adapt<B>, B>(value: &A) -> B {
    value.clone().adapt()
}

impl SocialConnector {
    pub(crate) fn new(prepared: Prepared) -> anyhow::Result<Self> {
        let pre = match &prepared.plugin.inner.pre {
            WorldPre::Social(pre) => pre.instance_pre().clone(),
            WorldPre::SocialV0_2(pre) => pre.instance_pre().clone(),
            WorldPre::Helpdesk(_) | WorldPre::HelpdeskV0_2(_) => anyhow::bail!(
                "plugin `{}` is a helpdesk plugin, not a social one",
                prepared.plugin.manifest().id
            ),
        };
        Ok(Self {
            prepared: Arc::new(prepared),
            pre,
            logs: None,
        })
    }

    /// Keep the plugin's log lines of every call, for [`Self::take_logs`].
    pub fn capture_logs(mut self) -> Self {
        self.logs = Some(Arc::default());
        self
    }

    pub fn take_logs(&self) -> Vec<LogLine> {
        take_captured(&self.logs)
    }

    pub async fn handle_webhook(
        &self,
        request: WebhookRequest,
    ) -> Result<SocialWebhookOutcome, CallError> {
        let ctx = &self.prepared.context;
        social_call!(
            self,
            |b, store| b.call_handle_webhook(&mut *store, ctx, &request),
            b.call_handle_webhook(&mut *store, &down(ctx), &down(&request))
        )
    }

    pub async fn poll(
        &self,
        stream: &str,
        cursor: Option<&str>,
    ) -> Result<SocialPollPage, CallError> {
        let ctx = &self.prepared.context;
        social_call!(
            self,
            |b, store| b.call_poll(&mut *store, ctx, stream, cursor),
            b.call_poll(&mut *store, &down(ctx), stream, cursor)
        )
    }

    pub async fn send(&self, message: &OutboundMessage) -> Result<so::SentMessage, CallError> {
        let ctx = &self.prepared.context;
        social_call!(
            self,
            |b, store| b.call_send(&mut *store, ctx, message),
            b.call_send(&mut *store, &down(ctx), &down(message))
        )
    }

    /// Calls `poll(stream, cursor)` `calls` times on ONE instance and returns the time taken.
    /// The host never reuses instances across calls; this exists to measure the bare cost of
    /// crossing into the plugin, separately from instantiation.
    #[doc(hidden)]
    pub async fn bench_warm_polls(
        &self,
        stream: &str,
        cursor: Option<&str>,
        calls: u32,
    ) -> Result<Duration, CallError> {
        let pre = &self.pre;
        let ctx = &self.prepared.context;
        if self.prepared.plugin.contract() == super::ContractVersion::V0_2 {
            let ctx: v0_2::types::CallContext = down(ctx);
            return in_fresh_store!(&self.prepared, None, |store| {
                let raw = pre.instantiate_async(&mut *store).await?;
                let instance = v0_2::social::Social::new(&mut *store, &raw)?;
                let exports = instance.switchboard_connector_social_connector();
                let started = std::time::Instant::now();
                for _ in 0..calls {
                    // Results are dropped: only the crossing is measured.
                    let _ = exports.call_poll(&mut *store, &ctx, stream, cursor).await?;
                }
                Ok(started.elapsed())
            });
        }
        in_fresh_store!(&self.prepared, None, |store| {
            let raw = pre.instantiate_async(&mut *store).await?;
            let instance = Social::new(&mut *store, &raw)?;
            let exports = instance.switchboard_connector_social_connector();
            let started = std::time::Instant::now();
            for _ in 0..calls {
                // Results are dropped: only the crossing is measured.
                let _ = exports.call_poll(&mut *store, ctx, stream, cursor).await?;
            }
            Ok(started.elapsed())
        })
    }

    /// Instantiates the plugin without calling it, for benchmarks of instantiation cost.
    pub async fn instantiate_only(&self) -> Result<(), CallError> {
        let pre = &self.pre;
        in_fresh_store!(&self.prepared, None, |store| {
            pre.instantiate_async(&mut *store).await?;
            Ok(())
        })
    }
}

impl HelpdeskConnector {
    pub(crate) fn new(prepared: Prepared) -> anyhow::Result<Self> {
        if !matches!(
            prepared.plugin.inner.pre,
            WorldPre::Helpdesk(_) | WorldPre::HelpdeskV0_2(_)
        ) {
            anyhow::bail!(
                "plugin `{}` is a social plugin, not a helpdesk one",
                prepared.plugin.manifest().id
            );
        }
        Ok(Self {
            prepared: Arc::new(prepared),
            logs: None,
        })
    }

    pub fn capture_logs(mut self) -> Self {
        self.logs = Some(Arc::default());
        self
    }

    pub fn take_logs(&self) -> Vec<LogLine> {
        take_captured(&self.logs)
    }

    pub async fn find_or_create_requester(
        &self,
        request: &RequesterRequest,
    ) -> Result<hd::Requester, CallError> {
        let ctx = &self.prepared.context;
        helpdesk_call!(
            self,
            |b, store| b.call_find_or_create_requester(&mut *store, ctx, request),
            b.call_find_or_create_requester(&mut *store, &down(ctx), &down(request))
        )
    }

    pub async fn create_ticket(&self, ticket: &NewTicket) -> Result<hd::TicketRef, CallError> {
        let ctx = &self.prepared.context;
        helpdesk_call!(
            self,
            |b, store| b.call_create_ticket(&mut *store, ctx, ticket),
            b.call_create_ticket(&mut *store, &down(ctx), &down(ticket))
        )
    }

    pub async fn add_comment(&self, comment: &NewComment) -> Result<hd::CommentRef, CallError> {
        let ctx = &self.prepared.context;
        helpdesk_call!(
            self,
            |b, store| b.call_add_comment(&mut *store, ctx, comment),
            b.call_add_comment(&mut *store, &down(ctx), &down(comment))
        )
    }

    pub async fn update_ticket(&self, update: &TicketUpdate) -> Result<hd::TicketState, CallError> {
        let ctx = &self.prepared.context;
        helpdesk_call!(
            self,
            |b, store| b.call_update_ticket(&mut *store, ctx, update),
            b.call_update_ticket(&mut *store, &down(ctx), &down(update))
        )
    }

    pub async fn get_ticket(&self, ticket_id: &str) -> Result<hd::TicketState, CallError> {
        let ctx = &self.prepared.context;
        helpdesk_call!(
            self,
            |b, store| b.call_get_ticket(&mut *store, ctx, ticket_id),
            b.call_get_ticket(&mut *store, &down(ctx), ticket_id)
        )
    }

    pub async fn poll_changes(
        &self,
        stream: &str,
        cursor: Option<&str>,
    ) -> Result<HelpdeskPollPage, CallError> {
        let ctx = &self.prepared.context;
        helpdesk_call!(
            self,
            |b, store| b.call_poll_changes(&mut *store, ctx, stream, cursor),
            b.call_poll_changes(&mut *store, &down(ctx), stream, cursor)
        )
    }

    pub async fn handle_webhook(
        &self,
        request: WebhookRequest,
    ) -> Result<HelpdeskWebhookOutcome, CallError> {
        let ctx = &self.prepared.context;
        helpdesk_call!(
            self,
            |b, store| b.call_handle_webhook(&mut *store, ctx, &request),
            b.call_handle_webhook(&mut *store, &down(ctx), &down(&request))
        )
    }
}
