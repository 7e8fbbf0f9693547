//! The hub's metrics, rendered in the Prometheus text format for `/metrics`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::Hub;

/// How often the gauges read from the database are refreshed.
const GAUGE_REFRESH: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstallationLabel {
    installation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    installation: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    installation: String,
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

type HistogramFamily = Family<CallLabels, Histogram, fn() -> Histogram>;

/// Counters, gauges and histograms of the hub.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    messages_in: Family<InstallationLabel, Counter>,
    messages_out: Family<InstallationLabel, Counter>,
    retries: Family<KindLabels, Counter>,
    dead_letters_total: Family<KindLabels, Counter>,
    outbox_depth: Gauge,
    dead_letters: Gauge,
    inbound_backlog: Gauge,
    job_lag: Family<JobLabel, Gauge<f64, AtomicU64>>,
    plugin_calls: HistogramFamily,
    needs_reauth: Family<InstallationLabel, Gauge>,
    billable_calls: Family<KindLabels, Counter>,
}

fn call_histogram() -> Histogram {
    // 1 ms .. ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let messages_in = Family::<InstallationLabel, Counter>::default();
        let messages_out = Family::<InstallationLabel, Counter>::default();
        let retries = Family::<KindLabels, Counter>::default();
        let dead_letters_total = Family::<KindLabels, Counter>::default();
        let outbox_depth = Gauge::default();
        let dead_letters = Gauge::default();
        let inbound_backlog = Gauge::default();
        let job_lag = Family::<JobLabel, Gauge<f64, AtomicU64>>::default();
        let plugin_calls: HistogramFamily = Family::new_with_constructor(call_histogram);
        registry.register(
            "messages_in",
            "Customer messages taken in, by social installation",
            messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Effects delivered (tickets, comments, sent messages), by target installation",
            messages_out.clone(),
        );
        registry.register(
            "outbox_retries",
            "Outbox deliveries scheduled for another attempt",
            retries.clone(),
        );
        registry.register(
            "outbox_dead_lettered",
            "Outbox rows that became dead letters",
            dead_letters_total.clone(),
        );
        registry.register(
            "outbox_depth",
            "Outbox rows waiting for delivery",
            outbox_depth.clone(),
        );
        registry.register(
            "dead_letters",
            "Dead letters waiting for an admin",
            dead_letters.clone(),
        );
        registry.register(
            "inbound_backlog",
            "Stored inbound events not yet processed",
            inbound_backlog.clone(),
        );
        registry.register(
            "job_lag_seconds",
            "How late the last scheduled run of a job started",
            job_lag.clone(),
        );
        registry.register(
            "plugin_call_seconds",
            "Time of plugin calls, by installation and operation",
            plugin_calls.clone(),
        );
        let needs_reauth = Family::<InstallationLabel, Gauge>::default();
        registry.register(
            "installation_needs_reauth",
            "1 while an installation's OAuth2 grant must be connected again (jobs skipped, deliveries waiting)",
            needs_reauth.clone(),
        );
        let billable_calls = Family::<KindLabels, Counter>::default();
        registry.register(
            "billable_calls",
            "Calls the network bills, as plugins reported them, by installation and kind",
            billable_calls.clone(),
        );
        Self {
            billable_calls,
            needs_reauth,
            registry,
            messages_in,
            messages_out,
            retries,
            dead_letters_total,
            outbox_depth,
            dead_letters,
            inbound_backlog,
            job_lag,
            plugin_calls,
        }
    }

    pub fn message_in(&self, installation: &str, count: u64) {
        self.messages_in
            .get_or_create(&InstallationLabel {
                installation: installation.into(),
            })
            .inc_by(count);
    }

    pub fn message_out(&self, installation: &str) {
        self.messages_out
            .get_or_create(&InstallationLabel {
                installation: installation.into(),
            })
            .inc();
    }

    pub fn retry(&self, installation: &str, kind: &str) {
        self.retries
            .get_or_create(&KindLabels {
                installation: installation.into(),
                kind: kind.into(),
            })
            .inc();
    }

    pub fn dead_lettered(&self, installation: &str, kind: &str) {
        self.dead_letters_total
            .get_or_create(&KindLabels {
                installation: installation.into(),
                kind: kind.into(),
            })
            .inc();
    }

    pub fn billable(&self, installation: &str, kind: &str, count: u64) {
        self.billable_calls
            .get_or_create(&KindLabels {
                installation: installation.into(),
                kind: kind.into(),
            })
            .inc_by(count);
    }

    pub fn plugin_call(&self, installation: &str, operation: &str, took: Duration) {
        self.plugin_calls
            .get_or_create(&CallLabels {
                installation: installation.into(),
                operation: operation.into(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn job_lag(&self, job: &str, lag: Duration) {
        self.job_lag
            .get_or_create(&JobLabel { job: job.into() })
            .set(lag.as_secs_f64());
    }

    pub fn set_needs_reauth(&self, installation: &str, needs: bool) {
        self.needs_reauth
            .get_or_create(&InstallationLabel {
                installation: installation.into(),
            })
            .set(i64::from(needs));
    }

    pub fn set_depths(&self, outbox_pending: i64, dead_letters: i64, inbound_backlog: i64) {
        self.outbox_depth.set(outbox_pending);
        self.dead_letters.set(dead_letters);
        self.inbound_backlog.set(inbound_backlog);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            // Writing into a String cannot fail; keep whatever was written.
            tracing::warn!("encoding metrics failed");
        }
        out
    }
}

/// Refreshes the gauges that come from the database until `shutdown`.
pub(crate) async fn run_gauges(hub: Hub, shutdown: CancellationToken) {
    loop {
        refresh(&hub).await;
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(GAUGE_REFRESH) => {}
        }
    }
}

pub(crate) async fn refresh(hub: &Hub) {
    let db = &hub.inner.db;
    match (
        db.outbox_stats().await,
        db.count_pending_inbound_events().await,
    ) {
        (Ok(stats), Ok(backlog)) => {
            hub.inner
                .metrics
                .set_depths(stats.pending, stats.dead, backlog)
        }
        (Err(error), _) | (_, Err(error)) => {
            tracing::debug!(%error, "metrics: could not read queue depths")
        }
    }
    // OAuth2 grants, also those marked or reconnected by another process.
    match db.oauth_reauth_flags().await {
        Ok(flags) => {
            for (installation, needs) in flags {
                hub.inner.metrics.set_needs_reauth(&installation, needs);
            }
        }
        Err(error) => tracing::debug!(%error, "metrics: could not read OAuth2 grants"),
    }
}
