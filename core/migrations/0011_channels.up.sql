-- Issue 7: channels. What customers sent us (inbound), the durable outbox of everything c360
-- sends them (deliveries) with every change of state (delivery_events), and the OAuth tokens
-- a channel refreshes as it runs (tokens). Written by c360.channels.
CREATE SCHEMA channels;

-- A message a channel's webhook (or socket) received. A provider that redelivers a webhook
-- sends the same (channel, external_id): it is kept once and answered once. `message` holds
-- the whole c360.channels.base.InboundMessage, so a message whose process died before
-- answering it (`handled_at` still empty after `lease_until`) is answered by a worker.
CREATE TABLE channels.inbound (
    inbound_id   bigserial PRIMARY KEY,
    channel      text NOT NULL,
    external_id  text NOT NULL,
    sender       text NOT NULL,
    message      jsonb NOT NULL,
    received_at  timestamptz NOT NULL,
    lease_until  timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    handled_at   timestamptz,
    replies      bigint[] NOT NULL DEFAULT '{}',
    last_error   text,
    UNIQUE (channel, external_id)
);
-- the worker's question, every pass: which messages has nobody answered in time?
CREATE INDEX inbound_unhandled ON channels.inbound (lease_until) WHERE handled_at IS NULL;

-- One outbound message to one address, sent at most once per idempotency key. `status` moves
-- pending -> sending -> sent -> delivered -> read, or ends in failed / bounced; a row left in
-- sending after `lease_until` (its worker died mid-send) is attempted again. `payload` holds
-- the whole c360.channels.base.OutboundMessage.
CREATE TABLE channels.deliveries (
    delivery_id      bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    channel          text NOT NULL,
    address          text NOT NULL,
    profile_id       uuid,
    purpose          text NOT NULL,
    payload          jsonb NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN
                         ('pending', 'sending', 'sent', 'delivered', 'read', 'failed',
                          'bounced')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    lease_until      timestamptz,
    provider_id      text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- the sender's questions: which rows are due, and which leases ran out?
CREATE INDEX deliveries_due ON channels.deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_leased ON channels.deliveries (lease_until) WHERE status = 'sending';
-- status callbacks name the provider's id for the message
CREATE INDEX deliveries_provider ON channels.deliveries (channel, provider_id)
    WHERE provider_id IS NOT NULL;
-- frequency caps and a customer's history read one profile's deliveries
CREATE INDEX deliveries_profile ON channels.deliveries (profile_id, created_at)
    WHERE profile_id IS NOT NULL;

-- Every change of a delivery's state and every later word on it (queued, sending, sent, retry,
-- failed, delivered, read, bounced, opened, unsubscribed...), append-only: the trigger below
-- refuses UPDATE. A delivery deleted with its customer's data takes its events with it.
CREATE TABLE channels.delivery_events (
    event_id     bigserial PRIMARY KEY,
    delivery_id  bigint NOT NULL REFERENCES channels.deliveries (delivery_id) ON DELETE CASCADE,
    kind         text NOT NULL,
    detail       text,
    at           timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX delivery_events_delivery ON channels.delivery_events (delivery_id, event_id);

CREATE FUNCTION channels.delivery_events_are_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'delivery events are append-only: % is not allowed', TG_OP;
END
$$;
CREATE TRIGGER delivery_events_append_only
    BEFORE UPDATE ON channels.delivery_events
    FOR EACH ROW EXECUTE FUNCTION channels.delivery_events_are_append_only();

-- OAuth tokens a channel refreshes itself (Zalo OA: a refresh token works once, so the new
-- pair is stored here before it is used). `name` is the channel's key, e.g. 'zalo:<app id>';
-- `seed` is a digest of the refresh token the settings gave, so a new authorization by the
-- operator (a new token in the settings) replaces the stored chain.
CREATE TABLE channels.tokens (
    name           text PRIMARY KEY,
    access_token   text NOT NULL,
    refresh_token  text NOT NULL,
    expires_at     timestamptz,
    seed           text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
