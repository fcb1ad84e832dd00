/*
 * test_stats.c - Check suite for the proxy's counters (src/core/stats).
 *
 * Most cases drive the last-minute ring with a fake clock (stats_set_clock)
 * so that expiry is exact. The config is shard s0 (a primary and two
 * replicas) and shard s1 (a primary only).
 */
#include <check.h>
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/stats.h"
#include "health/health.h"

static config_t *config;
static int64_t fake_now = 1000;

static int64_t fake_clock(void)
{
	return fake_now;
}

static void setup(void)
{
	static const char yaml[] = "health: { interval: 100ms }\n"
	                           "shards:\n"
	                           "  - name: s0\n"
	                           "    primary: 127.0.0.1:1\n"
	                           "    replicas: [127.0.0.1:2, 127.0.0.1:3]\n"
	                           "  - name: s1\n"
	                           "    primary: 127.0.0.1:4\n";
	char err[512];
	ck_assert_msg(config_load_string("t.yaml", yaml, strlen(yaml), &config, err, sizeof(err)),
	              "config: %s", err);
	ck_assert(stats_init(config));
	fake_now = 1000;
	stats_set_clock(fake_clock);
}

static void teardown(void)
{
	stats_set_clock(NULL);
	stats_free();
	config_free(config);
	config = NULL;
}

static stats_node_t node_stats(int shard, int node)
{
	stats_node_t s;
	ck_assert_msg(stats_node(shard, node, &s), "stats_node(%d, %d) must exist", shard, node);
	return s;
}

/* Within one ring bucket (a factor 10^0.1 = 1.259) of the exact value. */
static void expect_near_ms(double got, double exact, const char *what)
{
	ck_assert_msg(got >= exact / 1.26 && got <= exact * 1.26,
	              "%s: expected %.3f ms within a bucket width (26 %%), got %.3f ms", what,
	              exact, got);
}

START_TEST(test_stats_percentiles_of_known_durations)
{
	/* 1 ms, 2 ms, ..., 100 ms: p50 = 50 ms, p95 = 95 ms, p99 = 99 ms. */
	for (int i = 1; i <= 100; i++)
		stats_statement(0, 0, true, i * 1000, NULL);
	stats_node_t s = node_stats(0, 0);
	ck_assert_uint_eq(s.statements, 100);
	expect_near_ms(s.p50_ms, 50, "p50");
	expect_near_ms(s.p95_ms, 95, "p95");
	expect_near_ms(s.p99_ms, 99, "p99");
	ck_assert_msg(s.p50_ms < s.p95_ms && s.p95_ms <= s.p99_ms,
	              "percentiles must be ordered, got %.3f %.3f %.3f", s.p50_ms, s.p95_ms,
	              s.p99_ms);
}
END_TEST

START_TEST(test_stats_percentile_stays_inside_its_bucket)
{
	/* Every statement 1 ms: the bucket is [1 ms, 1.259 ms). */
	for (int i = 0; i < 1000; i++)
		stats_statement(0, 1, false, 1000, NULL);
	/* One slow outlier is beyond p99 (rank 991 of 1001). */
	stats_statement(0, 1, false, 3000000, NULL);
	stats_node_t s = node_stats(0, 1);
	ck_assert_msg(s.p50_ms >= 1.0 && s.p50_ms < 1.26, "p50 expected in [1, 1.26) ms, got %f",
	              s.p50_ms);
	ck_assert_msg(s.p99_ms >= 1.0 && s.p99_ms < 1.26, "p99 expected in [1, 1.26) ms, got %f",
	              s.p99_ms);

	/* Interpolated by rank: the 2nd of the bucket's 4 statements sits half
	 * way through [1000 us, 1259 us) (bounds 10 us * 10^(k/10), rounded). */
	for (int i = 0; i < 4; i++)
		stats_statement(1, 0, true, 1100, NULL);
	s = node_stats(1, 0);
	ck_assert_msg(fabs(s.p50_ms - 1.1295) < 1e-9, "p50 expected 1.1295 ms, got %.6f", s.p50_ms);
	ck_assert_msg(fabs(s.p99_ms - 1.259) < 1e-9, "p99 expected 1.259 ms, got %.6f", s.p99_ms);
	stats_free();
	ck_assert(stats_init(config));

	/* Beyond 100 s the top bucket is open: reported as 100 s. */
	stats_statement(1, 0, true, 500LL * 1000 * 1000, NULL);
	s = node_stats(1, 0);
	ck_assert_msg(fabs(s.p50_ms - 100000.0) < 1e-6, "expected 100000 ms, got %f", s.p50_ms);

	/* Below 10 us and negative durations land in the first bucket. */
	stats_statement(0, 2, false, -5, NULL);
	stats_statement(0, 2, false, 3, NULL);
	s = node_stats(0, 2);
	ck_assert_msg(s.p99_ms >= 0 && s.p99_ms <= 0.01, "expected below 0.01 ms, got %f",
	              s.p99_ms);
}
END_TEST

START_TEST(test_stats_empty_node_is_zero)
{
	stats_node_t s = node_stats(0, 2);
	ck_assert_uint_eq(s.statements, 0);
	ck_assert_uint_eq(s.total_statements, 0);
	ck_assert(s.p50_ms == 0 && s.p95_ms == 0 && s.p99_ms == 0);
}
END_TEST

START_TEST(test_stats_errors_and_waits_counted)
{
	stats_statement(0, 0, true, 100, NULL);
	stats_statement(0, 0, true, 100, "42P01");
	stats_statement(0, 0, true, 100, "23505");
	stats_statement(0, 0, true, 100, "x");
	stats_pool_wait(0, 0, 1500);
	stats_pool_wait(0, 0, 500);
	stats_waiting(0, 0, +1);
	stats_waiting(0, 0, +1);
	stats_waiting(0, 0, -1);
	stats_node_t s = node_stats(0, 0);
	ck_assert_uint_eq(s.statements, 4);
	ck_assert_uint_eq(s.errors, 3);
	ck_assert_uint_eq(s.total_statements, 4);
	ck_assert_uint_eq(s.total_errors, 3);
	ck_assert_uint_eq(s.total_waits, 2);
	ck_assert_uint_eq(s.total_wait_us, 2000);
	ck_assert_uint_eq(s.max_wait_us, 1500);
	ck_assert_int_eq(s.waiting, 1);
	/* Other nodes untouched. */
	ck_assert_uint_eq(node_stats(0, 1).total_statements, 0);
	ck_assert_uint_eq(node_stats(1, 0).total_statements, 0);
}
END_TEST

START_TEST(test_stats_last_minute_forgets_older_seconds)
{
	fake_now = 1000;
	stats_statement(0, 0, true, 2000, "57014");
	fake_now = 1030;
	stats_statement(0, 0, true, 2000, NULL);
	fake_now = 1059;
	stats_node_t s = node_stats(0, 0);
	ck_assert_msg(s.statements == 2 && s.errors == 1,
	              "at 59 s both count: expected 2 statements 1 error, got %lu %lu",
	              (unsigned long)s.statements, (unsigned long)s.errors);
	fake_now = 1060;
	s = node_stats(0, 0);
	ck_assert_msg(s.statements == 1 && s.errors == 0,
	              "at 60 s the first has left the minute: expected 1 and 0, got %lu %lu",
	              (unsigned long)s.statements, (unsigned long)s.errors);
	/* Second 1060 reuses second 1000's slot: only the new one counts. */
	stats_statement(0, 0, true, 50000, NULL);
	s = node_stats(0, 0);
	ck_assert_uint_eq(s.statements, 2);
	fake_now = 1200;
	s = node_stats(0, 0);
	ck_assert_uint_eq(s.statements, 0);
	ck_assert(s.p50_ms == 0);
	ck_assert_uint_eq(s.total_statements, 3);
	ck_assert_uint_eq(s.total_errors, 1);
}
END_TEST

START_TEST(test_stats_out_of_range_ignored)
{
	const int bad[][2] = {{-1, 0}, {2, 0}, {1000000, 0}, {0, -1}, {0, 3}, {1, 1}, {-7, -7}};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int shard = bad[i][0], node = bad[i][1];
		stats_statement(shard, node, true, 100, "42000");
		stats_pool_wait(shard, node, 100);
		stats_waiting(shard, node, 1);
		stats_node_t s = {.total_statements = 77};
		ck_assert_msg(!stats_node(shard, node, &s), "(%d, %d) must be out of range", shard,
		              node);
		ck_assert_msg(s.total_statements == 77, "out is left untouched on failure");
	}
	int nodes[][2] = {{0, 0}, {0, 1}, {0, 2}, {1, 0}};
	for (int i = 0; i < 4; i++) {
		stats_node_t s = node_stats(nodes[i][0], nodes[i][1]);
		ck_assert_msg(s.total_statements == 0 && s.total_waits == 0 && s.waiting == 0,
		              "a valid node got an out-of-range record");
	}
	/* Before init and after free nothing is counted and nothing crashes. */
	stats_free();
	stats_statement(0, 0, true, 100, NULL);
	stats_pool_wait(0, 0, 1);
	stats_waiting(0, 0, 1);
	stats_node_t s;
	ck_assert(!stats_node(0, 0, &s));
	ck_assert(stats_init(config));
	ck_assert_uint_eq(node_stats(0, 0).total_statements, 0);
}
END_TEST

#define THREADS    4
#define PER_THREAD 100000

static void *record_many(void *arg)
{
	int id = (int)(intptr_t)arg;
	for (int i = 0; i < PER_THREAD; i++) {
		stats_statement(0, 1, false, (i % 1000) * 10 + id, i % 10 == 0 ? "40001" : NULL);
		stats_pool_wait(0, 1, i == PER_THREAD / 2 ? 900000 + id : 1);
		stats_route_cache(i % 2 == 0);
		stats_clients(+1);
		stats_clients(-1);
	}
	return NULL;
}

START_TEST(test_stats_concurrent_recording_is_exact)
{
	/* The real clock, so that seconds may turn during the run. */
	stats_set_clock(NULL);
	pthread_t threads[THREADS];
	for (int i = 0; i < THREADS; i++)
		ck_assert_int_eq(
		    pthread_create(&threads[i], NULL, record_many, (void *)(intptr_t)i), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(threads[i], NULL);
	stats_node_t s = node_stats(0, 1);
	const uint64_t total = (uint64_t)THREADS * PER_THREAD;
	ck_assert_uint_eq(s.total_statements, total);
	ck_assert_uint_eq(s.statements, total);
	ck_assert_uint_eq(s.total_errors, total / 10);
	ck_assert_uint_eq(s.errors, total / 10);
	ck_assert_uint_eq(s.total_waits, total);
	ck_assert_uint_eq(s.total_wait_us,
	                  (uint64_t)THREADS * (PER_THREAD - 1) + 4 * 900000 + (0 + 1 + 2 + 3));
	ck_assert_uint_eq(s.max_wait_us, 900000 + THREADS - 1);

	char *text = stats_prometheus(config);
	ck_assert_ptr_nonnull(text);
	char line[256];
	snprintf(line, sizeof(line), "\nshardgate_route_cache_hits_total %lu\n",
	         (unsigned long)(total / 2));
	ck_assert_msg(strstr(text, line), "expected %s", line);
	ck_assert_msg(strstr(text, "\nshardgate_clients 0\n"), "clients gauge back to 0");
	snprintf(line, sizeof(line),
	         "\nshardgate_errors_total{shard=\"s0\",node=\"replica1\",class=\"40\"} %lu\n",
	         (unsigned long)(total / 10));
	ck_assert_msg(strstr(text, line), "expected %s", line);
	free(text);
}
END_TEST

/* ---- a strict reader of the text exposition format 0.0.4 ---- */

typedef struct {
	char name[128];
	char labels[16][2][128]; /* name, unescaped value */
	int n_labels;
	double value;
} sample_t;

static const char *label_value(const sample_t *s, const char *name)
{
	for (int i = 0; i < s->n_labels; i++)
		if (strcmp(s->labels[i][0], name) == 0)
			return s->labels[i][1];
	return NULL;
}

static bool name_char(char c, bool first)
{
	return isalpha((unsigned char)c) || c == '_' || c == ':' ||
	       (!first && isdigit((unsigned char)c));
}

/* Parses one sample line `name{l="v",...} value`; false with why set. */
static bool parse_sample(const char *line, sample_t *out, const char **why)
{
	const char *p = line;
	size_t n = 0;
	memset(out, 0, sizeof(*out));
	if (!name_char(*p, true))
		return *why = "bad metric name start", false;
	while (name_char(*p, n == 0) && n + 1 < sizeof(out->name))
		out->name[n++] = *p++;
	if (*p == '{') {
		p++;
		while (*p != '}') {
			if (out->n_labels == 16)
				return *why = "too many labels", false;
			char *lname = out->labels[out->n_labels][0];
			char *lvalue = out->labels[out->n_labels][1];
			n = 0;
			if (!name_char(*p, true) || *p == ':')
				return *why = "bad label name", false;
			while (name_char(*p, n == 0) && *p != ':' && n + 1 < 128)
				lname[n++] = *p++;
			if (p[0] != '=' || p[1] != '"')
				return *why = "expected =\" after label name", false;
			p += 2;
			n = 0;
			while (*p != '"') {
				if (!*p || *p == '\n' || n + 1 >= 128)
					return *why = "unterminated label value", false;
				if (*p == '\\') {
					p++;
					if (*p == 'n')
						lvalue[n++] = '\n';
					else if (*p == '\\' || *p == '"')
						lvalue[n++] = *p;
					else
						return *why = "bad escape in label value", false;
					p++;
				} else {
					lvalue[n++] = *p++;
				}
			}
			p++;
			out->n_labels++;
			if (*p == ',')
				p++;
			else if (*p != '}')
				return *why = "expected , or } after label", false;
		}
		p++;
	}
	if (p[0] != ' ' || isspace((unsigned char)p[1]))
		return *why = "expected one space before the value", false;
	p++;
	if (strcmp(p, "+Inf") == 0) {
		out->value = INFINITY;
		return true;
	}
	char *end;
	out->value = strtod(p, &end);
	if (end == p || *end != '\0' || isnan(out->value))
		return *why = "bad value", false;
	return true;
}

/* Every line of text must be a HELP, a TYPE or a sample of the family the
 * last TYPE declared (the histogram's with _bucket/_sum/_count), and no
 * family may be declared twice. Returns the samples. */
static sample_t *parse_exposition(const char *text, int *n_samples)
{
	int cap = 256, n = 0;
	sample_t *samples = malloc(sizeof(sample_t) * (size_t)cap);
	char family[128] = "", type[32] = "";
	char declared[64][128];
	int n_declared = 0;
	ck_assert_msg(text[0] && text[strlen(text) - 1] == '\n', "must end with a newline");
	const char *p = text;
	int lineno = 0;
	while (*p) {
		const char *eol = strchr(p, '\n');
		char line[1024];
		size_t len = (size_t)(eol - p);
		ck_assert_msg(len < sizeof(line), "line %d too long", lineno);
		memcpy(line, p, len);
		line[len] = '\0';
		p = eol + 1;
		lineno++;
		if (strncmp(line, "# HELP ", 7) == 0) {
			char name[128];
			ck_assert_msg(sscanf(line + 7, "%127s", name) == 1 &&
			                  strlen(line) > 8 + strlen(name),
			              "line %d: HELP without text: %s", lineno, line);
			continue;
		}
		if (strncmp(line, "# TYPE ", 7) == 0) {
			ck_assert_msg(sscanf(line + 7, "%127s %31s", family, type) == 2,
			              "line %d: bad TYPE: %s", lineno, line);
			ck_assert_msg(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
			                  strcmp(type, "histogram") == 0,
			              "line %d: unexpected type %s", lineno, type);
			for (int i = 0; i < n_declared; i++)
				ck_assert_msg(strcmp(declared[i], family) != 0,
				              "family %s declared twice", family);
			ck_assert(n_declared < 64);
			snprintf(declared[n_declared++], 128, "%s", family);
			continue;
		}
		ck_assert_msg(line[0] != '#' && line[0] != '\0', "line %d: stray line: '%s'",
		              lineno, line);
		if (n == cap) {
			cap *= 2;
			samples = realloc(samples, sizeof(sample_t) * (size_t)cap);
		}
		const char *why = NULL;
		ck_assert_msg(parse_sample(line, &samples[n], &why), "line %d: %s: %s", lineno, why,
		              line);
		/* The sample belongs to the family declared just before. */
		char expect[160];
		bool ok = strcmp(samples[n].name, family) == 0;
		const char *suffixes[] = {"_bucket", "_sum", "_count"};
		for (int i = 0; i < 3 && !ok && strcmp(type, "histogram") == 0; i++) {
			snprintf(expect, sizeof(expect), "%s%s", family, suffixes[i]);
			ok = strcmp(samples[n].name, expect) == 0;
		}
		ck_assert_msg(ok, "line %d: sample %s outside its family (last TYPE %s)", lineno,
		              samples[n].name, family);
		n++;
	}
	*n_samples = n;
	return samples;
}

static const sample_t *find_sample(const sample_t *samples, int n, const char *name, const char *l1,
                                   const char *v1, const char *l2, const char *v2)
{
	for (int i = 0; i < n; i++) {
		if (strcmp(samples[i].name, name) != 0)
			continue;
		const char *a = l1 ? label_value(&samples[i], l1) : NULL;
		const char *b = l2 ? label_value(&samples[i], l2) : NULL;
		if ((!l1 || (a && strcmp(a, v1) == 0)) && (!l2 || (b && strcmp(b, v2) == 0)))
			return &samples[i];
	}
	return NULL;
}

static double sample_value(const sample_t *samples, int n, const char *name, const char *l1,
                           const char *v1, const char *l2, const char *v2)
{
	const sample_t *s = find_sample(samples, n, name, l1, v1, l2, v2);
	ck_assert_msg(s, "no sample %s{%s=%s,%s=%s}", name, l1 ? l1 : "", v1 ? v1 : "",
	              l2 ? l2 : "", v2 ? v2 : "");
	return s->value;
}

/* Checks every histogram series: le increasing, counts cumulative, the last
 * bucket +Inf and equal to _count. Returns how many series it checked. */
static int check_histograms(const sample_t *samples, int n, const char *name)
{
	char bucket[160], count[160];
	snprintf(bucket, sizeof(bucket), "%s_bucket", name);
	snprintf(count, sizeof(count), "%s_count", name);
	int series = 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(samples[i].name, count) != 0)
			continue;
		const char *shard = label_value(&samples[i], "shard");
		const char *role = label_value(&samples[i], "role");
		double last_le = -1, last_count = 0;
		int buckets = 0;
		for (int j = 0; j < n; j++) {
			if (strcmp(samples[j].name, bucket) != 0 ||
			    strcmp(label_value(&samples[j], "shard"), shard) != 0 ||
			    strcmp(label_value(&samples[j], "role"), role) != 0)
				continue;
			const char *le = label_value(&samples[j], "le");
			double bound = strcmp(le, "+Inf") == 0 ? INFINITY : strtod(le, NULL);
			ck_assert_msg(bound > last_le, "%s %s: le %s not increasing", shard, role,
			              le);
			ck_assert_msg(samples[j].value >= last_count,
			              "%s %s: bucket le=%s not cumulative", shard, role, le);
			last_le = bound;
			last_count = samples[j].value;
			buckets++;
		}
		ck_assert_msg(buckets >= 10 && isinf(last_le),
		              "%s %s: expected >= 10 buckets ending at +Inf", shard, role);
		ck_assert_msg(last_count == samples[i].value,
		              "%s %s: _count %g differs from the +Inf bucket %g", shard, role,
		              samples[i].value, last_count);
		series++;
	}
	return series;
}

START_TEST(test_stats_prometheus_text)
{
	stats_statement(0, 0, true, 300, NULL);      /* le 0.0005 */
	stats_statement(0, 0, true, 2000, "42P01");  /* le 0.0025 */
	stats_statement(0, 0, true, 40000000, NULL); /* above 30 s: +Inf only */
	stats_statement(0, 1, false, 800, "42601");
	stats_statement(0, 1, false, 800, "57014");
	stats_statement(0, 2, true, 1000, NULL); /* a promoted replica */
	stats_statement(1, 0, true, 100, "0A000");
	stats_pool_wait(0, 1, 250000);
	stats_waiting(0, 1, 2);
	stats_route_cache(true);
	stats_route_cache(true);
	stats_route_cache(false);
	stats_clients(5);
	stats_rebalance_waiting(1);
	stats_rebalance_version(42);

	char *text = stats_prometheus(config);
	ck_assert_ptr_nonnull(text);
	int n = 0;
	sample_t *s = parse_exposition(text, &n);

	static const char *const expected[] = {
	    "# TYPE shardgate_statements_total counter\n",
	    "\nshardgate_statements_total{shard=\"s0\",node=\"primary\",role=\"primary\"} 3\n",
	    "\nshardgate_statements_total{shard=\"s0\",node=\"replica1\",role=\"replica\"} 2\n",
	    "\nshardgate_statements_total{shard=\"s0\",node=\"replica2\",role=\"replica\"} 0\n",
	    "\nshardgate_statements_total{shard=\"s0\",node=\"replica2\",role=\"primary\"} 1\n",
	    "\nshardgate_statements_total{shard=\"s1\",node=\"primary\",role=\"primary\"} 1\n",
	    "\nshardgate_errors_total{shard=\"s0\",node=\"primary\",class=\"42\"} 1\n",
	    "\nshardgate_errors_total{shard=\"s0\",node=\"replica1\",class=\"42\"} 1\n",
	    "\nshardgate_errors_total{shard=\"s0\",node=\"replica1\",class=\"57\"} 1\n",
	    "\nshardgate_errors_total{shard=\"s1\",node=\"primary\",class=\"0A\"} 1\n",
	    "# TYPE shardgate_statement_duration_seconds histogram\n",
	    "\nshardgate_statement_duration_seconds_bucket{shard=\"s0\",role=\"primary\","
	    "le=\"0.0005\"} 1\n",
	    "\nshardgate_statement_duration_seconds_bucket{shard=\"s0\",role=\"primary\","
	    "le=\"30\"} 3\n",
	    "\nshardgate_statement_duration_seconds_bucket{shard=\"s0\",role=\"primary\","
	    "le=\"+Inf\"} 4\n",
	    "\nshardgate_statement_duration_seconds_count{shard=\"s0\",role=\"primary\"} 4\n",
	    "\nshardgate_statement_duration_seconds_sum{shard=\"s0\",role=\"primary\"} 40.003300\n",
	    "\nshardgate_statement_duration_seconds_count{shard=\"s0\",role=\"replica\"} 2\n",
	    "\nshardgate_pool_wait_seconds_total{shard=\"s0\",node=\"replica1\"} 0.250000\n",
	    "\nshardgate_pool_waiting{shard=\"s0\",node=\"replica1\"} 2\n",
	    "\nshardgate_pool_connections{shard=\"s0\",node=\"primary\"} 0\n",
	    "\nshardgate_pool_connections_max{shard=\"s1\",node=\"primary\"} 0\n",
	    "\nshardgate_node_info{shard=\"s0\",node=\"replica2\",address=\"127.0.0.1:3\"} 1\n",
	    "\nshardgate_route_cache_hits_total 2\n",
	    "\nshardgate_route_cache_misses_total 1\n",
	    "\nshardgate_clients 5\n",
	    "\nshardgate_rebalance_waiting 1\n",
	    "\nshardgate_rebalance_map_version 42\n",
	    "# TYPE shardgate_replica_lag_bytes gauge\n",
	    "# TYPE shardgate_breaker_state gauge\n",
	};
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
		if (!strstr(text, expected[i]))
			fprintf(stderr, "%s", text);
		ck_assert_msg(strstr(text, expected[i]), "expected line %zu: %s (text above)", i,
		              expected[i]);
	}
	/* No monitor runs: no health samples rather than made-up ones. */
	ck_assert_msg(!strstr(text, "\nshardgate_node_up{"), "node_up without a monitor");
	/* s1 has no replicas: no replica histogram for it. */
	ck_assert_msg(!find_sample(s, n, "shardgate_statement_duration_seconds_count", "shard",
	                           "s1", "role", "replica"),
	              "a replica histogram for a shard without replicas");
	ck_assert_int_eq(check_histograms(s, n, "shardgate_statement_duration_seconds"), 3);
	ck_assert(sample_value(s, n, "shardgate_statement_duration_seconds_bucket", "shard", "s0",
	                       "le", "0.001") == 2);
	free(s);
	free(text);
}
END_TEST

START_TEST(test_stats_prometheus_escapes_label_values)
{
	/* Names the config loader would refuse, to prove the escaping. */
	cfg_shard_t shard;
	memset(&shard, 0, sizeof(shard));
	snprintf(shard.name, sizeof(shard.name), "a\"b\\c\nd");
	snprintf(shard.primary.address.host, sizeof(shard.primary.address.host), "h\"x");
	shard.primary.address.port = 5432;
	config_t fake;
	memset(&fake, 0, sizeof(fake));
	fake.shards = &shard;
	fake.n_shards = 1;
	stats_free();
	ck_assert(stats_init(&fake));
	stats_statement(0, 0, true, 100, NULL);
	char *text = stats_prometheus(&fake);
	ck_assert_ptr_nonnull(text);
	ck_assert_msg(strstr(text, "shardgate_statements_total{shard=\"a\\\"b\\\\c\\nd\",node="
	                           "\"primary\",role=\"primary\"} 1\n"),
	              "escaped shard label expected");
	ck_assert_msg(strstr(text, "address=\"h\\\"x:5432\"} 1\n"), "escaped address expected");
	int n = 0;
	sample_t *s = parse_exposition(text, &n);
	ck_assert(sample_value(s, n, "shardgate_statements_total", "shard", "a\"b\\c\nd", "node",
	                       "primary") == 1);
	free(s);
	free(text);
}
END_TEST

START_TEST(test_stats_prometheus_with_monitor)
{
	char err[256];
	ck_assert_msg(health_start(config, err, sizeof(err)), "health_start: %s", err);
	char *text = stats_prometheus(config);
	health_stop();
	ck_assert_ptr_nonnull(text);
	int n = 0;
	sample_t *s = parse_exposition(text, &n);
	const char *nodes[][2] = {
	    {"s0", "primary"}, {"s0", "replica1"}, {"s0", "replica2"}, {"s1", "primary"}};
	for (int i = 0; i < 4; i++) {
		/* Nothing listens on ports 1-4: never up. */
		ck_assert(sample_value(s, n, "shardgate_node_up", "shard", nodes[i][0], "node",
		                       nodes[i][1]) == 0);
		double breaker = sample_value(s, n, "shardgate_breaker_state", "shard", nodes[i][0],
		                              "node", nodes[i][1]);
		ck_assert_msg(breaker == 0 || breaker == 1 || breaker == 2, "breaker %g", breaker);
	}
	/* No primary answers: lag is unknown, so not exported. */
	ck_assert(!find_sample(s, n, "shardgate_replica_lag_bytes", NULL, NULL, NULL, NULL));
	free(s);
	free(text);
}
END_TEST

static Suite *stats_suite(void)
{
	Suite *s = suite_create("stats");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_stats_percentiles_of_known_durations);
	tcase_add_test(tc, test_stats_percentile_stays_inside_its_bucket);
	tcase_add_test(tc, test_stats_empty_node_is_zero);
	tcase_add_test(tc, test_stats_errors_and_waits_counted);
	tcase_add_test(tc, test_stats_last_minute_forgets_older_seconds);
	tcase_add_test(tc, test_stats_out_of_range_ignored);
	tcase_add_test(tc, test_stats_concurrent_recording_is_exact);
	tcase_add_test(tc, test_stats_prometheus_text);
	tcase_add_test(tc, test_stats_prometheus_escapes_label_values);
	tcase_add_test(tc, test_stats_prometheus_with_monitor);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *runner = srunner_create(stats_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
