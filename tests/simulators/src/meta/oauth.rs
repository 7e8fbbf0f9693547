//! Tokens: Facebook Login's code exchange and long-lived user tokens, the Page tokens
//! `/me/accounts` hands out, and Instagram Login's short- and long-lived tokens with their
//! refresh, all timed on the simulator clock.

use serde_json::{json, Value};

use super::api::Params;
use super::error::GraphError;
use super::model::Store;

/// Short-lived tokens (Facebook and Instagram Login): about an hour.
const SHORT_MS: i64 = 60 * 60 * 1000;
/// Long-lived tokens: 60 days (`expires_in` 5184000).
const LONG_SECS: i64 = 5_184_000;
const LONG_MS: i64 = LONG_SECS * 1000;
/// An Instagram token can be refreshed once it is a day old.
const REFRESH_AFTER_MS: i64 = 24 * 60 * 60 * 1000;

/// The id of the Page admin who logs in.
pub(crate) const ADMIN_USER_ID: &str = "10160000000000001";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IssuedKind {
    ShortUser,
    LongUser,
    /// A Page token from a short-lived user token: it dies with it.
    ShortPage,
    ShortInstagram,
    LongInstagram,
}

#[derive(Debug, Clone)]
pub(crate) struct Issued {
    pub token: String,
    pub kind: IssuedKind,
    pub issued_ms: i64,
    pub expires_ms: i64,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    Page,
    Instagram,
    WhatsApp,
    /// A user token: `/me` and `/me/accounts` only.
    User,
}

#[derive(Debug, Default)]
pub(crate) struct Tokens {
    pub issued: Vec<Issued>,
    /// Login codes not yet exchanged.
    pub codes: Vec<String>,
    /// Codes already exchanged (a second use is refused).
    pub used_codes: Vec<String>,
    next: u64,
}

impl Tokens {
    fn mint(&mut self, prefix: &str, kind: IssuedKind, now_ms: i64, life_ms: i64) -> Issued {
        self.next += 1;
        let issued = Issued {
            token: format!(
                "{prefix}sim{:010}{}",
                self.next,
                now_ms.rem_euclid(1_000_000)
            ),
            kind,
            issued_ms: now_ms,
            expires_ms: now_ms + life_ms,
        };
        self.issued.push(issued.clone());
        issued
    }

    /// A login code, as Facebook Login's redirect carries it.
    pub fn code(&mut self) -> String {
        self.next += 1;
        let code = format!("AQsimcode{:08}", self.next);
        self.codes.push(code.clone());
        code
    }

    /// A short-lived Instagram User token, as Instagram Login hands it out.
    pub fn instagram_short(&mut self, now_ms: i64) -> Issued {
        self.mint("IGQsim", IssuedKind::ShortInstagram, now_ms, SHORT_MS)
    }

    fn find(&self, token: &str) -> Option<&Issued> {
        self.issued.iter().find(|t| t.token == token)
    }
}

fn expired(at_ms: i64, now_ms: i64) -> GraphError {
    let at = crate::kit::dates::iso8601(at_ms.div_euclid(1000));
    let now = crate::kit::dates::iso8601(now_ms.div_euclid(1000));
    GraphError::invalid_token(
        Some(463),
        &format!("Error validating access token: Session has expired on {at}. The current time is {now}."),
    )
}

fn invalid() -> GraphError {
    GraphError::invalid_token(
        None,
        "Invalid OAuth access token - Cannot parse access token",
    )
}

/// Who `token` belongs to, or the 190 error Graph answers.
pub(crate) fn holder(store: &Store, token: &str, now_ms: i64) -> Result<Holder, GraphError> {
    let c = &store.config;
    let fixed = if token == c.page_access_token {
        Some(Holder::Page)
    } else if token == c.instagram_access_token {
        Some(Holder::Instagram)
    } else if token == c.whatsapp_access_token {
        Some(Holder::WhatsApp)
    } else {
        None
    };
    let holder = match fixed {
        Some(h) => h,
        None => {
            let issued = store.tokens.find(token).ok_or_else(invalid)?;
            if now_ms >= issued.expires_ms {
                return Err(expired(issued.expires_ms, now_ms));
            }
            match issued.kind {
                IssuedKind::ShortUser | IssuedKind::LongUser => Holder::User,
                IssuedKind::ShortPage => Holder::Page,
                IssuedKind::ShortInstagram | IssuedKind::LongInstagram => Holder::Instagram,
            }
        }
    };
    if let Some((subcode, message)) = &store.token_revoked {
        return Err(GraphError::invalid_token(Some(*subcode), message));
    }
    Ok(holder)
}

fn text<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params.get(key).and_then(Value::as_str)
}

fn check_app(store: &Store, params: &Params) -> Result<(), GraphError> {
    if text(params, "client_id").is_some_and(|id| id != store.config.app_id) {
        return Err(GraphError::new(
            101,
            None,
            "Error validating application. Invalid application ID.",
        ));
    }
    if text(params, "client_secret") != Some(store.config.app_secret.as_str()) {
        return Err(GraphError::new(1, None, "Error validating client secret."));
    }
    Ok(())
}

fn answer(issued: &Issued, now_ms: i64) -> Value {
    json!({
        "access_token": issued.token,
        "token_type": "bearer",
        "expires_in": (issued.expires_ms - now_ms).div_euclid(1000),
    })
}

/// The token endpoints, which authenticate by their own parameters; `None` for other paths.
pub(crate) fn route(
    store: &mut Store,
    segments: &[&str],
    params: &Params,
    now_ms: i64,
) -> Option<Result<Value, GraphError>> {
    let result = match segments {
        ["oauth", "access_token"] => facebook_exchange(store, params, now_ms),
        ["access_token"] => instagram_exchange(store, params, now_ms),
        ["refresh_access_token"] => instagram_refresh(store, params, now_ms),
        _ => return None,
    };
    Some(result)
}

/// `GET /oauth/access_token`: a login `code` for a short-lived user token, or
/// `grant_type=fb_exchange_token` for a long-lived one.
fn facebook_exchange(store: &mut Store, params: &Params, now_ms: i64) -> Result<Value, GraphError> {
    check_app(store, params)?;
    if text(params, "grant_type") == Some("fb_exchange_token") {
        let short = text(params, "fb_exchange_token")
            .ok_or_else(|| GraphError::invalid_parameter("Missing fb_exchange_token parameter"))?;
        if holder(store, short, now_ms)? != Holder::User {
            return Err(invalid());
        }
        let issued = store
            .tokens
            .mint("EAAGlong", IssuedKind::LongUser, now_ms, LONG_MS);
        return Ok(answer(&issued, now_ms));
    }
    let code = text(params, "code")
        .ok_or_else(|| GraphError::invalid_parameter("Missing authorization code"))?
        .to_owned();
    if store.tokens.used_codes.contains(&code) {
        return Err(GraphError::new(
            100,
            Some(36009),
            "This authorization code has been used.",
        ));
    }
    let Some(index) = store.tokens.codes.iter().position(|c| *c == code) else {
        return Err(GraphError::new(
            100,
            Some(36008),
            "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
        ));
    };
    store.tokens.codes.remove(index);
    store.tokens.used_codes.push(code);
    let issued = store
        .tokens
        .mint("EAAGshort", IssuedKind::ShortUser, now_ms, SHORT_MS);
    Ok(answer(&issued, now_ms))
}

/// `GET /access_token?grant_type=ig_exchange_token`: a short-lived Instagram token for a
/// 60-day one.
fn instagram_exchange(
    store: &mut Store,
    params: &Params,
    now_ms: i64,
) -> Result<Value, GraphError> {
    if text(params, "grant_type") != Some("ig_exchange_token") {
        return Err(GraphError::invalid_parameter(
            "grant_type must be ig_exchange_token",
        ));
    }
    check_app(store, params)?;
    let short = text(params, "access_token").ok_or_else(GraphError::token_required)?;
    let kind = store.tokens.find(short).map(|t| t.kind);
    holder(store, short, now_ms)?;
    if kind != Some(IssuedKind::ShortInstagram) {
        return Err(invalid());
    }
    let issued = store
        .tokens
        .mint("IGAAlong", IssuedKind::LongInstagram, now_ms, LONG_MS);
    Ok(answer(&issued, now_ms))
}

/// `GET /refresh_access_token?grant_type=ig_refresh_token`: a long-lived token at least a day
/// old and not expired gets a fresh 60 days.
fn instagram_refresh(store: &mut Store, params: &Params, now_ms: i64) -> Result<Value, GraphError> {
    if text(params, "grant_type") != Some("ig_refresh_token") {
        return Err(GraphError::invalid_parameter(
            "grant_type must be ig_refresh_token",
        ));
    }
    let token = text(params, "access_token").ok_or_else(GraphError::token_required)?;
    holder(store, token, now_ms)?;
    let issued = store
        .tokens
        .find(token)
        .filter(|t| t.kind == IssuedKind::LongInstagram)
        .cloned()
        .ok_or_else(invalid)?;
    if now_ms - issued.issued_ms < REFRESH_AFTER_MS {
        // Meta refuses refreshing a token younger than 24 hours; its exact wording is not
        // documented, so this message is the simulator's.
        return Err(GraphError::invalid_parameter(
            "The access token can be refreshed only once it is at least 24 hours old",
        ));
    }
    let fresh = store
        .tokens
        .mint("IGAAlong", IssuedKind::LongInstagram, now_ms, LONG_MS);
    Ok(answer(&fresh, now_ms))
}

/// `GET /me/accounts` with a user token: the Page with a Page token (long-lived user tokens
/// give a token without expiry, short-lived ones one that dies with them).
pub(crate) fn accounts(store: &mut Store, token: &str, now_ms: i64) -> Value {
    let short = store
        .tokens
        .find(token)
        .filter(|t| t.kind == IssuedKind::ShortUser)
        .cloned();
    let page_token = match short {
        Some(user) => {
            let life = user.expires_ms - now_ms;
            store
                .tokens
                .mint("EAAGpage", IssuedKind::ShortPage, now_ms, life)
                .token
        }
        None => store.config.page_access_token.clone(),
    };
    json!({"data": [{
        "access_token": page_token,
        "category": "Coffee Shop",
        "category_list": [{"id": "128673187201735", "name": "Coffee Shop"}],
        "name": store.config.page_name,
        "id": store.config.page_id,
        "tasks": ["ANALYZE", "ADVERTISE", "MESSAGING", "MODERATE", "CREATE_CONTENT", "MANAGE"],
    }]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Config;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect()
    }

    #[test]
    fn codes_become_user_tokens_once_and_long_lived_tokens_last_60_days() {
        let mut store = Store::new(Config::default());
        let secret = store.config.app_secret.clone();
        let code = store.tokens.code();
        let exchange = params(&[("code", &code), ("client_secret", &secret)]);
        let short = facebook_exchange(&mut store, &exchange, 0).expect("short");
        let reused = facebook_exchange(&mut store, &exchange, 1).expect_err("used");
        assert_eq!(reused.subcode, Some(36009));
        let short_token = short["access_token"].as_str().expect("token").to_owned();
        let long = facebook_exchange(
            &mut store,
            &params(&[
                ("grant_type", "fb_exchange_token"),
                ("client_secret", &secret),
                ("fb_exchange_token", &short_token),
            ]),
            2,
        )
        .expect("long");
        assert_eq!(long["expires_in"], LONG_SECS);
        let long_token = long["access_token"].as_str().expect("token");
        assert_eq!(holder(&store, long_token, LONG_MS), Ok(Holder::User));
        let late = holder(&store, long_token, LONG_MS + 2).expect_err("expired");
        assert_eq!(late.subcode, Some(463));
        let wrong = params(&[("code", "x"), ("client_secret", "nope")]);
        assert_eq!(
            facebook_exchange(&mut store, &wrong, 3)
                .expect_err("secret")
                .code,
            1
        );
    }

    #[test]
    fn instagram_tokens_refresh_after_a_day_until_they_expire() {
        let mut store = Store::new(Config::default());
        let secret = store.config.app_secret.clone();
        let short = store.tokens.instagram_short(0).token;
        let long = instagram_exchange(
            &mut store,
            &params(&[
                ("grant_type", "ig_exchange_token"),
                ("client_secret", &secret),
                ("access_token", &short),
            ]),
            0,
        )
        .expect("long");
        let long = long["access_token"].as_str().expect("token").to_owned();
        let refresh = params(&[("grant_type", "ig_refresh_token"), ("access_token", &long)]);
        assert!(
            instagram_refresh(&mut store, &refresh, 1000).is_err(),
            "too new"
        );
        let fresh = instagram_refresh(&mut store, &refresh, REFRESH_AFTER_MS).expect("refreshed");
        assert_eq!(fresh["expires_in"], LONG_SECS);
        let expired = instagram_refresh(&mut store, &refresh, LONG_MS).expect_err("expired");
        assert_eq!(expired.code, 190);
    }
}
