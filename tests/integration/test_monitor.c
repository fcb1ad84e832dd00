/*
 * test_monitor.c - the health monitor against the test cluster
 * (tests/cluster.sh): roles, replication lag with a paused replica, a dead
 * node's breaker, passive failure reports, and snapshot reclamation under
 * concurrent readers.
 *
 * PGTEST_BASE_PORT gives the cluster: s0 primary at BASE, its replicas at
 * BASE+1 and BASE+2, s1 primary at BASE+3; superuser postgres/postgres.
 */
#include <arpa/inet.h>
#include <check.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "health/health.h"

#define WAL_TABLE "shardgate_health_monitor_wal"

static int base_port(void)
{
	const char *text = getenv("PGTEST_BASE_PORT");
	int port = text ? atoi(text) : 0;

	return port > 0 ? port : 55432;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs sql on the node at port (database postgres); returns whether it
 * succeeded and, on failure, writes the server's message into err. */
static bool run_sql(int port, const char *sql, char *err, size_t errlen)
{
	char dsn[256];
	PGconn *conn;
	PGresult *result;
	bool ok;

	snprintf(dsn, sizeof(dsn),
	         "host=127.0.0.1 port=%d user=postgres password=postgres dbname=postgres "
	         "connect_timeout=5",
	         port);
	conn = PQconnectdb(dsn);
	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(err, errlen, "connect to %d: %s", port, PQerrorMessage(conn));
		PQfinish(conn);
		return false;
	}
	result = PQexec(conn, sql);
	ok =
	    PQresultStatus(result) == PGRES_COMMAND_OK || PQresultStatus(result) == PGRES_TUPLES_OK;
	if (!ok)
		snprintf(err, errlen, "%s: %s", sql, PQresultErrorMessage(result));
	PQclear(result);
	PQfinish(conn);
	return ok;
}

static void must_sql(int port, const char *sql)
{
	char err[512] = "";

	ck_assert_msg(run_sql(port, sql, err, sizeof(err)), "expected success, got %s", err);
}

/* Loads a configuration that must be valid. */
static config_t *load_config(const char *yaml)
{
	config_t *config = NULL;
	char err[512] = "";

	ck_assert_msg(
	    config_load_string("monitor.yaml", yaml, strlen(yaml), &config, err, sizeof(err)),
	    "expected the configuration to load, got: %s", err);
	return config;
}

/* The cluster's s0 (two replicas) and s1, checked every 100 ms. */
static config_t *cluster_config(void)
{
	char yaml[1024];
	int base = base_port();

	snprintf(yaml, sizeof(yaml),
	         "backend: {user: postgres, password: postgres}\n"
	         "health: {interval: 100ms, failures_to_open: 3, open_for: 500ms}\n"
	         "routing: {max_replica_lag: {bytes: 1MB, time: 1s}}\n"
	         "shards:\n"
	         "  - {name: s0, primary: 127.0.0.1:%d, replicas: [127.0.0.1:%d, "
	         "127.0.0.1:%d]}\n"
	         "  - {name: s1, primary: 127.0.0.1:%d}\n",
	         base, base + 1, base + 2, base + 3);
	return load_config(yaml);
}

static void start_monitor(const config_t *config)
{
	char err[256] = "";

	ck_assert_msg(health_start(config, err, sizeof(err)), "health_start failed: %s", err);
}

typedef bool (*snapshot_test_t)(const health_snapshot_t *snapshot);

/* Polls snapshots until `test` holds or timeout_ms pass; prints the last
 * snapshot when it never held. */
static bool wait_for(snapshot_test_t test, int64_t timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		const health_snapshot_t *snapshot = health_acquire();
		bool ok = snapshot && test(snapshot);

		if (ok || now_ms() >= deadline) {
			if (!ok) {
				fprintf(stderr,
				        "condition not met within %lld ms; last snapshot:\n",
				        (long long)timeout_ms);
				health_print(snapshot, stderr);
			}
			health_release(snapshot);
			return ok;
		}
		health_release(snapshot);
		usleep(20 * 1000);
	}
}

static const health_node_t *node_of(const health_snapshot_t *snapshot, int shard, int node)
{
	const health_node_t *entry = health_snapshot_node(snapshot, shard, node);

	ck_assert_msg(entry != NULL, "no entry for shard %d node %d", shard, node);
	return entry;
}

static bool all_up_with_roles(const health_snapshot_t *s)
{
	return node_of(s, 0, 0)->state == NODE_UP && !node_of(s, 0, 0)->in_recovery &&
	       node_of(s, 0, 1)->state == NODE_UP && node_of(s, 0, 1)->in_recovery &&
	       node_of(s, 0, 2)->state == NODE_UP && node_of(s, 0, 2)->in_recovery &&
	       node_of(s, 1, 0)->state == NODE_UP && !node_of(s, 1, 0)->in_recovery;
}

static bool all_eligible(const health_snapshot_t *s)
{
	for (int i = 0; i < s->n_nodes; i++)
		if (!s->nodes[i].eligible)
			return false;
	return all_up_with_roles(s);
}

/* Resumes replay on the first replica and drops the WAL table; used before
 * and after the lag test (in the parent process, so it also runs when a
 * test fails). */
static void restore_cluster(void)
{
	char err[512];

	if (!run_sql(base_port() + 1, "select pg_wal_replay_resume()", err, sizeof(err)) &&
	    !strstr(err, "not in recovery"))
		fprintf(stderr, "teardown: %s\n", err);
	if (!run_sql(base_port(),
	             "set client_min_messages = warning; drop table if exists " WAL_TABLE, err,
	             sizeof(err)))
		fprintf(stderr, "teardown: %s\n", err);
}

START_TEST(test_monitor_reports_every_node_up_with_its_role)
{
	config_t *config = cluster_config();
	const health_snapshot_t *snapshot;

	start_monitor(config);
	config_free(config); /* the monitor keeps its own copy */
	ck_assert_msg(wait_for(all_up_with_roles, 5000),
	              "expected every node UP, s0/s1 primaries not in recovery, replicas in "
	              "recovery");
	ck_assert_msg(wait_for(all_eligible, 3000), "expected every node eligible when idle");
	snapshot = health_acquire();
	ck_assert_int_eq(snapshot->n_shards, 2);
	ck_assert_int_eq(snapshot->n_nodes, 4);
	ck_assert_int_eq(snapshot->shards[0].primary_node, 0);
	ck_assert_int_eq(snapshot->shards[1].primary_node, 0);
	ck_assert_msg(snapshot->shards[0].primary_lsn > 0, "expected the primary's LSN");
	for (int i = 0; i < snapshot->n_nodes; i++) {
		const health_node_t *node = &snapshot->nodes[i];
		ck_assert_msg(node->breaker == BREAKER_CLOSED, "node %d/%d breaker %s", node->shard,
		              node->node, breaker_state_name(node->breaker));
		ck_assert_msg(!node->role_mismatch, "node %d/%d flagged a role mismatch",
		              node->shard, node->node);
		ck_assert_msg(health_node_allowed(snapshot, node->shard, node->node),
		              "node %d/%d not allowed", node->shard, node->node);
		ck_assert_str_eq(node->last_error, "");
		ck_assert(node->last_check_ms > 0);
	}
	ck_assert_msg(node_of(snapshot, 0, 1)->replay_lsn > 0, "expected a replay LSN");
	ck_assert_msg(snapshot->version >= 2, "expected published rounds, got version %llu",
	              (unsigned long long)snapshot->version);
	health_print(snapshot, stdout);
	health_release(snapshot);
	health_stop();
	ck_assert_ptr_null(health_acquire());
}
END_TEST

static bool paused_replica_lagging(const health_snapshot_t *s)
{
	const health_node_t *paused = node_of(s, 0, 1), *other = node_of(s, 0, 2);

	return paused->state == NODE_UP && !paused->eligible && paused->lag_bytes > 1024 * 1024 &&
	       other->eligible;
}

static bool paused_replica_back(const health_snapshot_t *s)
{
	return node_of(s, 0, 1)->eligible && node_of(s, 0, 2)->eligible;
}

static bool replicas_caught_up(const health_snapshot_t *s)
{
	const health_node_t *r1 = node_of(s, 0, 1), *r2 = node_of(s, 0, 2);

	return r1->state == NODE_UP && r2->state == NODE_UP && r1->lag_ms >= 0 &&
	       r1->lag_ms < 1000 && r2->lag_ms >= 0 && r2->lag_ms < 1000 && r1->lag_bytes == 0 &&
	       r2->lag_bytes == 0;
}

START_TEST(test_reads_skip_lagging_replica)
{
	config_t *config = cluster_config();
	int base = base_port();
	int64_t started;

	start_monitor(config);
	config_free(config);
	ck_assert_msg(wait_for(all_eligible, 5000), "expected every node UP and eligible first");

	must_sql(base + 1, "select pg_wal_replay_pause()");
	must_sql(base, "create table " WAL_TABLE " (id int, pad text)");
	must_sql(base, "insert into " WAL_TABLE
	               " select g, repeat('x', 1000) from generate_series(1, 20000) g");
	must_sql(base, "select pg_switch_wal()");
	started = now_ms();
	ck_assert_msg(wait_for(paused_replica_lagging, 2000),
	              "expected within 2 s: replica 1 ineligible with lag_bytes > 1MB, replica 2 "
	              "eligible");
	fprintf(stderr, "paused replica seen lagging after %lld ms\n",
	        (long long)(now_ms() - started));

	must_sql(base + 1, "select pg_wal_replay_resume()");
	started = now_ms();
	ck_assert_msg(wait_for(paused_replica_back, 3000),
	              "expected replica 1 eligible again within 3 s of resuming replay");
	fprintf(stderr, "resumed replica eligible after %lld ms\n",
	        (long long)(now_ms() - started));

	/* the primary is idle now: no time lag, however old its last WAL */
	ck_assert_msg(wait_for(replicas_caught_up, 3000),
	              "expected both replicas at lag 0 bytes and < 1000 ms with an idle primary");
	sleep(2);
	ck_assert_msg(wait_for(replicas_caught_up, 100),
	              "expected the lag of caught-up replicas to stay small while the primary "
	              "idles");
	health_stop();
}
END_TEST

/* A TCP port on 127.0.0.1 where nothing listens (bound, then released). */
static int unused_port(void)
{
	struct sockaddr_in addr = {.sin_family = AF_INET};
	socklen_t len = sizeof(addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int port;

	ck_assert(fd >= 0);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert(bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	ck_assert(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
	port = ntohs(addr.sin_port);
	close(fd);
	return port;
}

static bool dead_replica_open(const health_snapshot_t *s)
{
	const health_node_t *dead = node_of(s, 0, 1);

	return node_of(s, 0, 0)->state == NODE_UP && dead->state == NODE_DOWN &&
	       dead->breaker == BREAKER_OPEN;
}

START_TEST(test_dead_node_is_down_with_open_breaker)
{
	char yaml[1024];
	config_t *config;
	const health_snapshot_t *snapshot;
	const health_node_t *dead;
	int64_t started;

	snprintf(yaml, sizeof(yaml),
	         "backend: {user: postgres, password: postgres}\n"
	         "health: {interval: 100ms, failures_to_open: 2, open_for: 5s}\n"
	         "shards:\n"
	         "  - {name: s0, primary: 127.0.0.1:%d, replicas: [127.0.0.1:%d]}\n",
	         base_port(), unused_port());
	config = load_config(yaml);
	started = now_ms();
	start_monitor(config);
	config_free(config);
	ck_assert_msg(wait_for(dead_replica_open, 2000),
	              "expected the replica with nothing listening DOWN with its breaker OPEN");
	fprintf(stderr, "dead node open after %lld ms\n", (long long)(now_ms() - started));
	snapshot = health_acquire();
	dead = node_of(snapshot, 0, 1);
	ck_assert_msg(dead->last_error[0] != '\0', "expected a connection error text");
	ck_assert(!dead->eligible);
	ck_assert(!health_node_allowed(snapshot, 0, 1));
	ck_assert(health_node_allowed(snapshot, 0, 0));
	health_release(snapshot);
	health_stop();
}
END_TEST

static bool s1_primary_open(const health_snapshot_t *s)
{
	return node_of(s, 1, 0)->breaker == BREAKER_OPEN && !health_node_allowed(s, 1, 0);
}

static bool s1_primary_closed(const health_snapshot_t *s)
{
	return node_of(s, 1, 0)->breaker == BREAKER_CLOSED && health_node_allowed(s, 1, 0) &&
	       node_of(s, 1, 0)->state == NODE_UP;
}

START_TEST(test_passive_failures_open_breaker_then_probe_closes)
{
	config_t *config = cluster_config(); /* open_for 500ms */

	start_monitor(config);
	config_free(config);
	ck_assert(wait_for(all_up_with_roles, 5000));
	for (int i = 0; i < 5; i++)
		health_report(1, 0, false);
	ck_assert_msg(wait_for(s1_primary_open, 1000),
	              "expected 5 reported failures to open the s1 primary's breaker");
	/* the node is healthy: after 500 ms the monitor's probe closes it */
	ck_assert_msg(wait_for(s1_primary_closed, 2000),
	              "expected the monitor's probe to close the breaker of a healthy node");
	health_stop();
}
END_TEST

/* Set when the readers of test_snapshots_survive_concurrent_readers stop. */
static atomic_bool readers_done;

/* Readers hammer acquire/release while the monitor publishes every 10 ms. */
static void *reader_thread(void *arg)
{
	long *acquired = arg;
	uint64_t last_version = 0;
	long iterations = 0;

	while (!atomic_load(&readers_done)) {
		const health_snapshot_t *snapshot = health_acquire();
		if (!snapshot)
			continue;
		if (snapshot->version < last_version)
			*acquired = -1; /* versions went backwards */
		last_version = snapshot->version;
		for (int i = 0; i < snapshot->n_nodes; i++)
			if (snapshot->nodes[i].shard != 0 || snapshot->nodes[i].node > 2)
				*acquired = -1000000; /* garbage: freed or torn */
		health_report(0, 0, true);
		health_release(snapshot);
		if (*acquired >= 0)
			(*acquired)++;
		/* bursts, so that 4 readers on a small machine leave the monitor
		 * thread and PostgreSQL some CPU */
		if (++iterations % 2000 == 0)
			usleep(200);
	}
	return NULL;
}

/* Under ASan: a snapshot freed while a reader holds it, or leaked, fails. */
START_TEST(test_snapshots_survive_concurrent_readers)
{
	char yaml[1024];
	config_t *config;
	pthread_t threads[4];
	long acquired[4] = {0};
	const health_snapshot_t *snapshot;
	uint64_t first_version, published = 0;
	int64_t deadline;

	snprintf(yaml, sizeof(yaml),
	         "backend: {user: postgres, password: postgres}\n"
	         "health: {interval: 10ms}\n"
	         "shards:\n"
	         "  - {name: s0, primary: 127.0.0.1:%d, replicas: [127.0.0.1:%d, "
	         "127.0.0.1:%d]}\n",
	         base_port(), base_port() + 1, base_port() + 2);
	config = load_config(yaml);
	start_monitor(config);
	config_free(config);
	snapshot = health_acquire();
	first_version = snapshot->version;
	health_release(snapshot);
	atomic_store(&readers_done, false);
	for (int i = 0; i < 4; i++)
		ck_assert(pthread_create(&threads[i], NULL, reader_thread, &acquired[i]) == 0);
	/* until 50 publications have happened under the readers (time-bounded:
	 * a loaded machine publishes slower, not incorrectly) */
	deadline = now_ms() + 10000;
	while (published < 50 && now_ms() < deadline) {
		usleep(10 * 1000);
		snapshot = health_acquire();
		published = snapshot->version - first_version;
		health_release(snapshot);
	}
	atomic_store(&readers_done, true);
	for (int i = 0; i < 4; i++)
		pthread_join(threads[i], NULL);
	ck_assert_msg(published >= 50, "expected 50 publications within 10 s, got %llu",
	              (unsigned long long)published);
	for (int i = 0; i < 4; i++)
		ck_assert_msg(acquired[i] > 0, "reader %d saw a bad snapshot (%ld)", i,
		              acquired[i]);
	fprintf(stderr, "readers acquired %ld snapshots; %llu published\n",
	        acquired[0] + acquired[1] + acquired[2] + acquired[3],
	        (unsigned long long)published);
	health_stop();
}
END_TEST

static Suite *monitor_suite(void)
{
	Suite *s = suite_create("monitor");
	TCase *tc = tcase_create("cluster");

	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, restore_cluster, restore_cluster);
	/* a failed assertion skips the test's own health_stop() */
	tcase_add_checked_fixture(tc, NULL, health_stop);
	tcase_add_test(tc, test_monitor_reports_every_node_up_with_its_role);
	tcase_add_test(tc, test_reads_skip_lagging_replica);
	tcase_add_test(tc, test_dead_node_is_down_with_open_breaker);
	tcase_add_test(tc, test_passive_failures_open_breaker_then_probe_closes);
	tcase_add_test(tc, test_snapshots_survive_concurrent_readers);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *runner = srunner_create(monitor_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
