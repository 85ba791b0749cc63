-- `runner serve`: events posted to `POST /events`, stored before they are
-- acknowledged, and a key for paging the runs newest first. See README.md,
-- "The server".

-- One row per event. `message_id` is the client's (or one the server drew):
-- an event sent again with the same id is not stored again. Rows are inserted
-- by one writer per server in commit order, so `event_id` grows with commits.
CREATE TABLE IF NOT EXISTS events (
    event_id    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  TEXT NOT NULL UNIQUE,
    event       TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    "timestamp" TIMESTAMPTZ NOT NULL,
    properties  JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(properties) = 'object'),
    received_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS events_event_time ON events (event, "timestamp");

CREATE INDEX IF NOT EXISTS run_started ON run (started_at DESC, run_id DESC);
