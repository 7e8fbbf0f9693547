//! # Telegram connector for Switchboard
//!
//! Brings messages sent to a Telegram bot into the hub and sends agents' replies back, through
//! the Bot API.
//!
//! - **Inbound**: webhook deliveries (checked against the `X-Telegram-Bot-Api-Secret-Token`
//!   header) or the `updates` stream, which polls `getUpdates`. Telegram refuses `getUpdates`
//!   while a webhook is set, so an installation uses one or the other. Private chats become
//!   direct messages; groups, supergroups and forum topics become public comments. Edits arrive
//!   as new messages marked `[edited]`. Telegram Business chats are supported: their connection
//!   id travels as the reply handle.
//! - **Outbound**: `sendMessage`, threaded with `reply_parameters` when the hub names the
//!   message being answered.
//! - **Ids**: a message is `<chat_id>:<message_id>` (message ids are only unique within a chat),
//!   a thread is `<chat_id>` or `<chat_id>:<topic_id>`.
//! - **Files** travel as metadata with pseudo URLs `tg-file:<file_id>`: a real download URL
//!   would contain the bot token. Fetch them with the Bot API's `getFile`.
//!
//! The plugin never sees the token in a URL it builds: the host adds `/bot<token>` in front of
//! every request path to `api_base`.

mod account;
mod api;
mod events;
mod manifest;

use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::social::{
    OutboundMessage, PollPage, SentMessage, SocialConnector, WebhookOutcome,
};

use crate::account::Account;
use crate::api::UPDATES_LIMIT;
use crate::events::Update;
use crate::manifest::UPDATES_STREAM;

/// The Telegram connector.
pub struct Telegram;

impl SocialConnector for Telegram {
    fn describe() -> Manifest {
        manifest::manifest()
    }

    fn handle_webhook(ctx: &Context, request: WebhookRequest) -> Result<WebhookOutcome> {
        let account = Account::of(ctx)?;
        account.verify_webhook(&request)?;
        let update: Update = serde_json::from_slice(&request.body).map_err(|err| {
            ConnectorError::invalid("body", format!("not a Telegram update: {err}"))
        })?;
        let bot = account.bot_identity(update.sent_by_a_bot())?;
        let events: Vec<_> = events::event_from_update(&update, bot)
            .into_iter()
            .collect();
        log_debug!(
            "Telegram webhook received",
            update_id = update.update_id,
            events = events.len()
        );
        Ok(WebhookOutcome {
            response: webhook::ok(),
            events,
        })
    }

    fn poll(ctx: &Context, stream: &str, cursor: Option<String>) -> Result<PollPage> {
        paging::check_stream("Telegram", stream, &[UPDATES_STREAM])?;
        let account = Account::of(ctx)?;
        let offset = cursor.as_deref().map(api::parse_offset).transpose()?;
        let raw_updates = account.updates(offset)?;
        let bot = account.bot_identity(events::has_bot_sender(&raw_updates))?;
        let page = events::page_from_updates(&raw_updates, UPDATES_LIMIT, bot);
        log_debug!(
            "polled Telegram updates",
            updates = raw_updates.len(),
            events = page.events.len(),
            has_more = page.has_more
        );
        Ok(page)
    }

    fn send(ctx: &Context, message: OutboundMessage) -> Result<SentMessage> {
        if !message.attachments.is_empty() {
            // Attachment URLs from a helpdesk are not reachable by Telegram's servers, and the
            // plugin cannot upload bytes it never sees.
            log_warn!(
                "Telegram send: attachments are not forwarded",
                count = message.attachments.len()
            );
        }
        let sent = Account::of(ctx)?.send_message(&message)?;
        Ok(SentMessage {
            message_ids: vec![sent.key()],
        })
    }
}

switchboard_plugin_sdk::export_social!(Telegram);
