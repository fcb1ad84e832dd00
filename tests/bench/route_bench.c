/*
 * route_bench.c - the per-statement cost of deciding where a statement
 * runs: a cached analysis lookup, its classification and the choice of a
 * node, as a worker does for every unit of work; and the same uncached.
 *
 *   cc -std=c11 -O2 -D_GNU_SOURCE -Isrc tests/bench/route_bench.c \
 *      src/analyze/*.c src/route/route.c src/config/config.c src/health/*.c src/core/log.c \
 *      $(pkg-config --cflags --libs yaml-0.1 libpq libprotobuf-c) -lpg_query -lpthread -o route_bench
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "analyze/analyze.h"
#include "config/config.h"
#include "route/route.h"

static const char *yaml = "shards:\n"
			  "  - name: s0\n"
			  "    primary: 127.0.0.1:5432\n"
			  "    replicas: [127.0.0.1:5433, 127.0.0.1:5434]\n";

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static bool tracked(const char *name)
{
	return strcasecmp(name, "timezone") == 0;
}

int main(void)
{
	config_t *config;
	char err[512];
	if (!config_load_string("bench.yaml", yaml, strlen(yaml), &config, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	const char *sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
	analyzer_t *an = analyzer_new(1000);
	route_balance_t balance = {0};
	route_target_t t;
	long replicas = 0;
	enum { N = 2000000, M = 2000 };
	double best = 1e18;
	for (int round = 0; round < 5; round++) {
		double start = now_ns();
		for (int i = 0; i < N; i++) {
			const analysis_t *a = analyzer_get(an, sql, strlen(sql));
			route_class_t cls;
			route_classify(config, a, tracked, &cls);
			route_choose(config, NULL, &cls, 0, 0, &balance, NULL, NULL, &t);
			replicas += t.replica;
		}
		double per = (now_ns() - start) / N;
		if (per < best)
			best = per;
	}
	printf("cached analysis + classification + node choice: %.0f ns per statement "
	       "(%ld of %ld to replicas)\n",
	       best, replicas, 5L * N);
	best = 1e18;
	for (int round = 0; round < 5; round++) {
		double start = now_ns();
		for (int i = 0; i < M; i++) {
			analysis_t *a;
			analyze_statement(sql, strlen(sql), &a);
			route_class_t cls;
			route_classify(config, a, tracked, &cls);
			route_choose(config, NULL, &cls, 0, 0, &balance, NULL, NULL, &t);
			analyze_release(a);
		}
		double per = (now_ns() - start) / M;
		if (per < best)
			best = per;
	}
	printf("uncached (parse every time): %.1f us per statement\n", best / 1000);
	analyzer_free(an);
	config_free(config);
	return 0;
}
