//! The fault layer: injected faults and a request budget, admitted in one place for every
//! simulator.
//!
//! Tests queue [`FaultSpec`]s (through [`Faults::inject`] or `POST /_control/faults`); the
//! simulator's gate calls [`Faults::admit`] once per API request, which takes the next fault
//! whose `path` matches and carries it out:
//!
//! | [`Fault`] | JSON (`POST /_control/faults`) | the client sees |
//! |---|---|---|
//! | `Status` | `{"kind":"status","status":503}` | [`VendorErrors::status`]: the vendor's body for that status |
//! | `RateLimited` | `{"kind":"rate_limited","retry_after_secs":7}` | [`VendorErrors::rate_limited`]: the vendor's 429 (or equivalent) with its own headers and body |
//! | `Delay` | `{"kind":"delay","ms":300}` | the normal answer, that much later |
//! | `Drop` | `{"kind":"drop"}` | the connection closes without an answer |
//!
//! Every spec takes `"count"` (how many matching requests get it, default 1) and `"path"`
//! (only requests whose path contains it). A simulator supplies only [`VendorErrors`]: what its
//! vendor answers for a status and when over a limit.
//!
//! The budget ([`Faults::set_budget`], `POST /_control/rate-limit`) is a fixed window of
//! requests; [`Faults::check_budget`] counts one request and [`Budget::refusal`] turns an
//! exceeded budget into the vendor's rate-limit answer. Where in its gate a simulator counts
//! (before or after auth, every call or only sends) is the vendor's behaviour, so that stays in
//! the simulator. The window runs on real time, not the simulator clock.

use std::collections::VecDeque;
use std::io;
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::header::IntoHeaderName;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// One injected fault, applied to the next matching API request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this status code and the vendor's error body for it.
    Status { status: u16 },
    /// Answer the vendor's rate-limit refusal with this wait (Zendesk and Freshdesk:
    /// `Retry-After`; Telegram: `parameters.retry_after`; Salesforce has no wait to give).
    RateLimited { retry_after_secs: u64 },
    /// Wait this long, then handle the request normally.
    Delay { ms: u64 },
    /// Close the connection without answering, as a crashed server or a cut link does.
    /// [`crate::kit::serve()`] closes the connection before writing anything; under another
    /// hyper server (`axum::serve`) the stand-in answer's failing body cuts it too.
    Drop,
}

/// A fault request: `count` consecutive matching requests get the fault. `path`, when set,
/// restricts it to requests whose path contains it (e.g. `sendMessage`, `/api/v2/tickets`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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

/// What a vendor answers when a request is refused. Each simulator implements it once (often
/// on a unit struct per API surface, since one vendor's OAuth and REST endpoints may answer
/// in different shapes) and passes it to [`Faults::admit`] and [`Budget::refusal`].
pub trait VendorErrors {
    /// The vendor's refusal of a request over its rate limit, telling the client to wait
    /// `retry_after_secs` where the vendor does (status, headers and body as the vendor sends
    /// them).
    fn rate_limited(&self, retry_after_secs: u64) -> Response;

    /// The vendor's answer with this status code (a 5xx outage, a 4xx refusal), with the body
    /// the vendor sends for it.
    fn status(&self, status: u16) -> Response;
}

/// A vendor's error answer that can say both refusals itself, so [`Answers`] gives the
/// [`VendorErrors`] of that API surface without a hand-written impl.
pub trait Refusals: IntoResponse {
    /// The refusal over a rate limit, with the wait where the vendor tells one.
    fn rate_limited(retry_after_secs: u64) -> Self;
    /// The answer for an injected fault with this status.
    fn injected(status: u16) -> Self;
}

/// The [`VendorErrors`] of an error type `E` that implements [`Refusals`]: a simulator passes
/// `&Answers::<ApiError>::new()` (or a `const` of it) to [`Faults::admit`].
pub struct Answers<E>(PhantomData<fn() -> E>);

impl<E> Answers<E> {
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<E> Default for Answers<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Refusals> VendorErrors for Answers<E> {
    fn rate_limited(&self, retry_after_secs: u64) -> Response {
        E::rate_limited(retry_after_secs).into_response()
    }

    fn status(&self, status: u16) -> Response {
        E::injected(status).into_response()
    }
}

/// Adds an answer's extra headers (`Retry-After`, `Location`, `WWW-Authenticate`) with
/// [`insert_headers`].
pub fn with_headers<K: IntoHeaderName, V: AsRef<str>>(
    mut response: Response,
    headers: impl IntoIterator<Item = (K, V)>,
) -> Response {
    insert_headers(response.headers_mut(), headers);
    response
}

/// Sets each header (replacing one of the same name) in order; a value that is not a valid
/// header value is left out rather than failing the answer.
pub fn insert_headers<K: IntoHeaderName, V: AsRef<str>>(
    map: &mut HeaderMap,
    headers: impl IntoIterator<Item = (K, V)>,
) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            map.insert(name, v);
        }
    }
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
    /// Over budget: refuse, telling the client to wait this long.
    Exceeded {
        limit: u32,
        retry_after_secs: u64,
    },
}

impl Budget {
    /// The vendor's rate-limit answer when the budget is exceeded; `None` when the request may
    /// go on.
    pub fn refusal(self, vendor: &impl VendorErrors) -> Option<Response> {
        match self {
            Budget::Exceeded {
                retry_after_secs, ..
            } => Some(vendor.rate_limited(retry_after_secs)),
            Budget::Unlimited | Budget::Allowed { .. } => None,
        }
    }
}

/// Locks, recovering from poisoning: a panicking test thread must not wedge the simulator.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Faults {
    /// Queues a fault behind those already waiting.
    pub fn inject(&self, spec: FaultSpec) {
        lock(&self.queue).push_back(spec);
    }

    /// Drops every queued fault and lifts the budget.
    pub fn clear(&self) {
        lock(&self.queue).clear();
        *lock(&self.budget) = None;
    }

    /// Sets the budget to `limit` requests per `window` (`None`: unlimited) and starts a fresh
    /// window.
    pub fn set_budget(&self, limit: Option<u32>, window: Duration) {
        *lock(&self.budget) = limit.map(|l| (l, window));
        let mut w = lock(&self.window);
        w.started = Instant::now();
        w.used = 0;
    }

    /// The faults still queued, in order.
    pub fn pending(&self) -> Vec<FaultSpec> {
        lock(&self.queue).iter().cloned().collect()
    }

    /// The budget: requests per window, if limited.
    pub fn budget(&self) -> Option<(u32, Duration)> {
        *lock(&self.budget)
    }

    /// Takes the next fault that applies to `path`, if any.
    pub fn next_fault(&self, path: &str) -> Option<Fault> {
        let mut queue = lock(&self.queue);
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

    /// [`Budget::refusal`] of this request's `budget`, then [`Faults::admit`]: the order of
    /// vendors whose account limit refuses before anything else (Zendesk, Freshdesk).
    pub async fn admit_within(
        &self,
        budget: Budget,
        path: &str,
        vendor: &impl VendorErrors,
    ) -> Result<(), Response> {
        if let Some(refused) = budget.refusal(vendor) {
            return Err(refused);
        }
        self.admit(path, vendor).await
    }

    /// The one admission step for injected faults: takes the next fault for `path` and carries
    /// it out. `Ok(())` lets the request go on (after waiting out a delay); `Err` is the answer
    /// to send instead: the vendor's status or rate-limit answer, or a dropped connection.
    pub async fn admit(&self, path: &str, vendor: &impl VendorErrors) -> Result<(), Response> {
        match self.next_fault(path) {
            None => Ok(()),
            Some(Fault::Delay { ms }) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(())
            }
            Some(Fault::Status { status }) => Err(vendor.status(status)),
            Some(Fault::RateLimited { retry_after_secs }) => {
                Err(vendor.rate_limited(retry_after_secs))
            }
            Some(Fault::Drop) => Err(dropped_connection()),
        }
    }

    /// Counts one request against the budget.
    pub fn check_budget(&self) -> Budget {
        let Some((limit, window)) = *lock(&self.budget) else {
            return Budget::Unlimited;
        };
        let mut w = lock(&self.window);
        let now = Instant::now();
        if now.duration_since(w.started) >= window {
            w.started = now;
            w.used = 0;
        }
        let left = window.saturating_sub(now.duration_since(w.started));
        // Round up so a client that waits Retry-After seconds lands in the next window.
        let resets_in_secs = u64::try_from(left.as_millis().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1);
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

/// Marks a response that must not be sent: [`crate::kit::serve()`] closes the connection
/// instead of writing it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DroppedByFault;

/// The stand-in answer of a [`Fault::Drop`], for a gate that matches faults itself. Under
/// [`crate::kit::serve()`] it is never written: the connection is closed instead. Under another
/// hyper server its body fails at once, which aborts the connection too, so the client gets no
/// usable answer either way.
pub fn dropped_connection() -> Response {
    let body = Body::from_stream(futures_util::stream::once(async {
        Err::<Bytes, io::Error>(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection dropped by an injected fault",
        ))
    }));
    let mut response = Response::new(body);
    *response.status_mut() = axum::http::StatusCode::BAD_GATEWAY;
    response.extensions_mut().insert(DroppedByFault);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    /// A vendor whose refusals are easy to recognise.
    struct Acme;

    impl VendorErrors for Acme {
        fn rate_limited(&self, retry_after_secs: u64) -> Response {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", retry_after_secs.to_string())],
                "slow down",
            )
                .into_response()
        }

        fn status(&self, status: u16) -> Response {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (code, format!("acme {status}")).into_response()
        }
    }

    fn spec(fault: Fault, count: u32, path: Option<&str>) -> FaultSpec {
        FaultSpec {
            fault,
            count,
            path: path.map(str::to_owned),
        }
    }

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn faults_apply_in_order_and_by_path() {
        let f = Faults::default();
        f.inject(spec(Fault::Status { status: 503 }, 2, None));
        let limited = Fault::RateLimited {
            retry_after_secs: 3,
        };
        f.inject(spec(limited.clone(), 1, Some("sendMessage")));
        assert_eq!(f.pending().len(), 2);
        assert_eq!(f.next_fault("/getMe"), Some(Fault::Status { status: 503 }));
        assert_eq!(f.next_fault("/getMe"), Some(Fault::Status { status: 503 }));
        assert_eq!(f.next_fault("/getMe"), None);
        assert_eq!(f.next_fault("/sendMessage"), Some(limited));
        assert_eq!(f.next_fault("/sendMessage"), None);
        assert!(f.pending().is_empty());
    }

    #[tokio::test]
    async fn admit_answers_the_vendors_429_with_its_headers_then_passes() {
        let f = Faults::default();
        let limited = Fault::RateLimited {
            retry_after_secs: 7,
        };
        f.inject(spec(limited, 1, Some("/tickets")));
        assert!(f.admit("/users", &Acme).await.is_ok(), "other paths pass");
        let refused = f.admit("/api/tickets", &Acme).await.expect_err("refused");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()["retry-after"], "7");
        assert_eq!(body_text(refused).await, "slow down");
        assert!(f.admit("/api/tickets", &Acme).await.is_ok(), "used up");
    }

    #[tokio::test]
    async fn admit_answers_injected_statuses_in_the_vendors_words() {
        let f = Faults::default();
        f.inject(spec(Fault::Status { status: 502 }, 1, None));
        let refused = f.admit("/x", &Acme).await.expect_err("refused");
        assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(body_text(refused).await, "acme 502");
    }

    #[tokio::test]
    async fn admit_within_refuses_over_budget_before_taking_a_fault() {
        let f = Faults::default();
        f.set_budget(Some(1), Duration::from_secs(60));
        f.inject(spec(Fault::Status { status: 502 }, 1, None));
        let first = f.check_budget();
        let refused = f.admit_within(first, "/x", &Acme).await.expect_err("fault");
        assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
        f.inject(spec(Fault::Status { status: 502 }, 1, None));
        let over = f.check_budget();
        let refused = f.admit_within(over, "/x", &Acme).await.expect_err("budget");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            f.pending().len(),
            1,
            "the fault waits for an admitted request"
        );
    }

    #[tokio::test]
    async fn admit_waits_out_a_delay_then_passes() {
        let f = Faults::default();
        f.inject(spec(Fault::Delay { ms: 120 }, 1, None));
        let started = Instant::now();
        assert!(f.admit("/x", &Acme).await.is_ok());
        assert!(started.elapsed() >= Duration::from_millis(120));
        let started = Instant::now();
        assert!(f.admit("/x", &Acme).await.is_ok());
        assert!(started.elapsed() < Duration::from_millis(120));
    }

    #[tokio::test]
    async fn admit_marks_a_drop_so_the_server_cuts_the_connection() {
        let f = Faults::default();
        f.inject(spec(Fault::Drop, 1, None));
        let refused = f.admit("/x", &Acme).await.expect_err("dropped");
        assert!(refused.extensions().get::<DroppedByFault>().is_some());
        let body = axum::body::to_bytes(refused.into_body(), 1024).await;
        assert!(body.is_err(), "a dropped answer has no body to read");
    }

    #[test]
    fn fault_specs_read_the_control_json() {
        let drop: FaultSpec = serde_json::from_str(r#"{"kind":"drop","count":2}"#).expect("drop");
        assert_eq!(drop, spec(Fault::Drop, 2, None));
        let status: FaultSpec =
            serde_json::from_str(r#"{"kind":"status","status":500,"path":"/a"}"#).expect("status");
        assert_eq!(status, spec(Fault::Status { status: 500 }, 1, Some("/a")));
        assert!(serde_json::from_str::<FaultSpec>(r#"{"kind":"explode"}"#).is_err());
    }

    #[test]
    fn budget_is_enforced_per_window_and_refused_in_the_vendors_words() {
        let f = Faults::default();
        assert_eq!(f.check_budget(), Budget::Unlimited);
        assert!(Budget::Unlimited.refusal(&Acme).is_none());
        f.set_budget(Some(2), Duration::from_secs(60));
        assert!(matches!(
            f.check_budget(),
            Budget::Allowed { remaining: 1, .. }
        ));
        let last = f.check_budget();
        assert!(matches!(last, Budget::Allowed { remaining: 0, .. }));
        assert!(last.refusal(&Acme).is_none());
        let over = f.check_budget();
        assert!(matches!(
            over,
            Budget::Exceeded {
                limit: 2,
                retry_after_secs: 1..=60
            }
        ));
        let refused = over.refusal(&Acme).expect("refused");
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        f.clear();
        assert_eq!(f.check_budget(), Budget::Unlimited);
    }

    #[test]
    fn a_new_window_restores_the_budget() {
        let f = Faults::default();
        f.set_budget(Some(1), Duration::from_millis(50));
        assert!(matches!(f.check_budget(), Budget::Allowed { .. }));
        assert!(matches!(f.check_budget(), Budget::Exceeded { .. }));
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(f.check_budget(), Budget::Allowed { .. }));
    }

    /// An error type that says its refusals itself.
    struct Oops(StatusCode, u64);

    impl IntoResponse for Oops {
        fn into_response(self) -> Response {
            let wait = [(axum::http::header::RETRY_AFTER, self.1.to_string())];
            with_headers(self.0.into_response(), wait)
        }
    }

    impl Refusals for Oops {
        fn rate_limited(retry_after_secs: u64) -> Self {
            Oops(StatusCode::TOO_MANY_REQUESTS, retry_after_secs)
        }

        fn injected(status: u16) -> Self {
            Oops(
                StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
                0,
            )
        }
    }

    #[test]
    fn answers_come_from_the_error_type() {
        const OOPS: Answers<Oops> = Answers::new();
        let limited = OOPS.rate_limited(7);
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()["retry-after"], "7");
        assert_eq!(OOPS.status(503).status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn invalid_header_values_are_left_out() {
        let name = axum::http::header::WWW_AUTHENTICATE;
        let response = with_headers(().into_response(), [(name.clone(), "bad\nvalue")]);
        assert!(response.headers().get(&name).is_none());
        let response = with_headers(().into_response(), [(name.clone(), "Token")]);
        assert_eq!(response.headers()[&name], "Token");
    }
}
