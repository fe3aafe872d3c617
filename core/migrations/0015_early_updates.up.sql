-- Issue 7: a provider's word on a message (a status callback: sent, delivered, failed...)
-- that arrives before c360 has recorded the provider's id for that message (the callback
-- raced the send's own answer) is kept here, and applied when the id is recorded, so no
-- delivered or failed is lost. Written by c360.channels.delivery; a row that no send ever
-- claims (a message c360 did not send) is dropped after a day.
CREATE TABLE channels.early_updates (
    update_id    bigserial PRIMARY KEY,
    channel      text NOT NULL,
    provider_id  text NOT NULL,
    state        text NOT NULL,
    error        text,
    at           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX early_updates_message ON channels.early_updates (channel, provider_id);
CREATE INDEX early_updates_age ON channels.early_updates (received_at);
