/*
 * fuzz_analyze.c - libFuzzer harness for the statement analyzer and the
 * router's classification (src/analyze/analyze.h, src/route/route.h).
 *
 * The input is a statement text, copied NUL-terminated as the proxy copies
 * a Query body: analyze_statement(), analyze_is_read() with the default
 * function classifier, then route_classify() under a configuration loaded
 * once from FUZZ_CONFIG (function lists included) with no tracked
 * parameters, and analyze_release(). The analysis is checked for the
 * invariants analyze.h promises (counts within bounds, strings terminated).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "analyze/analyze.h"
#include "config/config.h"
#include "route/route.h"

/* ANALYZE_MAX_CACHED_LEN: the longest text a worker would cache. */
#define FUZZ_INPUT_MAX (1024 * 1024)

static const char FUZZ_CONFIG[] = "listen: 127.0.0.1:6432\n"
                                  "shards:\n"
                                  "  - name: s0\n"
                                  "    primary: 127.0.0.1:55432\n"
                                  "    replicas: [127.0.0.1:55433]\n"
                                  "  - name: s1\n"
                                  "    primary: 127.0.0.1:55435\n"
                                  "default_shard: s0\n"
                                  "routing:\n"
                                  "  read_only_functions: [app.price_of, lookup]\n"
                                  "  write_functions: [nextval, app.bump, audit_log]\n"
                                  "tables:\n"
                                  "  users: { key: id, strategy: hash, buckets: 8 }\n"
                                  "  countries: { strategy: reference }\n";

/* Loaded once, read-only afterwards; freed by nobody (process lifetime). */
static config_t *fuzz_config;

static bool fuzz_tracked_none(const char *name)
{
	(void)name;
	return false;
}

static void fuzz_check_str(const char *s)
{
	if (s)
		fuzz_check(strlen(s) < FUZZ_INPUT_MAX + 64);
}

static void fuzz_check_analysis(const analysis_t *a, size_t len)
{
	fuzz_check(a->n_statements >= 0 && a->n_statement_records >= 0);
	fuzz_check(a->n_statement_records <= a->n_statements &&
	           a->n_statement_records <= ANALYZE_MAX_STATEMENTS);
	fuzz_check(a->n_tables >= 0 && a->n_tables <= ANALYZE_MAX_TABLES);
	fuzz_check(a->n_functions >= 0 && a->n_functions <= ANALYZE_MAX_FUNCTIONS);
	(void)analyze_kind_name(a->kind);
	if (a->parse_error) {
		fuzz_check(a->kind == ANALYZE_KIND_WRITE && a->n_statements == 0);
		fuzz_check_str(a->error_message);
	}
	for (int i = 0; i < a->n_statement_records; i++) {
		const analyze_statement_t *st = &a->statements[i];
		fuzz_check(st->location >= 0 && (size_t)st->location <= len);
		fuzz_check(st->len >= 0 && (size_t)st->location + (size_t)st->len <= len);
		(void)analyze_kind_name(st->kind);
		(void)analyze_txn_op_name(st->txn.op);
		(void)analyze_session_op_name(st->session.op);
		(void)analyze_access_name(st->txn.access);
		(void)analyze_isolation_name(st->txn.isolation);
		fuzz_check_str(st->txn.name);
		fuzz_check_str(st->session.name);
	}
	for (int i = 0; i < a->n_tables; i++) {
		fuzz_check(a->tables[i].name != NULL);
		fuzz_check_str(a->tables[i].schema);
		fuzz_check_str(a->tables[i].name);
	}
	for (int i = 0; i < a->n_functions; i++) {
		fuzz_check(a->functions[i].name != NULL);
		fuzz_check_str(a->functions[i].schema);
		fuzz_check_str(a->functions[i].name);
	}
	fuzz_check_str(a->hint.shard);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_INPUT_MAX)
		return -1;
	if (!fuzz_config) {
		char err[512];
		if (!config_load_string("fuzz_analyze", FUZZ_CONFIG, sizeof(FUZZ_CONFIG) - 1,
		                        &fuzz_config, err, sizeof(err))) {
			fprintf(stderr, "fuzz_analyze: built-in config rejected: %s\n", err);
			abort();
		}
	}
	char *sql = malloc(size + 1);
	if (!sql)
		return 0;
	memcpy(sql, data, size);
	sql[size] = '\0';

	analysis_t *a = NULL;
	if (analyze_statement(sql, size, &a)) {
		fuzz_check(a != NULL);
		fuzz_check_analysis(a, size);
		bool read = analyze_is_read(a, NULL, NULL);
		if (read)
			fuzz_check(a->kind == ANALYZE_KIND_READ && !a->functions_truncated);
		route_class_t cls;
		route_classify(fuzz_config, a, fuzz_tracked_none, &cls);
		fuzz_check_str(cls.reason);
		fuzz_check_str(cls.pin_reason);
		fuzz_check(cls.hint_shard >= -1 && cls.hint_shard < fuzz_config->n_shards);
		analyze_release(a);
	}
	free(sql);
	return 0;
}
