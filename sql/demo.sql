-- sql/demo.sql: the demo schema, loaded into every shard primary by tests/demo-load.sh.
-- Its tables match the demo shard map (shardmap.yaml):
--   users      hash on id
--   orders     hash on user_id, co-located with users (the key leads the primary key)
--   events     range on id
--   tenants    directory on tenant_id (see sql/directory.sql)
--   countries  reference table: a full copy on every shard
-- Idempotent: safe to load again.

CREATE TABLE IF NOT EXISTS users (
    id         bigint PRIMARY KEY,
    name       text,
    email      text,
    created_at timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
    id         bigserial,
    user_id    bigint,
    amount     numeric(12,2),
    created_at timestamptz DEFAULT now(),
    PRIMARY KEY (user_id, id)
);

CREATE TABLE IF NOT EXISTS events (
    id      bigint PRIMARY KEY,
    kind    text,
    payload jsonb
);

CREATE TABLE IF NOT EXISTS tenants (
    tenant_id text PRIMARY KEY,
    name      text
);

CREATE TABLE IF NOT EXISTS countries (
    code text PRIMARY KEY,
    name text
);

INSERT INTO countries (code, name) VALUES
    ('DE', 'Germany'),
    ('FR', 'France'),
    ('GB', 'United Kingdom'),
    ('JP', 'Japan'),
    ('US', 'United States'),
    ('BR', 'Brazil'),
    ('IN', 'India')
ON CONFLICT (code) DO NOTHING;

-- The test roles that tests/cluster.sh creates (md5user, pwuser, trustuser) may use the
-- demo tables, so that authentication tests can run real queries. Skipped where a role
-- does not exist.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['md5user', 'pwuser', 'trustuser'] LOOP
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON users, orders, events, tenants, countries TO %I', r);
            EXECUTE format('GRANT USAGE ON SEQUENCE orders_id_seq TO %I', r);
        END IF;
    END LOOP;
END
$$;
