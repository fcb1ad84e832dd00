/*
 * test_units.c - Check suite for src/rebalance/units.c: the units of data
 * movement between two shard maps (plans), their text form (specs), the
 * maps they lead to (rb_config_apply), their SQL row filters and the map
 * digest.
 *
 * Maps are YAML strings loaded with config_load_string(); the shards'
 * addresses are never contacted. Directory lookups go through a stub
 * rb_directory_fn.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "rebalance/units.h"
#include "route/hash.h"

/* ---- maps ---- */

#define SHARDS                                                                                     \
	"shards:\n"                                                                                \
	"  - name: s0\n"                                                                           \
	"    primary: 127.0.0.1:54320\n"                                                           \
	"  - name: s1\n"                                                                           \
	"    primary: 127.0.0.1:54321\n"                                                           \
	"  - name: s2\n"                                                                           \
	"    primary: 127.0.0.1:54322\n"

/* users (hash, 12 buckets alternating s0/s1), orders co-located with it,
 * a reference table that never moves. */
#define HASH_TABLES(placement)                                                                     \
	SHARDS "tables:\n"                                                                         \
	       "  users: { key: id, strategy: hash, placement: [" placement "] }\n"                \
	       "  orders: { key: user_id, strategy: hash, colocate_with: users }\n"                \
	       "  countries: { strategy: reference }\n"

#define P12_OLD "s0, s1, s0, s1, s0, s1, s0, s1, s0, s1, s0, s1"
/* buckets 4, 10 (s0) and 5, 11 (s1) to s2 */
#define P12_NEW "s0, s1, s0, s1, s2, s2, s0, s1, s0, s1, s2, s2"

#define RANGE_TABLE(ranges)                                                                        \
	SHARDS "tables:\n"                                                                         \
	       "  events: { key: id, strategy: range, ranges: [" ranges "] }\n"

#define R_OLD "{ below: 1000, shard: s0 }, { shard: s1 }"
#define R_NEW "{ below: 1000, shard: s0 }, { below: 5000, shard: s1 }, { shard: s2 }"

#define DIR_TABLE(directory)                                                                       \
	SHARDS "tables:\n"                                                                         \
	       "  tenants: { key: tenant, type: text, strategy: directory,\n"                      \
	       "             directory: " directory " }\n"

#define D_OLD "{ shard: s0 }"
#define D_NEW "{ shard: s0, pinned: { acme: s2 } }"

static config_t *load(const char *yaml)
{
	config_t *c = NULL;
	char err[512] = "";
	bool ok = config_load_string("t.yaml", yaml, strlen(yaml), &c, err, sizeof(err));

	ck_assert_msg(ok, "the map did not load: %s", err);
	ck_assert_ptr_nonnull(c);
	return c;
}

static int table_index(const config_t *c, const char *name)
{
	int t = config_find_table(c, name);

	ck_assert_msg(t >= 0, "no table %s in the map", name);
	return t;
}

static int shard_index(const config_t *c, const char *name)
{
	int s = config_find_shard(c, name);

	ck_assert_msg(s >= 0, "no shard %s in the map", name);
	return s;
}

static void assert_buckets(const rb_unit_t *u, const int *expected, int n)
{
	ck_assert_int_eq(u->n_buckets, n);
	for (int i = 0; i < n; i++)
		ck_assert_msg(u->buckets[i] == expected[i], "bucket %d: expected %d, got %d", i,
		              expected[i], u->buckets[i]);
}

/* Placement of table t as shard names, comma-separated, for comparisons. */
static void placement_text(const config_t *c, int t, char *out, size_t outlen)
{
	size_t o = 0;

	out[0] = '\0';
	for (int r = 0; r < c->tables[t].buckets && o < outlen; r++) {
		int s = c->tables[t].placement[r];
		const char *name = s >= 0 && s < c->n_shards ? c->shards[s].name : "?";
		o += (size_t)snprintf(out + o, outlen - o, "%s%s", r ? ", " : "", name);
	}
}

static void assert_placement(const config_t *c, const char *table, const char *expected)
{
	char got[1024];
	int t = table_index(c, table);

	placement_text(c, t, got, sizeof(got));
	ck_assert_msg(strcmp(got, expected) == 0, "table %s placement: expected [%s], got [%s]",
	              table, expected, got);
}

/* Ranges as "below:shard" pairs ("-" for the open last one). */
static void assert_ranges(const config_t *c, const char *table, const char *expected)
{
	char got[1024];
	size_t o = 0;
	const cfg_table_t *tb = &c->tables[table_index(c, table)];

	got[0] = '\0';
	for (int i = 0; i < tb->n_ranges && o < sizeof(got); i++)
		o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%s:%s", i ? " " : "",
		                      tb->ranges[i].has_below ? tb->ranges[i].below : "-",
		                      c->shards[tb->ranges[i].shard].name);
	ck_assert_msg(strcmp(got, expected) == 0, "table %s ranges: expected [%s], got [%s]", table,
	              expected, got);
}

/* ---- directory stub ---- */

typedef struct {
	int answer; /* shard index, -1 (unknown key) or -2 (error) */
	int calls;
	int table;
	char key[256];
} dir_stub_t;

static int stub_directory(const config_t *cfg, int table, const char *key, void *arg, char *err,
                          size_t errlen)
{
	dir_stub_t *s = arg;

	(void)cfg;
	s->calls++;
	s->table = table;
	snprintf(s->key, sizeof(s->key), "%s", key);
	if (s->answer == -2)
		snprintf(err, errlen, "stub: directory unreachable");
	return s->answer;
}

/* ---- plans: helpers ---- */

static void build_plan_ok(const config_t *old, const config_t *new, int batch, rb_directory_fn fn,
                          void *arg, rb_plan_t *plan)
{
	char err[512] = "";
	bool ok = rb_plan_build(old, new, batch, fn, arg, plan, err, sizeof(err));

	ck_assert_msg(ok, "rb_plan_build refused: %s", err);
}

/* The maps load; the plan between them is refused with `fragment` in the
 * message. */
static void expect_plan_refused(const char *old_yaml, const char *new_yaml, const char *fragment)
{
	config_t *old = load(old_yaml), *new = load(new_yaml);
	rb_plan_t plan;
	char err[512] = "";
	bool ok = rb_plan_build(old, new, 0, NULL, NULL, &plan, err, sizeof(err));

	ck_assert_msg(!ok, "expected the plan to be refused (\"%s\"), got %d units", fragment,
	              plan.n_units);
	ck_assert_msg(strstr(err, fragment) != NULL, "expected \"%s\" in the message, got \"%s\"",
	              fragment, err);
	ck_assert_int_eq(plan.n_units, 0);
	ck_assert_ptr_null(plan.units);
	config_free(old);
	config_free(new);
}

/* Applies every unit of the plan to OLD in order; the result's digest must
 * be NEW's. */
static void assert_plan_reaches(const config_t *old, const config_t *new, const rb_plan_t *plan)
{
	config_t *cur = NULL;
	char err[512] = "";
	char got[17], want[17];

	for (int i = 0; i < plan->n_units; i++) {
		config_t *next = NULL;
		bool ok = rb_config_apply(cur ? cur : old, &plan->units[i], false, &next, err,
		                          sizeof(err));
		ck_assert_msg(ok, "unit %d does not apply: %s", i, err);
		rb_config_free(cur);
		cur = next;
	}
	rb_map_digest(cur ? cur : old, got);
	rb_map_digest(new, want);
	ck_assert_msg(strcmp(got, want) == 0, "OLD + plan has digest %s, NEW has %s", got, want);
	rb_config_free(cur);
}

/* ---- plans: hash ---- */

START_TEST(test_plan_hash_two_units)
{
	config_t *old = load(HASH_TABLES(P12_OLD)), *new = load(HASH_TABLES(P12_NEW));
	int users = table_index(old, "users"), orders = table_index(old, "orders");
	int countries = table_index(old, "countries");
	int s0 = shard_index(old, "s0"), s1 = shard_index(old, "s1"), s2 = shard_index(old, "s2");
	rb_plan_t plan;

	build_plan_ok(old, new, 0, NULL, NULL, &plan);
	ck_assert_int_eq(plan.n_units, 2);

	const rb_unit_t *a = &plan.units[0], *b = &plan.units[1];
	/* one unit per (source, target); which comes first is not the point */
	if (a->source != s0) {
		const rb_unit_t *x = a;
		a = b;
		b = x;
	}
	ck_assert_int_eq(a->kind, RB_HASH);
	ck_assert_int_eq(a->table, users);
	ck_assert_int_eq(a->source, s0);
	ck_assert_int_eq(a->target, s2);
	ck_assert_int_eq(a->modulus, 12);
	assert_buckets(a, (const int[]){4, 10}, 2);

	ck_assert_int_eq(b->kind, RB_HASH);
	ck_assert_int_eq(b->table, users);
	ck_assert_int_eq(b->source, s1);
	ck_assert_int_eq(b->target, s2);
	ck_assert_int_eq(b->modulus, 12);
	assert_buckets(b, (const int[]){5, 11}, 2);

	/* the co-located table has no unit of its own: it moves with users */
	for (int i = 0; i < plan.n_units; i++) {
		ck_assert_int_ne(plan.units[i].table, orders);
		ck_assert(rb_unit_has_table(old, &plan.units[i], users));
		ck_assert(rb_unit_has_table(old, &plan.units[i], orders));
		ck_assert(!rb_unit_has_table(old, &plan.units[i], countries));
	}
	/* NEW moves the fewest buckets possible (4 of 12 to the third shard) */
	ck_assert_ptr_null(plan.advice);

	assert_plan_reaches(old, new, &plan);
	rb_plan_free(&plan);
	ck_assert_int_eq(plan.n_units, 0);
	config_free(old);
	config_free(new);
}
END_TEST

START_TEST(test_plan_hash_batch_one)
{
	config_t *old = load(HASH_TABLES(P12_OLD)), *new = load(HASH_TABLES(P12_NEW));
	int s0 = shard_index(old, "s0"), s1 = shard_index(old, "s1"), s2 = shard_index(old, "s2");
	bool seen[12] = {false};
	rb_plan_t plan;

	build_plan_ok(old, new, 1, NULL, NULL, &plan);
	ck_assert_int_eq(plan.n_units, 4);
	for (int i = 0; i < plan.n_units; i++) {
		const rb_unit_t *u = &plan.units[i];
		ck_assert_int_eq(u->kind, RB_HASH);
		ck_assert_int_eq(u->n_buckets, 1);
		ck_assert_int_eq(u->modulus, 12);
		ck_assert_int_eq(u->target, s2);
		int r = u->buckets[0];
		ck_assert_msg(r == 4 || r == 5 || r == 10 || r == 11, "bucket %d should not move",
		              r);
		ck_assert_msg(!seen[r], "bucket %d in two units", r);
		seen[r] = true;
		ck_assert_int_eq(u->source, r % 2 == 0 ? s0 : s1);
	}
	assert_plan_reaches(old, new, &plan);
	rb_plan_free(&plan);

	/* batch 2 keeps the two units of two buckets */
	build_plan_ok(old, new, 2, NULL, NULL, &plan);
	ck_assert_int_eq(plan.n_units, 2);
	rb_plan_free(&plan);
	config_free(old);
	config_free(new);
}
END_TEST

START_TEST(test_plan_hash_doubling_buckets)
{
	config_t *old = load(HASH_TABLES("s0, s1, s0, s1"));
	config_t *new = load(HASH_TABLES("s0, s1, s0, s1, s0, s1, s2, s2"));
	int s0 = shard_index(old, "s0"), s1 = shard_index(old, "s1"), s2 = shard_index(old, "s2");
	rb_plan_t plan;

	build_plan_ok(old, new, 0, NULL, NULL, &plan);
	ck_assert_int_eq(plan.n_units, 2);
	const rb_unit_t *a = &plan.units[0], *b = &plan.units[1];
	if (a->source != s0) {
		const rb_unit_t *x = a;
		a = b;
		b = x;
	}
	/* bucket 6 of 8 is bucket 2 of 4 (s0), bucket 7 is bucket 3 (s1) */
	ck_assert_int_eq(a->source, s0);
	ck_assert_int_eq(a->target, s2);
	ck_assert_int_eq(a->modulus, 8);
	assert_buckets(a, (const int[]){6}, 1);
	ck_assert_int_eq(b->source, s1);
	ck_assert_int_eq(b->target, s2);
	ck_assert_int_eq(b->modulus, 8);
	assert_buckets(b, (const int[]){7}, 1);
	assert_plan_reaches(old, new, &plan);
	rb_plan_free(&plan);
	config_free(old);
	config_free(new);

	/* doubling with nothing moved: no unit */
	old = load(HASH_TABLES("s0, s1, s0, s1"));
	new = load(HASH_TABLES("s0, s1, s0, s1, s0, s1, s0, s1"));
	build_plan_ok(old, new, 0, NULL, NULL, &plan);
	ck_assert_int_eq(plan.n_units, 0);
	rb_plan_free(&plan);
	config_free(old);
	config_free(new);

	/* shrinking, or a count that is not a multiple */
	expect_plan_refused(HASH_TABLES("s0, s1, s0, s1, s0, s1, s0, s1"),
	                    HASH_TABLES("s0, s1, s0, s1"), "8 -> 4");
	expect_plan_refused(HASH_TABLES("s0, s1, s0, s1"), HASH_TABLES("s0, s1, s0, s1, s2, s2"),
	                    "4 -> 6");
}
END_TEST

START_TEST(test_plan_identical_maps)
{
	static const char *const maps[] = {
	    HASH_TABLES(P12_OLD),
	    RANGE_TABLE(R_NEW),
	    DIR_TABLE(D_NEW),
	};
	dir_stub_t stub = {.answer = 2};

	for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		config_t *old = load(maps[i]), *new = load(maps[i]);
		rb_plan_t plan;

		build_plan_ok(old, new, 0, stub_directory, &stub, &plan);
		ck_assert_msg(plan.n_units == 0, "map %zu: %d units between identical maps", i,
		              plan.n_units);
		ck_assert_ptr_null(plan.advice);
		rb_plan_free(&plan);
		config_free(old);
		config_free(new);
	}
}
END_TEST

/* ---- plans: range ---- */

START_TEST(test_plan_range_open_end)
{
	config_t *old = load(RANGE_TABLE(R_OLD)), *new = load(RANGE_TABLE(R_NEW));
	rb_plan_t plan;

	build_plan_ok(old, new, 0, NULL, NULL, &plan);
	ck_assert_int_eq(plan.n_units, 1);
	const rb_unit_t *u = &plan.units[0];
	ck_assert_int_eq(u->kind, RB_RANGE);
	ck_assert_int_eq(u->table, table_index(old, "events"));
	ck_assert(u->has_lo);
	ck_assert_str_eq(u->lo, "5000");
	ck_assert(!u->has_hi);
	ck_assert_int_eq(u->source, shard_index(old, "s1"));
	ck_assert_int_eq(u->target, shard_index(old, "s2"));
	assert_plan_reaches(old, new, &plan);
	rb_plan_free(&plan);
	config_free(old);
	config_free(new);
}
END_TEST

START_TEST(test_plan_range_middle_and_contiguous)
{
	/* a closed range in the middle */
	config_t *old = load(RANGE_TABLE(R_OLD));
	config_t *new = load(RANGE_TABLE("{ below: 1000, shard: s0 }, { below: 2000, shard: s1 }, "
	                                 "{ below: 3000, shard: s2 }, { shard: s1 }"));
	rb_plan_t plan;

	build_plan_ok(old, new, 0, NULL, NULL, &plan);
	ck_assert_int_eq(plan.n_units, 1);
	ck_assert(plan.units[0].has_lo);
	ck_assert(plan.units[0].has_hi);
	ck_assert_str_eq(plan.units[0].lo, "2000");
	ck_assert_str_eq(plan.units[0].hi, "3000");
	ck_assert_int_eq(plan.units[0].source, 1);
	ck_assert_int_eq(plan.units[0].target, 2);
	assert_plan_reaches(old, new, &plan);
	rb_plan_free(&plan);
	config_free(old);
	config_free(new);

	/* two adjacent pieces with the same source and target make one unit;
	 * a piece from another source is its own unit */
	old = load(RANGE_TABLE("{ below: 1000, shard: s0 }, { below: 2000, shard: s1 }, "
	                       "{ below: 3000, shard: s1 }, { shard: s0 }"));
	new = load(RANGE_TABLE("{ below: 1000, shard: s0 }, { shard: s2 }"));
	build_plan_ok(old, new, 0, NULL, NULL, &plan);
	ck_assert_int_eq(plan.n_units, 2);
	const rb_unit_t *a = &plan.units[0], *b = &plan.units[1];
	if (a->source != 1) {
		const rb_unit_t *x = a;
		a = b;
		b = x;
	}
	ck_assert_int_eq(a->source, 1);
	ck_assert_int_eq(a->target, 2);
	ck_assert(a->has_lo && a->has_hi);
	ck_assert_str_eq(a->lo, "1000");
	ck_assert_str_eq(a->hi, "3000");
	ck_assert_int_eq(b->source, 0);
	ck_assert_int_eq(b->target, 2);
	ck_assert(b->has_lo && !b->has_hi);
	ck_assert_str_eq(b->lo, "3000");
	assert_plan_reaches(old, new, &plan);
	rb_plan_free(&plan);
	config_free(old);
	config_free(new);
}
END_TEST

START_TEST(test_plan_range_refuses_keys_without_shard)
{
	/* OLD had keys from 5000 up on s1; NEW gives them no shard */
	expect_plan_refused(RANGE_TABLE(R_OLD),
	                    RANGE_TABLE("{ below: 1000, shard: s0 }, { below: 5000, shard: s1 }"),
	                    "no shard");
	/* keys that had no shard in OLD may stay without one */
	{
		config_t *old =
		    load(RANGE_TABLE("{ below: 1000, shard: s0 }, { below: 5000, shard: s1 }"));
		config_t *new =
		    load(RANGE_TABLE("{ below: 1000, shard: s0 }, { below: 5000, shard: s2 }"));
		rb_plan_t plan;

		build_plan_ok(old, new, 0, NULL, NULL, &plan);
		ck_assert_int_eq(plan.n_units, 1);
		ck_assert_str_eq(plan.units[0].lo, "1000");
		ck_assert_str_eq(plan.units[0].hi, "5000");
		rb_plan_free(&plan);
		config_free(old);
		config_free(new);
	}
}
END_TEST

START_TEST(test_plan_range_refusal_names_the_keys)
{
	/* the message says which keys NEW leaves without a shard */
	expect_plan_refused(RANGE_TABLE(R_OLD),
	                    RANGE_TABLE("{ below: 1000, shard: s0 }, { below: 5000, shard: s1 }"),
	                    "from 5000 to +inf");
}
END_TEST

/* ---- plans: directory ---- */

START_TEST(test_plan_directory)
{
	config_t *old = load(DIR_TABLE(D_OLD)), *new = load(DIR_TABLE(D_NEW));
	int tenants = table_index(old, "tenants");
	dir_stub_t stub = {.answer = 0};
	rb_plan_t plan;
	char err[512] = "";

	/* the directory says acme lives on s0: move it to its pin */
	build_plan_ok(old, new, 0, stub_directory, &stub, &plan);
	ck_assert_int_eq(stub.calls, 1);
	ck_assert_str_eq(stub.key, "acme");
	ck_assert_int_eq(stub.table, tenants);
	ck_assert_int_eq(plan.n_units, 1);
	const rb_unit_t *u = &plan.units[0];
	ck_assert_int_eq(u->kind, RB_DIRECTORY);
	ck_assert_int_eq(u->table, tenants);
	ck_assert_int_eq(u->source, 0);
	ck_assert_int_eq(u->target, 2);
	ck_assert_int_eq(u->n_keys, 1);
	ck_assert_str_eq(u->keys[0], "acme");
	assert_plan_reaches(old, new, &plan);
	rb_plan_free(&plan);

	/* unknown key: nothing to move (new rows follow the pin) */
	stub = (dir_stub_t){.answer = -1};
	build_plan_ok(old, new, 0, stub_directory, &stub, &plan);
	ck_assert_int_eq(stub.calls, 1);
	ck_assert_int_eq(plan.n_units, 0);
	rb_plan_free(&plan);

	/* already on its pin */
	stub = (dir_stub_t){.answer = 2};
	build_plan_ok(old, new, 0, stub_directory, &stub, &plan);
	ck_assert_int_eq(stub.calls, 1);
	ck_assert_int_eq(plan.n_units, 0);
	rb_plan_free(&plan);

	/* no directory to ask: no unit */
	build_plan_ok(old, new, 0, NULL, NULL, &plan);
	ck_assert_int_eq(plan.n_units, 0);
	rb_plan_free(&plan);

	/* the directory fails: so does the plan, with its message */
	stub = (dir_stub_t){.answer = -2};
	ck_assert(!rb_plan_build(old, new, 0, stub_directory, &stub, &plan, err, sizeof(err)));
	ck_assert_str_eq(err, "stub: directory unreachable");
	ck_assert_int_eq(plan.n_units, 0);

	config_free(old);
	config_free(new);
}
END_TEST

/* ---- plans: incompatible maps ---- */

START_TEST(test_plan_refuses_different_maps)
{
	/* shard lists */
	expect_plan_refused(HASH_TABLES(P12_OLD),
	                    "shards:\n  - name: s0\n    primary: 127.0.0.1:54320\n"
	                    "  - name: s1\n    primary: 127.0.0.1:54321\n"
	                    "tables:\n  users: { key: id, strategy: hash, placement: [" P12_OLD
	                    "] }\n"
	                    "  orders: { key: user_id, strategy: hash, colocate_with: users }\n"
	                    "  countries: { strategy: reference }\n",
	                    "3 and 2 shards");
	expect_plan_refused(HASH_TABLES(P12_OLD),
	                    "shards:\n  - name: s0\n    primary: 127.0.0.1:54320\n"
	                    "  - name: s1\n    primary: 127.0.0.1:54321\n"
	                    "  - name: s3\n    primary: 127.0.0.1:54323\n"
	                    "tables:\n  users: { key: id, strategy: hash, placement: [" P12_OLD
	                    "] }\n"
	                    "  orders: { key: user_id, strategy: hash, colocate_with: users }\n"
	                    "  countries: { strategy: reference }\n",
	                    "s2");
	/* tables */
	expect_plan_refused(
	    HASH_TABLES(P12_OLD),
	    SHARDS "tables:\n  users: { key: id, strategy: hash, placement: [" P12_OLD "] }\n"
	           "  orders: { key: user_id, strategy: hash, colocate_with: users }\n",
	    "3 and 2 tables");
	expect_plan_refused(
	    HASH_TABLES(P12_OLD),
	    SHARDS "tables:\n  users: { key: id, strategy: hash, placement: [" P12_OLD "] }\n"
	           "  purchases: { key: user_id, strategy: hash, colocate_with: users }\n"
	           "  countries: { strategy: reference }\n",
	    "orders");
	/* key, type, strategy, co-location */
	expect_plan_refused(
	    HASH_TABLES(P12_OLD),
	    SHARDS "tables:\n  users: { key: uid, strategy: hash, placement: [" P12_OLD "] }\n"
	           "  orders: { key: user_id, strategy: hash, colocate_with: users }\n"
	           "  countries: { strategy: reference }\n",
	    "must stay the same");
	expect_plan_refused(RANGE_TABLE(R_OLD),
	                    SHARDS "tables:\n  events: { key: id, type: integer, strategy: range, "
	                           "ranges: [" R_OLD "] }\n",
	                    "must stay the same");
	expect_plan_refused(RANGE_TABLE(R_OLD),
	                    SHARDS "tables:\n  events: { key: id, strategy: hash, buckets: 4 }\n",
	                    "must stay the same");
	expect_plan_refused(
	    HASH_TABLES(P12_OLD),
	    SHARDS "tables:\n  users: { key: id, strategy: hash, placement: [" P12_OLD "] }\n"
	           "  orders: { key: user_id, strategy: hash, placement: [" P12_OLD "] }\n"
	           "  countries: { strategy: reference }\n",
	    "must stay the same");
	/* the directory's own place */
	expect_plan_refused(DIR_TABLE(D_OLD), DIR_TABLE("{ shard: s1 }"),
	                    "directory must stay where it is");
}
END_TEST

/* ---- plans: advice ---- */

/* Parses the advice's "placement: [a, b, ...]" into shard indexes. */
static int advice_placement(const config_t *c, const char *advice, int *out, int max)
{
	const char *p = strstr(advice, "placement: [");
	int n = 0;

	ck_assert_msg(p != NULL, "no placement in the advice: %s", advice);
	p += strlen("placement: [");
	while (*p && *p != ']') {
		char name[CONFIG_NAME_MAX + 1];
		size_t len = strcspn(p, ",]");
		ck_assert_int_lt(len, sizeof(name));
		memcpy(name, p, len);
		name[len] = '\0';
		ck_assert_int_lt(n, max);
		out[n++] = shard_index(c, name);
		p += len;
		if (*p == ',')
			p++;
		while (*p == ' ')
			p++;
	}
	ck_assert_msg(*p == ']', "placement list not closed: %s", advice);
	return n;
}

START_TEST(test_plan_advice)
{
	/* r mod 2 over 12 buckets -> r mod 3: 8 buckets move where 4 would do */
	config_t *old = load(HASH_TABLES(P12_OLD));
	config_t *new =
	    load(SHARDS "tables:\n"
	                "  users: { key: id, strategy: hash, buckets: 12 }\n"
	                "  orders: { key: user_id, strategy: hash, colocate_with: users }\n"
	                "  countries: { strategy: reference }\n");
	int users = table_index(old, "users");
	int place[64], count[3] = {0, 0, 0}, moves = 0;
	rb_plan_t plan;

	build_plan_ok(old, new, 0, NULL, NULL, &plan);
	int moved = 0;
	for (int i = 0; i < plan.n_units; i++)
		moved += plan.units[i].n_buckets;
	ck_assert_int_eq(moved, 8);
	ck_assert_ptr_nonnull(plan.advice);
	ck_assert_msg(strstr(plan.advice, "users") != NULL, "advice: %s", plan.advice);

	/* the advised placement: 12 buckets, 4 per shard, 4 moves from OLD */
	ck_assert_int_eq(advice_placement(new, plan.advice, place, 64), 12);
	for (int r = 0; r < 12; r++) {
		count[place[r]]++;
		if (place[r] != old->tables[users].placement[r])
			moves++;
	}
	ck_assert_int_eq(count[0], 4);
	ck_assert_int_eq(count[1], 4);
	ck_assert_int_eq(count[2], 4);
	ck_assert_int_eq(moves, 4);
	rb_plan_free(&plan);
	ck_assert_ptr_null(plan.advice);
	config_free(old);
	config_free(new);

	/* doubling to 8 buckets over 3 shards with a minimal NEW: no advice */
	old = load(HASH_TABLES("s0, s1, s0, s1"));
	new = load(HASH_TABLES("s0, s1, s0, s1, s0, s1, s2, s2"));
	build_plan_ok(old, new, 0, NULL, NULL, &plan);
	ck_assert_ptr_null(plan.advice);
	rb_plan_free(&plan);
	config_free(old);
	config_free(new);
}
END_TEST

START_TEST(test_plan_advice_uneven_share)
{
	/* 10 buckets over 3 shards: 4, 3, 3 is a fair share. From r mod 2,
	 * moving buckets 7 (s1), 8 (s0) and 9 (s1) to s2 is the fewest moves
	 * that give s2 its 3 buckets: NEW is minimal, so there is no advice
	 * (and no placement leaving s2 with 2 buckets may be advised). */
	config_t *old = load(HASH_TABLES("s0, s1, s0, s1, s0, s1, s0, s1, s0, s1"));
	config_t *new = load(HASH_TABLES("s0, s1, s0, s1, s0, s1, s0, s2, s2, s2"));
	rb_plan_t plan;

	build_plan_ok(old, new, 0, NULL, NULL, &plan);
	int moved = 0;
	for (int i = 0; i < plan.n_units; i++)
		moved += plan.units[i].n_buckets;
	ck_assert_int_eq(moved, 3);
	ck_assert_msg(plan.advice == NULL, "advice for a minimal NEW: %s", plan.advice);
	rb_plan_free(&plan);
	config_free(old);
	config_free(new);
}
END_TEST

/* ---- specs ---- */

static void assert_round_trip(const config_t *c, const rb_unit_t *u, const char *expected_spec)
{
	char *spec = rb_unit_spec(c, u);
	char err[512] = "";
	rb_unit_t back;

	ck_assert_ptr_nonnull(spec);
	if (expected_spec)
		ck_assert_str_eq(spec, expected_spec);
	ck_assert_msg(rb_unit_parse(c, spec, &back, err, sizeof(err)), "spec \"%s\" refused: %s",
	              spec, err);
	ck_assert_int_eq(back.kind, u->kind);
	ck_assert_int_eq(back.table, u->table);
	ck_assert_int_eq(back.source, u->source);
	ck_assert_int_eq(back.target, u->target);
	switch (u->kind) {
	case RB_HASH:
		ck_assert_int_eq(back.modulus, u->modulus);
		assert_buckets(&back, u->buckets, u->n_buckets);
		break;
	case RB_RANGE:
		ck_assert_int_eq(back.has_lo, u->has_lo);
		ck_assert_int_eq(back.has_hi, u->has_hi);
		if (u->has_lo)
			ck_assert_str_eq(back.lo, u->lo);
		if (u->has_hi)
			ck_assert_str_eq(back.hi, u->hi);
		break;
	case RB_DIRECTORY:
		ck_assert_int_eq(back.n_keys, u->n_keys);
		for (int i = 0; i < u->n_keys; i++)
			ck_assert_str_eq(back.keys[i], u->keys[i]);
		break;
	}
	/* and the parsed unit prints the same spec */
	char *again = rb_unit_spec(c, &back);
	ck_assert_ptr_nonnull(again);
	ck_assert_str_eq(again, spec);
	free(again);
	free(spec);
	rb_unit_free(&back);
}

START_TEST(test_spec_round_trip_hash)
{
	config_t *c = load(HASH_TABLES(P12_OLD));
	int buckets[] = {4, 10};
	rb_unit_t u = {.kind = RB_HASH,
	               .table = table_index(c, "users"),
	               .source = 0,
	               .target = 2,
	               .modulus = 12,
	               .buckets = buckets,
	               .n_buckets = 2,
	               .rows = -1,
	               .bytes = -1};
	char text[256];

	assert_round_trip(c, &u, "hash users 12 4,10 s0 s2");
	rb_unit_describe(c, &u, text, sizeof(text));
	ck_assert_str_eq(text, "users buckets 4,10 of 12: s0 -> s2");

	int one[] = {7};
	u = (rb_unit_t){.kind = RB_HASH,
	                .table = table_index(c, "users"),
	                .source = 1,
	                .target = 0,
	                .modulus = 24,
	                .buckets = one,
	                .n_buckets = 1};
	assert_round_trip(c, &u, "hash users 24 7 s1 s0");

	/* parsed buckets come back sorted */
	rb_unit_t p;
	char err[256] = "";
	ck_assert_msg(rb_unit_parse(c, "hash users 12 10,4 s0 s2", &p, err, sizeof(err)), "%s",
	              err);
	assert_buckets(&p, (const int[]){4, 10}, 2);
	rb_unit_free(&p);
	config_free(c);
}
END_TEST

START_TEST(test_spec_round_trip_range)
{
	config_t *c = load(RANGE_TABLE(R_NEW));
	int events = table_index(c, "events");
	rb_unit_t u = {.kind = RB_RANGE, .table = events, .source = 1, .target = 2, .has_lo = true};

	snprintf(u.lo, sizeof(u.lo), "5000");
	assert_round_trip(c, &u, "range events '5000' - s1 s2");

	u = (rb_unit_t){
	    .kind = RB_RANGE, .table = events, .source = 0, .target = 2, .has_hi = true};
	snprintf(u.hi, sizeof(u.hi), "1000");
	assert_round_trip(c, &u, "range events - '1000' s0 s2");

	u = (rb_unit_t){.kind = RB_RANGE,
	                .table = events,
	                .source = 1,
	                .target = 2,
	                .has_lo = true,
	                .has_hi = true};
	snprintf(u.lo, sizeof(u.lo), "2000");
	snprintf(u.hi, sizeof(u.hi), "3000");
	assert_round_trip(c, &u, "range events '2000' '3000' s1 s2");
	config_free(c);

	/* text keys with a quote */
	c = load(SHARDS "tables:\n  names: { key: n, type: text, strategy: range, ranges: [\n"
	                "    { below: \"m\", shard: s0 }, { shard: s1 } ] }\n");
	u = (rb_unit_t){.kind = RB_RANGE,
	                .table = table_index(c, "names"),
	                .source = 1,
	                .target = 2,
	                .has_lo = true,
	                .has_hi = true};
	snprintf(u.lo, sizeof(u.lo), "o'brien");
	snprintf(u.hi, sizeof(u.hi), "p q");
	assert_round_trip(c, &u, "range names 'o''brien' 'p q' s1 s2");
	config_free(c);
}
END_TEST

START_TEST(test_spec_round_trip_directory)
{
	config_t *c = load(DIR_TABLE(D_NEW));
	char *keys[] = {"o'brien & co", "acme"};
	rb_unit_t u = {.kind = RB_DIRECTORY,
	               .table = table_index(c, "tenants"),
	               .source = 0,
	               .target = 2,
	               .keys = keys,
	               .n_keys = 2};
	char text[256];

	assert_round_trip(c, &u, "directory tenants s0 s2 'o''brien & co' 'acme'");
	u.n_keys = 1;
	assert_round_trip(c, &u, "directory tenants s0 s2 'o''brien & co'");
	rb_unit_describe(c, &u, text, sizeof(text));
	ck_assert_str_eq(text, "tenants key o'brien & co: s0 -> s2");
	config_free(c);
}
END_TEST

static void expect_spec_refused(const config_t *c, const char *spec, const char *fragment)
{
	rb_unit_t u;
	char err[512] = "";

	ck_assert_msg(!rb_unit_parse(c, spec, &u, err, sizeof(err)), "spec \"%s\" was accepted",
	              spec);
	ck_assert_msg(strstr(err, fragment) != NULL, "spec \"%s\": expected \"%s\", got \"%s\"",
	              spec, fragment, err);
	/* nothing left allocated in the output */
	ck_assert_ptr_null(u.buckets);
	ck_assert_ptr_null(u.keys);
}

START_TEST(test_spec_rejections)
{
	config_t *h = load(HASH_TABLES(P12_OLD));
	config_t *r = load(RANGE_TABLE(R_NEW));
	config_t *d = load(DIR_TABLE(D_NEW));

	/* the valid forms, so that each refusal below is about one thing */
	{
		rb_unit_t u;
		char err[256];
		ck_assert(rb_unit_parse(h, "hash users 12 4 s0 s2", &u, err, sizeof(err)));
		rb_unit_free(&u);
		ck_assert(rb_unit_parse(r, "range events '5000' - s1 s2", &u, err, sizeof(err)));
		rb_unit_free(&u);
		ck_assert(rb_unit_parse(d, "directory tenants s0 s2 'acme'", &u, err, sizeof(err)));
		rb_unit_free(&u);
	}

	expect_spec_refused(h, "hash nosuch 12 4 s0 s2", "no table nosuch");
	expect_spec_refused(h, "hash users 12 4 s0 s9", "bad shards");
	expect_spec_refused(h, "hash users 12 4 s9 s2", "bad shards");
	expect_spec_refused(h, "hash users 12 4 s0 s0", "bad shards");
	expect_spec_refused(h, "hash users 12 12 s0 s2", "not a unit");
	expect_spec_refused(h, "hash users 12 4,12 s0 s2", "not a unit");
	expect_spec_refused(h, "hash users 12 -1 s0 s2", "not a unit");
	expect_spec_refused(h, "hash users 12 4,x s0 s2", "not a unit");
	expect_spec_refused(h, "hash users 0 0 s0 s2", "not a unit");
	expect_spec_refused(h, "hash users 12x 4 s0 s2", "not a unit");
	/* units name the root of a co-location group */
	expect_spec_refused(h, "hash orders 12 4 s0 s2", "not a unit");
	/* the kind must be the table's strategy */
	expect_spec_refused(h, "range users '1' '2' s0 s2", "not a unit");
	expect_spec_refused(r, "hash events 12 4 s0 s2", "not a unit");
	expect_spec_refused(h, "shuffle users 12 4 s0 s2", "not a unit");
	/* trailing garbage and missing words */
	expect_spec_refused(h, "hash users 12 4 s0 s2 extra", "not a unit");
	expect_spec_refused(h, "hash users 12 4 s0", "not a unit");
	expect_spec_refused(r, "range events '5000' - s1 s2 x", "not a unit");
	expect_spec_refused(d, "directory tenants s0 s2 'acme' junk", "not a unit");
	expect_spec_refused(d, "directory tenants s0 s2", "not a unit");
	/* range bounds: quoted literals of the key type, lo below hi */
	expect_spec_refused(r, "range events 5000 - s1 s2", "not a unit");
	expect_spec_refused(r, "range events 'abc' - s1 s2", "not a unit");
	expect_spec_refused(r, "range events '3000' '2000' s1 s2", "not a unit");
	expect_spec_refused(r, "range events '3000' '3000' s1 s2", "not a unit");
	/* directory keys are quoted */
	expect_spec_refused(d, "directory tenants s0 s2 acme", "not a unit");
	expect_spec_refused(d, "directory tenants s0 s2 'acme", "not a unit");
	expect_spec_refused(h, "", "not a unit");

	config_free(h);
	config_free(r);
	config_free(d);
}
END_TEST

START_TEST(test_spec_rejects_unterminated_literal)
{
	/* an unterminated '... after a complete spec is garbage, not the end */
	config_t *h = load(HASH_TABLES(P12_OLD));
	config_t *d = load(DIR_TABLE(D_NEW));

	expect_spec_refused(h, "hash users 12 4 s0 s2 'oops", "not a unit");
	expect_spec_refused(d, "directory tenants s0 s2 'acme' 'globex", "not a unit");
	config_free(h);
	config_free(d);
}
END_TEST

/* ---- rb_config_apply ---- */

START_TEST(test_apply_hash)
{
	config_t *c = load(HASH_TABLES(P12_OLD)), *next = NULL;
	int users = table_index(c, "users");
	int buckets[] = {4, 10};
	rb_unit_t u = {.kind = RB_HASH,
	               .table = users,
	               .source = 0,
	               .target = 2,
	               .modulus = 12,
	               .buckets = buckets,
	               .n_buckets = 2};
	char err[512] = "";

	ck_assert_msg(rb_config_apply(c, &u, false, &next, err, sizeof(err)), "%s", err);
	ck_assert_int_eq(next->n_shards, 3);
	assert_placement(next, "users", "s0, s1, s0, s1, s2, s1, s0, s1, s0, s1, s2, s1");
	assert_placement(next, "orders", "s0, s1, s0, s1, s2, s1, s0, s1, s0, s1, s2, s1");
	/* the map it came from is untouched */
	assert_placement(c, "users", P12_OLD);
	assert_placement(c, "orders", P12_OLD);
	rb_config_free(next);
	next = NULL;

	/* the pause view: the buckets on a phantom fourth shard */
	ck_assert_msg(rb_config_apply(c, &u, true, &next, err, sizeof(err)), "%s", err);
	ck_assert_int_eq(next->n_shards, c->n_shards + 1);
	ck_assert_str_eq(next->shards[3].name, "(moving)");
	for (int s = 0; s < 3; s++)
		ck_assert_str_eq(next->shards[s].name, c->shards[s].name);
	for (int t = 0; t < 2; t++) {
		const cfg_table_t *tb = &next->tables[table_index(next, t ? "orders" : "users")];
		for (int r = 0; r < 12; r++) {
			int want = (r == 4 || r == 10) ? 3 : r % 2;
			ck_assert_msg(tb->placement[r] == want, "%s bucket %d: expected %d, got %d",
			              tb->name, r, want, tb->placement[r]);
		}
	}
	ck_assert_int_eq(c->n_shards, 3);
	rb_config_free(next);
	next = NULL;

	/* bucket 5 is on s1, not s0 */
	int wrong[] = {5};
	u.buckets = wrong;
	u.n_buckets = 1;
	ck_assert(!rb_config_apply(c, &u, false, &next, err, sizeof(err)));
	ck_assert_ptr_null(next);
	ck_assert_msg(strstr(err, "bucket 5") != NULL && strstr(err, "s1") != NULL, "got \"%s\"",
	              err);
	ck_assert(!rb_config_apply(c, &u, true, &next, err, sizeof(err)));
	ck_assert_ptr_null(next);

	/* a modulus that is not a multiple of the map's buckets */
	int b3[] = {3};
	u = (rb_unit_t){.kind = RB_HASH,
	                .table = users,
	                .source = 1,
	                .target = 2,
	                .modulus = 18,
	                .buckets = b3,
	                .n_buckets = 1};
	ck_assert(!rb_config_apply(c, &u, false, &next, err, sizeof(err)));
	ck_assert_ptr_null(next);
	ck_assert_msg(strstr(err, "multiple") != NULL, "got \"%s\"", err);
	config_free(c);
}
END_TEST

START_TEST(test_apply_hash_expands_buckets)
{
	config_t *c = load(HASH_TABLES("s0, s1, s0, s1")), *next = NULL;
	int buckets[] = {6};
	rb_unit_t u = {.kind = RB_HASH,
	               .table = table_index(c, "users"),
	               .source = 0,
	               .target = 2,
	               .modulus = 8,
	               .buckets = buckets,
	               .n_buckets = 1};
	char err[512] = "";

	ck_assert_msg(rb_config_apply(c, &u, false, &next, err, sizeof(err)), "%s", err);
	ck_assert_int_eq(next->tables[table_index(next, "users")].buckets, 8);
	ck_assert_int_eq(next->tables[table_index(next, "orders")].buckets, 8);
	assert_placement(next, "users", "s0, s1, s0, s1, s0, s1, s2, s1");
	assert_placement(next, "orders", "s0, s1, s0, s1, s0, s1, s2, s1");
	ck_assert_int_eq(c->tables[table_index(c, "users")].buckets, 4);
	assert_placement(c, "users", "s0, s1, s0, s1");

	/* the next unit of the same modulus applies to that map as is */
	config_t *after = NULL;
	int seven[] = {7};
	rb_unit_t v = {.kind = RB_HASH,
	               .table = u.table,
	               .source = 1,
	               .target = 2,
	               .modulus = 8,
	               .buckets = seven,
	               .n_buckets = 1};
	ck_assert_msg(rb_config_apply(next, &v, false, &after, err, sizeof(err)), "%s", err);
	assert_placement(after, "users", "s0, s1, s0, s1, s0, s1, s2, s2");
	assert_placement(next, "users", "s0, s1, s0, s1, s0, s1, s2, s1");
	rb_config_free(after);
	rb_config_free(next);
	config_free(c);
}
END_TEST

/* Applies the range unit [lo, hi) source -> target to the map; the result's
 * ranges are `expected` ("below:shard ..." with "-" for no bound). */
static void apply_range_ok(const char *yaml, const char *lo, const char *hi, int source, int target,
                           bool phantom, const char *expected)
{
	config_t *c = load(yaml), *next = NULL;
	rb_unit_t u = {.kind = RB_RANGE,
	               .table = table_index(c, "events"),
	               .source = source,
	               .target = target,
	               .has_lo = lo != NULL,
	               .has_hi = hi != NULL};
	char err[512] = "";
	char before[17], after[17];

	snprintf(u.lo, sizeof(u.lo), "%s", lo ? lo : "");
	snprintf(u.hi, sizeof(u.hi), "%s", hi ? hi : "");
	rb_map_digest(c, before);
	ck_assert_msg(rb_config_apply(c, &u, phantom, &next, err, sizeof(err)), "%s", err);
	assert_ranges(next, "events", expected);
	rb_map_digest(c, after);
	ck_assert_str_eq(before, after); /* the map it came from is untouched */
	rb_config_free(next);
	config_free(c);
}

START_TEST(test_apply_range)
{
	/* the open end */
	apply_range_ok(RANGE_TABLE(R_OLD), "5000", NULL, 1, 2, false, "1000:s0 5000:s1 -:s2");
	/* a closed range in the middle */
	apply_range_ok(RANGE_TABLE(R_OLD), "2000", "3000", 1, 2, false,
	               "1000:s0 2000:s1 3000:s2 -:s1");
	/* the open start */
	apply_range_ok(RANGE_TABLE(R_OLD), NULL, "1000", 0, 2, false, "1000:s2 -:s1");
	apply_range_ok(RANGE_TABLE(R_OLD), NULL, "500", 0, 2, false, "500:s2 1000:s0 -:s1");
	/* adjacent ranges on the same shard merge */
	apply_range_ok(RANGE_TABLE(R_NEW), "1000", "5000", 1, 0, false, "5000:s0 -:s2");
	apply_range_ok(RANGE_TABLE(R_NEW), "5000", NULL, 2, 1, false, "1000:s0 -:s1");
	/* the pause view: the unit's keys on the phantom shard */
	apply_range_ok(RANGE_TABLE(R_OLD), "5000", NULL, 1, 2, true, "1000:s0 5000:s1 -:(moving)");
	apply_range_ok(RANGE_TABLE(R_OLD), "2000", "3000", 1, 2, true,
	               "1000:s0 2000:s1 3000:(moving) -:s1");
}
END_TEST

START_TEST(test_apply_range_source_mismatch)
{
	config_t *c = load(RANGE_TABLE(R_OLD)), *next = NULL;
	rb_unit_t u = {.kind = RB_RANGE,
	               .table = table_index(c, "events"),
	               .source = 1,
	               .target = 2,
	               .has_lo = true,
	               .has_hi = true};
	char err[512] = "";

	/* keys [0, 500) are on s0, not s1 */
	snprintf(u.lo, sizeof(u.lo), "0");
	snprintf(u.hi, sizeof(u.hi), "500");
	ck_assert(!rb_config_apply(c, &u, false, &next, err, sizeof(err)));
	ck_assert_ptr_null(next);
	ck_assert_msg(strstr(err, "s0") != NULL, "got \"%s\"", err);
	/* a unit straddling two shards does not fit either */
	snprintf(u.lo, sizeof(u.lo), "500");
	snprintf(u.hi, sizeof(u.hi), "2000");
	ck_assert(!rb_config_apply(c, &u, true, &next, err, sizeof(err)));
	ck_assert_ptr_null(next);
	config_free(c);
}
END_TEST

START_TEST(test_apply_directory)
{
	config_t *c = load(DIR_TABLE("{ shard: s0, pinned: { initech: s1 } }")), *next = NULL;
	int tenants = table_index(c, "tenants");
	char *keys[] = {"acme", "initech"};
	rb_unit_t u = {.kind = RB_DIRECTORY,
	               .table = tenants,
	               .source = 0,
	               .target = 2,
	               .keys = keys,
	               .n_keys = 2};
	char err[512] = "";

	ck_assert_msg(rb_config_apply(c, &u, false, &next, err, sizeof(err)), "%s", err);
	const cfg_table_t *tb = &next->tables[tenants];
	ck_assert_int_eq(tb->n_pins, 2);
	bool acme = false, initech = false;
	for (int i = 0; i < tb->n_pins; i++) {
		ck_assert_int_eq(tb->pins[i].shard, 2);
		acme |= strcmp(tb->pins[i].key, "acme") == 0;
		initech |= strcmp(tb->pins[i].key, "initech") == 0;
	}
	ck_assert(acme && initech);
	/* the map it came from keeps its one pin */
	ck_assert_int_eq(c->tables[tenants].n_pins, 1);
	ck_assert_str_eq(c->tables[tenants].pins[0].key, "initech");
	ck_assert_int_eq(c->tables[tenants].pins[0].shard, 1);
	rb_config_free(next);
	next = NULL;

	/* a map without pins gains them */
	config_free(c);
	c = load(DIR_TABLE(D_OLD));
	u.n_keys = 1;
	ck_assert_msg(rb_config_apply(c, &u, false, &next, err, sizeof(err)), "%s", err);
	ck_assert_int_eq(next->tables[tenants].n_pins, 1);
	ck_assert_str_eq(next->tables[tenants].pins[0].key, "acme");
	ck_assert_int_eq(next->tables[tenants].pins[0].shard, 2);
	ck_assert_int_eq(c->tables[tenants].n_pins, 0);
	rb_config_free(next);
	next = NULL;

	/* the pause view has the phantom shard */
	ck_assert_msg(rb_config_apply(c, &u, true, &next, err, sizeof(err)), "%s", err);
	ck_assert_int_eq(next->n_shards, 4);
	ck_assert_str_eq(next->shards[3].name, "(moving)");
	ck_assert_int_eq(next->tables[tenants].n_pins, 1);
	rb_config_free(next);
	config_free(c);
}
END_TEST

/* ---- SQL ---- */

START_TEST(test_predicate_hash)
{
	config_t *c = load(HASH_TABLES(P12_OLD));
	int users = table_index(c, "users"), orders = table_index(c, "orders");
	int buckets[] = {4, 10};
	rb_unit_t u = {.kind = RB_HASH,
	               .table = users,
	               .source = 0,
	               .target = 2,
	               .modulus = 12,
	               .buckets = buckets,
	               .n_buckets = 2};
	char expr[512], want[600];

	char *p = rb_unit_predicate(c, &u, users);
	ck_assert_ptr_nonnull(p);
	ck_assert(hash_sql_bucket_expr(KEY_BIGINT, "id", 12, expr, sizeof(expr)));
	snprintf(want, sizeof(want), "%s IN (4, 10)", expr);
	ck_assert_str_eq(p, want);
	ck_assert_ptr_nonnull(strstr(p, "\"id\""));
	free(p);

	/* the co-located table's rows by its own key */
	p = rb_unit_predicate(c, &u, orders);
	ck_assert_ptr_nonnull(p);
	ck_assert(hash_sql_bucket_expr(KEY_BIGINT, "user_id", 12, expr, sizeof(expr)));
	snprintf(want, sizeof(want), "%s IN (4, 10)", expr);
	ck_assert_str_eq(p, want);
	ck_assert_ptr_nonnull(strstr(p, "\"user_id\""));
	free(p);

	/* the modulus is the unit's, not the map's */
	u.modulus = 24;
	p = rb_unit_predicate(c, &u, users);
	ck_assert(hash_sql_bucket_expr(KEY_BIGINT, "id", 24, expr, sizeof(expr)));
	snprintf(want, sizeof(want), "%s IN (4, 10)", expr);
	ck_assert_str_eq(p, want);
	free(p);
	config_free(c);
}
END_TEST

START_TEST(test_predicate_range)
{
	config_t *c = load(RANGE_TABLE(R_OLD));
	rb_unit_t u = {.kind = RB_RANGE,
	               .table = table_index(c, "events"),
	               .source = 1,
	               .target = 2,
	               .has_lo = true};
	char *p;

	snprintf(u.lo, sizeof(u.lo), "5000");
	p = rb_unit_predicate(c, &u, u.table);
	ck_assert_str_eq(p, "\"id\" >= '5000'::bigint");
	free(p);

	u.has_hi = true;
	snprintf(u.lo, sizeof(u.lo), "2000");
	snprintf(u.hi, sizeof(u.hi), "3000");
	p = rb_unit_predicate(c, &u, u.table);
	ck_assert_str_eq(p, "\"id\" >= '2000'::bigint AND \"id\" < '3000'::bigint");
	free(p);

	u.has_lo = false;
	p = rb_unit_predicate(c, &u, u.table);
	ck_assert_str_eq(p, "\"id\" < '3000'::bigint");
	free(p);
	config_free(c);

	c = load(SHARDS "tables:\n  names: { key: n, type: text, strategy: range, ranges: [\n"
	                "    { below: \"m\", shard: s0 }, { shard: s1 } ] }\n");
	u = (rb_unit_t){.kind = RB_RANGE,
	                .table = table_index(c, "names"),
	                .source = 1,
	                .target = 2,
	                .has_lo = true};
	snprintf(u.lo, sizeof(u.lo), "o'brien");
	p = rb_unit_predicate(c, &u, u.table);
	ck_assert_str_eq(p, "\"n\" >= 'o''brien'::text");
	free(p);
	config_free(c);
}
END_TEST

START_TEST(test_predicate_directory)
{
	config_t *c = load(DIR_TABLE(D_NEW));
	char *keys[] = {"o'brien", "acme"};
	rb_unit_t u = {.kind = RB_DIRECTORY,
	               .table = table_index(c, "tenants"),
	               .source = 0,
	               .target = 2,
	               .keys = keys,
	               .n_keys = 2};
	char *p = rb_unit_predicate(c, &u, u.table);

	ck_assert_str_eq(p, "\"tenant\"::text IN ('o''brien', 'acme')");
	free(p);
	config_free(c);
}
END_TEST

START_TEST(test_map_digest)
{
	config_t *a = load(HASH_TABLES(P12_OLD)), *b = load(HASH_TABLES(P12_OLD));
	config_t *c = load(HASH_TABLES("s0, s1, s0, s1, s0, s1, s0, s1, s0, s1, s0, s2"));
	char da[17], db[17], dc[17];

	rb_map_digest(a, da);
	rb_map_digest(b, db);
	rb_map_digest(c, dc);
	ck_assert_uint_eq(strlen(da), 16);
	ck_assert_uint_eq(strspn(da, "0123456789abcdef"), 16);
	ck_assert_str_eq(da, db);
	ck_assert_str_ne(da, dc);
	config_free(a);
	config_free(b);
	config_free(c);

	a = load(RANGE_TABLE(R_NEW));
	b = load(
	    RANGE_TABLE("{ below: 1000, shard: s0 }, { below: 6000, shard: s1 }, { shard: s2 }"));
	rb_map_digest(a, da);
	rb_map_digest(b, db);
	ck_assert_str_ne(da, db);
	config_free(a);
	config_free(b);

	a = load(DIR_TABLE(D_NEW));
	b = load(DIR_TABLE("{ shard: s0, pinned: { acme: s1 } }"));
	rb_map_digest(a, da);
	rb_map_digest(b, db);
	ck_assert_str_ne(da, db);
	config_free(a);
	config_free(b);
}
END_TEST

static Suite *units_suite(void)
{
	Suite *suite = suite_create("units");
	TCase *plan = tcase_create("plan");
	TCase *spec = tcase_create("spec");
	TCase *apply = tcase_create("apply");
	TCase *sql = tcase_create("sql");

	tcase_add_test(plan, test_plan_hash_two_units);
	tcase_add_test(plan, test_plan_hash_batch_one);
	tcase_add_test(plan, test_plan_hash_doubling_buckets);
	tcase_add_test(plan, test_plan_identical_maps);
	tcase_add_test(plan, test_plan_range_open_end);
	tcase_add_test(plan, test_plan_range_middle_and_contiguous);
	tcase_add_test(plan, test_plan_range_refuses_keys_without_shard);
	tcase_add_test(plan, test_plan_range_refusal_names_the_keys);
	tcase_add_test(plan, test_plan_directory);
	tcase_add_test(plan, test_plan_refuses_different_maps);
	tcase_add_test(plan, test_plan_advice);
	tcase_add_test(plan, test_plan_advice_uneven_share);
	suite_add_tcase(suite, plan);

	tcase_add_test(spec, test_spec_round_trip_hash);
	tcase_add_test(spec, test_spec_round_trip_range);
	tcase_add_test(spec, test_spec_round_trip_directory);
	tcase_add_test(spec, test_spec_rejections);
	tcase_add_test(spec, test_spec_rejects_unterminated_literal);
	suite_add_tcase(suite, spec);

	tcase_add_test(apply, test_apply_hash);
	tcase_add_test(apply, test_apply_hash_expands_buckets);
	tcase_add_test(apply, test_apply_range);
	tcase_add_test(apply, test_apply_range_source_mismatch);
	tcase_add_test(apply, test_apply_directory);
	suite_add_tcase(suite, apply);

	tcase_add_test(sql, test_predicate_hash);
	tcase_add_test(sql, test_predicate_range);
	tcase_add_test(sql, test_predicate_directory);
	tcase_add_test(sql, test_map_digest);
	suite_add_tcase(suite, sql);
	return suite;
}

int main(void)
{
	SRunner *runner = srunner_create(units_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
