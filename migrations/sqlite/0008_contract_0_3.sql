-- Contract 0.3 (wit/v0.3): conversation ownership, delivery statuses, what the network says
-- about a message's author, and billable calls.

-- False while another app owns the conversation (Meta's standby channel, LINE's
-- `mode: standby`): the hub records its messages but holds its replies. `ownership_at` is the
-- network's time of the last change applied, so a late, older report cannot undo a newer one.
ALTER TABLE conversations ADD COLUMN owned BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE conversations ADD COLUMN owner TEXT;
ALTER TABLE conversations ADD COLUMN ownership_at BIGINT NOT NULL DEFAULT 0;

-- Why a pending row waits without being tried (the hub does not own its conversation);
-- cleared, and the row made due, when the reason goes away.
ALTER TABLE outbox ADD COLUMN held_reason TEXT;
-- What the network reported later about a sent message: sent | delivered | read | failed.
ALTER TABLE outbox ADD COLUMN delivery_state TEXT;
ALTER TABLE outbox ADD COLUMN delivery_reason TEXT;
ALTER TABLE outbox ADD COLUMN delivery_at BIGINT;
-- The outbox row that posted a network id, to find it from a delivery status.
ALTER TABLE own_ids ADD COLUMN outbox_id INTEGER;

-- An inbound message's author signals, whether it addresses the brand, and its referral,
-- as JSON (the contract's `customer-context`); NULL when the network said nothing.
ALTER TABLE messages ADD COLUMN context_json TEXT;

-- Calls the network bills, as the plugins reported them, per installation and kind.
CREATE TABLE billable_calls (
    installation_id TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    count           BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (installation_id, kind)
);

-- The admin view of a conversation lists its sent parts with their delivery status.
CREATE INDEX outbox_by_conversation ON outbox (conversation_id, id);
