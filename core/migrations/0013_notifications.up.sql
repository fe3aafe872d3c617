-- Issue 7, F4 notifications: templates, rules over profile updates, customers' channel
-- preferences, and one row per planned send (the exactly-once guarantee).
CREATE SCHEMA notify;

-- A template's Jinja2 source for one channel and language. Saving changes makes a new version;
-- sends render the newest version of (name, channel, language) and record which one.
CREATE TABLE notify.templates (
    template_id  bigserial PRIMARY KEY,
    name         text NOT NULL CHECK (name <> ''),
    channel      text NOT NULL CHECK (channel <> ''),
    language     text NOT NULL CHECK (language <> ''),
    version      integer NOT NULL CHECK (version >= 1),
    subject      text,
    body         text NOT NULL,
    html         text,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, channel, language, version)
);

-- A rule: when a profile update meets `trigger` (and its `conditions`), send template
-- `template` on `channel` under consent purpose `purpose`, `delay_s` later. A deleted rule is
-- kept (its sends point at it) with `deleted_at` set, and its name may be used again.
CREATE TABLE notify.rules (
    rule_id     bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (name <> ''),
    trigger     text NOT NULL CHECK (trigger IN ('first_purchase', 'cart_abandoned',
                                                 'ltv_tier_changed', 'churn_risk_crossed')),
    conditions  jsonb NOT NULL DEFAULT '{}',
    template    text NOT NULL,
    channel     text NOT NULL,
    purpose     text NOT NULL CHECK (purpose <> ''),
    delay_s     integer NOT NULL DEFAULT 0 CHECK (delay_s >= 0),
    enabled     boolean NOT NULL DEFAULT true,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz
);
CREATE UNIQUE INDEX rules_live_name ON notify.rules (name) WHERE deleted_at IS NULL;

-- A customer's word on a channel, for one purpose or for all ('*'): by profile, or by address
-- for an address no profile holds yet (an SMS STOP from an unknown number). The latest row
-- that matches a send decides.
CREATE TABLE notify.preferences (
    preference_id  bigserial PRIMARY KEY,
    profile_id     uuid REFERENCES profiles (profile_id) ON DELETE CASCADE,
    address        text,
    channel        text NOT NULL,
    purpose        text NOT NULL,
    subscribed     boolean NOT NULL,
    source         text NOT NULL,
    at             timestamptz NOT NULL DEFAULT now(),
    CHECK ((profile_id IS NULL) <> (address IS NULL))
);
CREATE UNIQUE INDEX preferences_profile
    ON notify.preferences (profile_id, channel, purpose) WHERE profile_id IS NOT NULL;
CREATE UNIQUE INDEX preferences_address
    ON notify.preferences (channel, address, purpose) WHERE address IS NOT NULL;

-- The last value a rule saw for a profile (an LTV tier, a churn risk), changed in the same
-- transaction as the send it triggers, so a redelivered update sees no change.
CREATE TABLE notify.watch (
    rule_id     bigint NOT NULL REFERENCES notify.rules (rule_id) ON DELETE CASCADE,
    profile_id  uuid NOT NULL REFERENCES profiles (profile_id) ON DELETE CASCADE,
    value       jsonb,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (rule_id, profile_id)
);

-- One notification: at most one per (rule, profile, trigger key), so a redelivered profile
-- update plans nothing twice. States: scheduled (waiting for its time), held (policy moved it
-- later: quiet hours, the global throttle), enqueued (handed to channels.deliveries with the
-- idempotency key notify:<send_id>), suppressed (with `reason`). Test sends have no rule.
CREATE TABLE notify.sends (
    send_id       bigserial PRIMARY KEY,
    rule_id       bigint REFERENCES notify.rules (rule_id),
    profile_id    uuid REFERENCES profiles (profile_id) ON DELETE CASCADE,
    trigger       text NOT NULL,
    trigger_key   text NOT NULL,
    facts         jsonb NOT NULL DEFAULT '{}',
    channel       text NOT NULL,
    purpose       text NOT NULL,
    address       text,
    template_id   bigint REFERENCES notify.templates (template_id),
    state         text NOT NULL CHECK (state IN ('scheduled', 'held', 'enqueued', 'suppressed')),
    reason        text,
    scheduled_at  timestamptz NOT NULL,
    enqueued_at   timestamptz,
    delivery_id   bigint,
    opened_at     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule_id, profile_id, trigger_key)
);
-- the scheduler's question, every second: which sends are due?
CREATE INDEX sends_due ON notify.sends (scheduled_at) WHERE state IN ('scheduled', 'held');
-- frequency caps: what did this customer get lately?
CREATE INDEX sends_profile_enqueued ON notify.sends (profile_id, enqueued_at)
    WHERE enqueued_at IS NOT NULL;
