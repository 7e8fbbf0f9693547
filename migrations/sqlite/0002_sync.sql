-- The sync engine's state. Times are milliseconds since the Unix epoch (BIGINT), ids are TEXT
-- except for queue rows whose arrival order matters (INTEGER PRIMARY KEY; BIGSERIAL on
-- PostgreSQL). Work is claimed with conditional UPDATEs and leases, never with in-process
-- locks alone, so several hosts can share one database.

-- One configured use of a plugin: a bot, a helpdesk account.
CREATE TABLE installations (
    id             TEXT    PRIMARY KEY,
    plugin_id      TEXT    NOT NULL,
    -- NULL follows the plugin's active version; a value pins that version.
    plugin_version TEXT,
    kind           TEXT    NOT NULL CHECK (kind IN ('social', 'helpdesk')),
    -- Non-secret settings as a JSON object of strings.
    settings_json  TEXT    NOT NULL,
    -- Secret settings: AEAD-encrypted JSON object (see secrets.rs), NULL when there are none.
    secrets        BLOB,
    enabled        BOOLEAN NOT NULL DEFAULT TRUE,
    -- Per-installation call limits; NULL uses the runtime's defaults.
    deadline_ms    BIGINT,
    memory_bytes   BIGINT,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

-- Which social installation feeds which helpdesk installation.
CREATE TABLE links (
    id                       TEXT   PRIMARY KEY,
    social_installation_id   TEXT   NOT NULL REFERENCES installations (id),
    helpdesk_installation_id TEXT   NOT NULL REFERENCES installations (id),
    -- {"reopen_solved": bool, "tags": [..], "priority": ..}
    settings_json            TEXT   NOT NULL,
    created_at               BIGINT NOT NULL
);
-- A conversation's tickets live in exactly one helpdesk.
CREATE UNIQUE INDEX links_one_per_social ON links (social_installation_id);

-- A person, possibly known on several networks.
CREATE TABLE contacts (
    id           TEXT   PRIMARY KEY,
    display_name TEXT,
    created_at   BIGINT NOT NULL
);

CREATE TABLE identities (
    network      TEXT   NOT NULL,
    external_id  TEXT   NOT NULL,
    contact_id   TEXT   NOT NULL REFERENCES contacts (id),
    handle       TEXT,
    display_name TEXT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (network, external_id)
);

-- The helpdesk's requester for a contact, found or created once per helpdesk installation.
CREATE TABLE requesters (
    contact_id               TEXT   NOT NULL REFERENCES contacts (id),
    helpdesk_installation_id TEXT   NOT NULL REFERENCES installations (id),
    requester_id             TEXT   NOT NULL,
    created_at               BIGINT NOT NULL,
    PRIMARY KEY (contact_id, helpdesk_installation_id)
);

-- A thread on a social network: a private chat, a post and its comments.
CREATE TABLE conversations (
    id                     TEXT   PRIMARY KEY,
    social_installation_id TEXT   NOT NULL REFERENCES installations (id),
    thread_id              TEXT   NOT NULL,
    contact_id             TEXT   NOT NULL REFERENCES contacts (id),
    -- The network (`telegram`), used as the ticket's channel tag.
    channel                TEXT   NOT NULL,
    -- direct-message | post | comment, and public | private, of the first message.
    message_kind           TEXT   NOT NULL,
    visibility             TEXT   NOT NULL,
    reply_handle           TEXT,
    last_inbound_at        BIGINT,
    created_at             BIGINT NOT NULL,
    updated_at             BIGINT NOT NULL,
    UNIQUE (social_installation_id, thread_id)
);

-- The tickets a conversation has had; at most one is current (receives new messages).
CREATE TABLE tickets (
    id                       TEXT    PRIMARY KEY,
    conversation_id          TEXT    NOT NULL REFERENCES conversations (id),
    helpdesk_installation_id TEXT    NOT NULL REFERENCES installations (id),
    -- NULL until the create-ticket outbox row has been delivered.
    external_id              TEXT,
    url                      TEXT,
    -- new | open | pending | on-hold | solved | closed
    status                   TEXT    NOT NULL,
    status_at                BIGINT  NOT NULL,
    is_current               BOOLEAN NOT NULL,
    created_at               BIGINT  NOT NULL,
    updated_at               BIGINT  NOT NULL
);
CREATE UNIQUE INDEX tickets_external ON tickets (helpdesk_installation_id, external_id);
CREATE UNIQUE INDEX tickets_one_current ON tickets (conversation_id) WHERE is_current;
CREATE INDEX tickets_by_conversation ON tickets (conversation_id, created_at);

-- Messages of a conversation, with their ids on both sides.
CREATE TABLE messages (
    id                       TEXT   PRIMARY KEY,
    conversation_id          TEXT   NOT NULL REFERENCES conversations (id),
    ticket_id                TEXT   REFERENCES tickets (id),
    -- inbound: customer -> helpdesk; outbound: agent reply -> customer; note: internal note.
    direction                TEXT   NOT NULL CHECK (direction IN ('inbound', 'outbound', 'note')),
    visibility               TEXT   NOT NULL,
    author_name              TEXT,
    text                     TEXT   NOT NULL,
    attachments_json         TEXT   NOT NULL,
    social_installation_id   TEXT   NOT NULL,
    -- inbound: the network's message id; outbound: the first id the network gave the reply.
    social_message_id        TEXT,
    helpdesk_installation_id TEXT   NOT NULL,
    -- inbound: the comment the hub filed; outbound/note: the agent's comment.
    helpdesk_comment_id      TEXT,
    -- pending | delivered | dead | recorded (notes, never sent) | skipped
    state                    TEXT   NOT NULL,
    parts                    INTEGER NOT NULL DEFAULT 1,
    created_at               BIGINT NOT NULL,
    delivered_at             BIGINT
);
CREATE UNIQUE INDEX messages_social_id ON messages (social_installation_id, social_message_id);
CREATE UNIQUE INDEX messages_helpdesk_id ON messages (helpdesk_installation_id, helpdesk_comment_id);
CREATE INDEX messages_by_conversation ON messages (conversation_id, created_at);

-- Ids of what the hub itself posted (network message ids, helpdesk comment ids), so that
-- their echoes are recognized when they come back through polling or webhooks.
CREATE TABLE own_ids (
    installation_id TEXT   NOT NULL,
    external_id     TEXT   NOT NULL,
    message_id      TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (installation_id, external_id)
);

-- The durable intake: every event from a webhook or a poll, deduplicated, processed in order.
CREATE TABLE inbound_events (
    id              INTEGER PRIMARY KEY,
    installation_id TEXT    NOT NULL REFERENCES installations (id),
    -- The social message id, or the helpdesk change id.
    external_id     TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('social', 'helpdesk')),
    source          TEXT    NOT NULL CHECK (source IN ('webhook', 'poll')),
    -- The normalized event (social-event or ticket-change) as JSON.
    payload         TEXT    NOT NULL,
    received_at     BIGINT  NOT NULL,
    processed_at    BIGINT,
    -- What processing did: ticket, comment, echo, unlinked, unknown-ticket, ...
    outcome         TEXT,
    conversation_id TEXT,
    UNIQUE (installation_id, external_id)
);
CREATE INDEX inbound_events_pending ON inbound_events (id) WHERE processed_at IS NULL;

-- Poll positions, saved in the same transaction as the events of the page they cover.
CREATE TABLE cursors (
    installation_id TEXT   NOT NULL REFERENCES installations (id),
    stream          TEXT   NOT NULL,
    cursor          TEXT,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (installation_id, stream)
);

-- One polling job per (installation, stream), on a cron schedule in a time zone.
CREATE TABLE jobs (
    id              TEXT    PRIMARY KEY,
    installation_id TEXT    NOT NULL REFERENCES installations (id),
    stream          TEXT    NOT NULL,
    schedule        TEXT    NOT NULL,
    time_zone       TEXT    NOT NULL,
    paused          BOOLEAN NOT NULL DEFAULT FALSE,
    -- The next slot; a slot in the past when the hub starts runs once.
    next_run_at     BIGINT,
    -- Set while a run is in progress (claimed with a conditional UPDATE); the lease lets
    -- another host take over a job whose runner died.
    running_since   BIGINT,
    lease_owner     TEXT,
    lease_until     BIGINT,
    UNIQUE (installation_id, stream)
);

CREATE TABLE job_runs (
    id             INTEGER PRIMARY KEY,
    job_id         TEXT    NOT NULL REFERENCES jobs (id),
    -- schedule | manual
    trigger        TEXT    NOT NULL,
    -- When the run was due (schedule), to measure lag.
    scheduled_for  BIGINT,
    started_at     BIGINT  NOT NULL,
    finished_at    BIGINT,
    -- running | ok | error
    outcome        TEXT    NOT NULL,
    pages          INTEGER NOT NULL DEFAULT 0,
    events_stored  INTEGER NOT NULL DEFAULT 0,
    error          TEXT
);
CREATE INDEX job_runs_by_job ON job_runs (job_id, id);

-- Every side effect, written in the same transaction as the state that caused it.
-- Dead letters are rows with status 'dead'.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    -- create-ticket | add-comment | send-message
    kind            TEXT    NOT NULL CHECK (kind IN ('create-ticket', 'add-comment', 'send-message')),
    -- The installation the effect goes to.
    installation_id TEXT    NOT NULL REFERENCES installations (id),
    conversation_id TEXT    NOT NULL REFERENCES conversations (id),
    ticket_id       TEXT,
    message_id      TEXT,
    idempotency_key TEXT    NOT NULL UNIQUE,
    payload         TEXT    NOT NULL,
    -- pending | done | dead
    status          TEXT    NOT NULL CHECK (status IN ('pending', 'done', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    done_at         BIGINT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX outbox_lane ON outbox (conversation_id, installation_id, id) WHERE status = 'pending';
CREATE INDEX outbox_dead ON outbox (id) WHERE status = 'dead';
