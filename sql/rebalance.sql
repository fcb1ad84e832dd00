-- sql/rebalance.sql: the bookkeeping of `shardgate rebalance apply`.
--
-- It lives on the default shard's primary of the map the rebalance starts from. A run turns
-- map OLD into map NEW (both identified by a digest of their shards and tables); it is a list
-- of units (see README, "Rebalancing"), each carried through these states, every change
-- committed before the step it announces:
--
--   planned    nothing done yet
--   copying    publication on the source, subscription on the target: the copy and the
--              catch-up run
--   cutover    the proxies are being paused (a crash here: apply resumes them and retries)
--   switching  the target has every change made before the pause (proven by the marker):
--              from here the unit is moved for good (a crash here: apply finishes the switch)
--   switched   the proxies route the unit to the target; statements that would read its rows
--              left on the source still wait ("settling")
--   settled    verified (the source's rows against the target as it was at the switch),
--              deleted from the source, the proxies told; replication objects to drop
--   done       nothing of the unit is left but its rows on the target
--   aborted    `rebalance abort` undid it before its cut-over
--
-- shardgate.rebalance_marker is created on the source and the target of each unit: the CLI
-- bumps a unit's row on the source during the pause and waits to see it on the target, which
-- proves every earlier change of the moving rows was applied there.
--
-- `rebalance apply` runs these statements itself; the file is for reading and manual installs.
-- Idempotent.

CREATE SCHEMA IF NOT EXISTS shardgate;

CREATE TABLE IF NOT EXISTS shardgate.rebalance_runs (
    id          bigserial PRIMARY KEY,
    old_digest  text NOT NULL,
    new_digest  text NOT NULL,
    state       text NOT NULL DEFAULT 'running',   -- running | done | aborted
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE TABLE IF NOT EXISTS shardgate.rebalance_units (
    run_id      bigint NOT NULL REFERENCES shardgate.rebalance_runs (id),
    unit_no     int NOT NULL,
    spec        text NOT NULL,      -- the unit, as the proxies' REBALANCE commands name it
    source      text NOT NULL,
    target      text NOT NULL,
    state       text NOT NULL DEFAULT 'planned',
    rows_moved  bigint,
    checksum    text,
    pause_ms    double precision,
    copy_ms     double precision,
    error       text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, unit_no)
);

CREATE TABLE IF NOT EXISTS shardgate.rebalance_marker (
    unit text PRIMARY KEY,              -- '<run>.<unit>'
    seq  bigint NOT NULL
);
