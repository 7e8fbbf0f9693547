//! The Page's world in memory: people (PSIDs), Messenger conversations, posts and comments,
//! who owns each conversation, and the webhook events that changes produce.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::GraphError;
use super::Config;

/// 24 hours: the standard messaging window.
pub(crate) const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// 7 days: `HUMAN_AGENT` and private replies.
pub(crate) const WEEK_MS: i64 = 7 * DAY_MS;

/// Messenger (the Page) or Instagram (the professional account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Channel {
    #[default]
    Messenger,
    Instagram,
}

/// A person who talks to the Page.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub channel: Channel,
    /// Instagram handle (mutable on Instagram; not an identity).
    pub username: Option<String>,
    /// Page-scoped id, as in Messenger events.
    pub psid: String,
    /// The id comments show in `from.id` (not the PSID).
    pub user_id: String,
    pub name: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub mid: String,
    /// Sent by the Page (by some app or the inbox) rather than the person.
    pub from_page: bool,
    pub text: Option<String>,
    pub attachments: Vec<Value>,
    pub created_ms: i64,
    /// The app that sent a Page message.
    pub app_id: Option<String>,
    pub metadata: Option<String>,
}

/// A Messenger conversation between the Page and one person.
#[derive(Debug, Clone)]
pub(crate) struct Conversation {
    pub channel: Channel,
    pub id: String,
    pub psid: String,
    pub messages: Vec<Message>,
    /// The person's last message: the windows run from here.
    pub last_customer_ms: Option<i64>,
    pub updated_ms: i64,
    /// The app that owns the thread; others receive standby copies.
    pub owner_app_id: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Post {
    pub channel: Channel,
    /// Someone else's media the account is mentioned in (Instagram).
    pub foreign: bool,
    pub id: String,
    pub message: String,
    pub created_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Comment {
    pub channel: Channel,
    pub id: String,
    pub post_id: String,
    /// The post for a top-level comment, else the comment replied to.
    pub parent_id: String,
    /// `None` when the Page itself commented.
    pub psid: Option<String>,
    pub message: Option<String>,
    /// `{"type":"photo"|"sticker","url"}` for photo- and sticker-only comments.
    pub attachment: Option<Value>,
    pub created_ms: i64,
    pub hidden: bool,
    pub removed: bool,
    /// The message id of the private reply, once sent.
    pub private_reply: Option<String>,
}

/// One webhook event waiting to be delivered.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// An item of `entry[].messaging[]`, or of `entry[].standby[]` when `standby`.
    Messaging {
        field: &'static str,
        standby: bool,
        item: Value,
    },
    /// An item of `entry[].changes[]`.
    Change { field: &'static str, value: Value },
    /// A WhatsApp `messages` change of the business account.
    WhatsApp { value: Value },
    /// An Instagram event: a `messaging[]` item, or a `changes[]` value of `field`.
    Instagram {
        field: &'static str,
        messaging: bool,
        item: Value,
    },
}

impl Event {
    pub fn field(&self) -> &'static str {
        match self {
            Event::Messaging { field, .. } | Event::Change { field, .. } => field,
            Event::WhatsApp { .. } => "messages",
            Event::Instagram { field, .. } => field,
        }
    }
}

/// What the app sent through the Send API, for tests.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SentMessage {
    pub message_id: String,
    pub recipient_id: String,
    /// Set for a private reply.
    pub comment_id: Option<String>,
    pub text: Option<String>,
    pub messaging_type: String,
    pub tag: Option<String>,
    pub metadata: Option<String>,
    /// True when another app owned the thread: a connector must not do this.
    pub while_standby: bool,
    pub timestamp: i64,
}

/// A parsed Send API request.
#[derive(Debug, Clone)]
pub(crate) struct Send {
    pub recipient: Recipient,
    pub messaging_type: String,
    pub tag: Option<String>,
    pub text: Option<String>,
    pub attachment: Option<Value>,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Recipient {
    Psid(String),
    Comment(String),
}

const TAGS: [&str; 4] = [
    "HUMAN_AGENT",
    "CONFIRMED_EVENT_UPDATE",
    "POST_PURCHASE_UPDATE",
    "ACCOUNT_UPDATE",
];

/// Longest Send API text.
const MAX_TEXT: usize = 2000;
/// Longest Instagram DM text, in UTF-8 bytes.
const MAX_IG_TEXT_BYTES: usize = 1000;

pub(crate) struct Store {
    pub config: Config,
    next: u64,
    pub users: BTreeMap<String, User>,
    pub conversations: Vec<Conversation>,
    pub posts: Vec<Post>,
    pub comments: Vec<Comment>,
    pub outbox: Vec<Event>,
    pub sent: Vec<SentMessage>,
    /// Set when the Page token was invalidated: (subcode, message) of the 190 error.
    pub token_revoked: Option<(u32, String)>,
    /// Payloads still to be sent twice.
    pub duplicates_pending: u32,
    /// Times of Instagram private replies, for the hourly limit.
    pub ig_private_replies: Vec<i64>,
    pub tokens: super::oauth::Tokens,
    /// Conversations API calls in the current second: (second, count) per account.
    pub conversation_calls: BTreeMap<String, (i64, u32)>,
    pub whatsapp: super::whatsapp::WhatsApp,
}

impl Store {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            next: 1,
            users: BTreeMap::new(),
            conversations: Vec::new(),
            posts: Vec::new(),
            comments: Vec::new(),
            outbox: Vec::new(),
            sent: Vec::new(),
            token_revoked: None,
            duplicates_pending: 0,
            ig_private_replies: Vec::new(),
            tokens: super::oauth::Tokens::default(),
            conversation_calls: BTreeMap::new(),
            whatsapp: super::whatsapp::WhatsApp::default(),
        }
    }

    fn next(&mut self) -> u64 {
        let n = self.next;
        self.next += 1;
        n
    }

    /// A long numeric id like Graph's.
    fn numeric_id(&mut self, base: u64) -> String {
        (base + self.next()).to_string()
    }

    fn mid(&mut self) -> String {
        let n = self.next();
        format!("m_sim{n:012}AbCdEfGhIjKlMnOpQrStUv")
    }

    /// The person with this PSID, created with `name` when new (a generated PSID when none).
    pub fn user(&mut self, psid: Option<&str>, name: Option<&str>) -> User {
        let psid = match psid {
            Some(p) => p.to_owned(),
            None => self.numeric_id(24_000_000_000_000_000),
        };
        if let Some(user) = self.users.get_mut(&psid) {
            if let Some(name) = name {
                user.name = name.to_owned();
            }
            return user.clone();
        }
        let user = User {
            channel: Channel::Messenger,
            username: None,
            psid: psid.clone(),
            user_id: self.numeric_id(10_200_000_000_000_000),
            name: name.unwrap_or("Simulated Customer").to_owned(),
        };
        self.users.insert(psid, user.clone());
        user
    }

    /// The Instagram user with this IGSID, created when new.
    pub fn ig_user(&mut self, igsid: Option<&str>, username: Option<&str>) -> User {
        let igsid = match igsid {
            Some(p) => p.to_owned(),
            None => self.numeric_id(17_841_400_000_000_000),
        };
        if let Some(user) = self.users.get_mut(&igsid) {
            if let Some(name) = username {
                user.username = Some(name.to_owned());
            }
            return user.clone();
        }
        let handle = username.map_or_else(|| format!("customer_{igsid}"), str::to_owned);
        let user = User {
            channel: Channel::Instagram,
            username: Some(handle.clone()),
            psid: igsid.clone(),
            // Instagram comments show the IGSID itself.
            user_id: igsid.clone(),
            name: handle,
        };
        self.users.insert(igsid, user.clone());
        user
    }

    /// The account a channel's events name: the Page or the Instagram account.
    pub fn account_id(&self, channel: Channel) -> &str {
        match channel {
            Channel::Messenger => &self.config.page_id,
            Channel::Instagram => &self.config.ig_user_id,
        }
    }

    /// The conversation with `psid`, created (owned by this app) when new.
    pub fn conversation_index(&mut self, psid: &str, now_ms: i64) -> usize {
        if let Some(i) = self.conversations.iter().position(|c| c.psid == psid) {
            return i;
        }
        let id = format!("t_{}", self.numeric_id(1_000_000_000_000_000));
        let channel = self.users.get(psid).map(|u| u.channel).unwrap_or_default();
        self.conversations.push(Conversation {
            channel,
            id,
            psid: psid.to_owned(),
            messages: Vec::new(),
            last_customer_ms: None,
            updated_ms: now_ms,
            owner_app_id: self.config.app_id.clone(),
        });
        self.conversations.len() - 1
    }

    fn we_own(&self, index: usize) -> bool {
        self.conversations[index].owner_app_id == self.config.app_id
    }

    /// `{"id": <Page or Instagram account>}` for the conversation at `index`.
    fn page(&self, index: usize) -> Value {
        json!({"id": self.account_id(self.conversations[index].channel)})
    }

    fn push_messaging(&mut self, index: usize, field: &'static str, item: Value) {
        if self.conversations[index].channel == Channel::Instagram {
            // Instagram has no separate echoes field: echoes come with `messages`.
            let field = if field == "message_echoes" {
                "messages"
            } else {
                field
            };
            self.outbox.push(Event::Instagram {
                field,
                messaging: true,
                item,
            });
            return;
        }
        let standby = !self.we_own(index);
        self.outbox.push(Event::Messaging {
            field,
            standby,
            item,
        });
    }

    /// The person writes to the Page. Returns the message id.
    pub fn customer_message(
        &mut self,
        psid: &str,
        text: Option<String>,
        attachments: Vec<Value>,
        extra: Option<&Value>,
        now_ms: i64,
    ) -> (String, String) {
        let index = self.conversation_index(psid, now_ms);
        let mid = self.mid();
        let mut message = json!({"mid": mid});
        if let Some(text) = &text {
            message["text"] = json!(text);
        }
        if !attachments.is_empty() {
            message["attachments"] = json!(attachments);
        }
        if let Some(Value::Object(extra)) = extra {
            for (k, v) in extra {
                message[k] = v.clone();
            }
        }
        let conversation = &mut self.conversations[index];
        conversation.messages.push(Message {
            mid: mid.clone(),
            from_page: false,
            text,
            attachments,
            created_ms: now_ms,
            app_id: None,
            metadata: None,
        });
        conversation.last_customer_ms = Some(now_ms);
        conversation.updated_ms = now_ms;
        let conversation_id = conversation.id.clone();
        let item = json!({
            "sender": {"id": psid},
            "recipient": self.page(index),
            "timestamp": now_ms,
            "message": message,
        });
        self.push_messaging(index, "messages", item);
        (mid, conversation_id)
    }

    /// The Page sends a message through `app_id` (this app, the Page inbox or another app);
    /// every subscribed app gets the echo. Returns the message id.
    pub fn page_message(
        &mut self,
        index: usize,
        app_id: &str,
        text: Option<String>,
        attachment: Option<Value>,
        metadata: Option<String>,
        now_ms: i64,
    ) -> String {
        let mid = self.mid();
        let attachments: Vec<Value> = attachment.into_iter().collect();
        let conversation = &mut self.conversations[index];
        conversation.messages.push(Message {
            mid: mid.clone(),
            from_page: true,
            text: text.clone(),
            attachments: attachments.clone(),
            created_ms: now_ms,
            app_id: Some(app_id.to_owned()),
            metadata: metadata.clone(),
        });
        conversation.updated_ms = now_ms;
        let psid = conversation.psid.clone();
        let mut message = json!({"mid": mid, "is_echo": true, "app_id": numeric(app_id)});
        if let Some(text) = text {
            message["text"] = json!(text);
        }
        if !attachments.is_empty() {
            message["attachments"] = json!(attachments);
        }
        if let Some(metadata) = metadata {
            message["metadata"] = json!(metadata);
        }
        let item = json!({
            "sender": self.page(index),
            "recipient": {"id": psid},
            "timestamp": now_ms,
            "message": message,
        });
        self.push_messaging(index, "message_echoes", item);
        if self.config.auto_delivery && self.conversations[index].channel == Channel::Messenger {
            let item = json!({
                "sender": {"id": psid},
                "recipient": self.page(index),
                "timestamp": now_ms,
                "delivery": {"mids": [mid], "watermark": now_ms},
            });
            self.push_messaging(index, "message_deliveries", item);
        }
        mid
    }

    /// The person taps a postback button; like a message, it opens the window.
    pub fn postback(
        &mut self,
        psid: &str,
        title: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<String, String> {
        let index = self
            .conversations
            .iter()
            .position(|c| c.psid == psid)
            .ok_or_else(|| format!("no conversation with {psid}"))?;
        let mid = self.mid();
        self.conversations[index].last_customer_ms = Some(now_ms);
        self.conversations[index].updated_ms = now_ms;
        let item = json!({
            "sender": {"id": psid},
            "recipient": self.page(index),
            "timestamp": now_ms,
            "postback": {"mid": mid, "title": title, "payload": payload},
        });
        self.push_messaging(index, "messaging_postbacks", item);
        Ok(mid)
    }

    /// The person has read everything up to now.
    pub fn read(&mut self, psid: &str, now_ms: i64) -> Result<(), String> {
        let index = self
            .conversations
            .iter()
            .position(|c| c.psid == psid)
            .ok_or_else(|| format!("no conversation with {psid}"))?;
        let item = json!({
            "sender": {"id": psid},
            "recipient": self.page(index),
            "timestamp": now_ms,
            "read": {"watermark": now_ms},
        });
        self.push_messaging(index, "message_reads", item);
        Ok(())
    }

    /// Moves thread control to `new_owner` and tells this app when it gains or loses it.
    pub fn set_owner(
        &mut self,
        psid: &str,
        new_owner: &str,
        metadata: Option<String>,
        now_ms: i64,
    ) -> Result<(), String> {
        let index = self
            .conversations
            .iter()
            .position(|c| c.psid == psid)
            .ok_or_else(|| format!("no conversation with {psid}"))?;
        let previous = std::mem::replace(
            &mut self.conversations[index].owner_app_id,
            new_owner.to_owned(),
        );
        if previous == new_owner {
            return Ok(());
        }
        let us = self.config.app_id.clone();
        // Passed to us by the other app; or taken from us.
        let kind = if new_owner == us {
            "pass_thread_control"
        } else if previous == us {
            "take_thread_control"
        } else {
            return Ok(());
        };
        let mut control = json!({
            "previous_owner_app_id": numeric(&previous),
            "new_owner_app_id": numeric(new_owner),
        });
        if let Some(metadata) = metadata {
            control["metadata"] = json!(metadata);
        }
        let item = json!({
            "sender": {"id": psid},
            "recipient": self.page(index),
            "timestamp": now_ms,
            kind: control,
        });
        self.outbox.push(Event::Messaging {
            field: "messaging_handovers",
            standby: false,
            item,
        });
        Ok(())
    }

    /// The Messenger Send API (the unit tests' shorthand).
    #[cfg(test)]
    pub fn send(&mut self, send: Send, now_ms: i64) -> Result<Value, GraphError> {
        self.send_on(Channel::Messenger, send, now_ms)
    }

    /// The Send API of a channel: window rules, private replies, then the message and its
    /// echo.
    pub fn send_on(
        &mut self,
        channel: Channel,
        send: Send,
        now_ms: i64,
    ) -> Result<Value, GraphError> {
        if let Some(text) = &send.text {
            match channel {
                Channel::Messenger if text.chars().count() > MAX_TEXT => {
                    return Err(GraphError::invalid_parameter(format!(
                        "Length of param message[text] must be less than or equal to {MAX_TEXT}"
                    )));
                }
                // Meta documents both "less than 1000 characters" and "1000 bytes or less";
                // the simulator holds connectors to the stricter one, which is what bites CJK.
                Channel::Instagram if text.len() > MAX_IG_TEXT_BYTES => {
                    return Err(GraphError::invalid_parameter(format!(
                        "Length of param message[text] must be less than or equal to {MAX_IG_TEXT_BYTES} bytes"
                    )));
                }
                _ => {}
            }
            if text.is_empty() {
                return Err(GraphError::invalid_parameter(
                    "Param message[text] must be a non-empty UTF-8 encoded string",
                ));
            }
        } else if send.attachment.is_none() {
            return Err(GraphError::invalid_parameter(
                "Must send either message or state",
            ));
        }
        match send.messaging_type.as_str() {
            "RESPONSE" | "UPDATE" => {}
            "MESSAGE_TAG" => match send.tag.as_deref() {
                Some(tag) if TAGS.contains(&tag) => {}
                Some(tag) => {
                    return Err(GraphError::invalid_parameter(format!(
                        "Param tag must be one of {{{}}}, got {tag}",
                        TAGS.join(", ")
                    )))
                }
                None => {
                    return Err(GraphError::invalid_parameter(
                        "Param tag is required when messaging_type is MESSAGE_TAG",
                    ))
                }
            },
            other => {
                return Err(GraphError::invalid_parameter(format!(
                    "Param messaging_type must be one of {{RESPONSE, UPDATE, MESSAGE_TAG}}, got {other}"
                )))
            }
        }
        let (index, comment_id) = match &send.recipient {
            Recipient::Psid(psid) => {
                if self.users.get(psid).is_none_or(|u| u.channel != channel) {
                    return Err(GraphError::new(
                        100,
                        Some(2_018_001),
                        "(#100) No matching user found",
                    ));
                }
                let index = self.conversation_index(psid, now_ms);
                let last = self.conversations[index].last_customer_ms;
                let age = last.map(|at| now_ms - at);
                let allowed = match (send.messaging_type.as_str(), send.tag.as_deref()) {
                    ("MESSAGE_TAG", Some("HUMAN_AGENT")) => {
                        self.config.human_agent && age.is_some_and(|a| a <= WEEK_MS)
                    }
                    ("MESSAGE_TAG", Some(_)) => last.is_some(),
                    _ => age.is_some_and(|a| a <= DAY_MS),
                };
                if !allowed {
                    return Err(match channel {
                        Channel::Messenger => GraphError::outside_window(),
                        Channel::Instagram => GraphError::new(
                            10,
                            Some(2_534_022),
                            "(#10) This message is sent outside of allowed window.",
                        ),
                    });
                }
                (index, None)
            }
            Recipient::Comment(comment_id) => {
                let index = self.private_reply_target(channel, comment_id, now_ms)?;
                (index, Some(comment_id.clone()))
            }
        };
        let while_standby = !self.we_own(index);
        let app_id = self.config.app_id.clone();
        let mid = self.page_message(
            index,
            &app_id,
            send.text.clone(),
            send.attachment.clone(),
            send.metadata.clone(),
            now_ms,
        );
        let psid = self.conversations[index].psid.clone();
        if let Some(comment_id) = &comment_id {
            if let Some(c) = self.comments.iter_mut().find(|c| &c.id == comment_id) {
                c.private_reply = Some(mid.clone());
            }
        }
        self.sent.push(SentMessage {
            message_id: mid.clone(),
            recipient_id: psid.clone(),
            comment_id,
            text: send.text,
            messaging_type: send.messaging_type,
            tag: send.tag,
            metadata: send.metadata,
            while_standby,
            timestamp: now_ms,
        });
        Ok(json!({"recipient_id": psid, "message_id": mid}))
    }

    /// Checks the private-reply rules for `comment_id` and returns the conversation to use.
    fn private_reply_target(
        &mut self,
        channel: Channel,
        comment_id: &str,
        now_ms: i64,
    ) -> Result<usize, GraphError> {
        let Some(comment) = self
            .comments
            .iter()
            .find(|c| c.id == comment_id && !c.removed && c.channel == channel)
        else {
            return Err(GraphError::new(
                100,
                Some(2_018_292),
                "(#100) Invalid comment_id parameter",
            ));
        };
        if comment.private_reply.is_some() {
            return Err(GraphError::new(
                10900,
                None,
                "(#10900) Activity already replied to",
            ));
        }
        let Some(psid) = comment.psid.clone() else {
            return Err(GraphError::new(
                10903,
                None,
                "(#10903) This user can't reply to this activity",
            ));
        };
        if now_ms - comment.created_ms > WEEK_MS {
            return Err(GraphError::new(
                10903,
                None,
                "(#10903) This user can't reply to this activity",
            ));
        }
        if channel == Channel::Instagram {
            let hour_ago = now_ms - 60 * 60 * 1000;
            self.ig_private_replies.retain(|&at| at > hour_ago);
            let limit = self.config.instagram_private_replies_per_hour;
            if self.ig_private_replies.len() >= limit as usize {
                let mut error = GraphError::throttled(613, Vec::new());
                error.message = format!(
                    "(#613) Calls to this api have exceeded the rate limit: {limit} private replies per hour per account"
                );
                return Err(error);
            }
            self.ig_private_replies.push(now_ms);
        }
        Ok(self.conversation_index(&psid, now_ms))
    }

    // ----- Page posts and comments --------------------------------------------------------

    pub fn create_post(&mut self, message: &str, now_ms: i64) -> String {
        let number = self.numeric_id(122_100_000_000_000_000);
        let id = format!("{}_{number}", self.config.page_id);
        self.posts.push(Post {
            channel: Channel::Messenger,
            foreign: false,
            id: id.clone(),
            message: message.to_owned(),
            created_ms: now_ms,
        });
        id
    }

    /// Instagram media: the account's own, or someone else's it is mentioned in.
    pub fn create_media(&mut self, caption: &str, foreign: bool, now_ms: i64) -> String {
        let id = self.numeric_id(17_900_000_000_000_000);
        self.posts.push(Post {
            channel: Channel::Instagram,
            foreign,
            id: id.clone(),
            message: caption.to_owned(),
            created_ms: now_ms,
        });
        id
    }

    /// A comment on a post or a reply to a comment, by a person (`psid`) or by the Page.
    pub fn create_comment(
        &mut self,
        parent: &str,
        psid: Option<&str>,
        message: Option<String>,
        attachment: Option<Value>,
        now_ms: i64,
    ) -> Result<String, GraphError> {
        let (post_id, channel) = match self.posts.iter().find(|p| p.id == parent) {
            Some(p) => (p.id.clone(), p.channel),
            None => match self.comments.iter().find(|c| c.id == parent && !c.removed) {
                Some(c) => (c.post_id.clone(), c.channel),
                None => return Err(GraphError::unknown_object(parent)),
            },
        };
        if message.as_deref().is_none_or(str::is_empty) && attachment.is_none() {
            return Err(GraphError::invalid_parameter(
                "Missing message or attachment",
            ));
        }
        let id = match channel {
            Channel::Messenger => {
                let post_number = post_id.rsplit('_').next().unwrap_or(&post_id).to_owned();
                format!("{post_number}_{}", self.numeric_id(1_000_000_000_000_000))
            }
            Channel::Instagram => self.numeric_id(17_950_000_000_000_000),
        };
        self.comments.push(Comment {
            channel,
            id: id.clone(),
            post_id,
            parent_id: parent.to_owned(),
            psid: psid.map(str::to_owned),
            message,
            attachment,
            created_ms: now_ms,
            hidden: false,
            removed: false,
            private_reply: None,
        });
        self.feed_event(&id, "add");
        Ok(id)
    }

    /// Applies a verb (`edited`, `remove`, `hide`, `unhide`) to a comment and announces it.
    pub fn comment_verb(
        &mut self,
        id: &str,
        verb: &'static str,
        message: Option<String>,
    ) -> Result<(), GraphError> {
        let comment = self
            .comments
            .iter_mut()
            .find(|c| c.id == id && !c.removed)
            .ok_or_else(|| GraphError::unknown_object(id))?;
        match verb {
            "edited" => comment.message = message,
            "remove" => comment.removed = true,
            "hide" => comment.hidden = true,
            "unhide" => comment.hidden = false,
            _ => {
                return Err(GraphError::invalid_parameter(format!(
                    "unknown verb {verb}"
                )))
            }
        }
        self.feed_event(id, verb);
        Ok(())
    }

    fn author_json(&self, channel: Channel, psid: Option<&str>) -> Value {
        match (channel, psid.and_then(|p| self.users.get(p))) {
            (Channel::Messenger, Some(user)) => json!({"id": user.user_id, "name": user.name}),
            (Channel::Messenger, None) => {
                json!({"id": self.config.page_id, "name": self.config.page_name})
            }
            (Channel::Instagram, Some(user)) => {
                json!({"id": user.psid, "username": user.username})
            }
            (Channel::Instagram, None) => {
                json!({"id": self.config.ig_user_id, "username": self.config.ig_username})
            }
        }
    }

    /// Instagram's `comments` change for a new comment by a person (the account's own
    /// comments are not announced).
    fn ig_comment_event(&mut self, c: &Comment) {
        if c.psid.is_none() {
            return;
        }
        let mut value = json!({
            "from": self.author_json(Channel::Instagram, c.psid.as_deref()),
            "media": {"id": c.post_id, "media_product_type": "FEED"},
            "id": c.id,
            "text": c.message.clone().unwrap_or_default(),
        });
        if c.parent_id != c.post_id {
            value["parent_id"] = json!(c.parent_id);
        }
        self.outbox.push(Event::Instagram {
            field: "comments",
            messaging: false,
            item: value,
        });
    }

    /// The account is @mentioned in a comment on someone's media.
    pub fn ig_mention(&mut self, media_id: &str, comment_id: Option<&str>) {
        let mut value = json!({"media_id": media_id});
        if let Some(c) = comment_id {
            value["comment_id"] = json!(c);
        }
        self.outbox.push(Event::Instagram {
            field: "mentions",
            messaging: false,
            item: value,
        });
    }

    fn feed_event(&mut self, id: &str, verb: &'static str) {
        let Some(c) = self.comments.iter().find(|c| c.id == id) else {
            return;
        };
        if c.channel == Channel::Instagram {
            // Instagram announces new comments only, without verbs.
            let on_foreign = self.posts.iter().any(|p| p.id == c.post_id && p.foreign);
            if verb == "add" && !on_foreign {
                let c = c.clone();
                self.ig_comment_event(&c);
            }
            return;
        }
        let post = self.posts.iter().find(|p| p.id == c.post_id);
        let mut value = json!({
            "from": self.author_json(Channel::Messenger, c.psid.as_deref()),
            "post": {
                "status_type": "mobile_status_update",
                "is_published": true,
                "updated_time": graph_time(post.map_or(c.created_ms, |p| p.created_ms)),
                "permalink_url": format!("https://www.facebook.com/{}", c.post_id.replace('_', "/posts/")),
                "promotion_status": "inactive",
                "id": c.post_id,
            },
            "post_id": c.post_id,
            "comment_id": c.id,
            "created_time": c.created_ms.div_euclid(1000),
            "item": "comment",
            "parent_id": c.parent_id,
            "verb": verb,
        });
        if verb != "remove" {
            if let Some(message) = &c.message {
                value["message"] = json!(message);
            }
            if let Some(attachment) = &c.attachment {
                let kind = attachment.get("type").and_then(Value::as_str);
                let url = attachment.get("url").cloned().unwrap_or(Value::Null);
                match kind {
                    Some("sticker") => value["sticker"] = url,
                    _ => value["photo"] = url,
                }
            }
        }
        self.outbox.push(Event::Change {
            field: "feed",
            value,
        });
    }

    /// A comment as `GET /{comment-id}` shows it.
    pub fn comment_json(&self, c: &Comment, fields: &Fields) -> Value {
        let mut out = json!({"id": c.id});
        let all = fields.is_empty();
        let wants = |f: &str| all || fields.has(f);
        if c.channel == Channel::Instagram {
            let from = self.author_json(Channel::Instagram, c.psid.as_deref());
            if wants("timestamp") {
                out["timestamp"] = json!(graph_time(c.created_ms));
            }
            if wants("text") {
                out["text"] = json!(c.message.clone().unwrap_or_default());
            }
            if fields.has("username") {
                out["username"] = from["username"].clone();
            }
            if fields.has("from") {
                out["from"] = from;
            }
            if fields.has("media") {
                out["media"] = json!({"id": c.post_id});
            }
            if fields.has("parent_id") && c.parent_id != c.post_id {
                out["parent_id"] = json!(c.parent_id);
            }
            if fields.has("hidden") {
                out["hidden"] = json!(c.hidden);
            }
            return out;
        }
        if wants("created_time") {
            out["created_time"] = json!(graph_time(c.created_ms));
        }
        if wants("from") {
            out["from"] = self.author_json(Channel::Messenger, c.psid.as_deref());
        }
        if wants("message") {
            out["message"] = json!(c.message.clone().unwrap_or_default());
        }
        if fields.has("attachment") {
            if let Some(a) = &c.attachment {
                let kind = a.get("type").and_then(Value::as_str).unwrap_or("photo");
                out["attachment"] = json!({"type": kind, "media": {"image": {"src": a.get("url")}}, "url": a.get("url")});
            }
        }
        if fields.has("parent") && c.parent_id != c.post_id {
            out["parent"] = json!({"id": c.parent_id});
        }
        if fields.has("is_hidden") {
            out["is_hidden"] = json!(c.hidden);
        }
        if fields.has("can_reply_privately") {
            out["can_reply_privately"] = json!(c.psid.is_some() && c.private_reply.is_none());
        }
        if fields.has("comment_count") {
            let n = self
                .comments
                .iter()
                .filter(|r| r.parent_id == c.id && !r.removed)
                .count();
            out["comment_count"] = json!(n);
        }
        out
    }

    /// The person and the Page (or Instagram account) as the Conversations API names them.
    pub fn participants(&self, conversation: &Conversation) -> [Value; 2] {
        let user = self.users.get(&conversation.psid);
        match conversation.channel {
            Channel::Messenger => [
                json!({
                    "name": user.map_or("", |u| u.name.as_str()),
                    "email": format!("{}@facebook.com", conversation.psid),
                    "id": conversation.psid,
                }),
                json!({
                    "name": self.config.page_name,
                    "email": format!("{}@facebook.com", self.config.page_id),
                    "id": self.config.page_id,
                }),
            ],
            Channel::Instagram => [
                json!({
                    "username": user.and_then(|u| u.username.clone()),
                    "id": conversation.psid,
                }),
                json!({"username": self.config.ig_username, "id": self.config.ig_user_id}),
            ],
        }
    }

    /// A message as the Conversations API shows it.
    pub fn message_json(&self, conversation: &Conversation, m: &Message, fields: &Fields) -> Value {
        let mut out = json!({"id": m.mid});
        let [person, page] = self.participants(conversation);
        let (from, to) = if m.from_page {
            (page, person)
        } else {
            (person, page)
        };
        let all = fields.is_empty();
        if all || fields.has("created_time") {
            out["created_time"] = json!(graph_time(m.created_ms));
        }
        if fields.has("message") {
            out["message"] = json!(m.text.clone().unwrap_or_default());
        }
        if fields.has("from") {
            out["from"] = from;
        }
        if fields.has("to") {
            out["to"] = json!({"data": [to]});
        }
        if fields.has("attachments") && !m.attachments.is_empty() {
            out["attachments"] = json!({"data": m.attachments});
        }
        out
    }
}

/// `2026-12-07T18:32:59+0000`: Graph's time format.
pub(crate) fn graph_time(ms: i64) -> String {
    let iso = crate::kit::dates::iso8601(ms.div_euclid(1000));
    format!("{}+0000", iso.trim_end_matches('Z'))
}

/// An app id as Meta writes it in events: a number when it is one.
pub(crate) fn numeric(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n))
}

/// A parsed `fields=` parameter: `a,b{c,d},e.limit(5){f}` → names with their subfields.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields(Vec<(String, Fields, Option<usize>)>);

impl Fields {
    pub fn parse(spec: &str) -> Self {
        let mut out = Vec::new();
        let mut depth = 0usize;
        let mut start = 0usize;
        let bytes: Vec<char> = spec.chars().collect();
        let mut parts = Vec::new();
        for (i, c) in bytes.iter().enumerate() {
            match c {
                '{' | '(' => depth += 1,
                '}' | ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    parts.push(bytes[start..i].iter().collect::<String>());
                    start = i + 1;
                }
                _ => {}
            }
        }
        parts.push(bytes[start..].iter().collect::<String>());
        for part in parts {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (head, sub) = match part.find('{') {
                Some(i) => (&part[..i], part[i + 1..].trim_end_matches('}')),
                None => (part, ""),
            };
            let mut name = head;
            let mut limit = None;
            if let Some((n, modifiers)) = head.split_once('.') {
                name = n;
                if let Some(v) = modifiers
                    .strip_prefix("limit(")
                    .and_then(|r| r.split(')').next())
                {
                    limit = v.parse().ok();
                }
            }
            out.push((name.to_owned(), Fields::parse(sub), limit));
        }
        Self(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _, _)| n == name)
    }

    /// The subfields and `.limit(n)` of `name`.
    pub fn sub(&self, name: &str) -> Option<(&Fields, Option<usize>)> {
        self.0
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, f, l)| (f, *l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(Config::default())
    }

    fn send_text(psid: &str, messaging_type: &str, tag: Option<&str>) -> Send {
        Send {
            recipient: Recipient::Psid(psid.into()),
            messaging_type: messaging_type.into(),
            tag: tag.map(str::to_owned),
            text: Some("hi".into()),
            attachment: None,
            metadata: None,
        }
    }

    #[test]
    fn fields_parse_nested_and_limits() {
        let f = Fields::parse("participants,messages.limit(5){message,from},updated_time");
        assert!(f.has("participants") && f.has("updated_time"));
        let (sub, limit) = f.sub("messages").expect("messages");
        assert_eq!(limit, Some(5));
        assert!(sub.has("message") && sub.has("from") && !sub.has("to"));
    }

    #[test]
    fn windows_follow_the_last_customer_message() {
        let mut s = store();
        let user = s.user(Some("111"), Some("Mina"));
        s.customer_message(&user.psid, Some("hello".into()), vec![], None, 0);
        assert!(s.send(send_text("111", "RESPONSE", None), DAY_MS).is_ok());
        let late = s
            .send(send_text("111", "RESPONSE", None), DAY_MS + 1)
            .expect_err("outside 24 h");
        assert_eq!((late.code, late.subcode), (10, Some(2_018_278)));
        assert!(s
            .send(
                send_text("111", "MESSAGE_TAG", Some("HUMAN_AGENT")),
                WEEK_MS
            )
            .is_ok());
        let too_late = s
            .send(
                send_text("111", "MESSAGE_TAG", Some("HUMAN_AGENT")),
                WEEK_MS + 1,
            )
            .expect_err("outside 7 days");
        assert_eq!(too_late.subcode, Some(2_018_278));
        s.config.human_agent = false;
        assert!(s
            .send(
                send_text("111", "MESSAGE_TAG", Some("HUMAN_AGENT")),
                DAY_MS + 1
            )
            .is_err());
    }

    #[test]
    fn private_replies_are_once_per_comment_within_a_week() {
        let mut s = store();
        s.user(Some("222"), Some("Ken"));
        let post = s.create_post("Sale!", 0);
        let c = s
            .create_comment(&post, Some("222"), Some("配送は？".into()), None, 0)
            .expect("comment");
        let reply = |c: &str| Send {
            recipient: Recipient::Comment(c.into()),
            ..send_text("", "RESPONSE", None)
        };
        s.send(reply(&c), 1).expect("first private reply");
        assert_eq!(s.send(reply(&c), 2).expect_err("second").code, 10900);
        let old = s
            .create_comment(&post, Some("222"), Some("again".into()), None, 10)
            .expect("comment");
        assert_eq!(
            s.send(reply(&old), WEEK_MS + 11).expect_err("too old").code,
            10903
        );
        // The private reply opens no window: a RESPONSE needs the person to answer first.
        assert!(s.send(send_text("222", "RESPONSE", None), 3).is_err());
    }

    #[test]
    fn events_go_to_standby_while_another_app_owns_the_thread() {
        let mut s = store();
        s.user(Some("333"), None);
        s.customer_message("333", Some("a".into()), vec![], None, 0);
        let other = s.config.other_app_id.clone();
        s.set_owner("333", &other, None, 1).expect("take");
        s.customer_message("333", Some("b".into()), vec![], None, 2);
        let standby: Vec<bool> = s
            .outbox
            .iter()
            .filter_map(|e| match e {
                Event::Messaging { standby, field, .. } if *field == "messages" => Some(*standby),
                _ => None,
            })
            .collect();
        assert_eq!(standby, vec![false, true]);
        assert!(s.outbox.iter().any(|e| e.field() == "messaging_handovers"));
    }
}
