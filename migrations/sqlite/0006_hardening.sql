-- Helpdesk changes about a ticket the hub has not recorded yet. A ticket's create can take
-- effect in the helpdesk while the hub never learns its id (a crash, a lost answer), and the
-- retried create may be delayed (a 429); an agent's reply read meanwhile must wait for the
-- ticket instead of being dropped. `held_for` is the helpdesk's ticket id such a change waits
-- for; recording that id hands the change back to the processor.
ALTER TABLE inbound_events ADD COLUMN held_for TEXT;
CREATE INDEX inbound_events_held ON inbound_events (installation_id, held_for)
    WHERE held_for IS NOT NULL;

-- Events that a link's creation hands back to the processor.
CREATE INDEX inbound_events_unlinked ON inbound_events (installation_id)
    WHERE outcome = 'unlinked';

-- The processor's identity lookup by contact scanned every identity.
CREATE INDEX identities_by_contact ON identities (contact_id, network, updated_at);

-- Retention (Db::prune): what is old enough to go, found without scanning.
CREATE INDEX inbound_events_received ON inbound_events (received_at);
CREATE INDEX outbox_done ON outbox (done_at) WHERE status = 'done';
CREATE INDEX job_runs_started ON job_runs (started_at);

-- An event whose processing fails every time is set aside after a few tries, so it cannot
-- hold up its conversation (and the events behind it) for good.
ALTER TABLE inbound_events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE inbound_events ADD COLUMN last_error TEXT;
CREATE INDEX inbound_events_quarantined ON inbound_events (id) WHERE outcome = 'quarantined';

-- The admin's conversation list, most recently active first.
CREATE INDEX conversations_by_activity ON conversations (updated_at, id);

-- Whether every part of a reply is delivered, asked after each part.
CREATE INDEX outbox_undone_by_message ON outbox (message_id) WHERE status <> 'done';
