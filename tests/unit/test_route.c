/*
 * test_route.c - routing decisions: statement classes and the choice of a
 * node from a monitor snapshot (lag, health, breakers, read-your-writes,
 * balancing, a shard without primary).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "analyze/analyze.h"
#include "config/config.h"
#include "health/health.h"
#include "route/route.h"

static config_t *config;
static health_shard_t shards[1];
static health_node_t nodes[3];
static health_snapshot_t snap;

static void load(const char *extra)
{
	char yaml[2048];
	char err[512];
	snprintf(yaml, sizeof(yaml),
		 "shards:\n"
		 "  - name: s0\n"
		 "    primary: 127.0.0.1:5432\n"
		 "    replicas: [127.0.0.1:5433, {address: 127.0.0.1:5434, weight: 3}]\n"
		 "%s",
		 extra);
	if (config)
		config_free(config);
	ck_assert_msg(config_load_string("t.yaml", yaml, strlen(yaml), &config, err, sizeof(err)),
		      "%s", err);
}

/* A healthy shard: the primary at LSN 1000, replicas replayed to 1000. */
static void setup(void)
{
	load("");
	memset(nodes, 0, sizeof(nodes));
	for (int i = 0; i < 3; i++) {
		nodes[i].shard = 0;
		nodes[i].node = i;
		nodes[i].state = NODE_UP;
		nodes[i].in_recovery = i > 0;
		nodes[i].eligible = true;
		nodes[i].breaker = BREAKER_CLOSED;
		nodes[i].replay_lsn = i > 0 ? 1000 : 0;
		nodes[i].wal_lsn = i == 0 ? 1000 : 0;
		nodes[i].last_check_ms = 1;
	}
	shards[0] = (health_shard_t){.first = 0, .n_nodes = 3, .primary_node = 0, .primary_lsn = 1000};
	snap = (health_snapshot_t){.version = 7, .n_shards = 1, .shards = shards, .n_nodes = 3,
				   .nodes = nodes};
}

static void teardown(void)
{
	config_free(config);
	config = NULL;
}

static bool tracked(const char *name)
{
	return strcasecmp(name, "timezone") == 0 || strcasecmp(name, "application_name") == 0;
}

static route_class_t classify(const char *sql)
{
	analysis_t *a;
	ck_assert(analyze_statement(sql, strlen(sql), &a));
	route_class_t cls;
	route_classify(config, a, tracked, &cls);
	analyze_release(a);
	return cls;
}

static route_target_t choose(const char *sql, uint64_t min_lsn, route_status_t expect)
{
	route_class_t cls = classify(sql);
	route_balance_t balance = {0};
	route_target_t t;
	route_status_t rs = route_choose(config, &snap, &cls, 0, min_lsn, &balance, NULL, NULL, &t);
	ck_assert_msg(rs == expect, "%s: expected status %s, got %s", sql, route_status_name(expect),
		      route_status_name(rs));
	return t;
}

START_TEST(test_reads_and_writes)
{
	ck_assert(classify("select 1").read);
	ck_assert(!classify("select 1 for update").read);
	ck_assert(!classify("insert into t values (1)").read);
	ck_assert(!classify("select nextval('s')").read);
	ck_assert(!classify("select my_function()").read);
	ck_assert(!classify("/* shardgate: primary */ select 1").read);
	ck_assert(classify("begin read only; select 1; commit").read);
	ck_assert(!classify("begin; select 1; commit").read);
	ck_assert(!classify("begin read only; update t set a = 1; commit").read);
	route_target_t t = choose("select 1", 0, ROUTE_OK);
	ck_assert(t.replica);
	ck_assert_int_ne(t.node, 0);
	t = choose("delete from t", 0, ROUTE_OK);
	ck_assert(!t.replica);
	ck_assert_int_eq(t.node, 0);
}
END_TEST

START_TEST(test_read_only_functions_from_config)
{
	load("routing: { read_only_functions: [my_function] }\n");
	ck_assert(classify("select my_function()").read);
	ck_assert(!classify("select other_function()").read);
}
END_TEST

START_TEST(test_session_state_pins)
{
	ck_assert(classify("prepare p as select 1").pins);
	ck_assert(classify("listen ch").pins);
	ck_assert(classify("create temp table x (a int)").pins);
	ck_assert(classify("select pg_advisory_lock(1)").pins);
	ck_assert(classify("set search_path = x").pins);
	ck_assert(!classify("set timezone = 'UTC'").pins);
	ck_assert(!classify("set local search_path = x").pins);
	ck_assert(!classify("select 1").pins);
	ck_assert(!classify("select pg_advisory_xact_lock(1)").pins);
}
END_TEST

START_TEST(test_lagging_replica_skipped)
{
	nodes[1].eligible = false;
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(choose("select 1", 0, ROUTE_OK).node, 2);
	nodes[2].eligible = false;
	route_target_t t = choose("select 1", 0, ROUTE_OK);
	ck_assert_int_eq(t.node, 0);
	ck_assert(!t.replica);
}
END_TEST

START_TEST(test_down_or_open_breaker_skipped)
{
	nodes[1].state = NODE_DOWN;
	nodes[2].breaker = BREAKER_OPEN;
	ck_assert_int_eq(choose("select 1", 0, ROUTE_OK).node, 0);
	nodes[2].breaker = BREAKER_HALF_OPEN;
	ck_assert_int_eq(choose("select 1", 0, ROUTE_OK).node, 0);
	nodes[2].breaker = BREAKER_CLOSED;
	ck_assert_int_eq(choose("select 1", 0, ROUTE_OK).node, 2);
}
END_TEST

START_TEST(test_max_lag_hint)
{
	nodes[1].lag_ms = 300;
	nodes[2].lag_ms = 50;
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(choose("/* shardgate: max_lag=100ms */ select 1", 0, ROUTE_OK).node,
				 2);
	nodes[2].lag_ms = 150;
	ck_assert_int_eq(choose("/* shardgate: max_lag=100ms */ select 1", 0, ROUTE_OK).node, 0);
}
END_TEST

START_TEST(test_read_your_writes)
{
	nodes[1].replay_lsn = 2000;
	nodes[2].replay_lsn = 1500;
	/* Only replica 1 has replayed the client's write at 1800. */
	for (int i = 0; i < 10; i++) {
		route_target_t t = choose("select 1", 1800, ROUTE_OK);
		ck_assert_int_eq(t.node, 1);
		ck_assert(!t.verify_lsn);
	}
	/* None has, as far as the snapshot knows: ask a replica. */
	route_target_t t = choose("select 1", 2500, ROUTE_OK);
	ck_assert(t.replica);
	ck_assert(t.verify_lsn);
}
END_TEST

START_TEST(test_no_primary)
{
	shards[0].primary_node = -1;
	nodes[0].state = NODE_DOWN;
	/* One failed check is not enough to refuse writes... */
	ck_assert_int_eq(choose("insert into t values (1)", 0, ROUTE_OK).node, 0);
	/* ...an open breaker is, */
	nodes[0].breaker = BREAKER_OPEN;
	choose("insert into t values (1)", 0, ROUTE_NO_PRIMARY);
	/* and so is a configured primary that answers as a replica. */
	nodes[0].breaker = BREAKER_CLOSED;
	nodes[0].state = NODE_UP;
	nodes[0].in_recovery = true;
	choose("insert into t values (1)", 0, ROUTE_NO_PRIMARY);
	route_target_t t = choose("select 1", 0, ROUTE_OK);
	ck_assert(t.replica);
	/* A promoted replica is the primary. */
	shards[0].primary_node = 2;
	nodes[2].in_recovery = false;
	t = choose("insert into t values (1)", 0, ROUTE_OK);
	ck_assert_int_eq(t.node, 2);
	for (int i = 0; i < 10; i++)
		ck_assert_int_eq(choose("select 1", 0, ROUTE_OK).node, 1);
}
END_TEST

static int spread(const char *extra, int counts[3], route_load_fn loadfn)
{
	load(extra);
	route_class_t cls = classify("select 1");
	route_balance_t balance = {0};
	memset(counts, 0, 3 * sizeof(int));
	for (int i = 0; i < 4000; i++) {
		route_target_t t;
		ck_assert_int_eq(route_choose(config, &snap, &cls, 0, 0, &balance, loadfn, NULL, &t),
				 ROUTE_OK);
		counts[t.node]++;
	}
	return counts[0];
}

static int busy_first_replica(int shard, int node, void *arg)
{
	(void)shard;
	(void)arg;
	return node == 1 ? 10 : 1;
}

START_TEST(test_balancing)
{
	int c[3];
	spread("routing: { balance: round_robin }\n", c, NULL);
	ck_assert_int_eq(c[0], 0);
	ck_assert_int_eq(c[1], 2000);
	ck_assert_int_eq(c[2], 2000);
	spread("routing: { balance: random }\n", c, NULL);
	ck_assert_msg(c[1] > 1700 && c[2] > 1700 && c[0] == 0, "random: %d %d %d", c[0], c[1],
		      c[2]);
	spread("routing: { balance: weighted }\n", c, NULL);
	/* weights 1 and 3: about 1000 and 3000 */
	ck_assert_msg(c[1] > 800 && c[1] < 1200 && c[2] > 2800, "weighted: %d %d", c[1], c[2]);
	spread("routing: { balance: least_connections }\n", c, busy_first_replica);
	ck_assert_int_eq(c[1], 0);
	ck_assert_int_eq(c[2], 4000);
	spread("routing: { include_primary_in_reads: true }\n", c, NULL);
	ck_assert_msg(c[0] > 1200 && c[1] > 1200 && c[2] > 1200, "with primary: %d %d %d", c[0],
		      c[1], c[2]);
	spread("routing: { read_write_split: false }\n", c, NULL);
	ck_assert_int_eq(c[0], 4000);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("route");
	TCase *tc = tcase_create("route");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_reads_and_writes);
	tcase_add_test(tc, test_read_only_functions_from_config);
	tcase_add_test(tc, test_session_state_pins);
	tcase_add_test(tc, test_lagging_replica_skipped);
	tcase_add_test(tc, test_down_or_open_breaker_skipped);
	tcase_add_test(tc, test_max_lag_hint);
	tcase_add_test(tc, test_read_your_writes);
	tcase_add_test(tc, test_no_primary);
	tcase_add_test(tc, test_balancing);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
