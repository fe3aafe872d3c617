-- Issue 7: the agents. Personas (behaviour rules kept as data, every change a new version),
-- conversations with their dialogue state, their turns, and the escalation queue operators
-- work from. Conversation texts are personal data: a conversation goes with its profile when
-- the profile is erased (ON DELETE CASCADE), and its turns and escalations go with it.
CREATE SCHEMA agents;

-- One row per version of an agent's persona; exactly one version per agent is active.
-- `languages` are ISO 639-1 codes, the first one the default; `allowed_topics` are intent
-- names the agent answers (others get the out-of-scope answer); `escalation` holds the
-- triggers' settings; `opening_hours` when operators answer ({"days": [1..7], "from": "08:00",
-- "to": "22:00", "timezone": "Asia/Ho_Chi_Minh"}); `greeting` one text per language.
CREATE TABLE agents.personas (
    agent           text NOT NULL CHECK (agent ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    version         integer NOT NULL CHECK (version > 0),
    name            text NOT NULL CHECK (name <> ''),
    tone            text NOT NULL DEFAULT '',
    languages       text[] NOT NULL CHECK (cardinality(languages) > 0),
    allowed_topics  text[] NOT NULL DEFAULT '{}',
    escalation      jsonb NOT NULL DEFAULT '{}',
    opening_hours   jsonb NOT NULL DEFAULT '{}',
    greeting        jsonb NOT NULL DEFAULT '{}',
    active          boolean NOT NULL DEFAULT false,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (agent, version)
);
CREATE UNIQUE INDEX personas_one_active ON agents.personas (agent) WHERE active;

-- A conversation with one customer, on whichever channels they write from: `channel` and
-- `address` are those of the latest customer turn, where replies and operator answers go.
-- `context` is the personalisation snapshot (c360.agents.context), refreshed when the profile
-- changes; `low_confidence_streak` counts consecutive turns no intent was sure of.
CREATE TABLE agents.conversations (
    conversation_id        uuid PRIMARY KEY,
    agent                  text NOT NULL,
    profile_id             uuid REFERENCES profiles (profile_id) ON DELETE CASCADE,
    channel                text NOT NULL,
    address                text NOT NULL,
    language               text NOT NULL DEFAULT 'en',
    status                 text NOT NULL DEFAULT 'open'
                           CHECK (status IN ('open', 'escalated', 'closed')),
    intent                 text,
    slots                  jsonb NOT NULL DEFAULT '{}',
    summary                text NOT NULL DEFAULT '',
    context                jsonb NOT NULL DEFAULT '{}',
    context_at             timestamptz,
    low_confidence_streak  integer NOT NULL DEFAULT 0,
    persona_version        integer,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
-- a profile's open conversation, whatever channel it came from
CREATE INDEX conversations_profile ON agents.conversations (profile_id, updated_at DESC)
    WHERE status <> 'closed';
-- an anonymous sender's open conversation on one channel
CREATE INDEX conversations_address ON agents.conversations (channel, address, updated_at DESC);
CREATE INDEX conversations_recent ON agents.conversations (updated_at DESC);

-- Every turn, numbered within its conversation. `reply_to` is the customer turn an agent or
-- operator turn answers; `external_id` the channel's id of a customer message, so a
-- redelivered message is one turn; `facts` the knowledge item ids (and profile fields) a reply
-- used; `grounded` whether its prices, dates, quantities and codes all came from them.
CREATE TABLE agents.turns (
    conversation_id  uuid NOT NULL
                     REFERENCES agents.conversations (conversation_id) ON DELETE CASCADE,
    turn_no          integer NOT NULL CHECK (turn_no > 0),
    role             text NOT NULL CHECK (role IN ('customer', 'agent', 'operator', 'system')),
    text             text NOT NULL,
    intent           text,
    confidence       real,
    channel          text NOT NULL,
    address          text,
    external_id      text,
    reply_to         integer,
    facts            jsonb NOT NULL DEFAULT '[]',
    grounded         boolean,
    written_by       text,
    flags            jsonb NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, turn_no)
);
CREATE UNIQUE INDEX turns_external ON agents.turns (channel, external_id)
    WHERE external_id IS NOT NULL;

-- The operators' queue: one escalation open per conversation at a time.
CREATE TABLE agents.escalations (
    escalation_id    bigserial PRIMARY KEY,
    conversation_id  uuid NOT NULL
                     REFERENCES agents.conversations (conversation_id) ON DELETE CASCADE,
    reason           text NOT NULL,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'taken', 'answered', 'closed')),
    operator         text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    taken_at         timestamptz,
    answered_at      timestamptz,
    closed_at        timestamptz
);
CREATE UNIQUE INDEX escalations_one_open ON agents.escalations (conversation_id)
    WHERE status <> 'closed';
CREATE INDEX escalations_queue ON agents.escalations (status, created_at);
