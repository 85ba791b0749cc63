-- Transforms: a pipeline whose source_type is a transform (`dbt`) builds the
-- tables its project defines, so it names no destination table.
ALTER TABLE controller ALTER COLUMN destination_table DROP NOT NULL;
