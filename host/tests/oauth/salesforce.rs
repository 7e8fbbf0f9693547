//! The Salesforce plugin connected through the host's OAuth2 against the Salesforce simulator:
//! the JWT bearer flow (no browser, no refresh token: an expired session is renewed with a new
//! assertion) and the web-server flow with PKCE and a refresh token. Salesforce's token answers
//! carry no `expires_in`, so the hub learns that a session ended from the API's 401.

use std::time::Duration;

use crate::support::HubServer;
use reqwest::{Method, StatusCode};
use switchboard_simulators::salesforce::{self, test_keys};
use switchboard_testkit as kit;

async fn salesforce_world() -> (HubServer, salesforce::Simulator, String) {
    let sim = salesforce::Simulator::new(salesforce::Config::default());
    let (addr, _) = sim
        .clone()
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .expect("serve salesforce");
    let server = HubServer::start().await;
    server
        .hub
        .install_plugin(&kit::component_once("plugins/salesforce"), true)
        .await
        .expect("install salesforce");
    (server, sim, format!("http://{addr}"))
}

async fn create(server: &HubServer, id: &str, settings: &[(&str, &str)]) {
    server
        .hub
        .create_installation(switchboard::hub::NewInstallation {
            id: id.into(),
            plugin_id: "salesforce".into(),
            settings: crate::support::settings(settings),
            enabled: None,
            deadline_ms: None,
        })
        .await
        .expect("create salesforce installation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_against_the_salesforce_simulator() {
    let (server, sim, base) = salesforce_world().await;
    let config = sim.config();
    create(
        &server,
        "sf",
        &[
            ("instance_url", &base),
            ("login_url", &base),
            ("oauth_client_id", &config.consumer_key),
            ("oauth_jwt_private_key", test_keys::PRIVATE_KEY_PEM),
            ("oauth_jwt_username", &config.integration_username),
        ],
    )
    .await;
    let (status, view) = server
        .api(Method::POST, "/installations/sf/oauth/connect")
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["oauth"]["flow"], "jwt-bearer", "{view}");
    let grant = server.grant("sf").await;
    assert!(
        grant.refresh_token.is_none(),
        "JWT bearer issues no refresh token"
    );
    assert_eq!(
        grant.expires_at, None,
        "Salesforce answers carry no expires_in"
    );
    assert_eq!(grant.extras.get("instance_url"), Some(&base));

    let report = server.hub.test_installation("sf").await.expect("test");
    assert!(report.ok, "{}", report.detail);

    // The session ends (an admin revoked it; the simulator's clock is left alone because a
    // new assertion's `exp` is on the real clock): the API answers 401 INVALID_SESSION_ID, the
    // hub signs a new assertion, and the call goes through on the retry.
    assert!(sim.revoke_access_tokens() > 0);
    let report = server.hub.test_installation("sf").await.expect("test");
    assert!(report.ok, "{}", report.detail);
    let renewed = server.grant("sf").await;
    assert_eq!(renewed.generation, grant.generation + 1);
    assert_ne!(renewed.access_token, grant.access_token);

    // A key the connected app does not trust is refused at connect time, with Salesforce's
    // reason.
    create(
        &server,
        "sf-bad-key",
        &[
            ("instance_url", &base),
            ("login_url", &base),
            ("oauth_client_id", &config.consumer_key),
            (
                "oauth_jwt_private_key",
                include_str!("support/test_rsa_key.pem"),
            ),
            ("oauth_jwt_username", &config.integration_username),
        ],
    )
    .await;
    let (status, body) = server
        .api(Method::POST, "/installations/sf-bad-key/oauth/connect")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("invalid_grant"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_server_flow_with_pkce_and_refresh_against_the_salesforce_simulator() {
    let (server, sim, base) = salesforce_world().await;
    let config = sim.config();
    create(
        &server,
        "sf",
        &[
            ("instance_url", &base),
            ("login_url", &base),
            ("oauth_client_id", &config.consumer_key),
            ("oauth_client_secret", &config.consumer_secret),
        ],
    )
    .await;
    server.connect_by_browser("sf").await;
    let grant = server.grant("sf").await;
    assert!(
        grant.refresh_token.is_some(),
        "the refresh_token scope was granted"
    );
    let report = server.hub.test_installation("sf").await.expect("test");
    assert!(report.ok, "{}", report.detail);

    sim.advance_clock(Duration::from_secs(3 * 3600));
    let report = server.hub.test_installation("sf").await.expect("test");
    assert!(report.ok, "{}", report.detail);
    let renewed = server.grant("sf").await;
    assert_eq!(renewed.generation, grant.generation + 1);
    assert_eq!(
        renewed.refresh_token, grant.refresh_token,
        "without rotation the refresh token is kept"
    );
}
