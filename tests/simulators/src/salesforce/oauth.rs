//! OAuth 2.0 for the simulated org: the authorize redirect, the token endpoint (authorization
//! code with PKCE, refresh token with optional rotation, JWT bearer, client credentials),
//! revocation, userinfo and the identity URL, and the access tokens the REST API checks.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::OAuthError;
use super::store::{Record, Store};
use super::Simulator;

/// How long an authorization code can be exchanged (Salesforce: 15 minutes).
const CODE_TTL_MS: i64 = 15 * 60 * 1000;
/// JWT assertions may expire at most this far ahead (Salesforce: 3 minutes), plus some skew.
const MAX_ASSERTION_AHEAD_SECS: i64 = 3 * 60 + 30;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(Debug)]
pub(crate) struct AuthCode {
    client_id: String,
    redirect_uri: String,
    user_id: String,
    scopes: Vec<String>,
    challenge: Option<String>,
    expires_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessToken {
    pub user_id: String,
    pub expires_ms: Option<i64>,
    pub revoked: bool,
    /// The refresh token it was issued with, so revoking that revokes this.
    refresh: Option<String>,
}

#[derive(Debug)]
pub(crate) struct RefreshToken {
    user_id: String,
    client_id: String,
    scopes: Vec<String>,
    revoked: bool,
}

#[derive(Default)]
pub(crate) struct OAuthState {
    codes: HashMap<String, AuthCode>,
    pub access: HashMap<String, AccessToken>,
    refresh: HashMap<String, RefreshToken>,
    counter: u64,
    seed: Option<RandomState>,
}

impl OAuthState {
    /// An unguessable token: `prefix` followed by base64url of a keyed hash of a counter.
    fn mint(&mut self, prefix: &str) -> String {
        self.counter += 1;
        let state = self.seed.get_or_insert_with(RandomState::new);
        let a = state.hash_one((self.counter, 1u8));
        let b = state.hash_one((self.counter, 2u8));
        let digest = Sha256::digest([a.to_le_bytes(), b.to_le_bytes()].concat());
        format!("{prefix}{}", URL_SAFE_NO_PAD.encode(digest))
    }

    /// A new access token for `user_id`, valid for `lifetime_ms` (forever when `None`).
    pub(crate) fn issue_access(
        &mut self,
        org_id: &str,
        user_id: &str,
        now_ms: i64,
        lifetime_ms: Option<i64>,
        refresh: Option<String>,
    ) -> String {
        // Salesforce access tokens start with the 15-character org id and `!`.
        let org15: String = org_id.chars().take(15).collect();
        let token = self.mint(&format!("{org15}!AQ"));
        self.access.insert(
            token.clone(),
            AccessToken {
                user_id: user_id.to_string(),
                expires_ms: lifetime_ms.map(|l| now_ms + l),
                revoked: false,
                refresh,
            },
        );
        token
    }

    /// The user of a live access token.
    pub(crate) fn check(&self, token: &str, now_ms: i64) -> Option<&AccessToken> {
        self.access
            .get(token)
            .filter(|t| !t.revoked && t.expires_ms.is_none_or(|at| now_ms < at))
    }

    /// Revokes one token, access or refresh (a refresh token takes its access tokens along).
    /// Returns how many tokens were revoked.
    pub(crate) fn revoke(&mut self, token: &str) -> usize {
        if let Some(access) = self.access.get_mut(token) {
            access.revoked = true;
            return 1;
        }
        let Some(refresh) = self.refresh.get_mut(token) else {
            return 0;
        };
        refresh.revoked = true;
        let mut count = 1;
        for access in self.access.values_mut() {
            if access.refresh.as_deref() == Some(token) && !access.revoked {
                access.revoked = true;
                count += 1;
            }
        }
        count
    }

    /// Revokes every access token (refresh tokens stay valid).
    pub(crate) fn revoke_all_access(&mut self) -> usize {
        let mut count = 0;
        for access in self.access.values_mut().filter(|a| !a.revoked) {
            access.revoked = true;
            count += 1;
        }
        count
    }

    fn issue_refresh(&mut self, user_id: &str, client_id: &str, scopes: &[String]) -> String {
        let token = self.mint("5Aep861");
        self.refresh.insert(
            token.clone(),
            RefreshToken {
                user_id: user_id.to_string(),
                client_id: client_id.to_string(),
                scopes: scopes.to_vec(),
                revoked: false,
            },
        );
        token
    }
}

fn form(headers: &HeaderMap, body: &[u8]) -> HashMap<String, String> {
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        // Salesforce reads nothing from other bodies, so the grant type is missing.
        return HashMap::new();
    }
    form_urlencoded::parse(body).into_owned().collect()
}

fn scopes_of(raw: Option<&String>) -> Vec<String> {
    raw.map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn wants_refresh(scopes: &[String]) -> bool {
    scopes
        .iter()
        .any(|s| s == "refresh_token" || s == "offline_access" || s == "full")
}

/// `signature`: base64 HMAC-SHA256 of `id` + `issued_at`, keyed with the consumer secret.
fn signature(secret: &str, id: &str, issued_at: &str) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(id.as_bytes());
    mac.update(issued_at.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Where a token answer points the client: the REST instance, and this simulator itself (for
/// the identity URL).
pub(crate) struct Urls {
    pub instance: String,
    pub own: String,
}

#[allow(clippy::too_many_arguments)]
fn token_response(
    store: &mut Store,
    urls: &Urls,
    user_id: &str,
    scopes: &[String],
    refresh: Option<String>,
    return_refresh: bool,
    now_ms: i64,
) -> Value {
    let lifetime = i64::try_from(store.config.access_token_lifetime.as_millis()).ok();
    let org = store.config.org_id.clone();
    let access = store
        .oauth
        .issue_access(&org, user_id, now_ms, lifetime, refresh.clone());
    // The identity URL is served here (`/id/{org}/{user}`), so it points back at the
    // simulator, not at the real login host.
    let id = format!("{}/id/{org}/{user_id}", urls.own.trim_end_matches('/'));
    let issued_at = now_ms.to_string();
    let mut body = json!({
        "access_token": access,
        "signature": signature(&store.config.consumer_secret, &id, &issued_at),
        "scope": scopes.join(" "),
        "instance_url": urls.instance,
        "id": id,
        "token_type": "Bearer",
        "issued_at": issued_at,
    });
    if let (true, Some(refresh)) = (return_refresh, refresh) {
        body["refresh_token"] = Value::String(refresh);
    }
    body
}

/// Checks `client_id` (and `client_secret` when the app requires it).
fn client(store: &Store, params: &HashMap<String, String>, secret: bool) -> Result<(), OAuthError> {
    let config = &store.config;
    if params.get("client_id").map(String::as_str) != Some(config.consumer_key.as_str()) {
        return Err(OAuthError::invalid_client_id());
    }
    if secret
        && config.require_client_secret
        && params.get("client_secret").map(String::as_str) != Some(config.consumer_secret.as_str())
    {
        return Err(OAuthError::invalid_client());
    }
    Ok(())
}

/// `POST /services/oauth2/token`.
pub(crate) async fn token(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = form(&headers, &body);
    let urls = Urls {
        instance: sim.instance_url(&headers),
        own: sim.own_url(&headers),
    };
    let now_ms = sim.now_ms();
    let mut store = sim.store();
    let result = match params.get("grant_type").map(String::as_str) {
        Some("authorization_code") => authorization_code(&mut store, &params, &urls, now_ms),
        Some("refresh_token") => refresh_token(&mut store, &params, &urls, now_ms),
        Some(JWT_BEARER) => jwt_bearer(&mut store, &params, &urls, &urls.own, now_ms),
        Some("client_credentials") => client_credentials(&mut store, &params, &urls, now_ms),
        _ => Err(OAuthError::new(
            "unsupported_grant_type",
            "grant type not supported",
        )),
    };
    match result {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

fn authorization_code(
    store: &mut Store,
    params: &HashMap<String, String>,
    urls: &Urls,
    now_ms: i64,
) -> Result<Value, OAuthError> {
    client(store, params, true)?;
    let code = params.get("code").map(String::as_str).unwrap_or_default();
    // A code is spent by any exchange attempt, so a failed PKCE check can't be retried.
    let grant = store
        .oauth
        .codes
        .remove(code)
        .ok_or_else(|| OAuthError::invalid_grant("authentication failure"))?;
    if grant.client_id != store.config.consumer_key {
        return Err(OAuthError::invalid_grant("authentication failure"));
    }
    if now_ms >= grant.expires_ms {
        return Err(OAuthError::invalid_grant("expired authorization code"));
    }
    if params.get("redirect_uri") != Some(&grant.redirect_uri) {
        return Err(OAuthError::new(
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        ));
    }
    if let Some(challenge) = &grant.challenge {
        let verifier = params
            .get("code_verifier")
            .map(String::as_str)
            .unwrap_or_default();
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if verifier.is_empty() || computed != *challenge {
            return Err(OAuthError::invalid_grant("invalid code verifier"));
        }
    }
    let refresh = wants_refresh(&grant.scopes).then(|| {
        let client_id = grant.client_id.clone();
        store
            .oauth
            .issue_refresh(&grant.user_id, &client_id, &grant.scopes)
    });
    Ok(token_response(
        store,
        urls,
        &grant.user_id,
        &grant.scopes,
        refresh,
        true,
        now_ms,
    ))
}

fn refresh_token(
    store: &mut Store,
    params: &HashMap<String, String>,
    urls: &Urls,
    now_ms: i64,
) -> Result<Value, OAuthError> {
    client(store, params, true)?;
    let presented = params.get("refresh_token").cloned().unwrap_or_default();
    let (user_id, scopes) = match store.oauth.refresh.get(&presented) {
        Some(r) if !r.revoked && r.client_id == store.config.consumer_key => {
            (r.user_id.clone(), r.scopes.clone())
        }
        _ => return Err(OAuthError::expired_token()),
    };
    if store.config.rotate_refresh_tokens {
        store.oauth.revoke(&presented);
        let client_id = store.config.consumer_key.clone();
        let rotated = store.oauth.issue_refresh(&user_id, &client_id, &scopes);
        return Ok(token_response(
            store,
            urls,
            &user_id,
            &scopes,
            Some(rotated),
            true,
            now_ms,
        ));
    }
    Ok(token_response(
        store,
        urls,
        &user_id,
        &scopes,
        Some(presented),
        false,
        now_ms,
    ))
}

#[derive(Debug, Deserialize)]
struct Assertion {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Value>,
    exp: Option<i64>,
}

fn jwt_bearer(
    store: &mut Store,
    params: &HashMap<String, String>,
    urls: &Urls,
    request_base: &str,
    now_ms: i64,
) -> Result<Value, OAuthError> {
    let invalid = || OAuthError::invalid_grant("invalid assertion");
    let assertion = params.get("assertion").ok_or_else(invalid)?;
    let pem =
        store.config.jwt_certificate_pem.clone().ok_or_else(|| {
            OAuthError::invalid_grant("invalid assertion: no certificate uploaded")
        })?;
    let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| invalid())?;
    // Only the signature and algorithm here: the claims are checked below against the
    // simulator's clock and with Salesforce's own error messages.
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<Assertion>(assertion, &key, &validation)
        .map_err(|_| invalid())?
        .claims;
    if claims.iss.as_deref() != Some(store.config.consumer_key.as_str()) {
        return Err(OAuthError::invalid_client_id());
    }
    let audiences: Vec<&str> = match &claims.aud {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let accepted = |aud: &str| {
        let aud = aud.trim_end_matches('/');
        aud == store.config.login_url.trim_end_matches('/')
            || aud == request_base.trim_end_matches('/')
            || store
                .config
                .jwt_audiences
                .iter()
                .any(|a| a.trim_end_matches('/') == aud)
    };
    if !audiences.iter().any(|a| accepted(a)) {
        return Err(OAuthError::invalid_grant("audience is invalid"));
    }
    let now_secs = now_ms.div_euclid(1000);
    match claims.exp {
        Some(exp) if exp > now_secs && exp <= now_secs + MAX_ASSERTION_AHEAD_SECS => {}
        _ => {
            return Err(OAuthError::invalid_grant(
                "invalid assertion: expired or too far ahead",
            ))
        }
    }
    let username = claims.sub.unwrap_or_default();
    let user_id = store
        .user_by_username(&username)
        .map(|u| u.id.clone())
        .ok_or_else(|| OAuthError::invalid_grant("user hasn't approved this consumer"))?;
    let scopes = vec!["api".to_string()];
    Ok(token_response(
        store, urls, &user_id, &scopes, None, false, now_ms,
    ))
}

fn client_credentials(
    store: &mut Store,
    params: &HashMap<String, String>,
    urls: &Urls,
    now_ms: i64,
) -> Result<Value, OAuthError> {
    client(store, params, false)?;
    if params.get("client_secret").map(String::as_str)
        != Some(store.config.consumer_secret.as_str())
    {
        return Err(OAuthError::invalid_client());
    }
    if !store.config.client_credentials_enabled {
        return Err(OAuthError::invalid_grant(
            "no client credentials user enabled",
        ));
    }
    let user_id = store.integration_user_id.clone();
    let scopes = vec!["api".to_string()];
    Ok(token_response(
        store, urls, &user_id, &scopes, None, false, now_ms,
    ))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// `GET /services/oauth2/authorize`. There is no login page: the configured integration user
/// approves at once and the browser is sent straight back to `redirect_uri` with the code.
pub(crate) async fn authorize(
    State(sim): State<Simulator>,
    Query(params): Query<AuthorizeParams>,
) -> Response {
    let now_ms = sim.now_ms();
    let mut store = sim.store();
    if params.client_id.as_deref() != Some(store.config.consumer_key.as_str()) {
        return OAuthError::invalid_client_id().into_response();
    }
    let Some(redirect_uri) = params.redirect_uri.clone().filter(|r| !r.is_empty()) else {
        return OAuthError::new(
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        )
        .into_response();
    };
    let callbacks = &store.config.callback_urls;
    if !callbacks.is_empty() && !callbacks.contains(&redirect_uri) {
        return OAuthError::new(
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        )
        .into_response();
    }
    let back = |pairs: &[(&str, &str)]| -> Response {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
        if let Some(state) = &params.state {
            query.append_pair("state", state);
        }
        let separator = if redirect_uri.contains('?') { '&' } else { '?' };
        let location = format!("{redirect_uri}{separator}{}", query.finish());
        let mut response = StatusCode::FOUND.into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(LOCATION, value);
        }
        response
    };
    if params.response_type.as_deref() != Some("code") {
        return back(&[
            ("error", "unsupported_response_type"),
            ("error_description", "response type not supported"),
        ]);
    }
    let scopes = match &params.scope {
        Some(raw) => scopes_of(Some(raw)),
        None => store.config.allowed_scopes.clone(),
    };
    if scopes
        .iter()
        .any(|s| !store.config.allowed_scopes.contains(s))
    {
        return back(&[
            ("error", "invalid_scope"),
            ("error_description", "the requested scope is not allowed"),
        ]);
    }
    if params
        .code_challenge_method
        .as_deref()
        .is_some_and(|m| m != "S256")
    {
        return back(&[
            ("error", "invalid_request"),
            ("error_description", "code_challenge_method must be S256"),
        ]);
    }
    let code = store.oauth.mint("aPrx");
    let user_id = store.integration_user_id.clone();
    let client_id = store.config.consumer_key.clone();
    store.oauth.codes.insert(
        code.clone(),
        AuthCode {
            client_id,
            redirect_uri: redirect_uri.clone(),
            user_id,
            scopes,
            challenge: params.code_challenge.clone().filter(|c| !c.is_empty()),
            expires_ms: now_ms + CODE_TTL_MS,
        },
    );
    back(&[("code", &code)])
}

/// `POST /services/oauth2/revoke` (`token=` in the form or the query).
pub(crate) async fn revoke(
    State(sim): State<Simulator>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = form(&headers, &body);
    let token = params.get("token").or_else(|| query.get("token")).cloned();
    let revoked = token.map(|t| sim.store().oauth.revoke(&t)).unwrap_or(0);
    if revoked == 0 {
        return OAuthError::new("unsupported_token_type", "this token type is not supported")
            .into_response();
    }
    StatusCode::OK.into_response()
}

/// The user a bearer token (header, or `oauth_token` in the query as the identity URL also
/// takes it) stands for.
fn token_user<'a>(
    store: &'a Store,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    now_ms: i64,
) -> Option<&'a Record> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        })
        .or(query.get("oauth_token").map(String::as_str))
        .map(str::trim)?;
    store
        .oauth
        .check(token, now_ms)
        .and_then(|t| store.records.get(&t.user_id))
}

/// `GET /services/oauth2/userinfo` with the bearer token.
pub(crate) async fn userinfo(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let now_ms = sim.now_ms();
    let own = sim.own_url(&headers);
    let store = sim.store();
    let Some(user) = token_user(&store, &headers, &query, now_ms) else {
        // What Salesforce answers here, unlike the REST API's 401.
        return (StatusCode::FORBIDDEN, "Bad_OAuth_Token").into_response();
    };
    let org = &store.config.org_id;
    Json(json!({
        "sub": format!("{}/id/{org}/{}", own.trim_end_matches('/'), user.id),
        "user_id": user.id,
        "organization_id": org,
        "preferred_username": user.value("Username"),
        "name": user.value("Name"),
        "email": user.value("Email"),
        "user_type": "STANDARD",
        "active": true,
    }))
    .into_response()
}

/// `GET /id/{org}/{user}`: the identity URL of a token answer's `id`, for the token's own user
/// (`?format=json` is the only format served). Another user's or org's URL answers 403, as a
/// token that does not match does.
pub(crate) async fn identity(
    State(sim): State<Simulator>,
    Path((org, user_id)): Path<(String, String)>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let now_ms = sim.now_ms();
    let own = sim.own_url(&headers);
    // Before taking the store's lock, which `instance_url` takes too.
    let instance = sim.instance_url(&headers);
    let store = sim.store();
    let Some(user) = token_user(&store, &headers, &query, now_ms) else {
        return (StatusCode::FORBIDDEN, "Bad_OAuth_Token").into_response();
    };
    let same = |a: &str, b: &str| {
        crate::salesforce::ids::normalize(a)
            .is_some_and(|a| Some(a) == crate::salesforce::ids::normalize(b))
    };
    if !same(&org, &store.config.org_id) || !same(&user_id, &user.id) {
        return (StatusCode::FORBIDDEN, "Bad_Id").into_response();
    }
    if query
        .get("format")
        .is_some_and(|f| !f.eq_ignore_ascii_case("json"))
    {
        return (StatusCode::NOT_ACCEPTABLE, "only format=json is simulated").into_response();
    }
    let own = own.trim_end_matches('/');
    let org = &store.config.org_id;
    let data = format!(
        "{}/services/data/v{{version}}",
        instance.trim_end_matches('/')
    );
    Json(json!({
        "id": format!("{own}/id/{org}/{}", user.id),
        "asserted_user": true,
        "user_id": user.id,
        "organization_id": org,
        "username": user.value("Username"),
        "nick_name": user.value("Username").as_str().and_then(|u| u.split('@').next()),
        "display_name": user.value("Name"),
        "email": user.value("Email"),
        "email_verified": true,
        "first_name": user.value("FirstName"),
        "last_name": user.value("LastName"),
        "timezone": "GMT",
        "active": user.value("IsActive"),
        "user_type": "STANDARD",
        "language": "en_US",
        "locale": "en_US",
        "utcOffset": 0,
        "urls": {
            "rest": format!("{data}/"),
            "sobjects": format!("{data}/sobjects/"),
            "query": format!("{data}/query/"),
            "search": format!("{data}/search/"),
            "recent": format!("{data}/recent/"),
            "profile": format!("{instance}/{}", user.id),
        },
        "is_app_installed": true,
    }))
    .into_response()
}
