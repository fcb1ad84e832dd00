/*
 * test_config.c - Check suite for the configuration loader (src/config).
 *
 * Most cases embed YAML and load it with config_load_string() under the
 * name "t.yaml", so an error's "t.yaml:LINE:" prefix can be asserted
 * exactly. Files are used only for config_load() itself, file: secrets and
 * the TLS files config_load() checks (keys and certificates made here with
 * OpenSSL in a mkdtemp directory).
 */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

/* The smallest valid file: one shard, every other key left to its default. */
#define MINIMAL "shards:\n  - name: s0\n    primary: 127.0.0.1:5432\n"

/* Two shards, for tables. */
#define TWO_SHARDS                                                                                 \
	"shards:\n"                                                                                \
	"  - name: s0\n"                                                                           \
	"    primary: 127.0.0.1:5432\n"                                                            \
	"  - name: s1\n"                                                                           \
	"    primary: 127.0.0.1:5433\n"

static config_t sentinel_config;

/* Loads text that must be valid; fails the test with the loader's message. */
static config_t *load_ok(const char *yaml)
{
	config_t *config = NULL;
	char err[512] = "";
	bool ok = config_load_string("t.yaml", yaml, strlen(yaml), &config, err, sizeof(err));

	ck_assert_msg(ok, "expected the configuration to load, got error: %s", err);
	ck_assert_ptr_nonnull(config);
	return config;
}

/*
 * Loads text that must be refused: the error starts with `prefix` (file and
 * line) and contains `fragment`, and the output pointer is left untouched.
 */
static void expect_error(const char *yaml, const char *prefix, const char *fragment)
{
	config_t *config = &sentinel_config;
	char err[512] = "";
	bool ok = config_load_string("t.yaml", yaml, strlen(yaml), &config, err, sizeof(err));

	ck_assert_msg(!ok, "expected an error starting with \"%s\", but the file loaded", prefix);
	ck_assert_msg(config == &sentinel_config, "the output pointer was written on error");
	ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0,
	              "expected an error starting with \"%s\", got \"%s\"", prefix, err);
	ck_assert_msg(strstr(err, fragment) != NULL, "expected \"%s\" in the error, got \"%s\"",
	              fragment, err);
}

/* Writes text to a fresh temporary file; the caller unlinks path. */
static void write_temp(char *path, size_t size, const char *text)
{
	int fd;

	snprintf(path, size, "/tmp/shardgate-test-config-XXXXXX");
	fd = mkstemp(path);
	ck_assert_msg(fd >= 0, "mkstemp failed");
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Prints a configuration into a string the caller frees. */
static char *print_to_string(const config_t *config)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	ck_assert_ptr_nonnull(out);
	config_print(config, out);
	fclose(out);
	return text;
}

static const char *const full_yaml =
    "listen: 0.0.0.0:7000\n"
    "workers: 4\n"
    "max_client_conn: 500\n"
    "max_user_conn: 50\n"
    "max_db_conn: 60\n"
    "max_message_size: 8MB\n"
    "admin: { users: [admin, ops] }\n"
    "metrics: 127.0.0.1:9930\n"
    "log: { level: debug, slow_statement: 250ms }\n"
    "tls: { mode: require, cert: /etc/sg/cert.pem, key: /etc/sg/key.pem, ciphers: HIGH }\n"
    "pool:\n"
    "  mode: session\n"
    "  size: 7\n"
    "  prepared_statements: 100\n"
    "timeouts: { connect: 1s, query: 20s, wait: 3s, login: 4s, client_idle: 10m,\n"
    "            idle_in_transaction: 30s, shutdown: 1m }\n"
    "auth:\n"
    "  method: scram-sha-256\n"
    "  users: [ { name: app, password: \"SCRAM-SHA-256$4096:abc\" }, { name: bob } ]\n"
    "  query: \"SELECT usename, passwd FROM pg_shadow WHERE usename = $1\"\n"
    "backend: { user: sg, password: secret, database: appdb, tls: verify-full,\n"
    "           ca_file: /etc/ca.pem }\n"
    "health: { interval: 100ms, failures_to_open: 5, open_for: 2s }\n"
    "routing:\n"
    "  read_write_split: false\n"
    "  balance: weighted\n"
    "  include_primary_in_reads: true\n"
    "  max_replica_lag: { bytes: 1MB, time: 2s }\n"
    "  read_your_writes: false\n"
    "  read_your_writes_wait: 50ms\n"
    "  transaction_reads: replica_until_write\n"
    "  read_only_functions: [my_reader]\n"
    "  write_functions: [nextval, my_writer]\n"
    "  multi_shard_writes: refuse\n"
    "  two_phase_commit: true\n"
    "shards:\n"
    "  - name: s0\n"
    "    primary: 10.0.0.1:5432\n"
    "    replicas: [10.0.0.2:5432, { address: 10.0.0.3:5432, weight: 2 }]\n"
    "    max_concurrent: 100\n"
    "  - name: s1\n"
    "    primary: { address: \"[::1]:5433\", weight: 3 }\n"
    "default_shard: s1\n"
    "tables:\n"
    "  users: { key: id, strategy: hash, buckets: 4, placement: [s1, s0, s1, s0] }\n"
    "  orders: { key: user_id, type: integer, strategy: hash, colocate_with: users }\n"
    "  public.events: { key: at, type: timestamptz, strategy: range, ranges: [\n"
    "      { below: \"2024-01-01 00:00:00+00\", shard: s0 }, { shard: s1 } ] }\n"
    "  tenants: { key: tenant, type: text, strategy: directory,\n"
    "             directory: { shard: s1, table: meta.dir, assign: s0 } }\n"
    "  countries: { strategy: reference }\n";

START_TEST(test_full_file_every_key)
{
	config_t *c = load_ok(full_yaml);
	int users, orders, events, tenants, countries;

	ck_assert_str_eq(c->path, "t.yaml");
	ck_assert_str_eq(c->listen.host, "0.0.0.0");
	ck_assert_int_eq(c->listen.port, 7000);
	ck_assert_int_eq(c->workers, 4);
	ck_assert_int_eq(c->max_client_conn, 500);
	ck_assert_int_eq(c->max_user_conn, 50);
	ck_assert_int_eq(c->max_db_conn, 60);
	ck_assert_uint_eq(c->max_message_size, 8u * 1024 * 1024);
	ck_assert_int_eq(c->n_admin_users, 2);
	ck_assert_str_eq(c->admin_users[1], "ops");
	ck_assert(c->has_metrics);
	ck_assert_int_eq(c->metrics.port, 9930);
	ck_assert_int_eq(c->log_level, LOG_DEBUG);
	ck_assert_int_eq(c->slow_statement_ms, 250);
	ck_assert_int_eq(c->tls.mode, TLS_REQUIRE);
	ck_assert_str_eq(c->tls.cert, "/etc/sg/cert.pem");
	ck_assert_str_eq(c->tls.key, "/etc/sg/key.pem");
	ck_assert_str_eq(c->tls.ciphers, "HIGH");
	ck_assert_int_eq(c->pool.mode, POOL_SESSION);
	ck_assert_int_eq(c->pool.size, 7);
	ck_assert_int_eq(c->pool.prepared_statements, 100);
	ck_assert_int_eq(c->timeouts.connect_ms, 1000);
	ck_assert_int_eq(c->timeouts.query_ms, 20000);
	ck_assert_int_eq(c->timeouts.wait_ms, 3000);
	ck_assert_int_eq(c->timeouts.login_ms, 4000);
	ck_assert_int_eq(c->timeouts.client_idle_ms, 600000);
	ck_assert_int_eq(c->timeouts.idle_in_transaction_ms, 30000);
	ck_assert_int_eq(c->timeouts.shutdown_ms, 60000);
	ck_assert_int_eq(c->auth.method, AUTH_SCRAM);
	ck_assert_int_eq(c->auth.n_users, 2);
	ck_assert_str_eq(c->auth.users[0].name, "app");
	ck_assert_str_eq(c->auth.users[0].password, "SCRAM-SHA-256$4096:abc");
	ck_assert_str_eq(c->auth.users[1].password, "");
	ck_assert_ptr_nonnull(strstr(c->auth.query, "pg_shadow"));
	ck_assert_str_eq(c->backend.user, "sg");
	ck_assert_str_eq(c->backend.password, "secret");
	ck_assert_str_eq(c->backend.database, "appdb");
	ck_assert_int_eq(c->backend.tls, BACKEND_TLS_VERIFY_FULL);
	ck_assert_str_eq(c->backend.ca_file, "/etc/ca.pem");
	ck_assert_int_eq(c->health.interval_ms, 100);
	ck_assert_int_eq(c->health.failures_to_open, 5);
	ck_assert_int_eq(c->health.open_for_ms, 2000);
	ck_assert(!c->routing.read_write_split);
	ck_assert_int_eq(c->routing.balance, BALANCE_WEIGHTED);
	ck_assert(c->routing.include_primary_in_reads);
	ck_assert_int_eq(c->routing.max_lag_bytes, 1024 * 1024);
	ck_assert_int_eq(c->routing.max_lag_ms, 2000);
	ck_assert(!c->routing.read_your_writes);
	ck_assert_int_eq(c->routing.read_your_writes_wait_ms, 50);
	ck_assert_int_eq(c->routing.transaction_reads, TXN_READS_REPLICA_UNTIL_WRITE);
	ck_assert_int_eq(c->routing.n_read_only_functions, 1);
	ck_assert_str_eq(c->routing.read_only_functions[0], "my_reader");
	ck_assert_int_eq(c->routing.n_write_functions, 2);
	ck_assert_str_eq(c->routing.write_functions[1], "my_writer");
	ck_assert_int_eq(c->routing.multi_shard_writes, MULTI_WRITES_REFUSE);
	ck_assert(c->routing.two_phase_commit);

	ck_assert_int_eq(c->n_shards, 2);
	ck_assert_str_eq(c->shards[0].primary.address.host, "10.0.0.1");
	ck_assert_int_eq(c->shards[0].n_replicas, 2);
	ck_assert_int_eq(c->shards[0].replicas[0].weight, 1);
	ck_assert_int_eq(c->shards[0].replicas[1].weight, 2);
	ck_assert_int_eq(c->shards[0].replicas[1].line, 39);
	ck_assert_int_eq(c->shards[0].max_concurrent, 100);
	ck_assert_str_eq(c->shards[1].primary.address.host, "::1");
	ck_assert_int_eq(c->shards[1].primary.address.port, 5433);
	ck_assert_int_eq(c->shards[1].primary.weight, 3);
	ck_assert_int_eq(c->shards[1].line, 41);
	ck_assert_int_eq(c->default_shard, 1);

	ck_assert_int_eq(c->n_tables, 5);
	users = config_find_table(c, "users");
	orders = config_find_table(c, "orders");
	events = config_find_table(c, "public.events");
	tenants = config_find_table(c, "tenants");
	countries = config_find_table(c, "countries");
	ck_assert_int_eq(users, 0);
	ck_assert_int_eq(c->tables[users].buckets, 4);
	ck_assert_int_eq(c->tables[users].placement[0], 1);
	ck_assert_int_eq(c->tables[users].placement[1], 0);
	ck_assert_int_eq(c->tables[users].line, 45);
	ck_assert_int_eq(c->tables[orders].colocate_with, users);
	ck_assert_int_eq(c->tables[orders].key_type, KEY_INTEGER);
	ck_assert_int_eq(c->tables[orders].buckets, 4);
	ck_assert_int_eq(c->tables[orders].placement[2], 1);
	ck_assert_int_eq(c->tables[events].strategy, STRATEGY_RANGE);
	ck_assert_int_eq(c->tables[events].key_type, KEY_TIMESTAMPTZ);
	ck_assert_int_eq(c->tables[events].n_ranges, 2);
	ck_assert(c->tables[events].ranges[0].has_below);
	ck_assert_str_eq(c->tables[events].ranges[0].below, "2024-01-01 00:00:00+00");
	ck_assert(!c->tables[events].ranges[1].has_below);
	ck_assert_int_eq(c->tables[events].ranges[1].shard, 1);
	ck_assert_int_eq(c->tables[tenants].strategy, STRATEGY_DIRECTORY);
	ck_assert_int_eq(c->tables[tenants].directory_shard, 1);
	ck_assert_str_eq(c->tables[tenants].directory_table, "meta.dir");
	ck_assert_int_eq(c->tables[tenants].assign, ASSIGN_FIXED);
	ck_assert_int_eq(c->tables[tenants].assign_shard, 0);
	ck_assert_int_eq(c->tables[countries].strategy, STRATEGY_REFERENCE);
	ck_assert_str_eq(c->tables[countries].key, "");
	ck_assert_ptr_null(c->tables[countries].placement);
	config_free(c);
}
END_TEST

START_TEST(test_defaults)
{
	config_t *c = load_ok(MINIMAL);

	ck_assert_str_eq(c->listen.host, "127.0.0.1");
	ck_assert_int_eq(c->listen.port, 6432);
	ck_assert_int_eq(c->workers, 2);
	ck_assert_int_eq(c->max_client_conn, 10000);
	ck_assert_int_eq(c->max_user_conn, 0);
	ck_assert_int_eq(c->max_db_conn, 0);
	ck_assert_uint_eq(c->max_message_size, 64u * 1024 * 1024);
	ck_assert_int_eq(c->n_admin_users, 0);
	ck_assert(!c->has_metrics);
	ck_assert_int_eq(c->log_level, LOG_INFO);
	ck_assert_int_eq(c->slow_statement_ms, 1000);
	ck_assert_int_eq(c->tls.mode, TLS_DISABLE);
	ck_assert_int_eq(c->pool.mode, POOL_TRANSACTION);
	ck_assert_int_eq(c->pool.size, 20);
	ck_assert_int_eq(c->pool.prepared_statements, 256);
	ck_assert_int_eq(c->timeouts.connect_ms, 2000);
	ck_assert_int_eq(c->timeouts.query_ms, 30000);
	ck_assert_int_eq(c->timeouts.wait_ms, 5000);
	ck_assert_int_eq(c->timeouts.login_ms, 10000);
	ck_assert_int_eq(c->timeouts.client_idle_ms, 0);
	ck_assert_int_eq(c->timeouts.idle_in_transaction_ms, 0);
	ck_assert_int_eq(c->timeouts.shutdown_ms, 30000);
	ck_assert_int_eq(c->auth.method, AUTH_TRUST);
	ck_assert_int_eq(c->auth.n_users, 0);
	ck_assert_str_eq(c->backend.password, "");
	ck_assert_str_eq(c->backend.user, "");
	ck_assert_int_eq(c->backend.tls, BACKEND_TLS_PREFER);
	ck_assert_int_eq(c->health.interval_ms, 250);
	ck_assert_int_eq(c->health.failures_to_open, 3);
	ck_assert_int_eq(c->health.open_for_ms, 5000);
	ck_assert(c->routing.read_write_split);
	ck_assert_int_eq(c->routing.balance, BALANCE_ROUND_ROBIN);
	ck_assert(!c->routing.include_primary_in_reads);
	ck_assert_int_eq(c->routing.max_lag_bytes, 16 * 1024 * 1024);
	ck_assert_int_eq(c->routing.max_lag_ms, 5000);
	ck_assert(c->routing.read_your_writes);
	ck_assert_int_eq(c->routing.read_your_writes_wait_ms, 0);
	ck_assert_int_eq(c->routing.transaction_reads, TXN_READS_PRIMARY);
	ck_assert_int_eq(c->routing.n_read_only_functions, 0);
	ck_assert_int_eq(c->routing.multi_shard_writes, MULTI_WRITES_ALLOW);
	ck_assert(!c->routing.two_phase_commit);
	ck_assert_int_eq(c->default_shard, 0);
	ck_assert_int_eq(c->n_tables, 0);
	ck_assert_int_eq(c->shards[0].n_replicas, 0);
	ck_assert_int_eq(c->shards[0].primary.weight, 1);
	ck_assert_int_eq(c->shards[0].max_concurrent, 0);
	config_free(c);
}
END_TEST

START_TEST(test_default_write_functions)
{
	config_t *c = load_ok(MINIMAL);
	static const char *const expected[] = {"nextval",
	                                       "setval",
	                                       "pg_advisory_lock",
	                                       "pg_try_advisory_xact_lock_shared",
	                                       "lo_import",
	                                       "lowrite",
	                                       "set_config",
	                                       "txid_current",
	                                       "pg_current_xact_id",
	                                       "pg_notify"};
	bool found;

	ck_assert_int_eq(c->routing.n_write_functions, 25);
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
		found = false;
		for (int j = 0; j < c->routing.n_write_functions; j++)
			found = found || strcmp(c->routing.write_functions[j], expected[i]) == 0;
		ck_assert_msg(found, "expected %s among the default write functions", expected[i]);
	}
	config_free(c);
}
END_TEST

START_TEST(test_demo_shardmap_loads)
{
	/* __FILE__ is tests/unit/test_config.c relative to the repository root. */
	char path[1024];
	const char *tail = strstr(__FILE__, "tests/unit/test_config.c");
	config_t *c = NULL;
	char err[512] = "";
	int users, orders, events, tenants;

	ck_assert_ptr_nonnull(tail);
	snprintf(path, sizeof(path), "%.*sshardmap.yaml", (int)(tail - __FILE__), __FILE__);
	ck_assert_msg(config_load(path, &c, err, sizeof(err)), "shardmap.yaml: %s", err);
	ck_assert_int_eq(c->listen.port, 6432);
	ck_assert_int_eq(c->workers, 2);
	ck_assert_int_eq(c->pool.size, 20);
	ck_assert_str_eq(c->backend.user, "postgres");
	ck_assert_str_eq(c->backend.password, "postgres");
	ck_assert_str_eq(c->backend.database, "app");
	ck_assert_int_eq(c->n_shards, 2);
	ck_assert_int_eq(c->shards[0].n_replicas, 2);
	ck_assert_int_eq(c->shards[0].replicas[1].address.port, 55434);
	ck_assert_int_eq(c->shards[1].primary.address.port, 55435);
	ck_assert_int_eq(c->n_tables, 5);
	users = config_find_table(c, "users");
	orders = config_find_table(c, "orders");
	events = config_find_table(c, "events");
	tenants = config_find_table(c, "tenants");
	ck_assert_int_eq(c->tables[users].buckets, 64);
	ck_assert_int_eq(c->tables[orders].colocate_with, users);
	ck_assert_str_eq(c->tables[events].ranges[0].below, "1000000");
	ck_assert_int_eq(c->tables[tenants].key_type, KEY_TEXT);
	ck_assert_int_eq(c->tables[tenants].assign, ASSIGN_ROUND_ROBIN);
	ck_assert_int_eq(config_find_table(c, "countries"), 4);
	config_free(c);
}
END_TEST

START_TEST(test_unknown_top_level_key)
{
	expect_error(MINIMAL "listne: 1.2.3.4:5\n",
	             "t.yaml:4: ", "unknown key \"listne\" in top level");
	expect_error(MINIMAL "listne: 1.2.3.4:5\n", "t.yaml:4: ", "did you mean \"listen\"");
	expect_error("colour: blue\n" MINIMAL, "t.yaml:1: ", "unknown key \"colour\" in top level");
}
END_TEST

START_TEST(test_unknown_nested_keys)
{
	expect_error(MINIMAL "pool:\n  sise: 3\n", "t.yaml:5: ", "unknown key \"sise\" in pool");
	expect_error("shards:\n  - name: s0\n    primary: a:1\n    replica: [b:2]\n",
	             "t.yaml:4: ", "unknown key \"replica\" in shards[0]");
	expect_error(MINIMAL "tables:\n  t: { key: id, strategy: hash, bucket: 4 }\n",
	             "t.yaml:5: ", "unknown key \"bucket\" in tables.t");
	expect_error(MINIMAL "routing: { max_replica_lag: { seconds: 1 } }\n",
	             "t.yaml:4: ", "in routing.max_replica_lag");
	expect_error(MINIMAL "auth: { users: [ { name: a, pass: b } ] }\n",
	             "t.yaml:4: ", "unknown key \"pass\" in auth.users[0]");
}
END_TEST

START_TEST(test_duplicate_mapping_key)
{
	expect_error("workers: 2\n" MINIMAL "workers: 3\n",
	             "t.yaml:5: ", "duplicate key \"workers\" in top level (first at line 1)");
	expect_error(MINIMAL "pool: { size: 2, size: 3 }\n",
	             "t.yaml:4: ", "duplicate key \"size\" in pool");
}
END_TEST

START_TEST(test_wrong_types)
{
	expect_error(MINIMAL "workers: two\n", "t.yaml:4: ", "workers: expected an integer");
	expect_error(MINIMAL "workers: 2.5\n", "t.yaml:4: ", "workers: expected an integer");
	expect_error(MINIMAL "listen: [127.0.0.1:1]\n",
	             "t.yaml:4: ", "listen: expected a single value, got a list");
	expect_error(MINIMAL "pool: 5\n", "t.yaml:4: ", "pool: expected a mapping, got a scalar");
	expect_error("shards: { name: s0 }\n",
	             "t.yaml:1: ", "shards: expected a list, got a mapping");
	expect_error(MINIMAL "routing: { read_write_split: maybe }\n",
	             "t.yaml:4: ", "routing.read_write_split: expected true or false");
	expect_error(MINIMAL "pool: { mode: statement }\n",
	             "t.yaml:4: ", "pool.mode: expected one of transaction, session");
	expect_error("- a\n- b\n", "t.yaml:1: ", "top level must be a mapping");
}
END_TEST

START_TEST(test_out_of_range_numbers)
{
	expect_error(MINIMAL "workers: 0\n", "t.yaml:4: ", "workers: must be between 1 and 64");
	expect_error(MINIMAL "workers: 65\n", "t.yaml:4: ", "(got 65)");
	expect_error(MINIMAL "workers: 99999999999999999999999\n",
	             "t.yaml:4: ", "expected an integer");
	expect_error(MINIMAL "pool: { size: 0 }\n", "t.yaml:4: ", "pool.size: must be between 1");
	expect_error(MINIMAL "max_user_conn: -1\n", "t.yaml:4: ", "max_user_conn: must be");
	expect_error(MINIMAL "health: { failures_to_open: 0 }\n",
	             "t.yaml:4: ", "health.failures_to_open");
	expect_error(MINIMAL "max_message_size: 10\n", "t.yaml:4: ", "max_message_size: must be");
}
END_TEST

START_TEST(test_bad_duration_size_address_values)
{
	expect_error(MINIMAL "timeouts: { query: 5 seconds }\n",
	             "t.yaml:4: ", "timeouts.query: expected a duration");
	expect_error(MINIMAL "timeouts: { query: -5s }\n", "t.yaml:4: ", "timeouts.query");
	expect_error(MINIMAL "max_message_size: 64XB\n",
	             "t.yaml:4: ", "max_message_size: expected a size");
	expect_error(MINIMAL "listen: localhost\n", "t.yaml:4: ", "listen: expected host:port");
	expect_error(MINIMAL "listen: localhost:0\n", "t.yaml:4: ", "listen: expected host:port");
	expect_error(MINIMAL "listen: localhost:65536\n", "t.yaml:4: ", "port from 1 to 65535");
	expect_error(MINIMAL "metrics: [x]\n", "t.yaml:4: ", "metrics: expected a single value");
	expect_error("shards:\n  - name: s0\n    primary: 127.0.0.1\n",
	             "t.yaml:3: ", "shards[0].primary: expected host:port");
}
END_TEST

START_TEST(test_weight_and_replica_limits)
{
	expect_error("shards:\n  - name: s0\n    primary: a:1\n"
	             "    replicas: [ { address: b:1, weight: 0 } ]\n",
	             "t.yaml:4: ", "shards[0].replicas[0].weight: must be between 1");
	expect_error("shards:\n  - name: s0\n    primary: a:1\n"
	             "    replicas: [ { weight: 2 } ]\n",
	             "t.yaml:4: ", "shards[0].replicas[0].address: missing");
	expect_error(
	    "shards:\n  - name: s0\n    primary: a:1\n"
	    "    replicas: [b:1, b:2, b:3, b:4, b:5, b:6, b:7, b:8, b:9, b:10, b:11, b:12,\n"
	    "               b:13, b:14, b:15, b:16, b:17]\n",
	    "t.yaml:4: ", "too many entries (17, at most 16)");
	expect_error("shards:\n  - name: s0\n    primary: a:1\n    replicas: [a:1]\n",
	             "t.yaml:4: ", "already the primary of shard s0");
}
END_TEST

START_TEST(test_shard_errors)
{
	expect_error(TWO_SHARDS "  - name: s0\n    primary: 127.0.0.1:5434\n",
	             "t.yaml:6: ", "shards[2].name: duplicate shard name \"s0\" (first at line 2)");
	expect_error(
	    "shards:\n  - name: s0\n    primary: a:1\n\n  - name: s1\n    max_concurrent: 3\n",
	    "t.yaml:5: ", "shards[1].primary: missing");
	expect_error("shards:\n  - primary: a:1\n", "t.yaml:2: ", "shards[0].name: missing");
	expect_error("shards:\n  - name: \"s 0\"\n    primary: a:1\n",
	             "t.yaml:2: ", "shards[0].name: a shard name may hold only");
	expect_error("shards:\n  - a:1\n", "t.yaml:2: ", "shards[0]: expected a mapping");
	expect_error(TWO_SHARDS "  - name: s2\n    primary: 127.0.0.1:5433\n",
	             "t.yaml:7: ", "already the primary of shard s1");
}
END_TEST

START_TEST(test_no_shards)
{
	expect_error("workers: 2\n", "t.yaml:1: ", "shards: no shards defined");
	expect_error("workers: 2\nshards: []\n", "t.yaml:2: ", "shards: no shards defined");
}
END_TEST

START_TEST(test_default_shard)
{
	config_t *c = load_ok(TWO_SHARDS "default_shard: s1\n");

	ck_assert_int_eq(c->default_shard, 1);
	config_free(c);
	expect_error(TWO_SHARDS "default_shard: s9\n",
	             "t.yaml:6: ", "default_shard: unknown shard \"s9\"");
}
END_TEST

START_TEST(test_duplicate_table_names)
{
	expect_error(MINIMAL "tables:\n  t: { strategy: reference }\n  u: { strategy: reference }\n"
	                     "  t: { strategy: reference }\n",
	             "t.yaml:7: ", "tables: duplicate table \"t\" (first at line 5)");
}
END_TEST

START_TEST(test_default_placement)
{
	config_t *c = load_ok("shards:\n"
	                      "  - { name: a, primary: h:1 }\n"
	                      "  - { name: b, primary: h:2 }\n"
	                      "  - { name: c, primary: h:3 }\n"
	                      "tables:\n"
	                      "  t: { key: id, strategy: hash }\n"
	                      "  u: { key: id, strategy: hash, buckets: 7 }\n");
	const cfg_table_t *t = &c->tables[0], *u = &c->tables[1];

	ck_assert_int_eq(t->buckets, 64);
	ck_assert_int_eq(t->key_type, KEY_BIGINT);
	ck_assert_int_eq(t->colocate_with, -1);
	for (int r = 0; r < 64; r++)
		ck_assert_int_eq(t->placement[r], r % 3);
	ck_assert_int_eq(u->buckets, 7);
	ck_assert_int_eq(u->placement[6], 0);
	ck_assert_int_eq(u->placement[5], 2);
	config_free(c);
}
END_TEST

START_TEST(test_explicit_placement)
{
	config_t *c = load_ok(TWO_SHARDS "tables:\n  t: { key: id, strategy: hash, placement: "
	                                 "[s1, s1, s0] }\n");

	/* buckets may be left out: the placement's length gives it */
	ck_assert_int_eq(c->tables[0].buckets, 3);
	ck_assert_int_eq(c->tables[0].placement[0], 1);
	ck_assert_int_eq(c->tables[0].placement[2], 0);
	config_free(c);
}
END_TEST

START_TEST(test_bucket_limits)
{
	expect_error(MINIMAL "tables:\n  t: { key: id, strategy: hash, buckets: 0 }\n",
	             "t.yaml:5: ", "tables.t.buckets: must be between 1 and 65536");
	expect_error(MINIMAL "tables:\n  t: { key: id, strategy: hash, buckets: 65537 }\n",
	             "t.yaml:5: ", "tables.t.buckets");
	{
		config_t *c =
		    load_ok(MINIMAL "tables:\n  t: { key: id, strategy: hash, buckets: 65536 }\n");
		ck_assert_int_eq(c->tables[0].buckets, 65536);
		config_free(c);
	}
}
END_TEST

START_TEST(test_placement_errors)
{
	expect_error(TWO_SHARDS "tables:\n  t: { key: id, strategy: hash, buckets: 4,\n"
	                        "       placement: [s0, s1, s0] }\n",
	             "t.yaml:8: ", "tables.t.placement: has 3 entries but the table has 4 buckets");
	expect_error(TWO_SHARDS "tables:\n  t: { key: id, strategy: hash, placement: [s0, s7] }\n",
	             "t.yaml:7: ", "tables.t.placement[1]: unknown shard \"s7\"");
	expect_error(TWO_SHARDS "tables:\n  t: { key: id, strategy: hash, placement: s0 }\n",
	             "t.yaml:7: ", "tables.t.placement: expected a list");
}
END_TEST

START_TEST(test_colocation_chain)
{
	config_t *c =
	    load_ok(TWO_SHARDS "tables:\n"
	                       "  c: { key: x, strategy: hash, colocate_with: b }\n"
	                       "  b: { key: x, strategy: hash, colocate_with: a, buckets: 3 }\n"
	                       "  a: { key: x, strategy: hash, placement: [s1, s0, s0] }\n");
	int a = config_find_table(c, "a"), b = config_find_table(c, "b"),
	    cc = config_find_table(c, "c");

	/* colocate_with points at the root of the chain */
	ck_assert_int_eq(c->tables[b].colocate_with, a);
	ck_assert_int_eq(c->tables[cc].colocate_with, a);
	ck_assert_int_eq(c->tables[a].colocate_with, -1);
	ck_assert_int_eq(c->tables[cc].buckets, 3);
	ck_assert_int_eq(c->tables[cc].placement[0], 1);
	ck_assert_int_eq(c->tables[cc].placement[1], 0);
	config_free(c);
}
END_TEST

START_TEST(test_colocation_matching_placement_is_accepted)
{
	config_t *c =
	    load_ok(TWO_SHARDS "tables:\n"
	                       "  a: { key: x, strategy: hash, placement: [s1, s0] }\n"
	                       "  b: { key: y, type: integer, strategy: hash, colocate_with: "
	                       "a, buckets: 2, placement: [s1, s0] }\n");

	ck_assert_int_eq(c->tables[1].colocate_with, 0);
	config_free(c);
}
END_TEST

START_TEST(test_colocation_errors)
{
	expect_error(MINIMAL "tables:\n  a: { key: x, strategy: hash, colocate_with: nope }\n",
	             "t.yaml:5: ", "tables.a.colocate_with: unknown table \"nope\"");
	expect_error(MINIMAL "tables:\n  r: { strategy: reference }\n"
	                     "  a: { key: x, strategy: hash, colocate_with: r }\n",
	             "t.yaml:6: ", "only hash tables can be co-located");
	expect_error(MINIMAL "tables:\n  a: { key: x, strategy: range, colocate_with: b,\n"
	                     "       ranges: [ { shard: s0 } ] }\n",
	             "t.yaml:5: ", "tables.a.colocate_with: not allowed for a range table");
	expect_error(MINIMAL "tables:\n  a: { key: x, strategy: hash, colocate_with: b }\n"
	                     "  b: { key: x, strategy: hash, colocate_with: c }\n"
	                     "  c: { key: x, strategy: hash, colocate_with: a }\n",
	             "t.yaml:5: ", "tables.a.colocate_with: co-location cycle");
	expect_error(MINIMAL "tables:\n  a: { key: x, strategy: hash, colocate_with: a }\n",
	             "t.yaml:5: ", "co-location cycle");
	expect_error(MINIMAL "tables:\n  a: { key: x, strategy: hash, buckets: 8 }\n"
	                     "  b: { key: x, strategy: hash, colocate_with: a, buckets: 16 }\n",
	             "t.yaml:6: ", "tables.b.buckets: 16 contradicts the 8 buckets of \"a\"");
	expect_error(TWO_SHARDS "tables:\n  a: { key: x, strategy: hash, buckets: 2 }\n"
	                        "  b: { key: x, strategy: hash, colocate_with: a, placement: [s1, "
	                        "s0] }\n",
	             "t.yaml:8: ", "tables.b.placement: differs from the placement of \"a\"");
	expect_error(MINIMAL "tables:\n  a: { key: x, strategy: hash }\n"
	                     "  b: { key: x, type: text, strategy: hash, colocate_with: a }\n",
	             "t.yaml:6: ", "key type text does not hash like bigint");
}
END_TEST

START_TEST(test_range_table)
{
	config_t *c = load_ok(TWO_SHARDS "tables:\n  e:\n    key: id\n    strategy: range\n"
	                                 "    ranges:\n"
	                                 "      - { below: -5, shard: s1 }\n"
	                                 "      - { below: 10, shard: s0 }\n"
	                                 "      - { below: 9223372036854775807, shard: s1 }\n");
	const cfg_table_t *e = &c->tables[0];

	ck_assert_int_eq(e->n_ranges, 3);
	ck_assert_str_eq(e->ranges[0].below, "-5");
	ck_assert_int_eq(e->ranges[0].shard, 1);
	ck_assert_int_eq(e->ranges[1].line, 12);
	ck_assert(e->ranges[2].has_below);
	ck_assert_ptr_null(e->placement);
	config_free(c);
}
END_TEST

START_TEST(test_range_errors)
{
	/* numeric, not textual, ordering: 100 < 20 as text, not as bigint */
	expect_error(MINIMAL "tables:\n  e: { key: id, strategy: range, ranges: [\n"
	                     "    { below: 100, shard: s0 },\n    { below: 20, shard: s0 } ] }\n",
	             "t.yaml:7: ",
	             "tables.e.ranges[1].below: bounds must increase: 20 is not above the previous "
	             "bound 100");
	expect_error(MINIMAL "tables:\n  e: { key: id, strategy: range, ranges: [\n"
	                     "    { below: 7, shard: s0 },\n    { below: 7, shard: s0 } ] }\n",
	             "t.yaml:7: ", "bounds must increase");
	expect_error(MINIMAL "tables:\n  e: { key: id, strategy: range, ranges: [\n"
	                     "    { shard: s0 },\n    { below: 20, shard: s0 } ] }\n",
	             "t.yaml:7: ", "tables.e.ranges[1]: comes after a range with no bound");
	expect_error(MINIMAL "tables:\n  e: { key: id, strategy: range, ranges: [\n"
	                     "    { below: 5, shard: s3 } ] }\n",
	             "t.yaml:6: ", "tables.e.ranges[0].shard: unknown shard \"s3\"");
	expect_error(MINIMAL "tables:\n  e: { key: id, strategy: range, ranges: [] }\n",
	             "t.yaml:5: ", "a range table needs at least one range");
	expect_error(MINIMAL "tables:\n  e: { key: id, strategy: range }\n",
	             "t.yaml:5: ", "tables.e.ranges: missing");
	expect_error(MINIMAL "tables:\n  e: { key: id, strategy: range, ranges: [\n"
	                     "    { below: ten, shard: s0 } ] }\n",
	             "t.yaml:6: ", "expected an integer in the key type's range for a bigint key");
	expect_error(MINIMAL "tables:\n  e: { key: id, type: smallint, strategy: range, ranges: [\n"
	                     "    { below: 40000, shard: s0 } ] }\n",
	             "t.yaml:6: ", "tables.e.ranges[0].below");
	expect_error(MINIMAL "tables:\n  e: { key: id, strategy: range, ranges: [\n"
	                     "    { shard: s0, upto: 3 } ] }\n",
	             "t.yaml:6: ", "unknown key \"upto\" in tables.e.ranges[0]");
}
END_TEST

START_TEST(test_range_text_and_time_keys)
{
	config_t *c =
	    load_ok(TWO_SHARDS
	            "tables:\n"
	            "  t: { key: k, type: text, strategy: range, ranges: [\n"
	            "      { below: \"B\", shard: s0 }, { below: a, shard: s1 },\n"
	            "      { below: ab, shard: s0 }, { shard: s1 } ] }\n"
	            "  d: { key: k, type: date, strategy: range, ranges: [\n"
	            "      { below: 2023-12-31, shard: s0 }, { below: 2024-02-29, shard: s1 } ] }\n"
	            "  s: { key: k, type: timestamp, strategy: range, ranges: [\n"
	            "      { below: \"2024-01-01 09:00\", shard: s0 },\n"
	            "      { below: \"2024-01-01T09:00:00.5\", shard: s1 } ] }\n"
	            "  z: { key: k, type: timestamptz, strategy: range, ranges: [\n"
	            "      { below: \"2024-01-01 10:00:00+02\", shard: s0 },\n"
	            "      { below: \"2024-01-01 09:00:00Z\", shard: s1 } ] }\n");

	ck_assert_int_eq(c->tables[0].n_ranges, 4);
	ck_assert_int_eq(c->tables[1].key_type, KEY_DATE);
	ck_assert_int_eq(c->tables[3].n_ranges, 2);
	config_free(c);

	/* C collation: "b" sorts after "B" and "a"; "a" is not above "ab" */
	expect_error(MINIMAL "tables:\n  t: { key: k, type: text, strategy: range, ranges: [\n"
	                     "      { below: ab, shard: s0 }, { below: a, shard: s0 } ] }\n",
	             "t.yaml:6: ", "a is not above the previous bound ab");
	/* 10:00+02 is 08:00Z, which is before 09:00Z */
	expect_error(MINIMAL
	             "tables:\n  z: { key: k, type: timestamptz, strategy: range, ranges: [\n"
	             "      { below: \"2024-01-01 09:00:00Z\", shard: s0 },\n"
	             "      { below: \"2024-01-01 10:00:00+02\", shard: s0 } ] }\n",
	             "t.yaml:7: ", "bounds must increase");
	expect_error(MINIMAL
	             "tables:\n  z: { key: k, type: timestamptz, strategy: range, ranges: [\n"
	             "      { below: \"2024-01-01 09:00:00\", shard: s0 } ] }\n",
	             "t.yaml:6: ", "with a zone");
	expect_error(MINIMAL "tables:\n  d: { key: k, type: date, strategy: range, ranges: [\n"
	                     "      { below: 2023-02-29, shard: s0 } ] }\n",
	             "t.yaml:6: ", "expected a date YYYY-MM-DD for a date key");
	expect_error(MINIMAL "tables:\n  d: { key: k, type: timestamp, strategy: range, ranges: [\n"
	                     "      { below: \"2023-01-01 25:00\", shard: s0 } ] }\n",
	             "t.yaml:6: ", "for a timestamp key");
}
END_TEST

START_TEST(test_uuid_range_bounds)
{
	config_t *c =
	    load_ok(MINIMAL "tables:\n  u: { key: k, type: uuid, strategy: range, ranges: [\n"
	                    "      { below: 0000000a-0000-0000-0000-000000000000, shard: s0 },\n"
	                    "      { below: 0000000B000000000000000000000000, shard: s0 } ] }\n");

	config_free(c);
	expect_error(MINIMAL "tables:\n  u: { key: k, type: uuid, strategy: range, ranges: [\n"
	                     "      { below: not-a-uuid, shard: s0 } ] }\n",
	             "t.yaml:6: ", "expected a UUID");
}
END_TEST

START_TEST(test_key_rules)
{
	expect_error(MINIMAL "tables:\n  t: { strategy: hash }\n",
	             "t.yaml:5: ", "tables.t.key: missing (a hash table needs a shard key)");
	expect_error(MINIMAL "tables:\n  t: { strategy: range, ranges: [ { shard: s0 } ] }\n",
	             "t.yaml:5: ", "tables.t.key: missing (a range table");
	expect_error(MINIMAL "tables:\n  t: { strategy: directory }\n",
	             "t.yaml:5: ", "tables.t.key: missing (a directory table");
	expect_error(MINIMAL "tables:\n  t: { key: id, strategy: reference }\n",
	             "t.yaml:5: ", "tables.t.key: a reference table has no shard key");
	expect_error(MINIMAL "tables:\n  t: { key: id }\n",
	             "t.yaml:5: ", "tables.t.strategy: missing");
	expect_error(MINIMAL "tables:\n  t: { key: id, strategy: hash, type: float }\n",
	             "t.yaml:5: ", "tables.t.type: expected one of bigint, integer");
	expect_error(MINIMAL "tables:\n  t: { key: id, strategy: list }\n", "t.yaml:5: ",
	             "tables.t.strategy: expected one of hash, range, directory, reference");
	expect_error(MINIMAL "tables:\n  \"a.b.c\": { strategy: reference }\n",
	             "t.yaml:5: ", "is not a valid name");
	expect_error(MINIMAL "tables:\n  t: { key: id, strategy: hash, ranges: [] }\n",
	             "t.yaml:5: ", "tables.t.ranges: not allowed for a hash table");
}
END_TEST

START_TEST(test_key_type_names)
{
	config_t *c = load_ok(MINIMAL "tables:\n"
	                              "  a: { key: k, type: smallint, strategy: hash }\n"
	                              "  b: { key: k, type: varchar, strategy: hash }\n"
	                              "  c: { key: k, type: uuid, strategy: hash }\n"
	                              "  d: { key: k, type: int4, strategy: hash }\n");

	ck_assert_int_eq(c->tables[0].key_type, KEY_SMALLINT);
	ck_assert_int_eq(c->tables[1].key_type, KEY_VARCHAR);
	ck_assert_int_eq(c->tables[2].key_type, KEY_UUID);
	ck_assert_int_eq(c->tables[3].key_type, KEY_INTEGER);
	ck_assert_str_eq(key_type_name(KEY_TIMESTAMPTZ), "timestamptz");
	ck_assert_str_eq(key_type_name(KEY_INTEGER), "integer");
	ck_assert_str_eq(strategy_name(STRATEGY_DIRECTORY), "directory");
	ck_assert_str_eq(pool_mode_name(POOL_SESSION), "session");
	ck_assert_str_eq(log_level_name(LOG_WARNING), "warning");
	config_free(c);
}
END_TEST

START_TEST(test_directory_settings)
{
	config_t *c = load_ok(TWO_SHARDS "default_shard: s1\ntables:\n"
	                                 "  a: { key: k, strategy: directory }\n"
	                                 "  b: { key: k, strategy: directory, directory: { assign: "
	                                 "least_rows } }\n");

	ck_assert_int_eq(c->tables[0].directory_shard, 1);
	ck_assert_str_eq(c->tables[0].directory_table, "shardgate.directory");
	ck_assert_int_eq(c->tables[0].assign, ASSIGN_ROUND_ROBIN);
	ck_assert_int_eq(c->tables[0].assign_shard, -1);
	ck_assert_int_eq(c->tables[1].assign, ASSIGN_LEAST_ROWS);
	config_free(c);
	expect_error(MINIMAL "tables:\n  a: { key: k, strategy: directory,\n"
	                     "       directory: { assign: sideways } }\n",
	             "t.yaml:6: ",
	             "tables.a.directory.assign: expected round_robin, least_rows or a shard name");
	expect_error(MINIMAL "tables:\n  a: { key: k, strategy: directory,\n"
	                     "       directory: { shard: s5 } }\n",
	             "t.yaml:6: ", "tables.a.directory.shard: unknown shard \"s5\"");
}
END_TEST

START_TEST(test_layered_timeouts)
{
	expect_error(MINIMAL "timeouts: { connect: 5s, query: 5s }\n", "t.yaml:4: ",
	             "timeouts.query: must be longer than timeouts.connect (5s <= 5s)");
	expect_error(MINIMAL "timeouts:\n  query: 1m\n  client_idle: 30s\n",
	             "t.yaml:6: ", "timeouts.client_idle: must be longer than timeouts.query");
	/* query left at its default 30s: the blame goes to the key that was written */
	expect_error(MINIMAL "timeouts:\n  connect: 40s\n", "t.yaml:5: ",
	             "timeouts.connect: must be shorter than timeouts.query (40s >= 30s)");
	/* query off: connect must still be below client_idle */
	expect_error(MINIMAL "timeouts: { connect: 2s, query: 0, client_idle: 1s }\n",
	             "t.yaml:4: ", "timeouts.client_idle: must be longer than timeouts.connect");
	expect_error(MINIMAL "timeouts: { connect: 0 }\n",
	             "t.yaml:4: ", "timeouts.connect: must be above 0");
	{
		config_t *c =
		    load_ok(MINIMAL "timeouts: { connect: 2s, query: 0, client_idle: 3s,\n"
		                    "  idle_in_transaction: 1s }\n");
		ck_assert_int_eq(c->timeouts.query_ms, 0);
		config_free(c);
	}
}
END_TEST

START_TEST(test_tls_needs_certificate)
{
	expect_error(MINIMAL "tls: { mode: require }\n",
	             "t.yaml:4: ", "tls.mode: require needs tls.cert and tls.key");
	expect_error(MINIMAL "tls:\n  mode: require\n  cert: /c.pem\n  key: \"\"\n",
	             "t.yaml:5: ", "needs tls.cert and tls.key");
}
END_TEST

START_TEST(test_auth_rules)
{
	expect_error(MINIMAL "auth: { method: md5 }\n",
	             "t.yaml:4: ", "auth.method: md5 needs auth.users or auth.query");
	expect_error(MINIMAL "auth: { method: md5, users: [ { name: a }, { name: a } ] }\n",
	             "t.yaml:4: ", "auth.users[1].name: duplicate user \"a\"");
	expect_error(MINIMAL "auth: { method: md5, users: [ { password: x } ] }\n",
	             "t.yaml:4: ", "auth.users[0].name: missing");
	expect_error(MINIMAL "auth: { method: kerberos }\n",
	             "t.yaml:4: ", "auth.method: expected one of trust, md5, scram-sha-256");
}
END_TEST

START_TEST(test_yaml_syntax_error)
{
	expect_error("workers: 2\nshards:\n  - name: s0\n    primary: [a:1\n",
	             "t.yaml:5: ", "YAML syntax error");
	expect_error("workers: 2\n  bad: indentation\n", "t.yaml:2: ", "YAML syntax error");
	expect_error("a: *nowhere\n", "t.yaml:1: ", "YAML syntax error");
}
END_TEST

START_TEST(test_empty_file)
{
	expect_error("", "t.yaml:1: ", "empty");
	expect_error("# only a comment\n\n", "t.yaml:1: ", "empty");
	expect_error("---\n", "t.yaml:1: ", "empty");
}
END_TEST

START_TEST(test_multiple_documents)
{
	expect_error(MINIMAL "---\nworkers: 3\n", "t.yaml:4: ", "only one YAML document");
}
END_TEST

START_TEST(test_unreadable_file)
{
	config_t *c = &sentinel_config;
	char err[512] = "";

	ck_assert(!config_load("/nonexistent/shardmap.yaml", &c, err, sizeof(err)));
	ck_assert_str_eq(err, "/nonexistent/shardmap.yaml: cannot read: No such file or directory");
	ck_assert_ptr_eq(c, &sentinel_config);
	ck_assert(!config_load("/tmp", &c, err, sizeof(err)));
	ck_assert_str_eq(err, "/tmp: cannot read: Is a directory");
}
END_TEST

START_TEST(test_load_from_file_names_the_file)
{
	char path[64], prefix[128];
	config_t *c = &sentinel_config;
	char err[512] = "";

	write_temp(path, sizeof(path), MINIMAL "workers: 100\n");
	ck_assert(!config_load(path, &c, err, sizeof(err)));
	snprintf(prefix, sizeof(prefix), "%s:4: workers: must be between 1 and 64", path);
	ck_assert_str_eq(err, strcat(prefix, " (got 100)"));
	unlink(path);

	write_temp(path, sizeof(path), MINIMAL);
	c = NULL;
	ck_assert_msg(config_load(path, &c, err, sizeof(err)), "%s", err);
	ck_assert_str_eq(c->path, path);
	config_free(c);
	unlink(path);
}
END_TEST

START_TEST(test_env_secret)
{
	config_t *c;

	setenv("SHARDGATE_TEST_PW", "s3cret", 1);
	c = load_ok(MINIMAL "backend: { password: env:SHARDGATE_TEST_PW }\n"
	                    "auth: { method: md5, users: [ { name: a, password: "
	                    "\"env:SHARDGATE_TEST_PW\" } ] }\n");
	ck_assert_str_eq(c->backend.password, "s3cret");
	ck_assert_str_eq(c->auth.users[0].password, "s3cret");
	config_free(c);
	unsetenv("SHARDGATE_TEST_PW");
	expect_error(MINIMAL "backend:\n  password: env:SHARDGATE_TEST_PW\n", "t.yaml:5: ",
	             "backend.password: environment variable SHARDGATE_TEST_PW is not set");
}
END_TEST

START_TEST(test_file_secret)
{
	char path[64], yaml[512];
	config_t *c;

	write_temp(path, sizeof(path), "from-a-file\n\n");
	snprintf(yaml, sizeof(yaml), MINIMAL "backend: { password: \"file:%s\" }\n", path);
	c = load_ok(yaml);
	ck_assert_str_eq(c->backend.password, "from-a-file");
	config_free(c);
	unlink(path);
	snprintf(yaml, sizeof(yaml),
	         MINIMAL
	         "auth:\n  method: md5\n  users:\n    - { name: a, password: \"file:%s\" }\n",
	         path);
	expect_error(yaml, "t.yaml:7: ", "auth.users[0].password: cannot read");
	expect_error(yaml, "t.yaml:7: ", "No such file or directory");
}
END_TEST

START_TEST(test_print_masks_secrets_and_summarises)
{
	config_t *c;
	char *text;

	setenv("SHARDGATE_TEST_PW", "hunter2", 1);
	c = load_ok(TWO_SHARDS "auth: { method: md5, users: [ { name: app, password: "
	                       "md5abcdef }, { name: x, password: \"env:SHARDGATE_TEST_PW\" } ] }\n"
	                       "backend: { user: pg, password: topsecret }\n"
	                       "tables:\n"
	                       "  users: { key: id, strategy: hash, buckets: 64 }\n"
	                       "  orders: { key: user_id, strategy: hash, colocate_with: users }\n"
	                       "  events: { key: id, strategy: range, ranges: [ { below: 1000000, "
	                       "shard: s0 }, { shard: s1 } ] }\n"
	                       "  tenants: { key: tenant_id, type: text, strategy: directory,\n"
	                       "             directory: { table: shardgate.directory } }\n"
	                       "  countries: { strategy: reference }\n");
	unsetenv("SHARDGATE_TEST_PW");
	text = print_to_string(c);
	ck_assert_msg(strstr(text, "topsecret") == NULL, "backend password printed: %s", text);
	ck_assert_msg(strstr(text, "md5abcdef") == NULL, "user password printed: %s", text);
	ck_assert_msg(strstr(text, "hunter2") == NULL, "env password printed: %s", text);
	ck_assert_ptr_nonnull(strstr(text, "password ***"));
	ck_assert_ptr_nonnull(strstr(text, "listen: 127.0.0.1:6432"));
	ck_assert_ptr_nonnull(strstr(text, "pool: transaction, size 20"));
	ck_assert_ptr_nonnull(strstr(text, "s0: primary 127.0.0.1:5432"));
	ck_assert_ptr_nonnull(strstr(text, "default shard: s0"));
	ck_assert_ptr_nonnull(strstr(text,
	                             "users: hash on id (bigint), 64 buckets; s0: 32 buckets, "
	                             "s1: 32 buckets"));
	ck_assert_ptr_nonnull(strstr(text, "co-located with users"));
	ck_assert_ptr_nonnull(strstr(text, "[-inf, 1000000) -> s0"));
	ck_assert_ptr_nonnull(strstr(text, "[1000000, +inf) -> s1"));
	ck_assert_ptr_nonnull(strstr(text, "tenants: directory on tenant_id (text); directory "
	                                   "shardgate.directory on s0, new keys: round_robin"));
	ck_assert_ptr_nonnull(strstr(text, "countries: reference"));
	free(text);
	config_free(c);

	c = load_ok("shards:\n  - name: s0\n    primary: \"[::1]:5432\"\n"
	            "    replicas: [ { address: h:1, weight: 4 } ]\n");
	text = print_to_string(c);
	ck_assert_ptr_nonnull(strstr(text, "password (none)"));
	ck_assert_ptr_nonnull(strstr(text, "s0: primary [::1]:5432"));
	ck_assert_ptr_nonnull(strstr(text, "replica h:1 (weight 4)"));
	free(text);
	config_free(c);
}
END_TEST

START_TEST(test_parse_duration)
{
	static const struct {
		const char *text;
		bool ok;
		int64_t ms;
	} cases[] = {{"0", true, 0},
	             {"250", true, 250},
	             {"250ms", true, 250},
	             {"5s", true, 5000},
	             {"5 s", true, 5000},
	             {"2m", true, 120000},
	             {"2min", true, 120000},
	             {"1h", true, 3600000},
	             {"1d", true, 86400000},
	             {"", false, 0},
	             {"s", false, 0},
	             {"-1s", false, 0},
	             {"1.5s", false, 0},
	             {"5 seconds", false, 0},
	             {"5S", false, 0},
	             {"99999999999999999999", false, 0},
	             {"9223372036854775807d", false, 0}};
	int64_t ms;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ms = -7;
		ck_assert_msg(config_parse_duration_ms(cases[i].text, &ms) == cases[i].ok,
		              "duration \"%s\": expected %s", cases[i].text,
		              cases[i].ok ? "accepted" : "refused");
		if (cases[i].ok)
			ck_assert_msg(ms == cases[i].ms,
			              "duration \"%s\": expected %lld ms, got %lld", cases[i].text,
			              (long long)cases[i].ms, (long long)ms);
		else
			ck_assert_msg(ms == -7, "duration \"%s\": output written on failure",
			              cases[i].text);
	}
	ck_assert(!config_parse_duration_ms(NULL, &ms));
}
END_TEST

START_TEST(test_parse_size)
{
	static const struct {
		const char *text;
		bool ok;
		int64_t bytes;
	} cases[] = {{"0", true, 0},
	             {"1000", true, 1000},
	             {"10kB", true, 10240},
	             {"10KB", true, 10240},
	             {"16MB", true, 16777216},
	             {"64MB", true, 67108864},
	             {"1GB", true, 1073741824},
	             {"2 GiB", true, 2147483648LL},
	             {"1TB", true, 1099511627776LL},
	             {"12B", true, 12},
	             {"", false, 0},
	             {"MB", false, 0},
	             {"-1MB", false, 0},
	             {"1.5MB", false, 0},
	             {"10 parsecs", false, 0},
	             {"9999999999999999TB", false, 0}};
	int64_t bytes;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bytes = -7;
		ck_assert_msg(config_parse_size(cases[i].text, &bytes) == cases[i].ok,
		              "size \"%s\": expected %s", cases[i].text,
		              cases[i].ok ? "accepted" : "refused");
		if (cases[i].ok)
			ck_assert_msg(bytes == cases[i].bytes,
			              "size \"%s\": expected %lld, got %lld", cases[i].text,
			              (long long)cases[i].bytes, (long long)bytes);
		else
			ck_assert_msg(bytes == -7, "size \"%s\": output written on failure",
			              cases[i].text);
	}
}
END_TEST

START_TEST(test_parse_address)
{
	static const struct {
		const char *text;
		bool ok;
		const char *host;
		int port;
	} cases[] = {{"127.0.0.1:6432", true, "127.0.0.1", 6432},
	             {"db-1.example.com:5432", true, "db-1.example.com", 5432},
	             {"[::1]:5433", true, "::1", 5433},
	             {"[fe80::1%eth0]:1", true, "fe80::1%eth0", 1},
	             {"h:65535", true, "h", 65535},
	             {"localhost", false, NULL, 0},
	             {":5432", false, NULL, 0},
	             {"h:", false, NULL, 0},
	             {"h:0", false, NULL, 0},
	             {"h:65536", false, NULL, 0},
	             {"h:-1", false, NULL, 0},
	             {"h:12x", false, NULL, 0},
	             {"::1:5432", false, NULL, 0},
	             {"[::1]5432", false, NULL, 0},
	             {"bad host:1", false, NULL, 0}};
	cfg_address_t address;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&address, 0, sizeof(address));
		ck_assert_msg(config_parse_address(cases[i].text, &address) == cases[i].ok,
		              "address \"%s\": expected %s", cases[i].text,
		              cases[i].ok ? "accepted" : "refused");
		if (cases[i].ok) {
			ck_assert_str_eq(address.host, cases[i].host);
			ck_assert_int_eq(address.port, cases[i].port);
		} else {
			ck_assert_int_eq(address.port, 0);
		}
	}
}
END_TEST

START_TEST(test_find_shard_and_table)
{
	config_t *c = load_ok(TWO_SHARDS "tables:\n  t: { strategy: reference }\n");

	ck_assert_int_eq(config_find_shard(c, "s1"), 1);
	ck_assert_int_eq(config_find_shard(c, "s2"), -1);
	ck_assert_int_eq(config_find_shard(c, NULL), -1);
	ck_assert_int_eq(config_find_table(c, "t"), 0);
	ck_assert_int_eq(config_find_table(c, "u"), -1);
	ck_assert_int_eq(config_find_shard(NULL, "s1"), -1);
	config_free(c);
	config_free(NULL);
}
END_TEST

START_TEST(test_function_lists)
{
	config_t *c = load_ok(MINIMAL "routing:\n  write_functions: [a.f, g]\n"
	                              "  read_only_functions: []\n");

	ck_assert_int_eq(c->routing.n_write_functions, 2);
	ck_assert_str_eq(c->routing.write_functions[0], "a.f");
	ck_assert_int_eq(c->routing.n_read_only_functions, 0);
	config_free(c);
	expect_error(MINIMAL "routing: { read_only_functions: [nextval] }\n",
	             "t.yaml:4: ", "\"nextval\" is also a write function");
	expect_error(MINIMAL "routing: { write_functions: [f, g, f] }\n",
	             "t.yaml:4: ", "routing.write_functions[2]: duplicate name \"f\"");
	expect_error(MINIMAL "admin: { users: [\"a b\"] }\n",
	             "t.yaml:4: ", "admin.users[0]: \"a b\" is not a valid name");
}
END_TEST

START_TEST(test_null_values_and_sections)
{
	/* an empty section keeps its defaults; a quoted "" metrics turns it off */
	config_t *c = load_ok(MINIMAL "pool:\nlog: ~\nmetrics: \"\"\ntables:\n");

	ck_assert_int_eq(c->pool.size, 20);
	ck_assert(!c->has_metrics);
	ck_assert_int_eq(c->n_tables, 0);
	config_free(c);
	expect_error(MINIMAL "workers:\n", "t.yaml:4: ", "workers: expected an integer");
}
END_TEST

START_TEST(test_nul_byte_refused)
{
	static const char text[] = "shards:\n  - name: \"s\\0x\"\n    primary: a:1\n";
	static const char raw[] = "workers: 2\0\nshards: []\n";
	config_t *c = &sentinel_config;
	char err[256] = "";

	expect_error(text, "t.yaml:2: ", "shards[0].name: contains a NUL byte");
	ck_assert(!config_load_string("t.yaml", raw, sizeof(raw) - 1, &c, err, sizeof(err)));
	ck_assert_ptr_eq(c, &sentinel_config);
}
END_TEST

START_TEST(test_aliases)
{
	/* anchors may share settings; a list that refers to itself is just a type error */
	config_t *c = load_ok("shards:\n  - name: s0\n    primary: &p 10.0.0.1:5432\n"
	                      "metrics: *p\n");

	ck_assert_int_eq(c->metrics.port, 5432);
	config_free(c);
	expect_error("shards: &s [ *s ]\n", "t.yaml:1: ", "shards[0]: expected a mapping");
}
END_TEST

START_TEST(test_alias_expansion_is_bounded)
{
	/* 100 tables aliasing one 65536-bucket table: tiny text, 6.5M values */
	size_t size = 65536 * 4 + 4096, used = 0;
	char *yaml = malloc(size);
	config_t *c = &sentinel_config;
	char err[512] = "";

	ck_assert_ptr_nonnull(yaml);
	used +=
	    (size_t)snprintf(yaml + used, size - used,
	                     MINIMAL "tables:\n  t0: &T { key: id, strategy: hash, placement: [s0");
	for (int r = 1; r < 65536; r++)
		used += (size_t)snprintf(yaml + used, size - used, ",s0");
	used += (size_t)snprintf(yaml + used, size - used, "] }\n");
	for (int t = 1; t < 100; t++)
		used += (size_t)snprintf(yaml + used, size - used, "  t%d: *T\n", t);
	ck_assert(!config_load_string("t.yaml", yaml, used, &c, err, sizeof(err)));
	ck_assert_msg(strstr(err, "t.yaml:") == err && strstr(err, "more than") != NULL,
	              "expected a size limit error, got \"%s\"", err);
	ck_assert_ptr_eq(c, &sentinel_config);
	free(yaml);

	/* a list that contains itself is a type error, not endless recursion */
	expect_error(MINIMAL "routing:\n  write_functions: &a [f, g, *a]\n", "t.yaml:5: ",
	             "routing.write_functions[2]: expected a single value, got a list");
}
END_TEST

START_TEST(test_error_buffer_edge_cases)
{
	config_t *c = &sentinel_config;
	char err[8];

	/* a tiny or absent buffer must not overflow or crash */
	ck_assert(!config_load_string("t.yaml", "workers: x\n", 11, &c, err, sizeof(err)));
	ck_assert_int_eq(strlen(err), sizeof(err) - 1);
	ck_assert(!config_load_string("t.yaml", "workers: x\n", 11, &c, NULL, 0));
	ck_assert(!config_load_string(NULL, NULL, 0, &c, err, sizeof(err)));
	ck_assert_ptr_eq(c, &sentinel_config);
}
END_TEST

START_TEST(test_booleans_and_enums)
{
	config_t *c = load_ok(MINIMAL "routing:\n  read_write_split: no\n  two_phase_commit: On\n"
	                              "  balance: least_connections\n"
	                              "backend: { tls: verify_ca }\nlog: { level: warn }\n");

	ck_assert(!c->routing.read_write_split);
	ck_assert(c->routing.two_phase_commit);
	ck_assert_int_eq(c->routing.balance, BALANCE_LEAST_CONNECTIONS);
	ck_assert_int_eq(c->backend.tls, BACKEND_TLS_VERIFY_CA);
	ck_assert_int_eq(c->log_level, LOG_WARNING);
	config_free(c);
	expect_error(MINIMAL "routing: { balance: fastest }\n", "t.yaml:4: ",
	             "routing.balance: expected one of round_robin, least_connections, random, "
	             "weighted, got \"fastest\"");
}
END_TEST

START_TEST(test_long_strings_refused)
{
	char yaml[2048];
	char name[100];

	memset(name, 'a', 64);
	name[64] = '\0';
	snprintf(yaml, sizeof(yaml), "shards:\n  - name: %s\n    primary: a:1\n", name);
	expect_error(yaml, "t.yaml:2: ", "shards[0].name: a shard name has 1 to 63 characters");
	snprintf(yaml, sizeof(yaml), MINIMAL "backend: { user: %s }\n", name);
	expect_error(yaml, "t.yaml:4: ", "backend.user: too long (64 bytes, at most 63)");
}
END_TEST

/* ---- TLS files, checked by config_load() only ---- */

/*
 * A mkdtemp directory of TLS files made with OpenSSL's C API for one test:
 * an EC P-256 key with its self-signed certificate, a second key and
 * certificate, an RSA key, the first key under a passphrase (PKCS#8 and
 * traditional PEM), a file of both certificate and key, and junk.
 */
typedef struct {
	char dir[64];
	char cert[128], key[128]; /* a matching pair */
	char other_cert[128], other_key[128];
	char rsa_key[128];              /* another key type */
	char encrypted_key[128];        /* key, PKCS#8 with a passphrase */
	char encrypted_legacy_key[128]; /* key, "Proc-Type: 4,ENCRYPTED" */
	char combined[128];             /* cert then key in one file */
	char junk[128];                 /* not PEM */
	char empty[128];
	char missing[128]; /* never created */
	char yaml[128];    /* the configuration file */
} tls_files_t;

static X509 *self_signed_cert(EVP_PKEY *key, const char *common_name)
{
	X509 *cert = X509_new();
	ck_assert_ptr_nonnull(cert);
	X509_NAME *name = X509_get_subject_name(cert);
	ck_assert(X509_set_version(cert, 2) == 1 &&
	          ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) == 1 &&
	          X509_gmtime_adj(X509_getm_notBefore(cert), 0) != NULL &&
	          X509_gmtime_adj(X509_getm_notAfter(cert), 3600) != NULL &&
	          X509_set_pubkey(cert, key) == 1 &&
	          X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	                                     (const unsigned char *)common_name, -1, -1, 0) == 1 &&
	          X509_set_issuer_name(cert, name) == 1 && X509_sign(cert, key, EVP_sha256()) > 0);
	return cert;
}

static FILE *open_for_writing(const char *path)
{
	FILE *f = fopen(path, "w");
	ck_assert_msg(f != NULL, "cannot write %s", path);
	return f;
}

static void write_cert_pem(const char *path, X509 *cert)
{
	FILE *f = open_for_writing(path);
	ck_assert(PEM_write_X509(f, cert) == 1);
	fclose(f);
}

/* cipher NULL: a plain key; traditional: the pre-PKCS#8 "BEGIN EC PRIVATE KEY" form. */
static void write_key_pem(const char *path, EVP_PKEY *key, const EVP_CIPHER *cipher,
                          bool traditional)
{
	static unsigned char passphrase[] = "correct horse";
	BIO *bio = BIO_new_file(path, "w");
	int len = cipher ? (int)sizeof(passphrase) - 1 : 0;
	ck_assert_msg(bio != NULL, "cannot write %s", path);
	ck_assert(traditional
	              ? PEM_write_bio_PrivateKey_traditional(
	                    bio, key, cipher, cipher ? passphrase : NULL, len, NULL, NULL) == 1
	              : PEM_write_bio_PrivateKey(bio, key, cipher, cipher ? passphrase : NULL, len,
	                                         NULL, NULL) == 1);
	BIO_free(bio);
}

static void write_text_file(const char *path, const char *text)
{
	FILE *f = open_for_writing(path);
	ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
	fclose(f);
}

static void tls_files_make(tls_files_t *t)
{
	snprintf(t->dir, sizeof(t->dir), "/tmp/shardgate-test-tls-XXXXXX");
	ck_assert_msg(mkdtemp(t->dir) != NULL, "mkdtemp failed");
#define TLS_PATH(field, name) snprintf(t->field, sizeof(t->field), "%s/" name, t->dir)
	TLS_PATH(cert, "server.crt");
	TLS_PATH(key, "server.key");
	TLS_PATH(other_cert, "other.crt");
	TLS_PATH(other_key, "other.key");
	TLS_PATH(rsa_key, "rsa.key");
	TLS_PATH(encrypted_key, "encrypted.key");
	TLS_PATH(encrypted_legacy_key, "encrypted-legacy.key");
	TLS_PATH(combined, "combined.pem");
	TLS_PATH(junk, "junk.pem");
	TLS_PATH(empty, "empty.pem");
	TLS_PATH(missing, "missing.pem");
	TLS_PATH(yaml, "shardmap.yaml");
#undef TLS_PATH

	EVP_PKEY *key = EVP_EC_gen("P-256");
	EVP_PKEY *other_key = EVP_EC_gen("P-256");
	EVP_PKEY *rsa_key = EVP_RSA_gen(2048);
	ck_assert(key != NULL && other_key != NULL && rsa_key != NULL);
	X509 *cert = self_signed_cert(key, "shardgate test");
	X509 *other_cert = self_signed_cert(other_key, "someone else");

	write_cert_pem(t->cert, cert);
	write_key_pem(t->key, key, NULL, false);
	write_cert_pem(t->other_cert, other_cert);
	write_key_pem(t->other_key, other_key, NULL, false);
	write_key_pem(t->rsa_key, rsa_key, NULL, false);
	write_key_pem(t->encrypted_key, key, EVP_aes_256_cbc(), false);
	write_key_pem(t->encrypted_legacy_key, key, EVP_aes_256_cbc(), true);
	FILE *f = open_for_writing(t->combined);
	ck_assert(PEM_write_X509(f, cert) == 1 &&
	          PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1);
	fclose(f);
	write_text_file(t->junk, "this is not PEM\n");
	write_text_file(t->empty, "");

	X509_free(cert);
	X509_free(other_cert);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other_key);
	EVP_PKEY_free(rsa_key);
}

static void tls_files_remove(tls_files_t *t)
{
	const char *const files[] = {t->cert,
	                             t->key,
	                             t->other_cert,
	                             t->other_key,
	                             t->rsa_key,
	                             t->encrypted_key,
	                             t->encrypted_legacy_key,
	                             t->combined,
	                             t->junk,
	                             t->empty,
	                             t->yaml};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		unlink(files[i]);
	ck_assert_msg(rmdir(t->dir) == 0, "%s left behind", t->dir);
}

/* Writes yaml to t->yaml and config_load()s it; the file must load. */
static config_t *load_file_ok(const tls_files_t *t, const char *yaml)
{
	config_t *config = NULL;
	char err[1024] = "";

	write_text_file(t->yaml, yaml);
	ck_assert_msg(config_load(t->yaml, &config, err, sizeof(err)),
	              "expected the file to load, got error: %s", err);
	ck_assert_ptr_nonnull(config);
	return config;
}

/*
 * Writes yaml to t->yaml and config_load()s it; it must be refused with
 * "<t->yaml>:<line>: <message>" where message starts with `message` (the
 * whole error when exact) and the output pointer is left untouched.
 */
static void expect_file_error(const tls_files_t *t, const char *yaml, int line, const char *message,
                              bool exact)
{
	config_t *config = &sentinel_config;
	char err[1024] = "", expected[1024];

	write_text_file(t->yaml, yaml);
	snprintf(expected, sizeof(expected), "%s:%d: %s", t->yaml, line, message);
	ck_assert_msg(!config_load(t->yaml, &config, err, sizeof(err)),
	              "expected \"%s\", but the file loaded", expected);
	ck_assert_msg(config == &sentinel_config, "the output pointer was written on error");
	if (exact)
		ck_assert_str_eq(err, expected);
	else
		ck_assert_msg(strncmp(err, expected, strlen(expected)) == 0,
		              "expected an error starting with \"%s\", got \"%s\"", expected, err);
}

/* MINIMAL (3 lines), then tls: on line 4, mode 5, cert 6, key 7, ciphers 8. */
static void tls_yaml(char *out, size_t size, const char *mode, const char *cert, const char *key,
                     const char *ciphers)
{
	int n =
	    snprintf(out, size, MINIMAL "tls:\n  mode: %s\n  cert: \"%s\"\n  key: \"%s\"\n%s%s%s",
	             mode, cert, key, ciphers ? "  ciphers: \"" : "", ciphers ? ciphers : "",
	             ciphers ? "\"\n" : "");
	ck_assert(n > 0 && (size_t)n < size);
}

/* MINIMAL, then backend: on line 4, tls 5, ca_file 6. */
static void backend_yaml(char *out, size_t size, const char *tls, const char *ca_file)
{
	int n =
	    snprintf(out, size, MINIMAL "backend:\n  tls: %s\n%s%s%s", tls,
	             ca_file ? "  ca_file: \"" : "", ca_file ? ca_file : "", ca_file ? "\"\n" : "");
	ck_assert(n > 0 && (size_t)n < size);
}

START_TEST(test_tls_files_load)
{
	tls_files_t t;
	char yaml[2048];
	config_t *c;

	tls_files_make(&t);
	tls_yaml(yaml, sizeof(yaml), "require", t.cert, t.key, NULL);
	c = load_file_ok(&t, yaml);
	ck_assert_int_eq(c->tls.mode, TLS_REQUIRE);
	ck_assert_str_eq(c->tls.cert, t.cert);
	ck_assert_str_eq(c->tls.key, t.key);
	config_free(c);

	tls_yaml(yaml, sizeof(yaml), "allow", t.cert, t.key, "HIGH:!aNULL");
	c = load_file_ok(&t, yaml);
	ck_assert_int_eq(c->tls.mode, TLS_ALLOW);
	ck_assert_str_eq(c->tls.ciphers, "HIGH:!aNULL");
	config_free(c);

	/* One PEM file holding the certificate and its key serves as both. */
	tls_yaml(yaml, sizeof(yaml), "require", t.combined, t.combined, NULL);
	config_free(load_file_ok(&t, yaml));

	/* tls.mode disable: the files are not looked at. */
	tls_yaml(yaml, sizeof(yaml), "disable", t.missing, t.junk, NULL);
	config_free(load_file_ok(&t, yaml));

	for (int i = 0; i < 2; i++) {
		backend_yaml(yaml, sizeof(yaml), i == 0 ? "verify-ca" : "verify-full", t.cert);
		c = load_file_ok(&t, yaml);
		ck_assert_int_eq(c->backend.tls,
		                 i == 0 ? BACKEND_TLS_VERIFY_CA : BACKEND_TLS_VERIFY_FULL);
		ck_assert_str_eq(c->backend.ca_file, t.cert);
		config_free(c);
	}
	/* Modes that verify nothing do not need (or open) a CA file. */
	backend_yaml(yaml, sizeof(yaml), "require", NULL);
	config_free(load_file_ok(&t, yaml));
	backend_yaml(yaml, sizeof(yaml), "prefer", t.missing);
	config_free(load_file_ok(&t, yaml));

	/* config_load_string() never opens files (tests, fuzzing). */
	tls_yaml(yaml, sizeof(yaml), "require", t.missing, t.missing, NULL);
	config_free(load_ok(yaml));
	backend_yaml(yaml, sizeof(yaml), "verify-full", t.missing);
	config_free(load_ok(yaml));
	tls_files_remove(&t);
}
END_TEST

START_TEST(test_tls_cert_file_errors)
{
	tls_files_t t;
	char yaml[2048], message[1024];

	tls_files_make(&t);
	tls_yaml(yaml, sizeof(yaml), "require", t.missing, t.key, NULL);
	snprintf(message, sizeof(message), "tls.cert: %s: No such file or directory", t.missing);
	expect_file_error(&t, yaml, 6, message, true);

	/* Not PEM, empty, and a PEM key where the certificate should be. */
	const char *const not_certs[] = {t.junk, t.empty, t.key};
	for (size_t i = 0; i < sizeof(not_certs) / sizeof(not_certs[0]); i++) {
		tls_yaml(yaml, sizeof(yaml), "require", not_certs[i], t.key, NULL);
		snprintf(message, sizeof(message), "tls.cert: %s: not a PEM certificate (",
		         not_certs[i]);
		expect_file_error(&t, yaml, 6, message, false);
	}
	tls_files_remove(&t);
}
END_TEST

START_TEST(test_tls_key_file_errors)
{
	tls_files_t t;
	char yaml[2048], message[1024];

	tls_files_make(&t);
	tls_yaml(yaml, sizeof(yaml), "require", t.cert, t.missing, NULL);
	snprintf(message, sizeof(message), "tls.key: %s: No such file or directory", t.missing);
	expect_file_error(&t, yaml, 7, message, true);

	const char *const not_keys[] = {t.junk, t.empty, t.cert};
	for (size_t i = 0; i < sizeof(not_keys) / sizeof(not_keys[0]); i++) {
		tls_yaml(yaml, sizeof(yaml), "require", t.cert, not_keys[i], NULL);
		snprintf(message, sizeof(message), "tls.key: %s: not a PEM private key (",
		         not_keys[i]);
		expect_file_error(&t, yaml, 7, message, false);
	}

	/* Another key of the same type. */
	tls_yaml(yaml, sizeof(yaml), "require", t.cert, t.other_key, NULL);
	snprintf(message, sizeof(message), "tls.key: %s does not match the certificate %s",
	         t.other_key, t.cert);
	expect_file_error(&t, yaml, 7, message, true);
	tls_yaml(yaml, sizeof(yaml), "require", t.other_cert, t.key, NULL);
	snprintf(message, sizeof(message), "tls.key: %s does not match the certificate %s", t.key,
	         t.other_cert);
	expect_file_error(&t, yaml, 7, message, true);

	/* A key of another type (RSA for an EC certificate) does not match it
	 * either (OpenSSL loads it into a slot with no certificate). */
	tls_yaml(yaml, sizeof(yaml), "require", t.cert, t.rsa_key, NULL);
	snprintf(message, sizeof(message), "tls.key: %s does not match the certificate %s",
	         t.rsa_key, t.cert);
	expect_file_error(&t, yaml, 7, message, true);

	/* The right key behind a passphrase, in both PEM forms: refused, not prompted for. */
	const char *const encrypted[] = {t.encrypted_key, t.encrypted_legacy_key};
	for (size_t i = 0; i < sizeof(encrypted) / sizeof(encrypted[0]); i++) {
		tls_yaml(yaml, sizeof(yaml), "require", t.cert, encrypted[i], NULL);
		snprintf(message, sizeof(message),
		         "tls.key: %s: the key is protected by a passphrase (not supported)",
		         encrypted[i]);
		expect_file_error(&t, yaml, 7, message, true);
	}
	tls_files_remove(&t);
}
END_TEST

START_TEST(test_tls_ciphers_must_name_a_cipher)
{
	tls_files_t t;
	char yaml[2048];

	tls_files_make(&t);
	static const char *const none[] = {"NO-SUCH-CIPHER", "!ALL", "aNULL:!aNULL"};
	for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
		char message[256];
		tls_yaml(yaml, sizeof(yaml), "require", t.cert, t.key, none[i]);
		snprintf(message, sizeof(message), "tls.ciphers: no usable cipher in \"%s\"",
		         none[i]);
		expect_file_error(&t, yaml, 8, message, true);
	}
	/* The cipher list is checked before the files (and without them). */
	tls_yaml(yaml, sizeof(yaml), "require", t.missing, t.missing, "NO-SUCH-CIPHER");
	expect_file_error(&t, yaml, 8, "tls.ciphers: no usable cipher in \"NO-SUCH-CIPHER\"", true);
	tls_files_remove(&t);
}
END_TEST

START_TEST(test_backend_verify_needs_ca_file)
{
	tls_files_t t;
	char yaml[2048], message[1024];

	tls_files_make(&t);
	static const char *const modes[] = {"verify-ca", "verify-full"};
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		backend_yaml(yaml, sizeof(yaml), modes[i], NULL);
		snprintf(message, sizeof(message), "backend.tls: %s needs backend.ca_file",
		         modes[i]);
		expect_file_error(&t, yaml, 5, message, true);
		backend_yaml(yaml, sizeof(yaml), modes[i], "");
		expect_file_error(&t, yaml, 5, message, true);

		backend_yaml(yaml, sizeof(yaml), modes[i], t.missing);
		snprintf(message, sizeof(message), "backend.ca_file: %s: No such file or directory",
		         t.missing);
		expect_file_error(&t, yaml, 6, message, true);

		/* Readable, but no certificate in it. */
		const char *const not_cas[] = {t.junk, t.empty, t.key};
		for (size_t k = 0; k < sizeof(not_cas) / sizeof(not_cas[0]); k++) {
			backend_yaml(yaml, sizeof(yaml), modes[i], not_cas[k]);
			snprintf(message, sizeof(message),
			         "backend.ca_file: %s: no PEM certificate (", not_cas[k]);
			expect_file_error(&t, yaml, 6, message, false);
		}
	}
	tls_files_remove(&t);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *suite = suite_create("config");
	TCase *load = tcase_create("load");
	TCase *errors = tcase_create("errors");
	TCase *tables = tcase_create("tables");
	TCase *parsers = tcase_create("parsers");

	tcase_add_test(load, test_full_file_every_key);
	tcase_add_test(load, test_defaults);
	tcase_add_test(load, test_default_write_functions);
	tcase_add_test(load, test_demo_shardmap_loads);
	tcase_add_test(load, test_default_shard);
	tcase_add_test(load, test_env_secret);
	tcase_add_test(load, test_file_secret);
	tcase_add_test(load, test_print_masks_secrets_and_summarises);
	tcase_add_test(load, test_find_shard_and_table);
	tcase_add_test(load, test_function_lists);
	tcase_add_test(load, test_null_values_and_sections);
	tcase_add_test(load, test_aliases);
	tcase_add_test(load, test_booleans_and_enums);
	tcase_add_test(load, test_load_from_file_names_the_file);
	suite_add_tcase(suite, load);

	tcase_add_test(errors, test_unknown_top_level_key);
	tcase_add_test(errors, test_unknown_nested_keys);
	tcase_add_test(errors, test_duplicate_mapping_key);
	tcase_add_test(errors, test_wrong_types);
	tcase_add_test(errors, test_out_of_range_numbers);
	tcase_add_test(errors, test_bad_duration_size_address_values);
	tcase_add_test(errors, test_weight_and_replica_limits);
	tcase_add_test(errors, test_shard_errors);
	tcase_add_test(errors, test_no_shards);
	tcase_add_test(errors, test_layered_timeouts);
	tcase_add_test(errors, test_tls_needs_certificate);
	tcase_add_test(errors, test_auth_rules);
	tcase_add_test(errors, test_yaml_syntax_error);
	tcase_add_test(errors, test_empty_file);
	tcase_add_test(errors, test_multiple_documents);
	tcase_add_test(errors, test_unreadable_file);
	tcase_add_test(errors, test_nul_byte_refused);
	tcase_add_test(errors, test_alias_expansion_is_bounded);
	tcase_add_test(errors, test_error_buffer_edge_cases);
	tcase_add_test(errors, test_long_strings_refused);
	suite_add_tcase(suite, errors);

	/* RSA key generation and file writes: more than the default 4 s under ASan. */
	TCase *tls_files = tcase_create("tls_files");
	tcase_set_timeout(tls_files, 60);
	tcase_add_test(tls_files, test_tls_files_load);
	tcase_add_test(tls_files, test_tls_cert_file_errors);
	tcase_add_test(tls_files, test_tls_key_file_errors);
	tcase_add_test(tls_files, test_tls_ciphers_must_name_a_cipher);
	tcase_add_test(tls_files, test_backend_verify_needs_ca_file);
	suite_add_tcase(suite, tls_files);

	tcase_add_test(tables, test_duplicate_table_names);
	tcase_add_test(tables, test_default_placement);
	tcase_add_test(tables, test_explicit_placement);
	tcase_add_test(tables, test_bucket_limits);
	tcase_add_test(tables, test_placement_errors);
	tcase_add_test(tables, test_colocation_chain);
	tcase_add_test(tables, test_colocation_matching_placement_is_accepted);
	tcase_add_test(tables, test_colocation_errors);
	tcase_add_test(tables, test_range_table);
	tcase_add_test(tables, test_range_errors);
	tcase_add_test(tables, test_range_text_and_time_keys);
	tcase_add_test(tables, test_uuid_range_bounds);
	tcase_add_test(tables, test_key_rules);
	tcase_add_test(tables, test_key_type_names);
	tcase_add_test(tables, test_directory_settings);
	suite_add_tcase(suite, tables);

	tcase_add_test(parsers, test_parse_duration);
	tcase_add_test(parsers, test_parse_size);
	tcase_add_test(parsers, test_parse_address);
	suite_add_tcase(suite, parsers);
	return suite;
}

int main(void)
{
	SRunner *runner = srunner_create(config_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
