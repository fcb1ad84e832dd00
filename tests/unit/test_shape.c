/*
 * test_shape.c - statement shapes, the keys under which routing decisions
 * are cached: texts that differ only in literal values share a shape;
 * anything that can change a decision (keywords, identifiers, parameters,
 * comments with hints, literal kinds) keeps shapes apart.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analyze.h"

typedef size_t (*shape_fn)(const char *, size_t, char *, size_t, bool *);

static char *shape(shape_fn fn, const char *sql)
{
	static char bufs[4][1024];
	static int which;
	char *out = bufs[which++ % 4];
	bool literals;
	size_t n = fn(sql, strlen(sql), out, sizeof(bufs[0]) - 1, &literals);
	if (!n)
		return NULL;
	out[n] = '\0';
	return out;
}

static void same(shape_fn fn, const char *a, const char *b)
{
	char *ka = shape(fn, a), *kb = shape(fn, b);
	ck_assert_msg(ka && kb, "no key for \"%s\" or \"%s\"", a, b);
	ck_assert_msg(strcmp(ka, kb) == 0, "\"%s\" and \"%s\" should share a shape: %s | %s", a, b,
		      ka, kb);
}

static void differ(shape_fn fn, const char *a, const char *b)
{
	char *ka = shape(fn, a), *kb = shape(fn, b);
	ck_assert_msg(!ka || !kb || strcmp(ka, kb) != 0,
		      "\"%s\" and \"%s\" must not share a shape (%s)", a, b, ka ? ka : "");
}

START_TEST(test_fast_numbers_masked)
{
	same(analyze_fast_shape_key, "SELECT abalance FROM pgbench_accounts WHERE aid = 42;",
	     "SELECT abalance FROM pgbench_accounts WHERE aid = 1234567;");
	same(analyze_fast_shape_key, "select 1.5, 2e10", "select 3.25, 4E2");
	differ(analyze_fast_shape_key, "select * from t1", "select * from t2");
	differ(analyze_fast_shape_key, "select $1", "select $2");
	differ(analyze_fast_shape_key, "select a.b1 from a", "select a.b2 from a");
	differ(analyze_fast_shape_key, "select 1", "delete from t where 1 = 1");
	/* strings are kept verbatim by the fast tier */
	differ(analyze_fast_shape_key, "select 'a1'", "select 'a2'");
	differ(analyze_fast_shape_key, "select '1' from t", "select 1 from t");
}
END_TEST

START_TEST(test_fast_refuses_comments_and_quoted_identifiers)
{
	ck_assert_ptr_null(shape(analyze_fast_shape_key, "/* shardgate: max_lag=100ms */ select 1"));
	ck_assert_ptr_null(shape(analyze_fast_shape_key, "select 1 -- shardgate: primary"));
	ck_assert_ptr_null(shape(analyze_fast_shape_key, "select * from \"t 1\""));
}
END_TEST

START_TEST(test_scanner_shapes)
{
	same(analyze_shape_key, "select * from t where name = 'alice' and id = 7",
	     "select  *  from t where name = 'bob' and id = 12345");
	differ(analyze_shape_key, "select 1", "select '1'");
	differ(analyze_shape_key, "select * from \"t 1\"", "select * from \"t 2\"");
	differ(analyze_shape_key, "/* shardgate: max_lag=100ms */ select 1",
	       "/* shardgate: max_lag=5s */ select 1");
	differ(analyze_shape_key, "/* shardgate: primary */ select 1", "select 1");
	differ(analyze_shape_key, "select ab", "select a b");
	differ(analyze_shape_key, "select 1 for update", "select 1");
	same(analyze_shape_key, "select $1 -- x\n", "select $1 -- x\n");
	differ(analyze_shape_key, "select $1", "select $2");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("shape");
	TCase *tc = tcase_create("shape");
	tcase_add_test(tc, test_fast_numbers_masked);
	tcase_add_test(tc, test_fast_refuses_comments_and_quoted_identifiers);
	tcase_add_test(tc, test_scanner_shapes);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
