-- sql/directory.sql: the directory of directory-sharded tables.
--
-- A table with `strategy: directory` in shardmap.yaml has no formula from key to shard:
-- this table records, for each of its keys, the shard that holds the key's rows. It lives
-- on one shard (the table's `directory.shard`, s0 in the demo map), and the proxy reads it
-- through a bounded LRU cache with a TTL. When an INSERT brings a key that is not yet in
-- the directory, the proxy assigns a shard by the table's `assign` policy and records the
-- key here (committed) before it writes the row, so a row is never on a shard the
-- directory does not name. Rebalancing a directory table moves a key's rows and then
-- updates its row here.
--
-- Idempotent: safe to load again.

CREATE SCHEMA IF NOT EXISTS shardgate;

CREATE TABLE IF NOT EXISTS shardgate.directory (
    table_name text NOT NULL,                 -- the sharded table, as named in shardmap.yaml
    key        text NOT NULL,                 -- the shard key's value, in PostgreSQL text form
    shard      text NOT NULL,                 -- the shard's name in shardmap.yaml
    created_at timestamptz DEFAULT now(),
    PRIMARY KEY (table_name, key)
);

-- Which keys a shard holds (rebalance plans, verification).
CREATE INDEX IF NOT EXISTS directory_shard_idx ON shardgate.directory (table_name, shard);
