//! A small OAuth2 provider and API in this process, for what a real server cannot show on
//! demand: how many token requests arrive under concurrency, a slow token endpoint, JWT bearer
//! assertions checked claim by claim, a refusal switched on at will.
//!
//! - `GET /auth`: redirects straight back with a code (no login), remembering the PKCE
//!   challenge; `POST /token`: `authorization_code` (checks the S256 verifier),
//!   `refresh_token` (rotating: a used refresh token is refused and counted as a replay),
//!   `client_credentials`, and the JWT bearer grant (RS256 against the test public key,
//!   `iss` = client id, `aud` = this server, `exp` at most 3 minutes ahead).
//! - `GET /me`: 200 `{"sub": ...}` for a live access token, 401 otherwise.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{CLIENT_ID, CLIENT_SECRET};

pub const JWT_USERNAME: &str = "integration@acme.example";

#[derive(Default)]
pub struct MockState {
    /// Every token request's grant type, in order.
    pub grants: Mutex<Vec<String>>,
    live_access: Mutex<HashSet<String>>,
    /// Refresh token -> already used.
    refresh: Mutex<HashMap<String, bool>>,
    codes: Mutex<HashMap<String, String>>,
    counter: AtomicU64,
    /// `expires_in` of new access tokens, seconds; 0 leaves it out (as Salesforce does).
    pub expires_in: AtomicU64,
    /// How long the token endpoint takes, ms: widens the window for racing refreshes.
    pub delay_ms: AtomicU64,
    /// Refresh tokens presented a second time.
    pub replays: AtomicU64,
    /// When set, every grant is refused with this `invalid_grant` description.
    pub refuse: Mutex<Option<String>>,
    pub jwt_public_key: String,
    /// Claims of the last accepted JWT bearer assertion.
    pub last_assertion: Mutex<Option<serde_json::Value>>,
}

/// The mock's handle for tests.
#[derive(Clone)]
pub struct Mock {
    pub base: String,
    pub state: Arc<MockState>,
}

impl Mock {
    pub async fn start() -> Mock {
        let state = Arc::new(MockState {
            expires_in: AtomicU64::new(3600),
            jwt_public_key: include_str!("test_rsa_key.pub.pem").to_string(),
            ..MockState::default()
        });
        let app = Router::new()
            .route("/auth", get(authorize))
            .route("/token", post(token))
            .route("/me", get(me))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Mock { base, state }
    }

    /// How many token requests of `grant_type` arrived.
    pub fn count(&self, grant_type: &str) -> usize {
        self.state
            .grants
            .lock()
            .expect("lock")
            .iter()
            .filter(|g| g.as_str() == grant_type)
            .count()
    }

    /// The API stops accepting every access token issued so far (as when they expire).
    pub fn expire_access_tokens(&self) {
        self.state.live_access.lock().expect("lock").clear();
    }

    pub fn refuse(&self, description: Option<&str>) {
        *self.state.refuse.lock().expect("lock") = description.map(String::from);
    }
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

fn mint(state: &MockState, prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        state.counter.fetch_add(1, Ordering::SeqCst),
        uuid::Uuid::now_v7().simple()
    )
}

fn issue(state: &MockState, with_refresh: bool) -> Response {
    let access = mint(state, "at");
    state
        .live_access
        .lock()
        .expect("lock")
        .insert(access.clone());
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "instance_url": "https://acme.my.example.com",
    });
    let expires_in = state.expires_in.load(Ordering::SeqCst);
    if expires_in > 0 {
        body["expires_in"] = json!(expires_in);
    }
    if with_refresh {
        let refresh = mint(state, "rt");
        state
            .refresh
            .lock()
            .expect("lock")
            .insert(refresh.clone(), false);
        body["refresh_token"] = json!(refresh);
    }
    Json(body).into_response()
}

async fn authorize(
    State(state): State<Arc<MockState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if query.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "PKCE S256 required",
        );
    }
    let (Some(redirect), Some(challenge), Some(oauth_state)) = (
        query.get("redirect_uri"),
        query.get("code_challenge"),
        query.get("state"),
    ) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "missing parameters",
        );
    };
    let code = mint(&state, "code");
    state
        .codes
        .lock()
        .expect("lock")
        .insert(code.clone(), challenge.clone());
    let mut url = url::Url::parse(redirect).expect("redirect_uri");
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", oauth_state);
    Redirect::to(url.as_str()).into_response()
}

async fn token(
    State(state): State<Arc<MockState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    state.grants.lock().expect("lock").push(grant_type.clone());
    let delay = state.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(description) = state.refuse.lock().expect("lock").clone() {
        return error(StatusCode::BAD_REQUEST, "invalid_grant", &description);
    }
    let client_ok = form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
    match grant_type.as_str() {
        "authorization_code" => {
            if !client_ok {
                return error(StatusCode::UNAUTHORIZED, "invalid_client", "bad client");
            }
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(challenge) = state.codes.lock().expect("lock").remove(&code) else {
                return error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown code");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()));
            if computed != challenge {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            issue(&state, true)
        }
        "refresh_token" => {
            if !client_ok {
                return error(StatusCode::UNAUTHORIZED, "invalid_client", "bad client");
            }
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            {
                let mut refresh = state.refresh.lock().expect("lock");
                match refresh.get_mut(&presented) {
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "unknown refresh token",
                        )
                    }
                    Some(used) if *used => {
                        state.replays.fetch_add(1, Ordering::SeqCst);
                        return error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "refresh token already used",
                        );
                    }
                    Some(used) => *used = true,
                }
            }
            issue(&state, true)
        }
        "client_credentials" => {
            if !client_ok {
                return error(StatusCode::UNAUTHORIZED, "invalid_client", "bad client");
            }
            issue(&state, false)
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let assertion = form.get("assertion").cloned().unwrap_or_default();
            let key = jsonwebtoken::DecodingKey::from_rsa_pem(state.jwt_public_key.as_bytes())
                .expect("public key");
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.set_issuer(&[CLIENT_ID]);
            validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
            validation.validate_aud = false;
            let claims =
                match jsonwebtoken::decode::<serde_json::Value>(&assertion, &key, &validation) {
                    Ok(data) => data.claims,
                    Err(e) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            &format!("bad assertion: {e}"),
                        )
                    }
                };
            let now = chrono::Utc::now().timestamp();
            let exp = claims["exp"].as_i64().unwrap_or(0);
            if claims["sub"] != JWT_USERNAME || exp > now + 180 {
                return error(StatusCode::BAD_REQUEST, "invalid_grant", "bad claims");
            }
            // The test checks `aud` against this server's URL.
            *state.last_assertion.lock().expect("lock") = Some(claims);
            issue(&state, false)
        }
        other => error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant type `{other}`"),
        ),
    }
}

async fn me(State(state): State<Arc<MockState>>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if state.live_access.lock().expect("lock").contains(token) {
        Json(json!({"sub": "mock-user"})).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])),
        )
            .into_response()
    }
}
