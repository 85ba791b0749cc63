-- Running Weir for real: one row per `runner` run, a lease per pipeline so that
-- several runners sharing this database never run a pipeline twice at once, and
-- a record of every completion email. See README.md, "Operations".

-- When `runner schedule` runs a pipeline: a cron expression (`0 2 * * *`, or with
-- seconds first, `0 */15 * * * *`), in UTC. NULL: at each `--every` interval.
ALTER TABLE controller ADD COLUMN IF NOT EXISTS schedule TEXT;

-- One row per run (`runner run`, or each tick of `runner schedule`).
CREATE TABLE IF NOT EXISTS run (
    run_id           UUID PRIMARY KEY,
    run_date         DATE NOT NULL,
    status           TEXT NOT NULL DEFAULT 'running'
                     CHECK (status IN ('running', 'success', 'failed', 'cancelled', 'abandoned')),
    host             TEXT,
    pid              INTEGER,
    concurrency      INTEGER NOT NULL,
    -- A run whose heartbeat is older than this is dead (its process was killed, its machine lost).
    lease_seconds    INTEGER NOT NULL,
    started_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at      TIMESTAMPTZ,
    pipelines        INTEGER,
    succeeded        INTEGER,
    failed           INTEGER,
    skipped          INTEGER,
    -- Statements this run sent to the metadata database (the run loop's own overhead).
    metadata_queries BIGINT
);

CREATE INDEX IF NOT EXISTS run_live ON run (heartbeat_at) WHERE finished_at IS NULL;

-- Who runs a pipeline now. A row is claimed with INSERT … ON CONFLICT, so only
-- one runner holds it; the holder extends `expires_at` with each heartbeat and
-- deletes the row when the pipeline is done. A lease that expired belongs to a
-- dead runner: the next runner takes it over and marks that runner's attempt
-- `abandoned`.
CREATE TABLE IF NOT EXISTS pipeline_lease (
    pipeline_id   BIGINT PRIMARY KEY REFERENCES controller (id) ON DELETE CASCADE,
    pipeline_name TEXT NOT NULL,
    run_id        UUID NOT NULL,
    host          TEXT,
    acquired_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL
);

-- Every completion email, sent or not: a mail server that is down changes
-- nothing about a run's result, and this is where that shows.
CREATE TABLE IF NOT EXISTS notification (
    notification_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          UUID NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('sent', 'failed')),
    recipients      TEXT[] NOT NULL,
    subject         TEXT NOT NULL,
    -- Redacted: the SMTP password never reaches this table.
    error_message   TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS notification_run ON notification (run_id);
CREATE INDEX IF NOT EXISTS audit_pipeline_date ON audit (pipeline_id, run_date, audit_id DESC);
