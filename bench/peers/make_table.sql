-- Benchmark table for the PostgreSQL → PostgreSQL snapshot peers (and Weir's `postgres` source):
-- ROWS rows of a 10-column table covering the common types, filled in one INSERT … SELECT
-- over generate_series, primary key added afterwards, then VACUUM (FREEZE, ANALYZE).
--
--   psql "postgres://postgres@127.0.0.1:5432/weir_peer_src" -v ON_ERROR_STOP=1 \
--        -v table=public.bench_snap -v rows=10000000 -f bench/peers/make_table.sql
--
-- Drops and recreates :table. Deterministic except `ref` (uuid) and `created_at` (row i is
-- i seconds before now()). Size with the primary key: 1M rows = 184 MB, 10M rows = 1.8 GB.
-- Time here (2 cores, shared): 1M rows 11.5-12.7 s, 10M rows 149 s.
--
-- Why VACUUM (FREEZE): the first reader of freshly inserted rows sets their hint bits and so
-- rewrites the whole table; without it, whichever peer runs first is slower for no fault of its own.
\set ON_ERROR_STOP 1
DROP TABLE IF EXISTS :table;
CREATE TABLE :table (
    id          bigint           NOT NULL,
    qty         integer          NOT NULL,
    amount      numeric(12,2)    NOT NULL,
    score       double precision,
    label       text             NOT NULL,
    created_at  timestamptz      NOT NULL,
    day         date             NOT NULL,
    active      boolean          NOT NULL,
    ref         uuid             NOT NULL,
    doc         jsonb
);
INSERT INTO :table
SELECT i,
       (i % 1000)::int,
       round(((i * 7919) % 10000000) / 100.0, 2)::numeric(12,2),
       CASE WHEN i % 50 = 0 THEN NULL ELSE (i % 100003) / 7.0 END,
       'customer-' || lpad(i::text, 10, '0') || '-' || substr(md5(i::text), 1, 10),
       now() - make_interval(secs => i),
       date '2020-01-01' + (i % 2000)::int,
       i % 3 <> 0,
       gen_random_uuid(),
       CASE WHEN i % 10 = 0 THEN NULL
            ELSE jsonb_build_object('k', i % 97, 'tag', 't' || (i % 13), 'ok', i % 2 = 0) END
FROM generate_series(1, :rows::bigint) AS s(i);
ALTER TABLE :table ADD PRIMARY KEY (id);
VACUUM (FREEZE, ANALYZE) :table;
SELECT count(*) AS rows, pg_size_pretty(pg_total_relation_size(:'table')) AS size FROM :table;
