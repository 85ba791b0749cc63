-- Change data capture: `load_type = 'cdc'` reads a table's change log (a
-- PostgreSQL replication slot); its watermark is the log position (an LSN).
ALTER TABLE controller DROP CONSTRAINT IF EXISTS controller_load_type_check;
ALTER TABLE controller ADD CONSTRAINT controller_load_type_check CHECK (load_type IN ('full', 'incremental', 'cdc'));
