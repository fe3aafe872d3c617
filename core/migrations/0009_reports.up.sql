-- Issue 6: saved reports, their e-mail schedules, and each scheduled run's outcome.

-- A saved report: a kind (c360.reports.registry) with its parameters, owned by the user who
-- saved it. It is built as its owner, so a reader sees only what the owner's role may see.
-- `owner` is the column c360.sharing reads to tell an owner's own reports.
CREATE TABLE analytics.saved_reports (
    report_id   bigserial PRIMARY KEY,
    name        text NOT NULL CHECK (name <> ''),
    kind        text NOT NULL,
    params      jsonb NOT NULL DEFAULT '{}',
    owner       bigint NOT NULL REFERENCES governance.users (user_id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX saved_reports_owner ON analytics.saved_reports (owner);

-- When a saved report is built and e-mailed: every day, week (on `weekday`, 0 = Monday) or
-- month (on `month_day`, 1 to 28 so every month has it) at `at_hour` UTC. A failed send is
-- retried after a back-off (`failures` in a row) and never skips ahead to the next period.
CREATE TABLE analytics.report_schedules (
    schedule_id  bigserial PRIMARY KEY,
    report_id    bigint NOT NULL REFERENCES analytics.saved_reports (report_id)
                     ON DELETE CASCADE,
    every        text NOT NULL CHECK (every IN ('daily', 'weekly', 'monthly')),
    at_hour      smallint NOT NULL CHECK (at_hour BETWEEN 0 AND 23),
    weekday      smallint NOT NULL DEFAULT 0 CHECK (weekday BETWEEN 0 AND 6),
    month_day    smallint NOT NULL DEFAULT 1 CHECK (month_day BETWEEN 1 AND 28),
    recipients   text[] NOT NULL CHECK (cardinality(recipients) > 0),
    next_run_at  timestamptz NOT NULL,
    failures     integer NOT NULL DEFAULT 0,
    active       boolean NOT NULL DEFAULT true,
    created_by   bigint NOT NULL REFERENCES governance.users (user_id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- the scheduler's question, every minute: which active schedules are due?
CREATE INDEX report_schedules_due ON analytics.report_schedules (next_run_at) WHERE active;

-- One attempt to build and send a scheduled report: `outcome` is sent or failed, with the
-- error a person can act on; `pdf_bytes` the size of the PDF when one was made.
CREATE TABLE analytics.report_runs (
    run_id       bigserial PRIMARY KEY,
    schedule_id  bigint NOT NULL REFERENCES analytics.report_schedules (schedule_id)
                     ON DELETE CASCADE,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    outcome      text NOT NULL CHECK (outcome IN ('sent', 'failed')),
    error        text,
    recipients   text[] NOT NULL,
    pdf_bytes    integer
);
CREATE INDEX report_runs_schedule ON analytics.report_runs (schedule_id, run_id);
