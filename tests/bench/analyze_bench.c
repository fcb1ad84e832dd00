/*
 * analyze_bench.c - cost of statement analysis, uncached (parse) and cached.
 *
 * Build and run by hand:
 *   cc -std=c11 -Wall -Wextra -Werror -Wno-format-truncation -D_GNU_SOURCE -O2 -Isrc \
 *      tests/bench/analyze_bench.c src/analyze/analyze*.c -o /tmp/analyze_bench \
 *      $(pkg-config --cflags --libs libprotobuf-c) -lpg_query && /tmp/analyze_bench
 *
 * Prints nanoseconds per call, the best of ROUNDS rounds (the machine is
 * shared; the minimum is the least disturbed). "parse only" is
 * pg_query_parse_protobuf + unpack + free, the floor under "uncached". DESIGN.md's budget: the
 * cached path must stay well under 1 us; the uncached one is paid once per distinct text.
 */
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyze/analyze.h"

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

#define ROUNDS 5

static volatile int sink;

static double bench_parse_only(const char *sql, int iterations)
{
	double start = now_ns();
	for (int i = 0; i < iterations; i++) {
		PgQueryProtobufParseResult r = pg_query_parse_protobuf(sql);
		PgQuery__ParseResult *tree = pg_query__parse_result__unpack(
		    NULL, r.parse_tree.len, (const uint8_t *)r.parse_tree.data);
		sink += (int)tree->n_stmts;
		pg_query__parse_result__free_unpacked(tree, NULL);
		pg_query_free_protobuf_parse_result(r);
	}
	return (now_ns() - start) / iterations;
}

static double min_of(double a, double b)
{
	return a < b ? a : b;
}

static double bench_uncached(const char *sql, int iterations)
{
	size_t len = strlen(sql);
	double start = now_ns();
	for (int i = 0; i < iterations; i++) {
		analysis_t *a = NULL;
		if (!analyze_statement(sql, len, &a)) {
			fprintf(stderr, "out of memory\n");
			exit(1);
		}
		sink += a->kind;
		analyze_release(a);
	}
	return (now_ns() - start) / iterations;
}

static double bench_cached(analyzer_t *an, const char *sql, int iterations)
{
	size_t len = strlen(sql);
	analyzer_get(an, sql, len); /* warm */
	double start = now_ns();
	for (int i = 0; i < iterations; i++) {
		const analysis_t *a = analyzer_get(an, sql, len);
		sink += a->kind;
	}
	return (now_ns() - start) / iterations;
}

/* Cycles through n distinct texts that all fit in the cache: hits whose
 * entries are not all in the L1 cache. */
static double bench_cached_many(analyzer_t *an, int n, int iterations)
{
	char(*texts)[96] = malloc((size_t)n * sizeof(*texts));
	size_t *lens = malloc((size_t)n * sizeof(*lens));
	if (!texts || !lens)
		exit(1);
	for (int i = 0; i < n; i++) {
		lens[i] =
		    (size_t)snprintf(texts[i], sizeof(texts[i]),
		                     "SELECT abalance FROM pgbench_accounts_%d WHERE aid = $1", i);
		analyzer_get(an, texts[i], lens[i]);
	}
	double start = now_ns();
	for (int i = 0; i < iterations; i++) {
		int k = (int)(((unsigned)i * 2654435761u) % (unsigned)n);
		const analysis_t *a = analyzer_get(an, texts[k], lens[k]);
		sink += a->kind;
	}
	double per_call = (now_ns() - start) / iterations;
	free(texts);
	free(lens);
	return per_call;
}

int main(void)
{
	static const struct {
		const char *label;
		const char *sql;
	} statements[] = {
	    {"pgbench -S", "SELECT abalance FROM pgbench_accounts WHERE aid = $1"},
	    {"3-way join + CTE",
	     "WITH recent AS (SELECT o.id, o.customer_id, o.total FROM orders o "
	     "WHERE o.created_at > now() - interval '1 day') "
	     "SELECT c.name, r.total, p.title FROM recent r "
	     "JOIN customers c ON c.id = r.customer_id "
	     "JOIN order_items i ON i.order_id = r.id "
	     "JOIN products p ON p.id = i.product_id "
	     "WHERE c.region = $1 ORDER BY r.total DESC LIMIT 20"},
	};
	analyzer_t *an = analyzer_new(4096);
	if (!an)
		return 1;
	printf("%-18s %14s %14s %14s\n", "statement", "parse only ns", "uncached ns", "cached ns");
	for (size_t i = 0; i < sizeof(statements) / sizeof(statements[0]); i++) {
		double parse = 1e18, uncached = 1e18, cached = 1e18;
		for (int r = 0; r < ROUNDS; r++) {
			parse = min_of(parse, bench_parse_only(statements[i].sql, 2000));
			uncached = min_of(uncached, bench_uncached(statements[i].sql, 2000));
			cached = min_of(cached, bench_cached(an, statements[i].sql, 1000000));
		}
		printf("%-18s %14.0f %14.0f %14.1f\n", statements[i].label, parse, uncached,
		       cached);
	}
	double many = 1e18;
	for (int r = 0; r < ROUNDS; r++)
		many = min_of(many, bench_cached_many(an, 4000, 1000000));
	printf("%-18s %14s %14s %14.1f\n", "4000 texts cycled", "-", "-", many);
	analyzer_stats_t stats;
	analyzer_stats(an, &stats);
	printf("cache: %zu entries, %zu bytes (%.0f per entry), %llu hits, %llu misses\n",
	       stats.entries, stats.bytes,
	       stats.entries ? (double)stats.bytes / stats.entries : 0.0,
	       (unsigned long long)stats.hits, (unsigned long long)stats.misses);
	analyzer_free(an);
	return 0;
}
