/*
 * test_proxy.c - the proxy as libpq sees it: parameters at login, simple
 * and extended protocol, pipelines with errors, prepared statements that
 * follow a client across pooled server connections, session parameters,
 * COPY, and cancel.
 *
 * Environment: SG_DSN (the proxy), SG_POOL_MODE (transaction|session).
 */
#include <check.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static PGconn *connect_proxy(void)
{
	const char *dsn = getenv("SG_DSN");
	ck_assert_msg(dsn != NULL, "SG_DSN is not set");
	PGconn *conn = PQconnectdb(dsn);
	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "connect to %s failed: %s", dsn,
		      PQerrorMessage(conn));
	return conn;
}

static char *query_value(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: expected rows, got %s: %s",
		      sql, PQresStatus(PQresultStatus(res)), PQerrorMessage(conn));
	char *value = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return value;
}

static void exec_ok(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	ck_assert_msg(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: got %s: %s", sql,
		      PQresStatus(st), PQerrorMessage(conn));
	PQclear(res);
}

static bool transaction_mode(void)
{
	const char *mode = getenv("SG_POOL_MODE");
	return !mode || strcmp(mode, "transaction") == 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

START_TEST(test_login_reports_server_parameters)
{
	PGconn *conn = connect_proxy();
	const char *version = PQparameterStatus(conn, "server_version");
	ck_assert_msg(version && strncmp(version, "15", 2) == 0, "server_version: got %s",
		      version ? version : "(none)");
	const char *encoding = PQparameterStatus(conn, "server_encoding");
	ck_assert_msg(encoding && strcmp(encoding, "UTF8") == 0, "server_encoding: got %s",
		      encoding ? encoding : "(none)");
	ck_assert_int_ne(PQbackendPID(conn), 0);
	PQfinish(conn);
}
END_TEST

START_TEST(test_startup_parameters_reach_the_server)
{
	char dsn[512];
	snprintf(dsn, sizeof(dsn), "%s application_name=sg_libpq_test options='-c search_path=public,pg_catalog -c work_mem=7MB'",
		 getenv("SG_DSN"));
	PGconn *conn = PQconnectdb(dsn);
	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "%s", PQerrorMessage(conn));
	for (int i = 0; i < 5; i++) {
		char *app = query_value(conn, "select current_setting('application_name')");
		ck_assert_str_eq(app, "sg_libpq_test");
		free(app);
		char *wm = query_value(conn, "show work_mem");
		ck_assert_str_eq(wm, "7MB");
		free(wm);
	}
	/* Another client must not inherit them. */
	PGconn *other = connect_proxy();
	for (int i = 0; i < 5; i++) {
		char *wm = query_value(other, "show work_mem");
		ck_assert_msg(strcmp(wm, "4MB") == 0, "other client's work_mem: expected 4MB, got %s",
			      wm);
		free(wm);
	}
	PQfinish(other);
	PQfinish(conn);
}
END_TEST

START_TEST(test_multi_statement_query)
{
	PGconn *conn = connect_proxy();
	ck_assert(PQsendQuery(conn, "select 1; select 'two'; select 3 where false"));
	PGresult *res;
	int n = 0;
	const char *expected[] = {"1", "two"};
	while ((res = PQgetResult(conn))) {
		ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
		if (n < 2) {
			ck_assert_int_eq(PQntuples(res), 1);
			ck_assert_str_eq(PQgetvalue(res, 0, 0), expected[n]);
		} else {
			ck_assert_int_eq(PQntuples(res), 0);
		}
		n++;
		PQclear(res);
	}
	ck_assert_int_eq(n, 3);
	/* An error stops the rest, as in PostgreSQL. */
	res = PQexec(conn, "select 1/0; select 42");
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22012");
	PQclear(res);
	char *v = query_value(conn, "select 'still working'");
	ck_assert_str_eq(v, "still working");
	free(v);
	PQfinish(conn);
}
END_TEST

typedef struct {
	int id;
	int failures;
	char message[256];
} worker_arg_t;

/* Prepares two statements and runs them in many short transactions, so
 * that in transaction pooling they run on several server connections. */
static void *prepared_worker(void *arg)
{
	worker_arg_t *w = arg;
	PGconn *conn = PQconnectdb(getenv("SG_DSN"));
	if (PQstatus(conn) != CONNECTION_OK) {
		snprintf(w->message, sizeof(w->message), "connect: %s", PQerrorMessage(conn));
		w->failures++;
		PQfinish(conn);
		return NULL;
	}
	PGresult *res = PQprepare(conn, "add", "select $1::int + $2::int", 2, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		w->failures++;
	PQclear(res);
	res = PQprepare(conn, "echo", "select $1::text || '-' || $2::text", 2, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		w->failures++;
	PQclear(res);
	for (int i = 0; i < 200; i++) {
		char a[16], b[16], expected[48];
		snprintf(a, sizeof(a), "%d", i);
		snprintf(b, sizeof(b), "%d", w->id);
		const char *params[2] = {a, b};
		bool sum = i % 2 == 0;
		res = PQexecPrepared(conn, sum ? "add" : "echo", 2, params, NULL, NULL, 0);
		if (sum)
			snprintf(expected, sizeof(expected), "%d", i + w->id);
		else
			snprintf(expected, sizeof(expected), "%d-%d", i, w->id);
		if (PQresultStatus(res) != PGRES_TUPLES_OK ||
		    strcmp(PQgetvalue(res, 0, 0), expected) != 0) {
			snprintf(w->message, sizeof(w->message), "iteration %d: expected %s, got %s %s",
				 i, expected, PQresStatus(PQresultStatus(res)),
				 PQresultStatus(res) == PGRES_TUPLES_OK ? PQgetvalue(res, 0, 0)
									: PQerrorMessage(conn));
			w->failures++;
			PQclear(res);
			break;
		}
		PQclear(res);
	}
	PQfinish(conn);
	return NULL;
}

START_TEST(test_prepared_statements_follow_the_client)
{
	enum { N = 8 };
	pthread_t threads[N];
	worker_arg_t args[N];
	for (int i = 0; i < N; i++) {
		memset(&args[i], 0, sizeof(args[i]));
		args[i].id = i * 1000;
		pthread_create(&threads[i], NULL, prepared_worker, &args[i]);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(threads[i], NULL);
		ck_assert_msg(args[i].failures == 0, "client %d: %s", i, args[i].message);
	}
}
END_TEST

START_TEST(test_unknown_prepared_statement_is_an_error)
{
	PGconn *conn = connect_proxy();
	PGresult *res = PQexecPrepared(conn, "never_prepared", 0, NULL, NULL, NULL, 0);
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "26000");
	PQclear(res);
	char *v = query_value(conn, "select 1");
	ck_assert_str_eq(v, "1");
	free(v);
	PQfinish(conn);
}
END_TEST

START_TEST(test_pipeline_error_skips_to_sync)
{
	PGconn *conn = connect_proxy();
	ck_assert(PQenterPipelineMode(conn));
	const char *one[1] = {"5"};
	ck_assert(PQsendQueryParams(conn, "select $1::int * 2", 1, NULL, one, NULL, NULL, 0));
	ck_assert(PQsendQueryParams(conn, "select 1/0", 0, NULL, NULL, NULL, NULL, 0));
	ck_assert(PQsendQueryParams(conn, "select 'skipped'", 0, NULL, NULL, NULL, NULL, 0));
	ck_assert(PQpipelineSync(conn));
	ck_assert(PQsendQueryParams(conn, "select $1::int + 1", 1, NULL, one, NULL, NULL, 0));
	ck_assert(PQpipelineSync(conn));

	PGresult *res = PQgetResult(conn);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "10");
	PQclear(res);
	ck_assert_ptr_null(PQgetResult(conn));
	res = PQgetResult(conn);
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22012");
	PQclear(res);
	ck_assert_ptr_null(PQgetResult(conn));
	res = PQgetResult(conn);
	ck_assert_msg(PQresultStatus(res) == PGRES_PIPELINE_ABORTED, "expected aborted, got %s",
		      PQresStatus(PQresultStatus(res)));
	PQclear(res);
	ck_assert_ptr_null(PQgetResult(conn));
	res = PQgetResult(conn);
	ck_assert_int_eq(PQresultStatus(res), PGRES_PIPELINE_SYNC);
	PQclear(res);
	res = PQgetResult(conn);
	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "6");
	PQclear(res);
	ck_assert_ptr_null(PQgetResult(conn));
	res = PQgetResult(conn);
	ck_assert_int_eq(PQresultStatus(res), PGRES_PIPELINE_SYNC);
	PQclear(res);
	ck_assert(PQexitPipelineMode(conn));
	PQfinish(conn);
}
END_TEST

START_TEST(test_set_follows_the_client)
{
	PGconn *a = connect_proxy();
	PGconn *b = connect_proxy();
	exec_ok(a, "set timezone to 'Asia/Tokyo'");
	exec_ok(a, "set datestyle to 'German'");
	for (int i = 0; i < 10; i++) {
		char *tz = query_value(a, "show timezone");
		ck_assert_str_eq(tz, "Asia/Tokyo");
		free(tz);
		char *ds = query_value(a, "show datestyle");
		ck_assert_str_eq(ds, "German, DMY");
		free(ds);
		char *tzb = query_value(b, "show timezone");
		ck_assert_msg(strcmp(tzb, "UTC") == 0, "the other client saw timezone %s", tzb);
		free(tzb);
	}
	PQfinish(a);
	PQfinish(b);
}
END_TEST

START_TEST(test_transaction_error_then_rollback)
{
	PGconn *conn = connect_proxy();
	exec_ok(conn, "begin");
	PGresult *res = PQexec(conn, "select 1/0");
	ck_assert_int_eq(PQresultStatus(res), PGRES_FATAL_ERROR);
	PQclear(res);
	ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_INERROR);
	res = PQexec(conn, "select 1");
	ck_assert_str_eq(PQresultErrorField(res, PG_DIAG_SQLSTATE), "25P02");
	PQclear(res);
	exec_ok(conn, "rollback");
	ck_assert_int_eq(PQtransactionStatus(conn), PQTRANS_IDLE);
	char *v = query_value(conn, "select 'after'");
	ck_assert_str_eq(v, "after");
	free(v);
	PQfinish(conn);
}
END_TEST

START_TEST(test_copy_in_and_out)
{
	PGconn *conn = connect_proxy();
	char table[64];
	snprintf(table, sizeof(table), "sg_copy_%s_%d", transaction_mode() ? "tx" : "sess",
		 (int)getpid());
	char sql[256];
	snprintf(sql, sizeof(sql), "create table %s (id int, name text)", table);
	exec_ok(conn, sql);
	snprintf(sql, sizeof(sql), "copy %s from stdin", table);
	PGresult *res = PQexec(conn, sql);
	ck_assert_int_eq(PQresultStatus(res), PGRES_COPY_IN);
	PQclear(res);
	for (int i = 1; i <= 5000; i++) {
		char line[64];
		int n = snprintf(line, sizeof(line), "%d\tname %d\n", i, i);
		ck_assert_int_eq(PQputCopyData(conn, line, n), 1);
	}
	ck_assert_int_eq(PQputCopyEnd(conn, NULL), 1);
	res = PQgetResult(conn);
	ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	ck_assert_str_eq(PQcmdTuples(res), "5000");
	PQclear(res);
	ck_assert_ptr_null(PQgetResult(conn));

	snprintf(sql, sizeof(sql), "copy (select id, name from %s order by id) to stdout", table);
	res = PQexec(conn, sql);
	ck_assert_int_eq(PQresultStatus(res), PGRES_COPY_OUT);
	PQclear(res);
	long rows = 0, id_sum = 0;
	char *line;
	int n;
	while ((n = PQgetCopyData(conn, &line, 0)) > 0) {
		rows++;
		id_sum += atol(line);
		PQfreemem(line);
	}
	ck_assert_int_eq(n, -1);
	res = PQgetResult(conn);
	ck_assert_int_eq(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
	ck_assert_int_eq(rows, 5000);
	ck_assert_int_eq(id_sum, 5000L * 5001 / 2);
	snprintf(sql, sizeof(sql), "drop table %s", table);
	exec_ok(conn, sql);
	PQfinish(conn);
}
END_TEST

typedef struct {
	PGconn *conn;
	double elapsed;
	char sqlstate[8];
} sleeper_t;

static void *run_sleep(void *arg)
{
	sleeper_t *s = arg;
	double start = now_s();
	PGresult *res = PQexec(s->conn, "select pg_sleep(10)");
	s->elapsed = now_s() - start;
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	snprintf(s->sqlstate, sizeof(s->sqlstate), "%s", state ? state : "");
	PQclear(res);
	return NULL;
}

START_TEST(test_cancel_request_reaches_the_server)
{
	sleeper_t s = {connect_proxy(), 0, ""};
	pthread_t t;
	pthread_create(&t, NULL, run_sleep, &s);
	usleep(300 * 1000);
	PGcancel *cancel = PQgetCancel(s.conn);
	char err[256];
	ck_assert_msg(PQcancel(cancel, err, sizeof(err)), "PQcancel: %s", err);
	PQfreeCancel(cancel);
	pthread_join(t, NULL);
	ck_assert_msg(strcmp(s.sqlstate, "57014") == 0, "expected 57014, got '%s'", s.sqlstate);
	ck_assert_msg(s.elapsed < 2.0, "cancel took %.2f s", s.elapsed);
	char *v = query_value(s.conn, "select 'alive'");
	ck_assert_str_eq(v, "alive");
	free(v);
	PQfinish(s.conn);
}
END_TEST

static Suite *proxy_suite(void)
{
	Suite *s = suite_create("proxy");
	TCase *tc = tcase_create("libpq");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_login_reports_server_parameters);
	tcase_add_test(tc, test_startup_parameters_reach_the_server);
	tcase_add_test(tc, test_multi_statement_query);
	tcase_add_test(tc, test_prepared_statements_follow_the_client);
	tcase_add_test(tc, test_unknown_prepared_statement_is_an_error);
	tcase_add_test(tc, test_pipeline_error_skips_to_sync);
	tcase_add_test(tc, test_set_follows_the_client);
	tcase_add_test(tc, test_transaction_error_then_rollback);
	tcase_add_test(tc, test_copy_in_and_out);
	tcase_add_test(tc, test_cancel_request_reaches_the_server);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(proxy_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
