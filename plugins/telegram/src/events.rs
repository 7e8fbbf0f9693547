//! Telegram `Update` objects and their mapping onto the hub's [`SocialEvent`]s.
//!
//! Webhook deliveries and `getUpdates` carry the same `Update` JSON, so both paths go through
//! [`event_from_update`] and yield the same message ids for the same message.

use serde::Deserialize;
use switchboard_plugin_sdk::prelude::*;
use switchboard_plugin_sdk::social::{MessageKind, PollPage, SocialEvent};

/// The network name the hub stores with every Telegram identity.
pub const NETWORK: &str = "telegram";

/// Prefix of the pseudo URLs given to Telegram files. Telegram identifies files by `file_id`;
/// a real download URL would need `getFile` and would embed the bot token, so events carry
/// `tg-file:<file_id>` instead and the file can be fetched later through the Bot API.
pub const FILE_URL_PREFIX: &str = "tg-file:";

/// Prefix of the reply handle for messages in Telegram Business chats: answering them needs
/// the `business_connection_id` they arrived through.
pub const BUSINESS_HANDLE_PREFIX: &str = "business:";

/// One incoming update. Only the kinds the hub cares about are modelled; the others
/// (callback queries, membership changes, reactions, ...) parse with all fields `None`.
#[derive(Debug, Deserialize)]
pub struct Update {
    /// Sequential delivery id; `getUpdates` confirms everything below `offset`.
    pub update_id: i64,
    pub message: Option<Message>,
    pub edited_message: Option<Message>,
    pub business_message: Option<Message>,
    pub edited_business_message: Option<Message>,
}

impl Update {
    /// Whether its message was sent by a bot (see [`has_bot_sender`]).
    pub fn sent_by_a_bot(&self) -> bool {
        [
            &self.message,
            &self.edited_message,
            &self.business_message,
            &self.edited_business_message,
        ]
        .into_iter()
        .flatten()
        .any(|m| m.from.as_ref().is_some_and(|from| from.is_bot))
    }
}

/// The parts of a Telegram `Message` the hub uses.
#[derive(Debug, Deserialize)]
pub struct Message {
    pub message_id: i64,
    /// Forum topic (or reply thread) id; only a topic when `is_topic_message` is true.
    pub message_thread_id: Option<i64>,
    pub is_topic_message: Option<bool>,
    /// Unix seconds.
    pub date: i64,
    /// Unix seconds of the last edit, on edited messages.
    pub edit_date: Option<i64>,
    pub chat: Chat,
    pub from: Option<User>,
    /// Set when a message is sent on behalf of a chat (anonymous group admins, channels).
    pub sender_chat: Option<Chat>,
    /// Set when the bot itself sent the message on behalf of a business account.
    pub sender_business_bot: Option<User>,
    pub business_connection_id: Option<String>,
    pub reply_to_message: Option<MessageRef>,
    pub text: Option<String>,
    pub caption: Option<String>,
    /// The same photo in several sizes.
    pub photo: Option<Vec<PhotoSize>>,
    pub document: Option<FileInfo>,
    pub video: Option<FileInfo>,
    pub audio: Option<FileInfo>,
    pub voice: Option<FileInfo>,
    pub animation: Option<FileInfo>,
    pub video_note: Option<FileInfo>,
    pub sticker: Option<Sticker>,
    pub location: Option<Location>,
    pub contact: Option<Contact>,
    pub venue: Option<serde::de::IgnoredAny>,
    pub poll: Option<serde::de::IgnoredAny>,
    pub dice: Option<serde::de::IgnoredAny>,
    pub story: Option<serde::de::IgnoredAny>,
}

/// A message referenced by another one; only its id is needed.
#[derive(Debug, Deserialize)]
pub struct MessageRef {
    pub message_id: i64,
}

#[derive(Debug, Deserialize)]
pub struct Chat {
    /// May exceed 32 bits.
    pub id: i64,
    /// `private`, `group`, `supergroup` or `channel`.
    #[serde(rename = "type")]
    pub chat_type: String,
    pub title: Option<String>,
    pub username: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub first_name: String,
    pub last_name: Option<String>,
    pub username: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PhotoSize {
    pub file_id: String,
    #[serde(default)]
    pub width: u64,
    #[serde(default)]
    pub height: u64,
    pub file_size: Option<u64>,
}

/// Documents, videos, audio, voice notes and animations share these fields.
#[derive(Debug, Deserialize)]
pub struct FileInfo {
    pub file_id: String,
    pub file_name: Option<String>,
    pub mime_type: Option<String>,
    pub file_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct Sticker {
    pub emoji: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Deserialize)]
pub struct Contact {
    pub phone_number: String,
    #[serde(default)]
    pub first_name: String,
    pub last_name: Option<String>,
}

/// Whose account the hub runs: the bot's user id, to recognise its own messages.
#[derive(Debug, Clone, Copy, Default)]
pub struct BotIdentity {
    pub bot_id: Option<i64>,
}

impl BotIdentity {
    /// The bot id from the `bot_id` setting when given, else from the token: Telegram bot
    /// tokens are `<bot user id>:<secret>`, so no `getMe` call is needed.
    pub fn from_settings(bot_id_setting: Option<&str>, bot_token: Option<&str>) -> Self {
        let from_setting = bot_id_setting.and_then(|id| id.trim().parse().ok());
        let from_token = bot_token
            .and_then(|token| token.split(':').next())
            .and_then(|prefix| prefix.parse().ok());
        BotIdentity {
            bot_id: from_setting.or(from_token),
        }
    }
}

/// Whether any of these raw updates carries a message sent by a bot: only then is the bot's
/// own id needed (to tell its echoes from other bots).
pub fn has_bot_sender(updates: &[serde_json::Value]) -> bool {
    const KINDS: [&str; 4] = [
        "message",
        "edited_message",
        "business_message",
        "edited_business_message",
    ];
    updates.iter().any(|update| {
        KINDS.iter().any(|kind| {
            update
                .get(kind)
                .and_then(|m| m.get("from"))
                .and_then(|from| from.get("is_bot"))
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false)
        })
    })
}

/// The hub's message id for a Telegram message: message ids are only unique within a chat.
pub fn message_key(chat_id: i64, message_id: i64) -> String {
    format!("{chat_id}:{message_id}")
}

/// Maps one update onto at most one event. Updates of other kinds, and service messages
/// (members joining, pins, ...) that carry nothing for an agent, give `None`.
pub fn event_from_update(update: &Update, bot: BotIdentity) -> Option<SocialEvent> {
    let (message, edited) = if let Some(m) = &update.message {
        (m, false)
    } else if let Some(m) = &update.business_message {
        (m, false)
    } else if let Some(m) = &update.edited_message {
        (m, true)
    } else if let Some(m) = &update.edited_business_message {
        (m, true)
    } else {
        return None;
    };
    event_from_message(message, edited, bot)
}

fn event_from_message(message: &Message, edited: bool, bot: BotIdentity) -> Option<SocialEvent> {
    let attachments = attachments_of(message);
    let mut text = message
        .text
        .clone()
        .or_else(|| message.caption.clone())
        .unwrap_or_default();
    if text.is_empty() && attachments.is_empty() {
        text = placeholder_for(message)?;
    }

    let chat = &message.chat;
    let is_private = chat.chat_type == "private";
    let mut message_id = message_key(chat.id, message.message_id);
    let mut created_at_secs = message.date;
    if edited {
        // An edit keeps the message's id; a distinct id (stable across webhook and poll, as
        // both carry `edit_date`) lets the hub file the new wording instead of dropping it
        // as a duplicate of the original.
        let edit_date = message.edit_date.unwrap_or(message.date);
        message_id = format!("{message_id}:edit:{edit_date}");
        created_at_secs = edit_date;
        text = format!("[edited] {text}");
    }

    Some(SocialEvent {
        message_id,
        thread_id: thread_key(message),
        parent_id: message
            .reply_to_message
            .as_ref()
            .map(|parent| message_key(chat.id, parent.message_id)),
        kind: if is_private {
            MessageKind::DirectMessage
        } else {
            MessageKind::Comment
        },
        visibility: Visibility::public_if(!is_private),
        author: author_of(message),
        is_echo: is_echo(message, bot),
        created_at: u64::try_from(created_at_secs)
            .unwrap_or(0)
            .saturating_mul(1000),
        text,
        attachments,
        reply_handle: message
            .business_connection_id
            .as_ref()
            .map(|id| format!("{BUSINESS_HANDLE_PREFIX}{id}")),
    })
}

/// `<chat_id>`, or `<chat_id>:<topic_id>` in forum topics, which are separate conversations.
fn thread_key(message: &Message) -> String {
    match (message.is_topic_message, message.message_thread_id) {
        (Some(true), Some(topic)) => format!("{}:{topic}", message.chat.id),
        _ => message.chat.id.to_string(),
    }
}

fn author_of(message: &Message) -> SocialIdentity {
    if let Some(user) = &message.from {
        let display_name = join_name(&user.first_name, user.last_name.as_deref());
        return SocialIdentity {
            external_id: user.id.to_string(),
            network: NETWORK.to_string(),
            handle: user.username.clone(),
            display_name,
        };
    }
    // No `from`: the message was posted as a chat (anonymous admin, linked channel).
    let chat = message.sender_chat.as_ref().unwrap_or(&message.chat);
    SocialIdentity {
        external_id: chat.id.to_string(),
        network: NETWORK.to_string(),
        handle: chat.username.clone(),
        display_name: chat.title.clone().or_else(|| {
            join_name(
                chat.first_name.as_deref().unwrap_or_default(),
                chat.last_name.as_deref(),
            )
        }),
    }
}

fn join_name(first: &str, last: Option<&str>) -> Option<String> {
    let full = match last {
        Some(last) if !last.is_empty() => format!("{first} {last}"),
        _ => first.to_string(),
    };
    let full = full.trim();
    (!full.is_empty()).then(|| full.to_string())
}

/// True when the brand wrote the message: the bot itself, the bot on behalf of a business
/// account, or the business owner in a business chat (whose chat id is the customer's id).
fn is_echo(message: &Message, bot: BotIdentity) -> bool {
    if message.sender_business_bot.is_some() {
        return true;
    }
    let Some(from) = &message.from else {
        return false;
    };
    if from.is_bot && bot.bot_id == Some(from.id) {
        return true;
    }
    message.business_connection_id.is_some()
        && message.chat.chat_type == "private"
        && from.id != message.chat.id
}

fn attachments_of(message: &Message) -> Vec<Attachment> {
    let mut attachments = Vec::new();
    if let Some(sizes) = &message.photo {
        // Telegram lists the sizes of one photo; the largest is the one worth keeping.
        if let Some(largest) = sizes.iter().max_by_key(|p| p.width * p.height) {
            attachments.push(Attachment {
                url: format!("{FILE_URL_PREFIX}{}", largest.file_id),
                // Telegram re-encodes photos as JPEG.
                content_type: Some("image/jpeg".to_string()),
                name: None,
                size_bytes: largest.file_size,
            });
        }
    }
    let files = [
        &message.document,
        &message.video,
        &message.audio,
        &message.voice,
        &message.animation,
        &message.video_note,
    ];
    for file in files.into_iter().flatten() {
        attachments.push(Attachment {
            url: format!("{FILE_URL_PREFIX}{}", file.file_id),
            content_type: file.mime_type.clone(),
            name: file.file_name.clone(),
            size_bytes: file.file_size,
        });
    }
    attachments
}

/// A short description of content that has neither text nor a file, so the agent still sees
/// that the customer sent something. `None` for service messages.
fn placeholder_for(message: &Message) -> Option<String> {
    if let Some(sticker) = &message.sticker {
        return Some(match &sticker.emoji {
            Some(emoji) => format!("[sticker {emoji}]"),
            None => "[sticker]".to_string(),
        });
    }
    if let Some(location) = &message.location {
        return Some(format!(
            "[location {}, {}]",
            location.latitude, location.longitude
        ));
    }
    if let Some(contact) = &message.contact {
        let name = join_name(&contact.first_name, contact.last_name.as_deref());
        return Some(match name {
            Some(name) => format!("[contact {name} {}]", contact.phone_number),
            None => format!("[contact {}]", contact.phone_number),
        });
    }
    let others = [
        (message.venue.is_some(), "[venue]"),
        (message.poll.is_some(), "[poll]"),
        (message.dice.is_some(), "[dice]"),
        (message.story.is_some(), "[story]"),
    ];
    others
        .into_iter()
        .find(|(present, _)| *present)
        .map(|(_, label)| label.to_string())
}

/// Turns one `getUpdates` result into a page.
///
/// Updates are parsed one by one: one the plugin cannot read is logged and skipped, but the
/// cursor still moves past it, or it would block the stream forever.
pub fn page_from_updates(
    updates: &[serde_json::Value],
    limit: usize,
    bot: BotIdentity,
) -> PollPage {
    let mut events = Vec::new();
    let mut max_update_id: Option<i64> = None;
    for raw in updates {
        let Some(update_id) = raw.get("update_id").and_then(serde_json::Value::as_i64) else {
            log_warn!("skipping a Telegram update without update_id");
            continue;
        };
        max_update_id = Some(max_update_id.map_or(update_id, |max| max.max(update_id)));
        match Update::deserialize(raw) {
            Ok(update) => events.extend(event_from_update(&update, bot)),
            Err(err) => log_warn!(
                "skipping a Telegram update that does not parse",
                update_id = update_id,
                error = err
            ),
        }
    }
    PollPage {
        events,
        // Confirming an update means asking for offset = its id + 1 next time.
        next_cursor: max_update_id.map(|max| (max + 1).to_string()),
        has_more: updates.len() >= limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BOT: BotIdentity = BotIdentity { bot_id: Some(777) };

    fn parse(update: serde_json::Value) -> Option<SocialEvent> {
        let update: Update = serde_json::from_value(update).expect("test update parses");
        event_from_update(&update, BOT)
    }

    fn private_text(update_id: i64, message_id: i64, text: &str) -> serde_json::Value {
        json!({"update_id": update_id, "message": {
            "message_id": message_id, "date": 1_717_000_000,
            "chat": {"id": 987_654_321, "type": "private", "first_name": "Aiko"},
            "from": {"id": 987_654_321, "is_bot": false, "first_name": "Aiko",
                     "last_name": "Sato", "username": "aiko", "language_code": "ja"},
            "text": text}})
    }

    #[test]
    fn private_message_becomes_direct_message() {
        let event = parse(private_text(1, 42, "こんにちは")).expect("event");
        assert_eq!(event.message_id, "987654321:42");
        assert_eq!(event.thread_id, "987654321");
        assert_eq!(event.parent_id, None);
        assert_eq!(event.kind, MessageKind::DirectMessage);
        assert_eq!(event.visibility, Visibility::Private);
        assert_eq!(event.author.external_id, "987654321");
        assert_eq!(event.author.network, "telegram");
        assert_eq!(event.author.handle.as_deref(), Some("aiko"));
        assert_eq!(event.author.display_name.as_deref(), Some("Aiko Sato"));
        assert!(!event.is_echo);
        assert_eq!(event.created_at, 1_717_000_000_000);
        assert_eq!(event.text, "こんにちは");
        assert!(event.attachments.is_empty());
        assert_eq!(event.reply_handle, None);
    }

    #[test]
    fn the_bot_id_is_needed_only_for_a_bot_sender() {
        let human = json!({"update_id": 1, "message": {"message_id": 1, "date": 1,
            "chat": {"id": 5, "type": "private"},
            "from": {"id": 5, "is_bot": false, "first_name": "A"}, "text": "hi"}});
        let bot = json!({"update_id": 2, "edited_message": {"message_id": 2, "date": 1,
            "chat": {"id": 5, "type": "group"},
            "from": {"id": 777, "is_bot": true, "first_name": "B"}, "text": "hi"}});
        assert!(!has_bot_sender(std::slice::from_ref(&human)));
        assert!(has_bot_sender(&[human.clone(), bot.clone()]));
        let typed = |v: &serde_json::Value| Update::deserialize(v).expect("update");
        assert!(!typed(&human).sent_by_a_bot());
        assert!(typed(&bot).sent_by_a_bot());
    }

    #[test]
    fn group_topic_reply_is_public_comment_in_topic_thread() {
        let event = parse(json!({"update_id": 5, "message": {
            "message_id": 9, "date": 10, "message_thread_id": 3, "is_topic_message": true,
            "chat": {"id": -100_123, "type": "supergroup", "title": "Fans"},
            "from": {"id": 55, "is_bot": false, "first_name": "Bo"},
            "reply_to_message": {"message_id": 7, "date": 9,
                                 "chat": {"id": -100_123, "type": "supergroup"}},
            "text": "hi"}}))
        .expect("event");
        assert_eq!(event.thread_id, "-100123:3");
        assert_eq!(event.parent_id.as_deref(), Some("-100123:7"));
        assert_eq!(event.kind, MessageKind::Comment);
        assert_eq!(event.visibility, Visibility::Public);
        assert_eq!(event.author.display_name.as_deref(), Some("Bo"));
        assert_eq!(event.author.handle, None);
    }

    #[test]
    fn reply_thread_ids_outside_topics_stay_in_the_chat_thread() {
        let event = parse(json!({"update_id": 5, "message": {
            "message_id": 9, "date": 10, "message_thread_id": 3,
            "chat": {"id": -100_123, "type": "supergroup"},
            "from": {"id": 55, "first_name": "Bo"}, "text": "hi"}}))
        .expect("event");
        assert_eq!(event.thread_id, "-100123");
    }

    #[test]
    fn own_bot_messages_are_echoes() {
        let event = parse(json!({"update_id": 1, "message": {
            "message_id": 2, "date": 1,
            "chat": {"id": 10, "type": "group", "title": "G"},
            "from": {"id": 777, "is_bot": true, "first_name": "Care"}, "text": "hello"}}))
        .expect("event");
        assert!(event.is_echo);
        let other_bot = parse(json!({"update_id": 1, "message": {
            "message_id": 2, "date": 1,
            "chat": {"id": 10, "type": "group", "title": "G"},
            "from": {"id": 778, "is_bot": true, "first_name": "Other"}, "text": "hello"}}))
        .expect("event");
        assert!(!other_bot.is_echo);
    }

    #[test]
    fn business_messages_carry_the_connection_and_detect_the_owner() {
        let from_customer = parse(json!({"update_id": 1, "business_message": {
            "message_id": 2, "date": 1, "business_connection_id": "bc-1",
            "chat": {"id": 10, "type": "private", "first_name": "C"},
            "from": {"id": 10, "first_name": "C"}, "text": "help"}}))
        .expect("event");
        assert_eq!(from_customer.reply_handle.as_deref(), Some("business:bc-1"));
        assert!(!from_customer.is_echo);
        let from_owner = parse(json!({"update_id": 2, "business_message": {
            "message_id": 3, "date": 1, "business_connection_id": "bc-1",
            "chat": {"id": 10, "type": "private", "first_name": "C"},
            "from": {"id": 99, "first_name": "Owner"}, "text": "on it"}}))
        .expect("event");
        assert!(from_owner.is_echo);
    }

    #[test]
    fn edits_get_their_own_stable_id() {
        let event = parse(json!({"update_id": 3, "edited_message": {
            "message_id": 42, "date": 100, "edit_date": 160,
            "chat": {"id": 5, "type": "private"},
            "from": {"id": 5, "first_name": "A"}, "text": "fixed"}}))
        .expect("event");
        assert_eq!(event.message_id, "5:42:edit:160");
        assert_eq!(event.created_at, 160_000);
        assert_eq!(event.text, "[edited] fixed");
    }

    #[test]
    fn media_become_file_id_attachments_with_caption_as_text() {
        let event = parse(json!({"update_id": 1, "message": {
            "message_id": 2, "date": 1, "chat": {"id": 5, "type": "private"},
            "from": {"id": 5, "first_name": "A"}, "caption": "receipt",
            "photo": [{"file_id": "small", "width": 90, "height": 90, "file_size": 1000},
                      {"file_id": "big", "width": 1280, "height": 960, "file_size": 90_000}],
            "document": {"file_id": "doc1", "file_name": "a.pdf",
                         "mime_type": "application/pdf", "file_size": 12}}}))
        .expect("event");
        assert_eq!(event.text, "receipt");
        assert_eq!(event.attachments.len(), 2);
        assert_eq!(event.attachments[0].url, "tg-file:big");
        assert_eq!(event.attachments[0].size_bytes, Some(90_000));
        assert_eq!(event.attachments[1].url, "tg-file:doc1");
        assert_eq!(event.attachments[1].name.as_deref(), Some("a.pdf"));
        assert_eq!(
            event.attachments[1].content_type.as_deref(),
            Some("application/pdf")
        );
    }

    #[test]
    fn content_without_text_gets_a_placeholder_and_service_messages_are_skipped() {
        let sticker = parse(json!({"update_id": 1, "message": {
            "message_id": 2, "date": 1, "chat": {"id": 5, "type": "private"},
            "from": {"id": 5, "first_name": "A"},
            "sticker": {"file_id": "s", "emoji": "👍"}}}))
        .expect("event");
        assert_eq!(sticker.text, "[sticker 👍]");
        let joined = parse(json!({"update_id": 1, "message": {
            "message_id": 2, "date": 1, "chat": {"id": -5, "type": "group", "title": "G"},
            "from": {"id": 5, "first_name": "A"},
            "new_chat_members": [{"id": 6, "first_name": "B"}]}}));
        assert!(joined.is_none());
    }

    #[test]
    fn messages_posted_as_a_chat_use_the_sender_chat() {
        let event = parse(json!({"update_id": 1, "message": {
            "message_id": 2, "date": 1, "chat": {"id": -100, "type": "supergroup", "title": "G"},
            "sender_chat": {"id": -200, "type": "channel", "title": "News", "username": "news"},
            "text": "post"}}))
        .expect("event");
        assert_eq!(event.author.external_id, "-200");
        assert_eq!(event.author.display_name.as_deref(), Some("News"));
        assert_eq!(event.author.handle.as_deref(), Some("news"));
    }

    #[test]
    fn other_update_kinds_are_ignored() {
        assert!(parse(json!({"update_id": 1, "callback_query": {"id": "x"}})).is_none());
    }

    #[test]
    fn page_advances_past_every_update_including_ignored_and_broken_ones() {
        let updates = vec![
            private_text(10, 1, "a"),
            json!({"update_id": 11, "my_chat_member": {}}),
            json!({"update_id": 12, "message": {"message_id": "not a number"}}),
            private_text(13, 2, "b"),
        ];
        let page = page_from_updates(&updates, 100, BOT);
        assert_eq!(page.events.len(), 2);
        assert_eq!(page.next_cursor.as_deref(), Some("14"));
        assert!(!page.has_more);

        let full = page_from_updates(&updates, 4, BOT);
        assert!(full.has_more);

        let empty = page_from_updates(&[], 100, BOT);
        assert!(empty.events.is_empty());
        assert_eq!(empty.next_cursor, None);
        assert!(!empty.has_more);
    }

    #[test]
    fn bot_id_comes_from_the_setting_or_the_token() {
        assert_eq!(
            BotIdentity::from_settings(None, Some("123456:ABC-def")).bot_id,
            Some(123_456)
        );
        assert_eq!(
            BotIdentity::from_settings(Some("42"), Some("123456:ABC")).bot_id,
            Some(42)
        );
        assert_eq!(
            BotIdentity::from_settings(None, Some("garbage")).bot_id,
            None
        );
        assert_eq!(BotIdentity::from_settings(None, None).bot_id, None);
    }
}
