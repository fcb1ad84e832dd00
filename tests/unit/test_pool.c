/*
 * test_pool.c - the connection retry backoff: exponential ceiling, capped,
 * with full jitter (every value from 0 to the ceiling can be drawn).
 */
#include <check.h>
#include <stdlib.h>

#include "pool/pool.h"

START_TEST(test_backoff_ceiling_doubles_and_caps)
{
	/* random = UINT32_MAX - k hits the top of the range for some k. */
	int64_t expected[] = {50, 100, 200, 400, 800, 1000, 1000};
	for (int failures = 1; failures <= 7; failures++) {
		int64_t ceiling = expected[failures - 1];
		int64_t max = 0;
		for (uint32_t r = 0; r < 5000; r++) {
			int64_t ms = pool_backoff_ms(failures, r * 7919u);
			ck_assert_msg(ms >= 0 && ms <= ceiling, "failures %d: %lld outside [0, %lld]",
				      failures, (long long)ms, (long long)ceiling);
			if (ms > max)
				max = ms;
		}
		ck_assert_msg(max == ceiling, "failures %d: the ceiling %lld is never drawn (max %lld)",
			      failures, (long long)ceiling, (long long)max);
	}
}
END_TEST

START_TEST(test_backoff_full_jitter_reaches_zero)
{
	ck_assert_int_eq(pool_backoff_ms(3, 0), 0);
	ck_assert_int_eq(pool_backoff_ms(3, 201), 0);
	ck_assert_int_eq(pool_backoff_ms(3, 200), 200);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("backoff");
	tcase_add_test(tc, test_backoff_ceiling_doubles_and_caps);
	tcase_add_test(tc, test_backoff_full_jitter_reaches_zero);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
