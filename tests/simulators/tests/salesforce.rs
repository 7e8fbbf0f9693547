//! The Salesforce simulator over real HTTP: each test serves a fresh org on a free port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Client, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use switchboard_simulators::faults::{Fault, FaultSpec};
use switchboard_simulators::salesforce::{test_keys, Config, ExternalIdField, Simulator};

const V: &str = "/services/data/v60.0";
const EXT: &str = "Switchboard_External_Id__c";

struct Harness {
    sim: Simulator,
    base: String,
    http: Client,
    token: String,
}

impl Harness {
    async fn start(config: Config) -> Self {
        let sim = Simulator::new(config);
        let (addr, _server) = sim
            .clone()
            .serve(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("serve");
        let token = sim.issue_access_token();
        Self {
            sim,
            base: format!("http://{addr}"),
            // Redirects are the test's to look at (the authorize endpoint).
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            token,
        }
    }

    async fn default() -> Self {
        Self::start(Config::default()).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Response {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .header("Sforce-Call-Options", "client=switchboard-tests");
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Value) {
        parts(self.call(reqwest::Method::GET, path, None).await).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, HeaderMap, Value) {
        parts(self.call(reqwest::Method::POST, path, Some(body)).await).await
    }

    async fn patch(&self, path: &str, body: Value) -> (StatusCode, HeaderMap, Value) {
        parts(self.call(reqwest::Method::PATCH, path, Some(body)).await).await
    }

    async fn token_request(&self, params: &[(&str, &str)]) -> (StatusCode, Value) {
        let body = form(params);
        let response = self
            .http
            .post(self.url("/services/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("token request");
        let (status, _, body) = parts(response).await;
        (status, body)
    }

    /// A case created through the API; returns its id.
    async fn case(&self, subject: &str) -> String {
        let (status, _, body) = self
            .post(&format!("{V}/sobjects/Case"), json!({"Subject": subject}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("id").to_string()
    }

    /// A SOQL query through the API.
    async fn query(&self, soql: &str) -> (StatusCode, HeaderMap, Value) {
        let response = self
            .http
            .get(self.url(&format!("{V}/query")))
            .query(&[("q", soql)])
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("query");
        parts(response).await
    }
}

async fn parts(response: Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, headers, body)
}

fn form(params: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        serializer.append_pair(k, v);
    }
    serializer.finish()
}

/// The first error of a Salesforce error array, checking the array shape on the way.
fn first_error(body: &Value) -> &Value {
    let errors = body
        .as_array()
        .unwrap_or_else(|| panic!("an error array: {body}"));
    assert!(!errors.is_empty());
    for error in errors {
        assert!(
            error["message"].is_string() && error["errorCode"].is_string(),
            "{error}"
        );
    }
    &errors[0]
}

fn error_code(body: &Value) -> &str {
    first_error(body)["errorCode"].as_str().unwrap_or_default()
}

fn limit_info(headers: &HeaderMap) -> (u64, u64) {
    let value = headers
        .get("sforce-limit-info")
        .and_then(|v| v.to_str().ok())
        .expect("Sforce-Limit-Info");
    let usage = value.strip_prefix("api-usage=").expect("api-usage");
    let (used, max) = usage.split_once('/').expect("n/m");
    (used.parse().expect("used"), max.parse().expect("max"))
}

/// Goes through authorize and returns the code from the redirect.
async fn authorize(h: &Harness, redirect: &str, challenge: Option<&str>, scope: &str) -> String {
    let config = h.sim.config();
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", config.consumer_key.as_str()),
        ("redirect_uri", redirect),
        ("state", "xyz/1"),
        ("scope", scope),
    ];
    if let Some(challenge) = challenge {
        params.push(("code_challenge", challenge));
        params.push(("code_challenge_method", "S256"));
    }
    let response = h
        .http
        .get(h.url("/services/oauth2/authorize"))
        .query(&params)
        .send()
        .await
        .expect("authorize");
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("location")
        .to_string();
    let (target, query) = location.split_once('?').expect("query");
    assert_eq!(target, redirect);
    let query: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    assert_eq!(query.get("state").map(String::as_str), Some("xyz/1"));
    query.get("code").cloned().expect("code")
}

fn assertion(claims: Value) -> String {
    let key = EncodingKey::from_rsa_pem(test_keys::PRIVATE_KEY_PEM.as_bytes()).expect("key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).expect("sign")
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

/// Exchanges a code at the token endpoint (no verifier when `verifier` is empty).
async fn exchange(
    h: &Harness,
    code: String,
    verifier: &str,
    secret: String,
    redirect: &str,
) -> (StatusCode, Value) {
    let key = h.sim.config().consumer_key;
    let mut params = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code),
        ("client_id", key),
        ("client_secret", secret),
        ("redirect_uri", redirect.to_string()),
    ];
    if !verifier.is_empty() {
        params.push(("code_verifier", verifier.to_string()));
    }
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    h.token_request(&params).await
}

#[tokio::test]
async fn authorization_code_flow_checks_pkce_and_redirect() {
    let h = Harness::default().await;
    let config = h.sim.config();
    let redirect = "https://hub.example/oauth/callback";
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));

    // A wrong verifier fails, and spends the code.
    let code = authorize(&h, redirect, Some(&challenge), "api refresh_token").await;
    let secret = config.consumer_secret.clone();
    let (status, body) = exchange(
        &h,
        code.clone(),
        "not-the-verifier",
        secret.clone(),
        redirect,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "invalid code verifier"})
    );
    let (_, body) = exchange(&h, code, verifier, secret.clone(), redirect).await;
    assert_eq!(
        body["error"], "invalid_grant",
        "a code is single-use: {body}"
    );

    // No verifier at all for a PKCE code.
    let code = authorize(&h, redirect, Some(&challenge), "api refresh_token").await;
    let (_, body) = exchange(&h, code, "", secret.clone(), redirect).await;
    assert_eq!(body["error_description"], "invalid code verifier");

    // The redirect URI must be the one the code was issued for; the secret must match.
    let code = authorize(&h, redirect, Some(&challenge), "api refresh_token").await;
    let (_, body) = exchange(
        &h,
        code,
        verifier,
        secret.clone(),
        "https://evil.example/cb",
    )
    .await;
    assert_eq!(body["error"], "redirect_uri_mismatch");
    let code = authorize(&h, redirect, Some(&challenge), "api refresh_token").await;
    let (_, body) = exchange(&h, code, verifier, "wrong".into(), redirect).await;
    assert_eq!(
        body,
        json!({"error": "invalid_client", "error_description": "invalid client credentials"})
    );

    // The real thing.
    let code = authorize(&h, redirect, Some(&challenge), "api refresh_token").await;
    let (status, body) = exchange(&h, code, verifier, secret.clone(), redirect).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["instance_url"], h.base);
    assert_eq!(body["scope"], "api refresh_token");
    let user = h.sim.integration_user_id();
    let id = body["id"].as_str().expect("id");
    // The identity URL points back at the simulator, which serves it.
    assert_eq!(id, format!("{}/id/{}/{user}", h.base, config.org_id));
    let access = body["access_token"].as_str().expect("access_token");
    let identity = h
        .http
        .get(format!("{id}?format=json&oauth_token={access}"))
        .send()
        .await
        .expect("identity");
    let (status, _, identity) = parts(identity).await;
    assert_eq!(status, StatusCode::OK, "{identity}");
    assert_eq!(
        (
            &identity["id"],
            &identity["user_id"],
            &identity["organization_id"]
        ),
        (&json!(id), &json!(user), &json!(config.org_id))
    );
    let (status, _, _) = parts(h.http.get(id).send().await.expect("identity")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no token, no identity");
    let issued_at = body["issued_at"].as_str().expect("issued_at");
    assert!(issued_at.parse::<u64>().expect("ms") > 1_600_000_000_000);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("mac");
    mac.update(format!("{id}{issued_at}").as_bytes());
    assert_eq!(
        body["signature"],
        STANDARD.encode(mac.finalize().into_bytes())
    );
    assert!(body["refresh_token"].is_string());
    let access = body["access_token"].as_str().expect("access").to_string();
    assert!(access.starts_with(&config.org_id[..15]));
    let response = h
        .http
        .get(h.url(&format!("{V}/limits")))
        .bearer_auth(&access)
        .send()
        .await
        .expect("limits");
    assert_eq!(response.status(), StatusCode::OK);

    // Without the refresh_token scope there is no refresh token; without PKCE, no verifier.
    let code = authorize(&h, redirect, None, "api").await;
    let (status, body) = exchange(&h, code, "", secret, redirect).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");

    // Authorize refuses unknown clients without redirecting, and reports bad scopes back.
    let response = h
        .http
        .get(h.url("/services/oauth2/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", "nope"),
            ("redirect_uri", redirect),
        ])
        .send()
        .await
        .expect("authorize");
    let (status, _, body) = parts(response).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_client_id"))
    );
    let response = h
        .http
        .get(h.url("/services/oauth2/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", config.consumer_key.as_str()),
            ("redirect_uri", redirect),
            ("scope", "api chatter_api"),
        ])
        .send()
        .await
        .expect("authorize");
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(location.contains("error=invalid_scope"), "{location}");

    // Unknown grants.
    let (status, body) = h.token_request(&[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("unsupported_grant_type"))
    );
}

#[tokio::test]
async fn refresh_tokens_refresh_rotate_and_die_when_revoked() {
    let h = Harness::default().await;
    let config = h.sim.config();
    let redirect = "https://hub.example/cb";
    let code = authorize(&h, redirect, None, "api refresh_token").await;
    let (_, body) = h
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &config.consumer_key),
            ("client_secret", &config.consumer_secret),
            ("redirect_uri", redirect),
        ])
        .await;
    let refresh = body["refresh_token"].as_str().expect("refresh").to_string();
    let first_access = body["access_token"].as_str().expect("access").to_string();
    let refresh_with = |token: String| {
        let config = config.clone();
        let h = &h;
        async move {
            h.token_request(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &token),
                ("client_id", &config.consumer_key),
                ("client_secret", &config.consumer_secret),
            ])
            .await
        }
    };

    let (status, body) = refresh_with(refresh.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.get("refresh_token").is_none(), "not rotating: {body}");
    let second_access = body["access_token"].as_str().expect("access").to_string();
    assert_ne!(second_access, first_access);
    assert_eq!(body["instance_url"], h.base);

    // Revoking the refresh token takes its access tokens along.
    let response = h
        .http
        .post(h.url("/services/oauth2/revoke"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("token", &refresh)]))
        .send()
        .await
        .expect("revoke");
    assert_eq!(response.status(), StatusCode::OK);
    let (status, body) = refresh_with(refresh.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "expired access/refresh token"})
    );
    for access in [&first_access, &second_access] {
        let response = h
            .http
            .get(h.url(V))
            .bearer_auth(access)
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    // With rotation, each refresh token works once.
    h.sim.update_config(|c| c.rotate_refresh_tokens = true);
    let code = authorize(&h, redirect, None, "api refresh_token").await;
    let (_, body) = h
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", &config.consumer_key),
            ("client_secret", &config.consumer_secret),
            ("redirect_uri", redirect),
        ])
        .await;
    let old = body["refresh_token"].as_str().expect("refresh").to_string();
    let (status, body) = refresh_with(old.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let new = body["refresh_token"].as_str().expect("rotated").to_string();
    assert_ne!(new, old);
    let (_, body) = refresh_with(old).await;
    assert_eq!(body["error_description"], "expired access/refresh token");
    let (status, _) = refresh_with(new).await;
    assert_eq!(status, StatusCode::OK);

    // An unknown client id.
    let (_, body) = h
        .token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", "nope"),
        ])
        .await;
    assert_eq!(
        body,
        json!({"error": "invalid_client_id", "error_description": "client identifier invalid"})
    );
}

#[tokio::test]
async fn jwt_bearer_assertions_are_verified() {
    let h = Harness::default().await;
    let config = h.sim.config();
    let claims = |iss: &str, sub: &str, aud: &str, exp: i64| json!({"iss": iss, "sub": sub, "aud": aud, "exp": exp});
    let grant = |jwt: String| {
        let h = &h;
        async move {
            h.token_request(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", &jwt),
            ])
            .await
        }
    };
    let key = config.consumer_key.as_str();
    let user = config.integration_username.as_str();
    let aud = "https://login.salesforce.com";

    let (status, body) = grant(assertion(claims(key, user, aud, now_secs() + 120))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.get("refresh_token").is_none(),
        "the JWT flow gives no refresh token"
    );
    assert_eq!(body["instance_url"], h.base);
    assert!(body["id"]
        .as_str()
        .expect("id")
        .ends_with(&h.sim.integration_user_id()));
    let access = body["access_token"].as_str().expect("token");
    let userinfo = h
        .http
        .get(h.url("/services/oauth2/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .expect("userinfo");
    let (_, _, info) = parts(userinfo).await;
    assert_eq!(info["user_id"], h.sim.integration_user_id());
    assert_eq!(info["preferred_username"], user);

    // The simulator's own address also counts as an audience (a My Domain login).
    let (status, _) = grant(assertion(claims(key, user, &h.base, now_secs() + 60))).await;
    assert_eq!(status, StatusCode::OK);

    for (what, jwt, expected) in [
        (
            "other issuer",
            assertion(claims("someone-else", user, aud, now_secs() + 60)),
            json!({"error": "invalid_client_id", "error_description": "client identifier invalid"}),
        ),
        (
            "other audience",
            assertion(claims(key, user, "https://example.com", now_secs() + 60)),
            json!({"error": "invalid_grant", "error_description": "audience is invalid"}),
        ),
        (
            "unknown user",
            assertion(claims(key, "nobody@example.com", aud, now_secs() + 60)),
            json!({"error": "invalid_grant", "error_description": "user hasn't approved this consumer"}),
        ),
    ] {
        let (status, body) = grant(jwt).await;
        assert_eq!(
            (status, body),
            (StatusCode::BAD_REQUEST, expected),
            "{what}"
        );
    }
    let expired = assertion(claims(key, user, aud, now_secs() - 10));
    let far = assertion(claims(key, user, aud, now_secs() + 3600));
    let hmac_signed = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(key, user, aud, now_secs() + 60),
        &EncodingKey::from_secret(b"guess"),
    )
    .expect("sign");
    let genuine = assertion(claims(key, user, aud, now_secs() + 60));
    let mut pieces: Vec<String> = genuine.split('.').map(str::to_string).collect();
    pieces[1] = URL_SAFE_NO_PAD.encode(claims(key, "agent@x", aud, now_secs() + 60).to_string());
    let tampered = pieces.join(".");
    for (what, jwt) in [
        ("expired", expired),
        ("too far ahead", far),
        ("HMAC", hmac_signed),
        ("tampered", tampered),
        ("garbage", "a.b.c".to_string()),
    ] {
        let (status, body) = grant(jwt).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(body["error"], "invalid_grant", "{what}: {body}");
    }
    // The exp check follows the simulator's clock.
    let soon = assertion(claims(key, user, aud, now_secs() + 120));
    h.sim.advance_clock(Duration::from_secs(600));
    let (status, _) = grant(soon).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Client credentials run as the integration user.
    let (status, body) = h
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", key),
            ("client_secret", &config.consumer_secret),
        ])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["id"]
        .as_str()
        .expect("id")
        .ends_with(&h.sim.integration_user_id()));
}

#[tokio::test]
async fn sessions_expire_and_revoked_tokens_get_invalid_session_id() {
    let h = Harness::start(Config {
        access_token_lifetime: Duration::from_secs(60),
        ..Config::default()
    })
    .await;
    let expected =
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]);
    let (status, _, _) = h.get(&format!("{V}/sobjects")).await;
    assert_eq!(status, StatusCode::OK);

    h.sim.advance_clock(Duration::from_secs(61));
    let (status, headers, body) = h.get(&format!("{V}/sobjects")).await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, expected.clone()));
    assert_eq!(headers["www-authenticate"], "Token");

    // A fresh token works until the control API revokes every session.
    let fresh = h.sim.issue_access_token();
    let call = |token: String| {
        let h = &h;
        async move {
            let response = h
                .http
                .get(h.url(V))
                .bearer_auth(token)
                .send()
                .await
                .expect("get");
            parts(response).await
        }
    };
    assert_eq!(call(fresh.clone()).await.0, StatusCode::OK);
    let response = h
        .http
        .post(h.url("/_control/tokens/revoke"))
        .json(&json!({}))
        .send()
        .await
        .expect("revoke");
    let (_, _, revoked) = parts(response).await;
    assert!(revoked["revoked"].as_u64().expect("count") >= 1);
    let (status, _, body) = call(fresh).await;
    assert_eq!((status, body), (StatusCode::UNAUTHORIZED, expected.clone()));

    // No header, or a made-up token.
    let response = h.http.get(h.url(V)).send().await.expect("get");
    assert_eq!(parts(response).await.2, expected);
    assert_eq!(
        call("00Dx!made-up".into()).await.0,
        StatusCode::UNAUTHORIZED
    );

    // The control API hands out tokens for scripts.
    let response = h
        .http
        .post(h.url("/_control/tokens"))
        .send()
        .await
        .expect("tokens");
    let (_, _, token) = parts(response).await;
    assert_eq!(
        call(token["access_token"].as_str().expect("token").into())
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn errors_are_salesforce_arrays_with_fields() {
    let h = Harness::default().await;
    let case = h.case("Broken").await;

    let cases = [
        (
            "Contact",
            json!({"FirstName": "Aiko"}),
            "REQUIRED_FIELD_MISSING",
            Some("LastName"),
        ),
        ("Case", json!({"Subjekt": "x"}), "INVALID_FIELD", None),
        (
            "Case",
            json!({"Status": "Waiting"}),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            Some("Status"),
        ),
        (
            "Case",
            json!({"Priority": "Urgent"}),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            Some("Priority"),
        ),
        (
            "Case",
            json!({"Origin": "Telegram"}),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            Some("Origin"),
        ),
        (
            "Case",
            json!({"Subject": "x".repeat(256)}),
            "STRING_TOO_LONG",
            Some("Subject"),
        ),
        (
            "Case",
            json!({"CaseNumber": "1"}),
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            Some("CaseNumber"),
        ),
        (
            "Case",
            json!({"ContactId": "not-an-id"}),
            "MALFORMED_ID",
            Some("ContactId"),
        ),
        (
            "Case",
            json!({"ContactId": case.clone()}),
            "FIELD_INTEGRITY_EXCEPTION",
            Some("ContactId"),
        ),
        (
            "Case",
            json!({"Subject": {"nested": true}}),
            "JSON_PARSER_ERROR",
            None,
        ),
        (
            "CaseComment",
            json!({"CommentBody": "hi"}),
            "REQUIRED_FIELD_MISSING",
            Some("ParentId"),
        ),
        (
            "CaseComment",
            json!({"ParentId": "5005g0000000zzzAAA", "CommentBody": "hi"}),
            "INVALID_CROSS_REFERENCE_KEY",
            Some("ParentId"),
        ),
        // 4,000 bytes at most: 1,334 three-byte characters are 4,002.
        (
            "CaseComment",
            json!({"ParentId": case.clone(), "CommentBody": "あ".repeat(1334)}),
            "STRING_TOO_LONG",
            Some("CommentBody"),
        ),
    ];
    for (object, body, code, field) in cases {
        let (status, _, answer) = h
            .post(&format!("{V}/sobjects/{object}"), body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{object} {body}: {answer}");
        let error = first_error(&answer);
        assert_eq!(error["errorCode"], code, "{object} {body}: {answer}");
        if let Some(field) = field {
            assert_eq!(error["fields"], json!([field]), "{answer}");
        }
    }
    assert_eq!(h.sim.tickets().len(), 1, "nothing invalid was created");
    assert!(h.sim.comments(&case).is_empty());

    // Resources that don't exist.
    for path in [
        format!("{V}/sobjects/Case/5005g0000000zzzAAA"),
        format!("{V}/sobjects/Widget__c"),
        format!("{V}/nothing-here"),
        "/services/data/vX/sobjects".to_string(),
    ] {
        let (status, _, body) = h.get(&path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            body,
            json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
        );
    }

    // Bodies that aren't JSON objects, and methods a resource doesn't take.
    let response = h
        .http
        .post(h.url(&format!("{V}/sobjects/Case")))
        .bearer_auth(&h.token)
        .header("content-type", "application/json")
        .body("{\"Subject\": ")
        .send()
        .await
        .expect("post");
    assert_eq!(error_code(&parts(response).await.2), "JSON_PARSER_ERROR");
    let response = h
        .http
        .post(h.url(&format!("{V}/sobjects/Case")))
        .bearer_auth(&h.token)
        .header("content-type", "text/plain")
        .body("Subject=x")
        .send()
        .await
        .expect("post");
    let (status, _, body) = parts(response).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UNSUPPORTED_MEDIA_TYPE")
    );
    let response = h
        .call(
            reqwest::Method::PUT,
            &format!("{V}/sobjects/Case/{case}"),
            Some(json!({})),
        )
        .await;
    let (status, _, body) = parts(response).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED")
    );

    // A unique external id can't be used twice.
    let (status, _, _) = h
        .post(&format!("{V}/sobjects/Case"), json!({EXT: "dup"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _, body) = h
        .post(&format!("{V}/sobjects/Case"), json!({EXT: "DUP"}))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "DUPLICATE_VALUE")
    );
}

#[tokio::test]
async fn upserts_answer_201_200_204_and_300() {
    let h = Harness::start(Config {
        external_id_fields: vec![
            ExternalIdField::new("Contact", EXT, true),
            ExternalIdField::new("Case", EXT, true),
            ExternalIdField::new("Case", "Legacy_Ref__c", false),
        ],
        ..Config::default()
    })
    .await;
    let path = format!("{V}/sobjects/Contact/{EXT}/telegram:5001");
    let (status, _, created) = h.patch(&path, json!({"LastName": "Aiko Sato"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("003") && id.len() == 18);
    assert_eq!(
        created,
        json!({"id": id, "success": true, "errors": [], "created": true})
    );

    let (status, _, updated) = h.patch(&path, json!({"LastName": "Aiko S."})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        updated,
        json!({"id": id, "success": true, "errors": [], "created": false})
    );
    assert_eq!(h.sim.contacts().len(), 1);
    assert_eq!(h.sim.contacts()[0]["Name"], "Aiko S.");

    // API v45.0 and older answer an update with 204 and no body.
    let old = format!("/services/data/v45.0/sobjects/Contact/{EXT}/telegram:5001");
    let response = h
        .call(
            reqwest::Method::PATCH,
            &old,
            Some(json!({"FirstName": "Aiko"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.text().await.expect("body").is_empty());

    // Reading by external id; updateOnly (v61.0+) refuses to create.
    let (status, _, read) = h
        .get(&format!(
            "{V}/sobjects/Contact/{EXT}/telegram:5001?fields=Id,Name"
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["Id"], id);
    assert_eq!(read["Name"], "Aiko Aiko S.");
    assert!(read.get("LastName").is_none());
    let (status, _, _) = h
        .patch(
            &format!("/services/data/v61.0/sobjects/Contact/{EXT}/telegram:9?updateOnly=true"),
            json!({"LastName": "X"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(h.sim.contacts().len(), 1);

    // A required field is still required when the upsert creates.
    let (status, _, body) = h
        .patch(
            &format!("{V}/sobjects/Contact/{EXT}/x:1"),
            json!({"FirstName": "No"}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "REQUIRED_FIELD_MISSING")
    );

    // A field that isn't an external id.
    let (status, _, body) = h
        .patch(&format!("{V}/sobjects/Case/Subject/x"), json!({}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(first_error(&body)["message"]
        .as_str()
        .expect("message")
        .contains("external ID field"));

    // Two records share a non-unique external id: 300 with both URLs, nothing written.
    let a = h
        .post(
            &format!("{V}/sobjects/Case"),
            json!({"Legacy_Ref__c": "L-1"}),
        )
        .await
        .2["id"]
        .clone();
    let b = h
        .post(
            &format!("{V}/sobjects/Case"),
            json!({"Legacy_Ref__c": "L-1"}),
        )
        .await
        .2["id"]
        .clone();
    let (status, _, body) = h
        .patch(
            &format!("{V}/sobjects/Case/Legacy_Ref__c/L-1"),
            json!({"Subject": "which?"}),
        )
        .await;
    assert_eq!(status, StatusCode::MULTIPLE_CHOICES);
    let urls: Vec<String> = serde_json::from_value(body).expect("list of URLs");
    assert_eq!(
        urls,
        vec![
            format!("{V}/sobjects/Case/{}", a.as_str().expect("a")),
            format!("{V}/sobjects/Case/{}", b.as_str().expect("b")),
        ]
    );
    assert!(h.sim.tickets().iter().all(|t| t["Subject"].is_null()));
    let (status, _, _) = h.get(&format!("{V}/sobjects/Case/Legacy_Ref__c/L-1")).await;
    assert_eq!(status, StatusCode::MULTIPLE_CHOICES);

    // Case upsert: the external id is stored, the URL value wins.
    let (status, _, body) = h
        .patch(
            &format!("{V}/sobjects/Case/{EXT}/ticket%3Aabc%2F1"),
            json!({"Subject": "Order late", "Priority": "High"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let case = h.sim.tickets().pop().expect("case");
    assert_eq!(case[EXT], "ticket:abc/1");
    assert_eq!(
        (case["Status"].clone(), case["Priority"].clone()),
        (json!("New"), json!("High"))
    );
    assert_eq!(case["CreatedById"], h.sim.integration_user_id());
}

#[tokio::test]
async fn cases_comments_reads_updates_and_replication() {
    let h = Harness::default().await;
    let case = h.case("Order late").await;
    let (status, _, body) = h
        .post(
            &format!("{V}/sobjects/CaseComment"),
            json!({"ParentId": case, "CommentBody": "Any news?", "IsPublished": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let comment_id = body["id"].as_str().expect("id").to_string();
    assert!(comment_id.starts_with("00a"));
    let comments = h.sim.comments(&case);
    assert_eq!(comments.len(), 1);
    assert_eq!(
        (
            comments[0]["IsPublished"].clone(),
            comments[0]["CommentBody"].clone()
        ),
        (json!(true), json!("Any news?"))
    );

    // 15-character ids work, and so do lower-cased 18-character ones.
    let (status, _, read) = h
        .get(&format!(
            "{V}/sobjects/Case/{}?fields=Id,Status,IsClosed,CaseNumber",
            &case[..15]
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["Id"], case);
    assert_eq!(
        read["attributes"],
        json!({"type": "Case", "url": format!("{V}/sobjects/Case/{case}")})
    );
    assert_eq!(
        (read["Status"].clone(), read["IsClosed"].clone()),
        (json!("New"), json!(false))
    );
    let (status, _, _) = h
        .get(&format!("{V}/sobjects/Case/{}", case.to_lowercase()))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Closing; `Comments` files an internal CaseComment.
    let response = h
        .call(
            reqwest::Method::PATCH,
            &format!("{V}/sobjects/Case/{case}"),
            Some(json!({"Status": "Closed", "Comments": "Closed by the hub"})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let stored = h.sim.tickets().pop().expect("case");
    assert_eq!(
        (stored["IsClosed"].clone(), stored["ClosedDate"].is_string()),
        (json!(true), true)
    );
    assert!(stored.get("Comments").is_none(), "write-only");
    let comments = h.sim.comments(&case);
    assert_eq!(
        (comments.len(), comments[1]["IsPublished"].clone()),
        (2, json!(false))
    );
    let modstamp = stored["SystemModstamp"].as_str().expect("modstamp");
    assert!(
        modstamp.ends_with("+0000") && modstamp.contains('.'),
        "{modstamp}"
    );

    // getUpdated sees the case; after a delete, getDeleted does.
    let start = "2020-01-01T00:00:00Z";
    let (status, _, body) = h
        .get(&format!(
            "{V}/sobjects/Case/updated/?start={start}&end=2999-01-01T00:00:00Z"
        ))
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "INVALID_REPLICATION_DATE")
    );
    // The current minute is not covered yet: look once it is over.
    h.sim.advance_clock(Duration::from_secs(120));
    let now = now_secs();
    let fmt = |secs: i64| chrono_like(secs * 1000);
    let window = format!("start={}&end={}", fmt(now - 3600), fmt(now + 3600));
    let (status, _, body) = h.get(&format!("{V}/sobjects/Case/updated/?{window}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ids"], json!([case]));
    let response = h
        .call(
            reqwest::Method::DELETE,
            &format!("{V}/sobjects/Case/{case}"),
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let (status, _, _) = h.get(&format!("{V}/sobjects/Case/{case}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, body) = h
        .patch(
            &format!("{V}/sobjects/Case/{case}"),
            json!({"Subject": "x"}),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "ENTITY_IS_DELETED")
    );
    h.sim.advance_clock(Duration::from_secs(120));
    let (_, _, body) = h.get(&format!("{V}/sobjects/Case/deleted/?{window}")).await;
    assert_eq!(body["deletedRecords"][0]["id"], case);

    // describe lists the picklist values.
    let (_, _, describe) = h.get(&format!("{V}/sobjects/Case/describe")).await;
    let status_field = describe["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["name"] == "Status")
        .expect("Status");
    let values: Vec<&str> = status_field["picklistValues"]
        .as_array()
        .expect("values")
        .iter()
        .filter_map(|v| v["value"].as_str())
        .collect();
    assert_eq!(values, ["New", "Working", "Escalated", "Closed"]);
}

/// `YYYY-MM-DDThh:mm:ssZ` for epoch ms, without a date crate.
fn chrono_like(ms: i64) -> String {
    let secs = ms / 1000;
    let days = secs.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[tokio::test]
async fn soql_pages_with_next_records_url() {
    let h = Harness::start(Config {
        min_batch_size: 1,
        max_batch_size: 3,
        ..Config::default()
    })
    .await;
    let before = chrono_like((now_secs() - 5) * 1000);
    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(h.case(&format!("Case {n}")).await);
    }
    let soql = format!("SELECT Id, Subject, SystemModstamp FROM Case WHERE SystemModstamp > {before} ORDER BY SystemModstamp ASC, Id");
    let (status, _, page) = h.query(&soql).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (page["totalSize"].clone(), page["done"].clone()),
        (json!(7), json!(false))
    );
    let mut seen: Vec<String> = Vec::new();
    let mut page = page;
    let mut pages = 1;
    loop {
        for record in page["records"].as_array().expect("records") {
            assert_eq!(record["attributes"]["type"], "Case");
            seen.push(record["Id"].as_str().expect("id").to_string());
        }
        if page["done"] == json!(true) {
            assert!(page.get("nextRecordsUrl").is_none());
            break;
        }
        let next = page["nextRecordsUrl"]
            .as_str()
            .expect("nextRecordsUrl")
            .to_string();
        assert!(
            next.starts_with(&format!("{V}/query/01g"))
                && next.ends_with(&format!("-{}", seen.len())),
            "{next}"
        );
        let (status, _, more) = h.get(&next).await;
        assert_eq!(status, StatusCode::OK, "{more}");
        page = more;
        pages += 1;
    }
    assert_eq!((seen.clone(), pages), (ids.clone(), 3));

    // A finished locator is gone; an idle one expires after 15 minutes.
    let (_, _, first) = h.query(&soql).await;
    let next = first["nextRecordsUrl"].as_str().expect("next").to_string();
    h.sim.advance_clock(Duration::from_secs(16 * 60));
    let (status, _, body) = h.get(&next).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "INVALID_QUERY_LOCATOR")
    );
    h.sim.advance_clock(Duration::from_secs(0));

    // LIMIT, filters, relationship fields, null checks and IN.
    let (_, _, limited) = h
        .query("SELECT Id FROM Case ORDER BY CreatedDate DESC, Id DESC LIMIT 2")
        .await;
    assert_eq!(limited["totalSize"], 2);
    assert_eq!(limited["records"][0]["Id"], json!(ids[6]));
    assert_eq!(limited["done"], true);
    let (status, _, body) = h
        .post(
            &format!("{V}/sobjects/CaseComment"),
            json!({"ParentId": ids[2], "CommentBody": "it's late", "IsPublished": true}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, comments) = h
        .query(&format!("SELECT Id, CommentBody, Parent.Subject, CreatedBy.Name, CreatedBy.UserType FROM CaseComment WHERE Parent.Subject != null AND (IsPublished = true OR CreatedById = '{}') AND ParentId IN ('{}', '{}')", h.sim.human_agent_id(), ids[2], &ids[3][..15]))
        .await;
    assert_eq!(status, StatusCode::OK, "{comments}");
    let record = &comments["records"][0];
    assert_eq!(record["CommentBody"], "it's late");
    assert_eq!(record["Parent"]["Subject"], "Case 2");
    assert_eq!(record["Parent"]["attributes"]["type"], "Case");
    assert_eq!(record["CreatedBy"]["Name"], "Switchboard Integration");
    assert_eq!(record["CreatedBy"]["UserType"], "Standard");
    let (_, _, escaped) = h
        .query("SELECT Id FROM CaseComment WHERE CommentBody = 'IT\\'S LATE'")
        .await;
    assert_eq!(
        escaped["totalSize"], 1,
        "string comparison ignores case: {escaped}"
    );

    // Anything outside the subset, or wrong, is refused the way Salesforce does.
    for (soql, code) in [
        ("SELECT COUNT() FROM Case", "MALFORMED_QUERY"),
        (
            "SELECT Id FROM Case WHERE Subject = 'a' AND Subject = 'b' OR Subject = 'c'",
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM Case WHERE CreatedDate > TODAY",
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM Case WHERE Subject LIKE 'a%'",
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM Case WHERE SystemModstamp > 2024-01-01T00:00:00.000Z",
            "MALFORMED_QUERY",
        ),
        (
            "SELECT Id FROM Case WHERE SystemModstamp > '2024-01-01T00:00:00Z'",
            "INVALID_FIELD",
        ),
        ("SELECT Id, Nope__c FROM Case", "INVALID_FIELD"),
        (
            "SELECT Id FROM Case WHERE Owner.Nope = 'x'",
            "INVALID_FIELD",
        ),
        ("SELECT Id FROM Widget__c", "INVALID_TYPE"),
        (
            "SELECT Id FROM Case WHERE Id = 'abc'",
            "INVALID_QUERY_FILTER_OPERATOR",
        ),
        ("SELECT Id FROM Case LIMIT", "MALFORMED_QUERY"),
        ("DELETE FROM Case", "MALFORMED_QUERY"),
    ] {
        let (status, _, body) = h.query(soql).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{soql}: {body}");
        assert_eq!(error_code(&body), code, "{soql}: {body}");
    }
    let (_, _, body) = h.query("SELECT Id, Nope__c FROM Case").await;
    let message = first_error(&body)["message"].as_str().expect("message");
    assert!(
        message.contains("ERROR at Row:1:Column:12")
            && message.contains("No such column 'Nope__c'"),
        "{message}"
    );

    // The batch size header is honoured within the org's bounds.
    let response = h
        .http
        .get(h.url(&format!("{V}/query")))
        .query(&[("q", "SELECT Id FROM Case")])
        .bearer_auth(&h.token)
        .header("Sforce-Query-Options", "batchSize=2")
        .send()
        .await
        .expect("query");
    let (_, _, body) = parts(response).await;
    assert_eq!(body["records"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn api_usage_is_reported_and_the_daily_limit_is_a_403() {
    let h = Harness::start(Config {
        daily_api_limit: Some(5),
        ..Config::default()
    })
    .await;
    let (_, headers, _) = h.get(V).await;
    assert_eq!(limit_info(&headers), (1, 5));
    let (status, headers, limits) = h.get(&format!("{V}/limits")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(limit_info(&headers), (2, 5));
    assert_eq!(
        limits["DailyApiRequests"],
        json!({"Max": 5, "Remaining": 3})
    );
    // Errors carry it too.
    let (status, headers, _) = h
        .get(&format!("{V}/sobjects/Case/5005g0000000zzzAAA"))
        .await;
    assert_eq!(
        (status, limit_info(&headers)),
        (StatusCode::NOT_FOUND, (3, 5))
    );
    h.get(V).await;
    h.get(V).await;
    let (status, headers, body) = h.get(V).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert!(
        headers.get("retry-after").is_none(),
        "Salesforce sends no Retry-After"
    );
    assert_eq!(limit_info(&headers), (5, 5));

    // The control API sets a new allocation (it restarts the window).
    let response = h
        .http
        .post(h.url("/_control/rate-limit"))
        .json(&json!({"limit": 1000, "window_secs": 86_400}))
        .send()
        .await
        .expect("rate limit");
    assert!(response.status().is_success());
    let (status, headers, _) = h.get(V).await;
    assert_eq!((status, limit_info(&headers)), (StatusCode::OK, (1, 1000)));

    // An injected rate-limit fault is the same 403, and 5xx faults come as error arrays.
    h.sim.faults().inject(FaultSpec {
        fault: Fault::RateLimited {
            retry_after_secs: 9,
        },
        count: 1,
        path: Some("/query".into()),
    });
    let (status, headers, body) = h.query("SELECT Id FROM Case").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "REQUEST_LIMIT_EXCEEDED")
    );
    assert!(headers.get("retry-after").is_none());
    h.sim.faults().inject(FaultSpec {
        fault: Fault::Status { status: 503 },
        count: 1,
        path: None,
    });
    let (status, _, body) = h.get(V).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::SERVICE_UNAVAILABLE, "SERVER_UNAVAILABLE")
    );

    // Without a configured allocation the header still counts, against the nominal 100000.
    h.sim.faults().clear();
    let (_, headers, _) = h.get(V).await;
    let (used, max) = limit_info(&headers);
    assert_eq!(max, 5, "the org's configured figure");
    assert!(used >= 1);
}

#[tokio::test]
async fn the_control_api_plays_the_agent_and_records_who_wrote() {
    let h = Harness::default().await;
    let (_, _, body) = h
        .patch(
            &format!("{V}/sobjects/Case/{EXT}/ticket:1"),
            json!({"Subject": "Order late"}),
        )
        .await;
    let case = body["id"].as_str().expect("id").to_string();

    let response = h
        .http
        .post(h.url(&format!("/_control/tickets/{case}/agent_reply")))
        .json(&json!({"body": "We are on it", "public": true}))
        .send()
        .await
        .expect("reply");
    let (status, _, reply) = parts(response).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let comment_id = reply["comment_id"]
        .as_str()
        .expect("comment id")
        .to_string();
    let note = h
        .sim
        .agent_reply(&case, "internal: check the warehouse", false);

    for (status, expected) in [
        ("pending", "Escalated"),
        ("solved", "Closed"),
        ("open", "Working"),
        ("Escalated", "Escalated"),
    ] {
        let response = h
            .http
            .post(h.url(&format!("/_control/tickets/{case}/status")))
            .json(&json!({"status": status}))
            .send()
            .await
            .expect("status");
        let (code, _, body) = parts(response).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(body["ticket"]["Status"], expected);
    }
    let response = h
        .http
        .post(h.url(&format!("/_control/tickets/{case}/status")))
        .json(&json!({"status": "archived"}))
        .send()
        .await
        .expect("status");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let response = h
        .http
        .get(h.url("/_control/tickets"))
        .send()
        .await
        .expect("tickets");
    let (_, _, tickets) = parts(response).await;
    let ticket = &tickets["tickets"][0];
    assert_eq!(
        (
            ticket["id"].clone(),
            ticket["subject"].clone(),
            ticket["status"].clone()
        ),
        (json!(case), json!("Order late"), json!("Escalated"))
    );
    let comments = ticket["comments"].as_array().expect("comments");
    let agent = h.sim.human_agent_id();
    assert_eq!(comments.len(), 2);
    assert_eq!(
        (
            comments[0]["id"].clone(),
            comments[0]["public"].clone(),
            comments[0]["author_id"].clone()
        ),
        (json!(comment_id), json!(true), json!(agent))
    );
    assert_eq!(
        (
            comments[1]["id"].clone(),
            comments[1]["public"].clone(),
            comments[1]["body"].clone()
        ),
        (
            json!(note),
            json!(false),
            json!("internal: check the warehouse")
        )
    );
    assert_eq!(h.sim.tickets()[0]["LastModifiedById"], agent);
    assert_eq!(
        (
            ticket["created_by_client"].clone(),
            ticket["last_modified_by_client"].clone()
        ),
        (json!("switchboard-tests"), Value::Null),
        "created through the API, last changed in the UI"
    );
    assert_eq!(comments[0]["created_by_client"], Value::Null);

    // Change events name the API client for API writes and none for the agent's.
    let events = h.sim.change_events();
    let header = |e: &Value| e["ChangeEventHeader"].clone();
    let create = events
        .iter()
        .map(header)
        .find(|e| e["entityName"] == "Case" && e["changeType"] == "CREATE")
        .expect("create");
    assert_eq!(
        create["changeOrigin"],
        "com/salesforce/api/rest/60.0;client=switchboard-tests"
    );
    assert_eq!(create["commitUser"], h.sim.integration_user_id());
    let by_agent = events
        .iter()
        .map(header)
        .filter(|e| e["commitUser"] == json!(agent))
        .collect::<Vec<_>>();
    assert!(!by_agent.is_empty() && by_agent.iter().all(|e| e["changeOrigin"] == ""));
    let response = h
        .http
        .get(h.url("/_control/change_events"))
        .send()
        .await
        .expect("events");
    assert_eq!(
        parts(response).await.2["events"].as_array().map(Vec::len),
        Some(events.len())
    );

    // The clock moves timestamps forward.
    let before = h.sim.tickets()[0]["SystemModstamp"].clone();
    let response = h
        .http
        .post(h.url("/_control/clock/advance"))
        .json(&json!({"secs": 3600}))
        .send()
        .await
        .expect("clock");
    assert!(response.status().is_success());
    h.sim.set_status(&case, "closed");
    let after = h.sim.tickets()[0]["SystemModstamp"].clone();
    assert!(after.as_str() > before.as_str(), "{before} < {after}");
}

#[tokio::test]
async fn chunked_request_bodies_are_accepted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::default().await;
    let addr = h.base.trim_start_matches("http://").to_owned();
    let body = r#"{"LastName":"Chunked Person"}"#;
    let (a, b) = body.split_at(9);
    let request = format!(
        "PATCH {V}/sobjects/Contact/{EXT}/line:42 HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        h.token,
        a.len(),
        b.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("sforce-limit-info: api-usage="),
        "{response}"
    );
    assert_eq!(h.sim.contacts()[0]["LastName"], "Chunked Person");
}

/// sObject Collections, as jsforce sends every array create, update, upsert and delete: one
/// result per record in order, 200 even when some fail, and `allOrNone` rolling back.
#[tokio::test]
async fn composite_sobjects_create_update_upsert_and_delete_per_record() {
    let h = Harness::default().await;
    let path = format!("{V}/composite/sobjects");
    let (status, _, results) = h
        .post(
            &path,
            json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Case"}, "Subject": "first"},
                {"attributes": {"type": "Case"}, "Status": "No such status"},
                {"attributes": {"type": "Contact"}, "LastName": "Okafor"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{results}");
    let results = results.as_array().expect("array").clone();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["success"], json!(true));
    let case = results[0]["id"].as_str().expect("id").to_owned();
    assert!(case.starts_with("500"));
    assert_eq!(results[1]["success"], json!(false));
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        json!("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        "{}",
        results[1]
    );
    assert_eq!(results[2]["success"], json!(true));
    assert!(results[2]["id"]
        .as_str()
        .is_some_and(|i| i.starts_with("003")));

    // All or none: one bad record, nothing written, every other record rolled back.
    let before = h.sim.tickets().len();
    let (status, _, results) = h
        .post(
            &path,
            json!({"allOrNone": true, "records": [
                {"attributes": {"type": "Case"}, "Subject": "kept?"},
                {"attributes": {"type": "Case"}, "Nope__c": 1},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(results[0]["success"], json!(false));
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        json!("ALL_OR_NONE_OPERATION_ROLLED_BACK")
    );
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        json!("INVALID_FIELD")
    );
    assert_eq!(h.sim.tickets().len(), before, "rolled back");

    // Update by id, and an Id is refused on create.
    let (_, _, results) = h
        .patch(
            &path,
            json!({"records": [{"attributes": {"type": "Case"}, "id": case, "Subject": "renamed"}]}),
        )
        .await;
    assert_eq!(
        results[0],
        json!({"id": case, "success": true, "errors": []})
    );
    let (_, _, record) = h.get(&format!("{V}/sobjects/Case/{case}")).await;
    assert_eq!(record["Subject"], json!("renamed"));
    let (_, _, results) = h
        .post(
            &path,
            json!({"records": [{"attributes": {"type": "Case"}, "Id": case}]}),
        )
        .await;
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        json!("INVALID_FIELD")
    );

    // Upsert by the external id: created, then updated.
    let upsert = format!("{V}/composite/sobjects/Case/{EXT}");
    let body =
        json!({"records": [{"attributes": {"type": "Case"}, EXT: "conv-1", "Subject": "by ext"}]});
    let (status, _, results) = h.patch(&upsert, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{results}");
    assert_eq!(
        (&results[0]["success"], &results[0]["created"]),
        (&json!(true), &json!(true))
    );
    let (_, _, results) = h.patch(&upsert, body).await;
    assert_eq!(results[0]["created"], json!(false));

    // Retrieve several, then delete with ids= (an unknown id fails alone).
    let (_, _, records) = h
        .post(
            &format!("{V}/composite/sobjects/Case"),
            json!({"ids": [case, "500000000000000AAA"], "fields": ["Subject"]}),
        )
        .await;
    assert_eq!(records[0]["Subject"], json!("renamed"));
    assert_eq!(records[1], Value::Null);
    let response = h
        .call(
            reqwest::Method::DELETE,
            &format!("{path}?ids={case},001000000000000AAA"),
            None,
        )
        .await;
    let (status, _, results) = parts(response).await;
    assert_eq!(status, StatusCode::OK, "{results}");
    assert_eq!(
        results[0],
        json!({"id": case, "success": true, "errors": []})
    );
    assert_eq!(results[1]["success"], json!(false));
    let (status, _, _) = h.get(&format!("{V}/sobjects/Case/{case}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // More than 200 records is a request error.
    let many: Vec<Value> = (0..201)
        .map(|i| json!({"attributes": {"type": "Case"}, "Subject": format!("n{i}")}))
        .collect();
    let (status, _, body) = h.post(&path, json!({"records": many})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body[0]["errorCode"], json!("EXCEEDED_ID_LIMIT"));
}
