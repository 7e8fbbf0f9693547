//! OAuth2 against a real authorization server (`oidc-provider`, started per test on loopback):
//! the authorization code flow with PKCE driven as a browser would, renewal after a 401,
//! refresh token rotation, and a revoked grant making the installation wait for
//! reauthorization (jobs skipped, deliveries held, a metric) until an admin reconnects.
//!
//! The API the test plugin calls is the provider's own userinfo endpoint, so every token the
//! hub sends is checked by the server that issued it.

use std::time::Duration;

use crate::support::{HubServer, Provider, CLIENT_ID};
use reqwest::{Method, StatusCode};

const HOUR: Duration = Duration::from_secs(3600);

async fn connected(id: &str, ttl: Duration) -> (HubServer, Provider) {
    let server = HubServer::start().await;
    let provider = Provider::start(&server.callback_url(), ttl).await;
    server.install_for(id, &provider).await;
    server.connect_by_browser(id).await;
    (server, provider)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_with_pkce_connects_and_api_calls_carry_the_token() {
    let server = HubServer::start().await;
    let provider = Provider::start(&server.callback_url(), HOUR).await;
    server.install_for("crm", &provider).await;

    // Before connecting: waiting for authorization, and calls are refused before any request.
    let view = server.view("crm").await;
    assert_eq!(view["needs_reauthorization"], true, "{view}");
    assert_eq!(view["oauth"]["connected"], false, "{view}");
    let (outcome, error) = server.run_job("crm").await;
    assert_eq!(outcome, "error");
    assert!(error.unwrap_or_default().contains("never connected"));

    let authorize = server.start_authorization("crm").await;
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/auth?", provider.issuer)),
        "{authorize}"
    );
    let params: std::collections::HashMap<String, String> =
        authorize.query_pairs().into_owned().collect();
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["code_challenge"].len(), 43, "base64url of a SHA-256");
    assert_eq!(params["redirect_uri"], server.callback_url());
    assert!(params["state"].len() >= 16, "an unguessable state");

    let callback = server.browse_to_callback(authorize).await;
    // A forged or unknown state is refused and does not consume the real one.
    let mut forged = callback.clone();
    forged
        .query_pairs_mut()
        .clear()
        .append_pair("code", "whatever")
        .append_pair("state", "not-a-state-we-issued");
    let (status, body) = server.visit(&forged).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let (status, body) = server.visit(&callback).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The state works once.
    let (status, body) = server.visit(&callback).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("state"), "{body}");

    let view = server.view("crm").await;
    assert_eq!(view["needs_reauthorization"], false, "{view}");
    assert_eq!(view["oauth"]["connected"], true, "{view}");
    assert_eq!(view["oauth"]["flow"], "authorization-code-pkce", "{view}");
    assert!(view["oauth"]["expires_at"].is_string(), "{view}");
    assert!(!view.to_string().contains("access_token"), "{view}");

    // The tokens are encrypted at rest, and valid at the provider.
    let grant = server.grant("crm").await;
    assert!(
        grant.refresh_token.is_some(),
        "the provider issued a refresh token"
    );
    let sealed = server.sealed_tokens("crm").await;
    assert!(
        !sealed
            .windows(grant.access_token.len())
            .any(|w| w == grant.access_token.as_bytes()),
        "the access token must not be stored in the clear"
    );
    assert!(provider.accepts(&grant.access_token).await);

    // A plugin call goes out with the token; the provider's userinfo answers who it is.
    let (outcome, error) = server.run_job("crm").await;
    assert_eq!(outcome, "ok", "{error:?}");
    let cursor = server
        .hub
        .db()
        .get_cursor("crm", crate::support::STREAM)
        .await
        .expect("cursor");
    assert_eq!(cursor.as_deref(), Some("test-agent"));
    assert_eq!(server.needs_reauth_gauge("crm"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_renews_with_the_refresh_token_which_rotates() {
    let (server, provider) = connected("crm", HOUR).await;
    let before = server.grant("crm").await;
    let old_refresh = before.refresh_token.clone().expect("refresh token");

    // The provider stops accepting the access token (as after expiry): the next call gets 401,
    // the hub renews once and retries, and the plugin never sees the 401.
    provider.expire(&before.access_token).await;
    assert!(!provider.accepts(&before.access_token).await);
    let (outcome, error) = server.run_job("crm").await;
    assert_eq!(outcome, "ok", "{error:?}");

    let after = server.grant("crm").await;
    assert_ne!(after.access_token, before.access_token);
    assert_eq!(
        after.generation,
        before.generation + 1,
        "exactly one renewal"
    );
    let new_refresh = after.refresh_token.clone().expect("refresh token");
    assert_ne!(
        new_refresh, old_refresh,
        "the provider rotated the refresh token"
    );
    assert!(provider.accepts(&after.access_token).await);

    // The rotated-out refresh token is refused from now on.
    let (status, body) = provider.refresh_directly(&old_refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_tokens_are_renewed_before_they_expire() {
    let (server, provider) = connected("crm", Duration::from_secs(4)).await;
    let before = server.grant("crm").await;
    // Past three quarters of the token's life the hub renews it before using it: the
    // provider never sees the old one again.
    tokio::time::sleep(Duration::from_millis(3_300)).await;
    let (outcome, error) = server.run_job("crm").await;
    assert_eq!(outcome, "ok", "{error:?}");
    let after = server.grant("crm").await;
    assert_eq!(after.generation, before.generation + 1);
    assert_ne!(after.access_token, before.access_token);
    assert!(provider.accepts(&after.access_token).await);
    // And a fresh token is used as it is.
    let (outcome, _) = server.run_job("crm").await;
    assert_eq!(outcome, "ok");
    assert_eq!(server.grant("crm").await.generation, after.generation);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_needs_reauthorization_until_the_admin_reconnects() {
    let (server, provider) = connected("crm", HOUR).await;
    assert!(server.job_is_scheduled("crm").await);
    let grant = server.grant("crm").await;
    // Revoking the refresh token revokes the whole grant at the provider.
    provider
        .revoke(
            grant.refresh_token.as_deref().expect("refresh"),
            "refresh_token",
        )
        .await;
    assert!(!provider.accepts(&grant.access_token).await);

    // 401, then the refresh is refused (invalid_grant): the plugin sees the API's 401.
    let (outcome, error) = server.run_job("crm").await;
    assert_eq!(outcome, "error");
    assert!(error.unwrap_or_default().contains("401"));

    let view = server.view("crm").await;
    assert_eq!(view["needs_reauthorization"], true, "{view}");
    assert!(
        view["oauth"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid_grant"),
        "{view}"
    );
    assert_eq!(server.needs_reauth_gauge("crm"), Some(1));
    assert!(
        !server.job_is_scheduled("crm").await,
        "the scheduler skips it"
    );
    // Later calls fail at once, without asking the provider again.
    let (outcome, error) = server.run_job("crm").await;
    assert_eq!(outcome, "error");
    assert!(error.unwrap_or_default().contains("reauthorization"));

    // The admin connects again: everything resumes.
    server.connect_by_browser("crm").await;
    let view = server.view("crm").await;
    assert_eq!(view["needs_reauthorization"], false, "{view}");
    assert!(view["oauth"]["error"].is_null(), "{view}");
    assert_eq!(server.needs_reauth_gauge("crm"), Some(0));
    assert!(server.job_is_scheduled("crm").await);
    let (outcome, error) = server.run_job("crm").await;
    assert_eq!(outcome, "ok", "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_refresh_token_revokes_the_grant_and_the_hub_notices() {
    let (server, provider) = connected("crm", HOUR).await;
    let first = server.grant("crm").await;
    provider.expire(&first.access_token).await;
    let (outcome, _) = server.run_job("crm").await;
    assert_eq!(outcome, "ok");
    // Someone replays the rotated-out refresh token: the provider treats it as theft and
    // revokes the whole grant, the hub's current tokens included.
    let (status, _) = provider
        .refresh_directly(first.refresh_token.as_deref().expect("refresh"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (outcome, _) = server.run_job("crm").await;
    assert_eq!(outcome, "error");
    assert_eq!(server.view("crm").await["needs_reauthorization"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_routes_check_their_input() {
    let server = HubServer::start().await;
    let provider = Provider::start(&server.callback_url(), HOUR).await;
    server.install_for("crm", &provider).await;

    // The admin routes need the admin token; the callback needs a state.
    let response = server
        .http
        .get(format!(
            "{}/api/v1/installations/crm/oauth/start",
            server.base
        ))
        .send()
        .await
        .expect("start");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, body) = server
        .visit(&url::Url::parse(&format!("{}?code=x", server.callback_url())).expect("url"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = server
        .api(Method::GET, "/installations/nope/oauth/start")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The provider refuses at its end (the admin clicked "deny"): the state is used up and
    // the error is reported.
    let authorize = server.start_authorization("crm").await;
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    let denied = url::Url::parse_with_params(
        &server.callback_url(),
        [
            ("error", "access_denied"),
            ("error_description", "the admin said no"),
            ("state", state.as_str()),
        ],
    )
    .expect("url");
    let (status, body) = server.visit(&denied).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("access_denied"), "{body}");

    // Client credentials need no browser: connect works against the same provider.
    let (status, view) = server
        .api(Method::POST, "/installations/crm/oauth/connect")
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["oauth"]["flow"], "client-credentials", "{view}");
    assert_eq!(view["needs_reauthorization"], false, "{view}");
}
