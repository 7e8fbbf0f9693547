//! A helpdesk connector whose only real work is an authenticated `GET {api_base}/me`: enough to
//! show that the host adds the OAuth2 token, renews it, and stops when the grant is gone.

use switchboard_plugin_sdk::helpdesk::{
    CommentRef, HelpdeskConnector, NewComment, NewTicket, PollPage, Requester, RequesterRequest,
    TicketRef, TicketState, TicketStatus, TicketUpdate, WebhookOutcome,
};
use switchboard_plugin_sdk::http;
use switchboard_plugin_sdk::prelude::*;

const API_BASE: &str = "api_base";
const LOGIN_URL: &str = "login_url";
pub const STREAM: &str = "whoami";

struct OAuthHelpdesk;

fn setting(key: &str, secret: bool, required: bool) -> SettingSpec {
    SettingSpec {
        key: key.into(),
        label: key.replace('_', " "),
        description: format!("`{key}`"),
        secret,
        required,
        default_value: None,
    }
}

/// `GET {api_base}/me` with the host's token; the answer's `sub`.
fn whoami(ctx: &Context) -> Result<String> {
    let base = ctx.require(API_BASE)?;
    let me: serde_json::Value = http::get(format!("{}/me", base.trim_end_matches('/')))
        .send()?
        .error_for_status()?
        .json()?;
    Ok(me["sub"].as_str().unwrap_or_default().to_string())
}

impl HelpdeskConnector for OAuthHelpdesk {
    fn describe() -> Manifest {
        Manifest {
            id: "test.oauth-helpdesk".into(),
            name: "OAuth2 test helpdesk".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: PluginKind::Helpdesk,
            description: "Calls {api_base}/me with the host-held OAuth2 token.".into(),
            settings: vec![
                setting(API_BASE, false, true),
                setting(LOGIN_URL, false, true),
                setting("oauth_client_id", false, true),
                setting("oauth_client_secret", true, false),
                setting("oauth_jwt_private_key", true, false),
                setting("oauth_jwt_username", false, false),
                setting("oauth_jwt_audience", false, false),
            ],
            http_hosts: vec!["{api_base}".into()],
            credentials: vec![CredentialRule {
                host_pattern: "{api_base}".into(),
                placement: CredentialPlacement::Bearer("{oauth.access-token}".into()),
            }],
            streams: vec![StreamSpec {
                name: STREAM.into(),
                description: "Who the token belongs to".into(),
                default_schedule: "*/1 * * * * *".into(),
            }],
            accepts_webhooks: false,
            text_limits: vec![],
            reply_windows: vec![],
            oauth2: Some(Oauth2Spec {
                authorize_url: "{login_url}/auth".into(),
                token_url: "{login_url}/token".into(),
                scopes: vec!["openid".into()],
                flows: vec![
                    Oauth2Flow::AuthorizationCodePkce,
                    Oauth2Flow::RefreshToken,
                    Oauth2Flow::JwtBearer,
                    Oauth2Flow::ClientCredentials,
                ],
            }),
        }
    }

    fn find_or_create_requester(ctx: &Context, request: RequesterRequest) -> Result<Requester> {
        whoami(ctx)?;
        Ok(Requester {
            id: format!("req-{}", request.external_id),
            created: true,
        })
    }

    fn create_ticket(ctx: &Context, ticket: NewTicket) -> Result<TicketRef> {
        let owner = whoami(ctx)?;
        Ok(TicketRef {
            id: format!("ticket-{}", ticket.idempotency_key),
            created: true,
            url: Some(format!("urn:owner:{owner}")),
        })
    }

    fn add_comment(ctx: &Context, comment: NewComment) -> Result<CommentRef> {
        whoami(ctx)?;
        Ok(CommentRef {
            id: format!("comment-{}", comment.idempotency_key),
        })
    }

    fn update_ticket(ctx: &Context, update: TicketUpdate) -> Result<TicketState> {
        Self::get_ticket(ctx, &update.ticket_id)
    }

    fn get_ticket(ctx: &Context, ticket_id: &str) -> Result<TicketState> {
        whoami(ctx)?;
        Ok(TicketState {
            id: ticket_id.into(),
            status: TicketStatus::Open,
            priority: None,
            external_id: None,
            updated_at: now_ms(),
        })
    }

    fn poll_changes(ctx: &Context, stream: &str, _cursor: Option<String>) -> Result<PollPage> {
        if stream != STREAM {
            return Err(ConnectorError::invalid(
                "stream",
                format!("unknown stream `{stream}`"),
            ));
        }
        Ok(PollPage {
            changes: vec![],
            next_cursor: Some(whoami(ctx)?),
            has_more: false,
        })
    }

    fn handle_webhook(_ctx: &Context, _request: WebhookRequest) -> Result<WebhookOutcome> {
        Err(ConnectorError::fatal("this plugin takes no webhooks"))
    }
}

switchboard_plugin_sdk::export_helpdesk!(OAuthHelpdesk);
