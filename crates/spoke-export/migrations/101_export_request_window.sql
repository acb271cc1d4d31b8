-- Request batches are published in a window (a few ahead of the checked ones), not all at once:
-- a 100,000-record job then never floods its portal's partition ahead of other jobs, and the
-- backlog stays small (the dev broker keeps only ~5 MiB per partition).
ALTER TABLE jobs ADD COLUMN published_batches integer NOT NULL DEFAULT 0;
-- Jobs created before this column existed had every batch published at creation.
UPDATE jobs SET published_batches = batch_count;
