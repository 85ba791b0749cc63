-- The lake's catalog: every table a lake sink (Delta) has committed, by name.
-- `runner query` reads tables by these names; `runner catalog ddl` registers
-- them in a Hive Metastore or Trino.
CREATE TABLE IF NOT EXISTS catalog (
    schema_name   TEXT NOT NULL,
    table_name    TEXT NOT NULL,
    format        TEXT NOT NULL DEFAULT 'delta',
    -- The table's URI, without credentials.
    location      TEXT NOT NULL,
    -- The connection whose credentials reach it; NULL for the default lake (WEIR_LAKE_URI).
    connection    TEXT,
    version       BIGINT NOT NULL,
    -- [{"name", "type", "nullable"}], types as Delta names them.
    columns       JSONB NOT NULL DEFAULT '[]',
    partition_by  TEXT[] NOT NULL DEFAULT '{}',
    pipeline_name TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (schema_name, table_name)
);

-- One number per pipeline run, the same for each of its attempts: a sink that
-- records it with its commit (Delta's application transaction) recognises a
-- retry of a commit that already landed.
CREATE SEQUENCE IF NOT EXISTS load_seq;

-- What an audit row records: a pipeline's load, or maintenance of a lake table.
ALTER TABLE audit ADD COLUMN IF NOT EXISTS operation TEXT NOT NULL DEFAULT 'load'
    CHECK (operation IN ('load', 'maintain'));
-- Operation details (maintenance: files compacted and vacuumed).
ALTER TABLE audit ADD COLUMN IF NOT EXISTS details JSONB;
