//! The simulator kit: what every vendor simulator is built from, so each one holds only its
//! vendor's behaviour.
//!
//! | Part | Gives |
//! |---|---|
//! | [`Clock`] | one clock per simulator: real time plus a test-controlled offset, optionally frozen |
//! | [`serve()`] | serving a router on a local port, with dropped connections for [`Fault::Drop`] |
//! | [`faults`] | the fault queue and request budget, admitted by [`Faults::admit`] in the vendor's own words ([`VendorErrors`]) |
//! | [`control`] | the `/_control/*` convention, the routes every simulator has, and the helpdesk agent's routes |
//! | [`dates`], [`url`] | calendar arithmetic, ISO 8601 and HTTP dates, query strings |
//! | [`html`], [`json`](mod@json) | the plain text of an HTML body; string arrays of request bodies |
//! | [`Base`], [`Simulated`] | the shared state a simulator embeds, and the trait the control routes use |
//!
//! # Building the next simulator
//!
//! Meta Graph, X, LINE, Mastodon and Bluesky will each be a module like `telegram` or
//! `zendesk`, built the same way:
//!
//! 1. **State.** A `Simulator` (cheap to clone: `Arc<Inner>`) whose `Inner` holds a [`Base`]
//!    next to the vendor's in-memory store. Read time only from `base.clock` (never
//!    `SystemTime::now`), so tests can move it.
//! 2. **The trait.** `impl Simulated for Simulator`: return the `Base`; override
//!    [`Simulated::control_state`] to show counters at `GET /_control/state`, and
//!    [`Simulated::advance_clock`] if something waits on the clock (Telegram wakes its long
//!    polls).
//! 3. **Vendor errors.** A unit struct implementing [`VendorErrors`]: the vendor's rate-limit
//!    answer (status, headers such as `Retry-After`, and body exactly as the vendor's API
//!    documentation shows them) and its body for an injected status. One
//!    struct per API surface if they answer differently (Salesforce's OAuth and REST do).
//!    When the vendor's error type can say both itself, implement [`Refusals`] on it and use
//!    [`Answers`] instead of a struct.
//! 4. **The gate.** An axum middleware (or the top of the one handler) that, per API request,
//!    calls `base.faults().admit(path, &Vendor).await` and sends the `Err` answer as is, and
//!    counts the request with `check_budget()` where the vendor counts (every call, or only
//!    sends), refusing with [`Budget::refusal`]. Auth and the vendor's other limits come after,
//!    in the vendor's order.
//! 5. **Routes.** `Router::new()` with the vendor's paths behind the gate, merged with
//!    [`control::routes`] (and [`control::helpdesk_routes`] for a helpdesk, or the customer's
//!    side for a social network: post a message, list what the bot sent) and `with_state`.
//! 6. **Public methods.** With a `router(&self) -> Router` of its own, the simulator's
//!    `impl Simulator { crate::kit::simulator_methods!("mastodon"); … }` writes the methods
//!    every simulator offers: `serve(addr)`, `faults()`, `advance_clock(by)`, `freeze_clock()`.
//!    Settings that carry a request budget change through [`Base::update_settings`].
//!    A helpdesk whose data is one locked store with its settings in it (Zendesk, Freshdesk,
//!    Salesforce) gets all of this, its `Inner` and its `impl Simulated` from
//!    `account_simulator!` instead.
//!
//! Then a test file in `tests/` drives the simulator through its Rust API and its control API,
//! and, where the vendor publishes a client, `tests/official_clients.rs` runs it against the
//! simulator.
//!
//! ```
//! use std::sync::Arc;
//! use axum::response::{IntoResponse, Response};
//! use axum::{extract::State, http::StatusCode, routing::get, Router};
//! use switchboard_simulators::kit::{self, Base, Simulated, VendorErrors};
//!
//! /// The vendor's answers when it refuses.
//! struct Toot;
//!
//! impl VendorErrors for Toot {
//!     fn rate_limited(&self, retry_after_secs: u64) -> Response {
//!         let reset = format!("{retry_after_secs}");
//!         (StatusCode::TOO_MANY_REQUESTS, [("x-ratelimit-reset", reset)],
//!          axum::Json(serde_json::json!({"error": "Too many requests"}))).into_response()
//!     }
//!     fn status(&self, status: u16) -> Response {
//!         let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
//!         (code, axum::Json(serde_json::json!({"error": "injected"}))).into_response()
//!     }
//! }
//!
//! #[derive(Clone, Default)]
//! struct Simulator { base: Arc<Base> }
//!
//! impl Simulated for Simulator {
//!     fn base(&self) -> &Base { &self.base }
//! }
//!
//! async fn timeline(State(sim): State<Simulator>, uri: axum::http::Uri) -> Response {
//!     if let Err(refused) = sim.base().faults().admit(uri.path(), &Toot).await {
//!         return refused;
//!     }
//!     axum::Json(serde_json::json!([])).into_response()
//! }
//!
//! impl Simulator {
//!     fn router(&self) -> Router {
//!         Router::new()
//!             .route("/api/v1/timelines/home", get(timeline))
//!             .merge(kit::control::routes())
//!             .with_state(self.clone())
//!     }
//!     async fn serve(self, addr: std::net::SocketAddr) -> anyhow::Result<kit::Served> {
//!         self.base.serve("mastodon", self.router(), addr).await
//!     }
//! }
//! ```

pub mod clock;
pub mod control;
pub mod dates;
pub mod faults;
pub mod html;
pub mod json;
pub mod serve;
pub mod url;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::header::HOST;
use axum::http::HeaderMap;
use axum::Router;
use serde_json::{json, Value};

use control::Patch;

pub use clock::Clock;
pub use control::{ControlError, Helpdesk};
pub use faults::{Answers, Budget, Fault, FaultSpec, Faults, Refusals, VendorErrors};
pub use serve::{serve, Served};

/// The window of a per-minute request budget (Zendesk's and Freshdesk's account limits).
pub const MINUTE: Duration = Duration::from_secs(60);

/// What every simulator holds besides its vendor's data: the clock, the fault layer, and the
/// address it is served at.
#[derive(Debug, Default)]
pub struct Base {
    /// The simulator's only clock.
    pub clock: Clock,
    faults: Arc<Faults>,
    served_at: Mutex<Option<String>>,
}

impl Base {
    /// A base whose budget starts at `limit` requests per `window` (`None`: unlimited).
    pub fn with_budget(limit: Option<u32>, window: Duration) -> Self {
        let base = Self::default();
        base.faults.set_budget(limit, window);
        base
    }

    /// Runs `change` on settings that carry the request budget, and resets the budget to what
    /// `limit_of` reads only when that changed: setting it restarts the window, and a budget
    /// set through `/_control/rate-limit` must survive unrelated changes.
    pub fn update_settings<C>(
        &self,
        settings: &mut C,
        change: impl FnOnce(&mut C),
        limit_of: impl Fn(&C) -> Option<u32>,
        window: Duration,
    ) {
        let before = limit_of(settings);
        change(settings);
        let after = limit_of(settings);
        if before != after {
            self.faults.set_budget(after, window);
        }
    }

    /// The fault queue and request budget.
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    /// Serves `router` on `addr` with [`serve()`] and remembers the URL, for
    /// [`Base::served_at`].
    pub async fn serve(
        &self,
        name: &'static str,
        router: Router,
        addr: SocketAddr,
    ) -> anyhow::Result<Served> {
        let (bound, handle) = serve(name, router, addr).await?;
        *lock(&self.served_at) = Some(format!("http://{bound}"));
        Ok((bound, handle))
    }

    /// `http://{addr}` once [`Base::serve`] bound it.
    pub fn served_at(&self) -> Option<String> {
        lock(&self.served_at).clone()
    }

    /// The origin a client reached the simulator at: `{X-Forwarded-Proto or http}://{Host}`
    /// of the request, else the served address. `None` outside a request before serving.
    pub fn origin(&self, headers: &HeaderMap) -> Option<String> {
        let host = headers.get(HOST).and_then(|v| v.to_str().ok());
        match host {
            Some(host) => {
                let proto = headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("http");
                Some(format!("{proto}://{host}"))
            }
            None => self.served_at(),
        }
    }
}

/// A simulator as the kit's control routes see it.
pub trait Simulated: Clone + Send + Sync + 'static {
    /// The simulator's [`Base`].
    fn base(&self) -> &Base;

    /// What `GET /_control/state` shows besides the clock and the faults: counters a test
    /// checks. A JSON object.
    fn control_state(&self) -> Value {
        json!({})
    }

    /// The runtime settings, for `GET /_control/config`: a JSON object whose keys are what
    /// `POST /_control/config` may change. None by default.
    fn control_config(&self) -> Value {
        json!({})
    }

    /// Applies `POST /_control/config`. The kit has already refused keys that
    /// [`Simulated::control_config`] does not show.
    fn patch_config(&self, patch: &Patch) -> Result<(), ControlError> {
        let _ = patch;
        Ok(())
    }

    /// Moves the clock forward; override to wake whatever waits on it.
    fn advance_clock(&self, by: Duration) {
        self.base().clock.advance(by);
    }
}

/// Writes the public methods every simulator has, inside its `impl Simulator` block: `serve`,
/// `faults`, `advance_clock` (through [`Simulated::advance_clock`], so an override applies)
/// and `freeze_clock`. Needs `impl Simulated for Simulator` and an inherent
/// `router(&self) -> axum::Router`; `$name` ("zendesk") names the simulator in errors and logs.
macro_rules! simulator_methods {
    ($name:literal) => {
        /// Serves [`Self::router`] on `addr` (port 0 picks a free port) with
        /// [`crate::kit::serve()`]. Returns the bound address and the server task; aborting
        /// the task stops the simulator and closes its connections.
        pub async fn serve(self, addr: std::net::SocketAddr) -> anyhow::Result<crate::kit::Served> {
            let router = self.router();
            crate::kit::Simulated::base(&self)
                .serve($name, router, addr)
                .await
        }

        /// The fault queue and request budget (see [`crate::kit::faults`]).
        pub fn faults(&self) -> std::sync::Arc<crate::kit::Faults> {
            crate::kit::Simulated::base(self).faults()
        }

        /// Moves the simulator clock forward: every timestamp, TTL, retention limit and time
        /// window of the simulator follows it.
        pub fn advance_clock(&self, by: std::time::Duration) {
            crate::kit::Simulated::advance_clock(self, by);
        }

        /// Stops the simulator clock, so following changes share one timestamp;
        /// [`Self::advance_clock`] still moves it.
        pub fn freeze_clock(&self) {
            crate::kit::Simulated::base(self).clock.freeze();
        }
    };
}
pub(crate) use simulator_methods;

/// Writes the handle of a simulator whose vendor data is one store behind one lock, with its
/// settings in that store: what the helpdesk simulators (Zendesk, Freshdesk, Salesforce) share.
///
/// It declares `Inner` (`base: Base`, `store: Mutex<Store>` and the `extra` fields, each
/// with its initial value) and `pub struct Simulator { inner: Arc<Inner> }` (cloning shares
/// the account; its `Debug` shows no state), and writes:
/// - the private `start(config, store)`: a [`Base`] whose budget `budget` reads from the
///   settings (per `window`), the store `store(config, &base)` builds, and the extras;
/// - `router()` (the module's `api::router(Simulator) -> Router`: API and control routes),
///   [`simulator_methods!`], `config()` (a copy of the settings), `update_config(change)`
///   (through [`Base::update_settings`], so the request budget resets only when its limit
///   changes), and the private `store()` (the locked store), `now_ms()`, `now_secs()` and,
///   given `public_origin` (a function of the settings), `origin()`: the served address, or
///   that public origin before serving;
/// - `impl Simulated`: the `Base`, `/_control/config` through the module's
///   `api::config_json(&Simulator) -> Value` and `api::apply_config(&Simulator, &Patch)`, and
///   `/_control/state` through an inherent `fn counts(&self) -> Value`.
///
/// Needs, in the invoking module: `Store` holding the settings as `config: Config`, and the
/// `api` functions above.
macro_rules! account_simulator {
    (
        $(#[$doc:meta])*
        name: $name:literal, budget: |$c:ident| $limit:expr, window: $window:expr,
        $(public_origin: $public:path,)?
        extra: { $($(#[$field_doc:meta])* $field:ident: $field_ty:ty = $init:expr),* $(,)? } $(,)?
    ) => {
        pub(crate) struct Inner {
            /// The clock, the fault layer and the served address.
            base: crate::kit::Base,
            store: std::sync::Mutex<Store>,
            $($(#[$field_doc])* $field: $field_ty,)*
        }

        $(#[$doc])*
        #[derive(Clone)]
        pub struct Simulator {
            inner: std::sync::Arc<Inner>,
        }

        impl std::fmt::Debug for Simulator {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Simulator").finish_non_exhaustive()
            }
        }

        impl Simulator {
            /// The API routes plus the `/_control/*` routes.
            pub fn router(&self) -> axum::Router {
                api::router(self.clone())
            }

            crate::kit::simulator_methods!($name);

            /// A simulator with these settings and the store `store` builds from them.
            fn start(
                config: Config,
                store: impl FnOnce(Config, &crate::kit::Base) -> Store,
            ) -> Self {
                let limit = |$c: &Config| $limit;
                let base = crate::kit::Base::with_budget(limit(&config), $window);
                let store = std::sync::Mutex::new(store(config, &base));
                Self {
                    inner: std::sync::Arc::new(Inner {
                        base,
                        store,
                        $($field: $init,)*
                    }),
                }
            }

            /// A copy of the current settings.
            pub fn config(&self) -> Config {
                self.store().config.clone()
            }

            /// Changes settings at runtime.
            pub fn update_config(&self, change: impl FnOnce(&mut Config)) {
                let mut store = self.store();
                let limit = |$c: &Config| $limit;
                self.inner
                    .base
                    .update_settings(&mut store.config, change, limit, $window);
            }

            /// The store, locked.
            fn store(&self) -> std::sync::MutexGuard<'_, Store> {
                crate::kit::lock(&self.inner.store)
            }

            /// The simulator clock in Unix milliseconds.
            #[allow(dead_code)] // Each vendor counts in one unit.
            fn now_ms(&self) -> i64 {
                self.inner.base.clock.now_ms()
            }

            /// The simulator clock in Unix seconds.
            #[allow(dead_code)]
            fn now_secs(&self) -> i64 {
                self.inner.base.clock.now_secs()
            }

            $(
                /// The origin for URLs outside a request: the served address, or the
                /// vendor's public one.
                fn origin(&self) -> String {
                    self.inner
                        .base
                        .served_at()
                        .unwrap_or_else(|| $public(&self.store().config))
                }
            )?
        }

        impl crate::kit::Simulated for Simulator {
            fn base(&self) -> &crate::kit::Base {
                &self.inner.base
            }

            fn control_config(&self) -> serde_json::Value {
                api::config_json(self)
            }

            fn patch_config(
                &self,
                patch: &crate::kit::control::Patch,
            ) -> Result<(), crate::kit::ControlError> {
                api::apply_config(self, patch)
            }

            fn control_state(&self) -> serde_json::Value {
                self.counts()
            }
        }
    };
}
pub(crate) use account_simulator;

/// Locks, recovering from poisoning: a panicking test thread must not wedge the simulator.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    /// The smallest simulator [`account_simulator!`] fits.
    mod account {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::time::Duration;

        use serde_json::{json, Value};

        use crate::kit::control::Patch;
        use crate::kit::ControlError;

        #[derive(Debug, Clone, PartialEq)]
        pub struct Config {
            pub limit: Option<u32>,
            pub greeting: String,
        }

        impl Config {
            fn public_origin(&self) -> String {
                format!("https://{}.example", self.greeting)
            }
        }

        pub struct Store {
            pub config: Config,
        }

        pub mod api {
            use super::*;

            pub fn router(sim: Simulator) -> axum::Router {
                axum::Router::new().with_state(sim)
            }

            pub fn config_json(sim: &Simulator) -> Value {
                json!({"greeting": sim.config().greeting})
            }

            pub fn apply_config(sim: &Simulator, patch: &Patch) -> Result<(), ControlError> {
                let limit = patch.limit("limit")?;
                sim.update_config(|c| {
                    if let Some(v) = limit {
                        c.limit = v;
                    }
                });
                Ok(())
            }
        }

        const WINDOW: Duration = Duration::from_secs(60);

        crate::kit::account_simulator! {
            /// A test account.
            name: "account", budget: |c| c.limit, window: WINDOW,
            public_origin: Config::public_origin,
            extra: {
                /// How many times the test said hello.
                hellos: AtomicU64 = AtomicU64::new(1),
            },
        }

        impl Simulator {
            pub fn new(config: Config) -> Self {
                Self::start(config, |config, _| Store { config })
            }

            fn counts(&self) -> Value {
                let greeted = self.origin() == "https://hello.example";
                json!({"greetings": self.inner.hellos.load(Ordering::Relaxed), "origin": greeted})
            }
        }
    }

    use std::time::Duration;

    use account::{Config, Simulator};
    use serde_json::json;

    use super::control::Patch;
    use super::Simulated;

    #[tokio::test]
    async fn account_simulator_writes_settings_and_control_plumbing() {
        let sim = Simulator::new(Config {
            limit: Some(5),
            greeting: "hi".into(),
        });
        assert!(format!("{sim:?}").starts_with("Simulator"));
        assert_eq!(sim.faults().budget(), Some((5, Duration::from_secs(60))));
        // A budget set through the control API survives an unrelated change...
        sim.faults().set_budget(Some(9), Duration::from_secs(1));
        sim.update_config(|c| c.greeting = "hello".into());
        assert_eq!(sim.faults().budget(), Some((9, Duration::from_secs(1))));
        // ...and a change of the limit resets it.
        let patch = Patch::parse(&br#"{"limit": 7}"#.as_slice().into()).expect("patch");
        sim.patch_config(&patch).expect("applies");
        assert_eq!(sim.faults().budget(), Some((7, Duration::from_secs(60))));
        assert_eq!(sim.config().limit, Some(7));
        assert_eq!(sim.control_config(), json!({"greeting": "hello"}));
        assert_eq!(
            sim.control_state(),
            json!({"greetings": 1, "origin": true}),
            "unserved, the origin is the public one"
        );
        sim.freeze_clock();
        let before = sim.base().clock.now_secs();
        sim.advance_clock(Duration::from_secs(5));
        assert_eq!(sim.base().clock.now_secs(), before + 5);
        let (_, server) = sim
            .clone()
            .serve(([127, 0, 0, 1], 0).into())
            .await
            .expect("serves");
        server.abort();
    }
}
