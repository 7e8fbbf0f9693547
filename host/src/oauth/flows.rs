//! The requests to a provider's authorization server: the standard grants through the `oauth2`
//! crate, and the JWT bearer grant (RFC 7523) as a form POST of an RS256 assertion.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
    BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, ExtraTokenFields, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

use super::ClientConfig;

/// How long a JWT bearer assertion is valid. Salesforce refuses an `exp` more than 3 minutes
/// ahead.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(150);
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Every field of a token response besides the standard ones (e.g. Salesforce's
/// `instance_url`, `id`, `issued_at`, `signature`; an OpenID `id_token`).
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Extras {
    #[serde(flatten)]
    fields: BTreeMap<String, serde_json::Value>,
}

impl ExtraTokenFields for Extras {}

// Values may be tokens (`id_token`): show the names only.
impl fmt::Debug for Extras {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.fields.keys()).finish()
    }
}

type Response = StandardTokenResponse<Extras, BasicTokenType>;
type OAuthClient = Client<
    BasicErrorResponse,
    Response,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Tokens a provider issued.
#[derive(Clone)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
    pub scopes: Option<Vec<String>>,
    /// Extra response fields with scalar values, as text.
    pub extras: BTreeMap<String, String>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .field("extras", &self.extras.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a request to the authorization server failed. Messages never carry tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FlowError {
    /// The grant or the client was refused (`invalid_grant`, `invalid_client`, ...): an admin
    /// must act.
    #[error("{0}")]
    Refused(String),
    /// Unreachable, a server error, or an answer that does not parse: may work later.
    #[error("{0}")]
    Unavailable(String),
    /// The installation's settings cannot make this request.
    #[error("{0}")]
    Config(String),
}

impl From<Response> for Tokens {
    fn from(response: Response) -> Self {
        let extras = response
            .extra_fields()
            .fields
            .iter()
            .filter_map(|(key, value)| {
                let text = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => b.to_string(),
                    _ => return None,
                };
                Some((key.clone(), text))
            })
            .collect();
        Tokens {
            access_token: response.access_token().secret().clone(),
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
            expires_in: response.expires_in(),
            scopes: response
                .scopes()
                .map(|s| s.iter().map(|s| s.to_string()).collect()),
            extras,
        }
    }
}

fn client(config: &ClientConfig) -> OAuthClient {
    let mut client = Client::new(ClientId::new(config.client_id.clone()))
        .set_auth_uri_option(
            config
                .authorize_url
                .as_ref()
                .map(|u| AuthUrl::from_url(u.clone())),
        )
        .set_token_uri(TokenUrl::from_url(config.token_url.clone()))
        // Credentials in the form body: what Salesforce documents, and every provider accepts.
        .set_auth_type(AuthType::RequestBody);
    if let Some(secret) = &config.client_secret {
        client = client.set_client_secret(ClientSecret::new(secret.clone()));
    }
    client
}

fn scopes(config: &ClientConfig) -> impl Iterator<Item = Scope> + '_ {
    config.scopes.iter().map(|s| Scope::new(s.clone()))
}

/// The authorization request URL with `state` and an S256 PKCE challenge, and the verifier
/// to keep for the code exchange.
pub fn authorize_url(
    config: &ClientConfig,
    redirect_uri: &str,
) -> Result<(Url, String, String), FlowError> {
    let redirect = RedirectUrl::new(redirect_uri.to_string())
        .map_err(|e| FlowError::Config(format!("redirect URI `{redirect_uri}`: {e}")))?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client(config)
        .set_redirect_uri(redirect)
        .authorize_url(CsrfToken::new_random)
        .map_err(|e| FlowError::Config(format!("the plugin declares no authorize-url: {e}")))?
        .add_scopes(scopes(config))
        .set_pkce_challenge(challenge)
        .url();
    Ok((url, state.secret().clone(), verifier.secret().clone()))
}

pub async fn exchange_code(
    config: &ClientConfig,
    http: &reqwest::Client,
    code: &str,
    verifier: &str,
    redirect_uri: &str,
) -> Result<Tokens, FlowError> {
    let redirect = RedirectUrl::new(redirect_uri.to_string())
        .map_err(|e| FlowError::Config(format!("redirect URI `{redirect_uri}`: {e}")))?;
    client(config)
        .set_redirect_uri(redirect)
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_string()))
        .request_async(http)
        .await
        .map(Tokens::from)
        .map_err(|e| classify(e, "exchanging the authorization code"))
}

pub async fn refresh(
    config: &ClientConfig,
    http: &reqwest::Client,
    refresh_token: &str,
) -> Result<Tokens, FlowError> {
    let token = RefreshToken::new(refresh_token.to_string());
    client(config)
        .exchange_refresh_token(&token)
        .request_async(http)
        .await
        .map(Tokens::from)
        .map_err(|e| classify(e, "refreshing the access token"))
}

pub async fn client_credentials(
    config: &ClientConfig,
    http: &reqwest::Client,
) -> Result<Tokens, FlowError> {
    if config.client_secret.is_none() {
        return Err(FlowError::Config(
            "the client credentials flow needs the setting `oauth_client_secret`".into(),
        ));
    }
    client(config)
        .exchange_client_credentials()
        .add_scopes(scopes(config))
        .request_async(http)
        .await
        .map(Tokens::from)
        .map_err(|e| classify(e, "the client credentials grant"))
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    jti: String,
}

/// The RS256-signed assertion of the JWT bearer grant.
pub fn assertion(config: &ClientConfig, now_secs: i64) -> Result<String, FlowError> {
    let (Some(key), Some(username)) = (&config.jwt_private_key, &config.jwt_username) else {
        return Err(FlowError::Config(
            "the JWT bearer flow needs the settings `oauth_jwt_private_key` and `oauth_jwt_username`"
                .into(),
        ));
    };
    // PEM read errors say nothing about the key's content, but keep them generic anyway.
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(key.as_bytes()).map_err(|_| {
        FlowError::Config("`oauth_jwt_private_key` is not a PEM-encoded RSA private key".into())
    })?;
    let claims = Assertion {
        iss: &config.client_id,
        sub: username,
        aud: &config.jwt_audience,
        exp: now_secs + ASSERTION_LIFETIME.as_secs() as i64,
        iat: now_secs,
        jti: uuid::Uuid::now_v7().to_string(),
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &key,
    )
    .map_err(|e| FlowError::Config(format!("signing the JWT assertion failed: {e}")))
}

/// The JWT bearer grant. The `oauth2` crate has no request type for it (nor a generic
/// extension-grant one: its requests fix `grant_type`), so this is the RFC 7523 form POST
/// itself, answered with the same token response and error types as the other grants.
pub async fn jwt_bearer(
    config: &ClientConfig,
    http: &reqwest::Client,
    now_secs: i64,
) -> Result<Tokens, FlowError> {
    let assertion = assertion(config, now_secs)?;
    let mut form = vec![("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)];
    let scope = config.scopes.join(" ");
    if !scope.is_empty() {
        form.push(("scope", &scope));
    }
    let response = http
        .post(config.token_url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .map_err(|e| unreachable_error(&config.token_url, &e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| unreachable_error(&config.token_url, &e))?;
    if status.is_success() {
        // The body holds the token: a parse error must not quote it.
        let parsed: Response = serde_json::from_slice(&body).map_err(|_| {
            FlowError::Unavailable(format!(
                "the JWT bearer grant: the token endpoint answered {status} with a body that is \
                 not a token response"
            ))
        })?;
        return Ok(parsed.into());
    }
    match serde_json::from_slice::<BasicErrorResponse>(&body) {
        Ok(error) if !status.is_server_error() => {
            Err(classify_error_response(&error, "the JWT bearer grant"))
        }
        _ => Err(FlowError::Unavailable(format!(
            "the JWT bearer grant: the token endpoint answered {status}"
        ))),
    }
}

fn unreachable_error(url: &Url, error: &reqwest::Error) -> FlowError {
    if let Some(refused) = crate::runtime::http::network_refusal(error) {
        return FlowError::Unavailable(format!("token endpoint: {refused}"));
    }
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "transport error"
    };
    FlowError::Unavailable(format!(
        "token endpoint {}: {what}",
        url.origin().ascii_serialization()
    ))
}

fn classify_error_response(error: &BasicErrorResponse, what: &str) -> FlowError {
    let code = error.error().to_string();
    let message = match error.error_description() {
        Some(description) => format!("{what}: {code}: {description}"),
        None => format!("{what}: {code}"),
    };
    let retryable = match error.error() {
        BasicErrorResponseType::Extension(code) => matches!(
            code.as_str(),
            "server_error" | "temporarily_unavailable" | "rate_limit_exceeded" | "slow_down"
        ),
        _ => false,
    };
    if retryable {
        FlowError::Unavailable(message)
    } else {
        FlowError::Refused(message)
    }
}

fn classify(
    error: RequestTokenError<oauth2::HttpClientError<reqwest::Error>, BasicErrorResponse>,
    what: &str,
) -> FlowError {
    match error {
        RequestTokenError::ServerResponse(response) => classify_error_response(&response, what),
        RequestTokenError::Request(e) => {
            if let oauth2::HttpClientError::Reqwest(e) = &e {
                if let Some(refused) = crate::runtime::http::network_refusal(e.as_ref()) {
                    return FlowError::Unavailable(format!(
                        "{what}: the token endpoint: {refused}"
                    ));
                }
            }
            let detail = match &e {
                oauth2::HttpClientError::Reqwest(e) if e.is_timeout() => "timed out",
                oauth2::HttpClientError::Reqwest(e) if e.is_connect() => "could not connect",
                _ => "transport error",
            };
            FlowError::Unavailable(format!("{what}: the token endpoint: {detail}"))
        }
        // The body (possibly holding a token) is left out on purpose.
        RequestTokenError::Parse(e, _) => FlowError::Unavailable(format!(
            "{what}: the token endpoint's answer does not parse (at `{}`)",
            e.path()
        )),
        RequestTokenError::Other(message) => FlowError::Unavailable(format!("{what}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_responses_keep_scalar_extras_and_hide_tokens_in_debug() {
        let response: Response = serde_json::from_str(
            r#"{"access_token":"at-123","token_type":"Bearer","instance_url":"https://x.my.salesforce.com",
                "issued_at":"1700000000000","refresh_token":"rt-456","nested":{"a":1}}"#,
        )
        .expect("parse");
        let tokens = Tokens::from(response);
        assert_eq!(tokens.access_token, "at-123");
        assert_eq!(tokens.refresh_token.as_deref(), Some("rt-456"));
        assert_eq!(tokens.expires_in, None, "Salesforce sends no expires_in");
        assert_eq!(tokens.extras["instance_url"], "https://x.my.salesforce.com");
        assert!(!tokens.extras.contains_key("nested"));
        let shown = format!("{tokens:?}");
        assert!(
            !shown.contains("at-123") && !shown.contains("rt-456"),
            "{shown}"
        );
    }

    #[test]
    fn invalid_grant_is_refused_and_server_errors_are_not() {
        let error: BasicErrorResponse = serde_json::from_str(
            r#"{"error":"invalid_grant","error_description":"expired access/refresh token"}"#,
        )
        .expect("parse");
        let classified = classify_error_response(&error, "refresh");
        assert!(
            matches!(&classified, FlowError::Refused(m) if m.contains("expired access/refresh token"))
        );
        let error: BasicErrorResponse =
            serde_json::from_str(r#"{"error":"temporarily_unavailable"}"#).expect("parse");
        assert!(matches!(
            classify_error_response(&error, "refresh"),
            FlowError::Unavailable(_)
        ));
    }
}
