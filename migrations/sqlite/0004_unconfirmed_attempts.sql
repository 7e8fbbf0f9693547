-- Attempts whose outcome the hub never learned. An operation without an idempotency key on
-- the service's side (a Freshdesk ticket, any helpdesk comment) may have taken effect in such
-- an attempt; the next attempt tells the plugin, which looks for that effect before acting.

-- When the current (or last) attempt was claimed.
ALTER TABLE outbox ADD COLUMN attempt_started_at BIGINT;
-- When the first attempt with an unknown outcome started (a crash, a timeout, a 5xx); NULL
-- while every attempt so far is known to have changed nothing.
ALTER TABLE outbox ADD COLUMN unconfirmed_since BIGINT;
