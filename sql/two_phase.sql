-- sql/two_phase.sql: decisions of transactions that shardgate commits with two-phase commit.
--
-- With routing.two_phase_commit: true, a write that spans several shards (one statement,
-- or a pipeline of statements on different shards) is prepared on every shard
-- (PREPARE TRANSACTION 'sg_<id>_<shard>'). Once every shard has prepared, the proxy records
-- the decision to commit here, on the default shard, committed, before it sends any
-- COMMIT PREPARED. A transaction without a row here was never decided: it is rolled back
-- (presumed abort). At start-up the proxy looks for prepared transactions named sg_... on
-- every shard and finishes each the way its row here says; it deletes a row once every
-- shard committed.
--
-- Idempotent: safe to load again.

CREATE SCHEMA IF NOT EXISTS shardgate;

CREATE TABLE IF NOT EXISTS shardgate.decisions (
    gid        text PRIMARY KEY,              -- the prefix shared by the shards' prepared transactions
    shards     text[] NOT NULL,               -- the shards that prepared it
    created_at timestamptz DEFAULT now()
);
