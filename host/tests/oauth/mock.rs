//! OAuth2 against a provider in this process (`crate::support::mock`): renewals are serialized
//! (many concurrent callers, exactly one token request, a rotating refresh token never sent
//! twice), the JWT bearer flow, the runtime's token injection with a static token, and the
//! outbox holding deliveries of an installation that needs reauthorization.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::support::mock::{Mock, JWT_USERNAME};
use crate::support::{HubServer, CLIENT_ID, CLIENT_SECRET, PLUGIN_DIR, STREAM};
use reqwest::{Method, StatusCode};
use switchboard::hub::{LinkSettings, NewInstallation, NewLink};
use switchboard::runtime::{Installation, StaticToken};
use switchboard_simulators::telegram;
use switchboard_testkit as kit;

async fn mock_installation(server: &HubServer, mock: &Mock, id: &str, extra: &[(&str, &str)]) {
    let mut settings = vec![
        ("api_base", mock.base.as_str()),
        ("login_url", mock.base.as_str()),
        ("oauth_client_id", CLIENT_ID),
        ("oauth_client_secret", CLIENT_SECRET),
    ];
    settings.extend_from_slice(extra);
    server.install(id, &settings).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_share_one_refresh() {
    let server = HubServer::start().await;
    let mock = Mock::start().await;
    mock_installation(&server, &mock, "crm", &[]).await;
    server.connect_by_browser("crm").await;
    assert_eq!(mock.count("authorization_code"), 1);
    let first = server.grant("crm").await;

    // Every token the API knows stops working, and the token endpoint is slow: twelve plugin
    // calls get 401 at about the same time and all wait for one renewal.
    mock.expire_access_tokens();
    mock.state.delay_ms.store(300, Ordering::SeqCst);
    let calls = (0..12).map(|_| {
        let hub = server.hub.clone();
        tokio::spawn(async move { hub.test_installation("crm").await })
    });
    for call in futures::future::join_all(calls).await {
        let report = call.expect("task").expect("test installation");
        assert!(report.ok, "{}", report.detail);
    }
    assert_eq!(mock.count("refresh_token"), 1, "exactly one refresh");
    assert_eq!(mock.state.replays.load(Ordering::SeqCst), 0);
    let second = server.grant("crm").await;
    assert_eq!(second.generation, first.generation + 1);
    assert_ne!(
        second.refresh_token, first.refresh_token,
        "rotated and stored"
    );

    // The same through the token source: callers holding the rejected token all get the new
    // one, from one refresh.
    let source = server.hub.token_source("crm").await.expect("source");
    let rejected = second.access_token.clone();
    mock.expire_access_tokens();
    let renewals = (0..16).map(|_| {
        let (source, rejected) = (Arc::clone(&source), rejected.clone());
        tokio::spawn(async move { source.refresh_after_rejection(&rejected).await })
    });
    let tokens: Vec<String> = futures::future::join_all(renewals)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("token"))
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0] && *t != rejected));
    assert_eq!(mock.count("refresh_token"), 2);

    // Renewal ahead of expiry is serialized too: short-lived tokens, many callers after
    // three quarters of the lifetime, one refresh.
    mock.state.delay_ms.store(0, Ordering::SeqCst);
    mock.state.expires_in.store(2, Ordering::SeqCst);
    let short = source
        .refresh_after_rejection(&tokens[0])
        .await
        .expect("renewed");
    assert_eq!(mock.count("refresh_token"), 3);
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    mock.state.delay_ms.store(200, Ordering::SeqCst);
    let ahead = (0..16).map(|_| {
        let source = Arc::clone(&source);
        tokio::spawn(async move { source.access_token().await })
    });
    let tokens: Vec<String> = futures::future::join_all(ahead)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("token"))
        .collect();
    assert!(tokens.iter().all(|t| *t == tokens[0] && *t != short));
    assert_eq!(mock.count("refresh_token"), 4);
    assert_eq!(
        mock.state.replays.load(Ordering::SeqCst),
        0,
        "no refresh token sent twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_bearer_connects_without_a_browser_and_renews_with_a_new_assertion() {
    let server = HubServer::start().await;
    let mock = Mock::start().await;
    let key = include_str!("support/test_rsa_key.pem");
    mock_installation(
        &server,
        &mock,
        "crm",
        &[
            ("oauth_jwt_private_key", key),
            ("oauth_jwt_username", JWT_USERNAME),
        ],
    )
    .await;
    // The private key is a secret setting: never shown.
    let view = server.view("crm").await;
    assert_eq!(view["settings"]["oauth_jwt_private_key"], "********");

    let (status, view) = server
        .api(Method::POST, "/installations/crm/oauth/connect")
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["oauth"]["flow"], "jwt-bearer", "{view}");
    let jwt = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    assert_eq!(mock.count(jwt), 1);
    let claims = mock
        .state
        .last_assertion
        .lock()
        .expect("lock")
        .clone()
        .expect("assertion");
    assert_eq!(claims["aud"], mock.base, "aud is the token URL's origin");
    assert_eq!(claims["iss"], CLIENT_ID);
    // The token response's extras reach templates and the plugin's context.
    let source = server.hub.token_source("crm").await.expect("source");
    assert_eq!(
        source.extras().get("instance_url").map(String::as_str),
        Some("https://acme.my.example.com")
    );

    let (outcome, error) = server.run_job("crm").await;
    assert_eq!(outcome, "ok", "{error:?}");
    // No refresh token in this flow: a 401 is answered with a fresh assertion.
    mock.expire_access_tokens();
    let (outcome, error) = server.run_job("crm").await;
    assert_eq!(outcome, "ok", "{error:?}");
    assert_eq!(mock.count(jwt), 2);
    assert_eq!(mock.count("refresh_token"), 0);

    // The provider stops accepting the assertion (the user lost access to the app).
    mock.refuse(Some("user hasn't approved this consumer"));
    mock.expire_access_tokens();
    let (outcome, _) = server.run_job("crm").await;
    assert_eq!(outcome, "error");
    let view = server.view("crm").await;
    assert_eq!(view["needs_reauthorization"], true, "{view}");
    assert!(
        view["oauth"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("user hasn't approved this consumer"),
        "{view}"
    );
    // Reconnecting (once the provider agrees again) clears it.
    mock.refuse(None);
    let (status, view) = server
        .api(Method::POST, "/installations/crm/oauth/connect")
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["needs_reauthorization"], false, "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_injects_and_renews_a_token_the_plugin_never_sees() {
    let mock = Mock::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (runtime, plugin) = kit::runtime_with_plugin(dir.path(), PLUGIN_DIR).await;
    // A live token from the mock's client credentials grant.
    let live: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/token", mock.base))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let live = live["access_token"].as_str().expect("access token");
    let settings: BTreeMap<String, String> = [
        ("api_base", mock.base.as_str()),
        ("login_url", mock.base.as_str()),
        ("oauth_client_id", CLIENT_ID),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let source = Arc::new(StaticToken::new("stale-token").then(&[live]));
    let installation = Installation {
        id: "crm".into(),
        settings: settings.clone(),
        approved_hosts: vec!["{api_base}".into()],
        token_source: Some(source.clone()),
        ..Default::default()
    };
    assert!(!format!("{installation:?}").contains("stale-token"));
    let conn = runtime.helpdesk(&plugin, &installation).expect("bind");
    let page = conn.poll_changes(STREAM, None).await.expect("poll");
    assert_eq!(page.next_cursor.as_deref(), Some("mock-user"));
    assert_eq!(source.refreshes(), 1, "401, one renewal, one retry");

    // Without a token source the request is refused before it leaves.
    let bare = Installation {
        id: "crm".into(),
        settings,
        approved_hosts: vec!["{api_base}".into()],
        ..Default::default()
    };
    let conn = runtime.helpdesk(&plugin, &bare).expect("bind");
    let error = conn.poll_changes(STREAM, None).await.expect_err("refused");
    assert!(error.to_string().contains("OAuth2"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_wait_for_reauthorization_instead_of_dying() {
    let server = HubServer::start().await;
    let mock = Mock::start().await;
    let hub = &server.hub;
    // A Telegram bot whose conversations become tickets in the OAuth helpdesk.
    let tg = telegram::Simulator::new(telegram::Config {
        first_update_id: Some(1000),
        ..telegram::Config::default()
    });
    let (tg_addr, _) = tg
        .clone()
        .serve(([127, 0, 0, 1], 0).into())
        .await
        .expect("serve telegram");
    hub.install_plugin(&kit::component_once("plugins/telegram"), true)
        .await
        .expect("install telegram");
    hub.create_installation(NewInstallation {
        id: "tg".into(),
        plugin_id: "telegram".into(),
        settings: crate::support::settings(&[
            ("bot_token", &tg.config().bot_token),
            ("api_base", &format!("http://{tg_addr}")),
            ("webhook_secret", "tg-secret"),
        ]),
        enabled: None,
        deadline_ms: None,
    })
    .await
    .expect("telegram installation");
    mock_installation(&server, &mock, "crm", &[]).await;
    hub.create_link(NewLink {
        id: "tg-to-crm".into(),
        social_installation: "tg".into(),
        helpdesk_installation: "crm".into(),
        settings: LinkSettings::default(),
    })
    .await
    .expect("link");
    server.connect_by_browser("crm").await;

    let cycle = || async {
        let run = hub.run_job_now("tg:updates").await.expect("telegram job");
        assert_eq!(run.outcome, "ok", "{run:?}");
        switchboard::hub::processor::process_pending(hub)
            .await
            .expect("process");
        switchboard::hub::outbox::deliver_due(hub)
            .await
            .expect("deliver")
    };

    // The grant is revoked at the provider: the first delivery meets 401, the refresh is
    // refused, and the row goes back to wait, its attempt not counted.
    mock.expire_access_tokens();
    mock.refuse(Some("expired access/refresh token"));
    tg.customer_message(telegram::CustomerMessage::new(7, "Ada", "hello?"));
    assert_eq!(cycle().await, 1, "one delivery attempted");
    assert_eq!(server.view("crm").await["needs_reauthorization"], true);
    let conversation = hub.list_conversations().await.expect("conversations")[0]
        .id
        .clone();
    let rows = hub
        .db()
        .outbox_rows_of_conversation(&conversation)
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status, "pending");
    assert_eq!(rows[0].attempts, 0, "the attempt is not counted");
    assert!(rows[0]
        .last_error
        .as_deref()
        .unwrap_or_default()
        .contains("401"));

    // While it waits, nothing is delivered, however often the workers look, and nothing dies.
    tg.customer_message(telegram::CustomerMessage::new(7, "Ada", "anyone there?"));
    assert_eq!(
        cycle().await,
        0,
        "no delivery while reauthorization is needed"
    );
    for _ in 0..5 {
        assert_eq!(
            switchboard::hub::outbox::deliver_due(hub)
                .await
                .expect("deliver"),
            0
        );
    }
    assert!(hub.list_dead_letters().await.expect("dead").is_empty());
    let refreshes = mock.count("refresh_token");

    // The admin reconnects: the waiting deliveries go out, in order.
    mock.refuse(None);
    server.connect_by_browser("crm").await;
    assert_eq!(
        mock.count("refresh_token"),
        refreshes,
        "no refresh of the dead grant"
    );
    let delivered = switchboard::hub::outbox::deliver_due(hub)
        .await
        .expect("deliver");
    assert!(delivered >= 2, "delivered {delivered}");
    let rows = hub
        .db()
        .outbox_rows_of_conversation(&conversation)
        .await
        .expect("rows");
    assert!(
        rows.iter().all(|r| r.status == "done"),
        "{:?}",
        rows.iter()
            .map(|r| (&r.kind, &r.status, &r.last_error))
            .collect::<Vec<_>>()
    );
    assert!(hub.list_dead_letters().await.expect("dead").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_state_is_refused_and_cannot_be_used_later() {
    let server = HubServer::start().await;
    let mock = Mock::start().await;
    mock_installation(&server, &mock, "crm", &[]).await;
    let authorize = server.start_authorization("crm").await;
    let callback = server.browse_to_callback(authorize).await;
    let state = callback
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    // Eleven minutes later (states live ten): taking it finds it expired, and deletes it.
    let later = chrono::Utc::now().timestamp_millis() + 11 * 60 * 1000;
    let taken = server
        .hub
        .db()
        .take_oauth_state(&state, later)
        .await
        .expect("take");
    assert!(taken.is_none(), "an expired state is not returned");
    let (status, body) = server.visit(&callback).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(mock.count("authorization_code"), 0, "no code was exchanged");
    assert_eq!(server.view("crm").await["oauth"]["connected"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unapproved_token_url_is_refused_by_name_before_any_request() {
    let server = HubServer::start().await;
    let mock = Mock::start().await;
    let plugin = server
        .hub
        .get_plugin("test.oauth-helpdesk")
        .await
        .expect("plugin");
    assert!(
        plugin.approved_hosts.contains(&"{login_url}".to_string()),
        "--approve approves the OAuth2 endpoints' origin: {:?}",
        plugin.approved_hosts
    );
    // Only the API host is approved: the OAuth2 endpoints' origin `{login_url}` is not.
    server
        .hub
        .approve_plugin(
            &plugin.plugin_id,
            &plugin.version,
            vec!["{api_base}".into()],
        )
        .await
        .expect("approve");
    mock_installation(&server, &mock, "crm", &[]).await;
    let (status, body) = server
        .api(Method::POST, "/installations/crm/oauth/connect")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body.to_string();
    assert!(
        message.contains(&mock.base) && message.contains("not approved"),
        "names the origin: {message}"
    );
    assert!(!message.contains(CLIENT_SECRET), "{message}");
    let error = server
        .hub
        .oauth_start("crm", &server.callback_url())
        .await
        .expect_err("the browser flow is refused too");
    assert!(error.to_string().contains(&mock.base), "{error}");
    assert_eq!(
        mock.state.grants.lock().expect("lock").len(),
        0,
        "no token request was made"
    );

    // Approved again, the same installation connects.
    server
        .hub
        .approve_plugin(
            &plugin.plugin_id,
            &plugin.version,
            plugin.manifest.requested_origins(),
        )
        .await
        .expect("approve");
    let (status, body) = server
        .api(Method::POST, "/installations/crm/oauth/connect")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_without_the_starting_browsers_cookie_is_refused() {
    let server = HubServer::start().await;
    let mock = Mock::start().await;
    mock_installation(&server, &mock, "crm", &[]).await;

    // `start` binds the state to the browser: an HttpOnly, SameSite=Lax cookie for the
    // callback's path only, not Secure on loopback (plain http).
    let authorize = server.start_authorization("crm").await;
    let set_cookie = server
        .last_set_cookie
        .lock()
        .expect("cookie")
        .clone()
        .expect("start sets a cookie");
    assert!(set_cookie.starts_with("switchboard_oauth_"), "{set_cookie}");
    for attribute in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/oauth/callback",
        "Max-Age=600",
    ] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    let (name, binding) = set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .expect("name=value");

    // Someone who learned the state (and a code) but not the cookie: refused, nothing exchanged,
    // and the state is spent.
    let callback = server.browse_to_callback(authorize).await;
    let (status, body) = server.visit_with_cookie(&callback, "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("browser that started"), "{body}");
    assert_eq!(mock.count("authorization_code"), 0, "no code was exchanged");
    let (status, body) = server.visit(&callback).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "spent: {body}");
    assert_eq!(server.view("crm").await["oauth"]["connected"], false);

    // A cookie of the right name with another flow's value is refused too.
    let authorize = server.start_authorization("crm").await;
    let callback = server.browse_to_callback(authorize).await;
    let set_cookie = server
        .last_set_cookie
        .lock()
        .expect("cookie")
        .clone()
        .expect("cookie");
    let (name_2, _) = set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .expect("name=value");
    assert_ne!(name, name_2, "one cookie per flow");
    let (status, body) = server
        .visit_with_cookie(&callback, &format!("{name_2}={binding}"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(mock.count("authorization_code"), 0, "no code was exchanged");

    // The browser that started the flow connects.
    server.connect_by_browser("crm").await;
    assert_eq!(mock.count("authorization_code"), 1);
    assert_eq!(server.view("crm").await["oauth"]["connected"], true);
}
