/*
 * test_health.c - Check suite for the pure parts of the health monitor
 * (src/health/health): LSN parsing, byte and time lag from synthetic LSN
 * histories, the eligibility hysteresis, and snapshot lookups with no
 * monitor running.
 */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "health/health.h"

#define MB (1024 * 1024)

START_TEST(test_health_parse_lsn_text_form)
{
	uint64_t lsn = 0;

	ck_assert(health_parse_lsn("16/B374D848", &lsn));
	ck_assert_msg(lsn == 0x16B374D848ULL, "expected 0x16B374D848, got 0x%llX",
	              (unsigned long long)lsn);
	ck_assert(health_parse_lsn("0/0", &lsn));
	ck_assert(lsn == 0);
	ck_assert(health_parse_lsn("0/3000060", &lsn));
	ck_assert(lsn == 0x3000060ULL);
	ck_assert(health_parse_lsn("FFFFFFFF/FFFFFFFF", &lsn));
	ck_assert(lsn == UINT64_MAX);
	ck_assert(health_parse_lsn("a/b", &lsn));
	ck_assert(lsn == (0xAULL << 32 | 0xB));
}
END_TEST

START_TEST(test_health_parse_lsn_rejects)
{
	static const char *const bad[] = {
	    "",      "/",           "16/",         "/B374D848", "16B374D848", "16/B374D84G",
	    "1/2/3", "123456789/0", "0/123456789", " 0/1",      "0/1 ",       "-1/0"};
	uint64_t lsn = 42;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(!health_parse_lsn(bad[i], &lsn), "\"%s\" should be refused", bad[i]);
		ck_assert_msg(lsn == 42, "output written on refusing \"%s\"", bad[i]);
	}
	ck_assert(!health_parse_lsn(NULL, &lsn));
}
END_TEST

START_TEST(test_health_lag_bytes)
{
	ck_assert_int_eq(health_lag_bytes(0x5000000, 0x4000000), 0x1000000);
	ck_assert_int_eq(health_lag_bytes(0x4000000, 0x4000000), 0);
	/* a replica checked after the primary may be ahead: never negative */
	ck_assert_int_eq(health_lag_bytes(0x4000000, 0x5000000), 0);
}
END_TEST

START_TEST(test_health_lag_idle_primary_is_not_lag)
{
	health_lsn_history_t h;

	health_history_reset(&h);
	/* the primary wrote until t=1000 and has been idle for an hour since */
	health_history_add(&h, 0, 100);
	health_history_add(&h, 500, 200);
	health_history_add(&h, 1000, 300);
	for (int64_t t = 1250; t < 3600 * 1000; t += 250)
		health_history_add(&h, t, 300); /* same LSN: no new sample */
	ck_assert_int_eq(h.count, 3);
	ck_assert_int_eq(health_lag_ms(&h, 300, 3600 * 1000), 0);
	ck_assert_int_eq(health_lag_ms(&h, 400, 3600 * 1000), 0);
}
END_TEST

START_TEST(test_health_lag_is_age_of_oldest_unreplayed)
{
	health_lsn_history_t h;

	health_history_reset(&h);
	health_history_add(&h, 1000, 100);
	health_history_add(&h, 2000, 200);
	health_history_add(&h, 3000, 300);
	health_history_add(&h, 4000, 400);
	/* replayed 200: the first WAL above it was seen at t=3000 */
	ck_assert_int_eq(health_lag_ms(&h, 200, 5000), 2000);
	/* between samples: 250 is below 300, seen at 3000 */
	ck_assert_int_eq(health_lag_ms(&h, 250, 5000), 2000);
	ck_assert_int_eq(health_lag_ms(&h, 399, 5000), 1000);
	/* behind the oldest sample: that sample's age, a lower bound */
	ck_assert_int_eq(health_lag_ms(&h, 50, 5000), 4000);
	/* the replica's check may predate the primary's sample: never negative */
	ck_assert_int_eq(health_lag_ms(&h, 399, 3500), 0);
}
END_TEST

START_TEST(test_health_lag_empty_history_unknown)
{
	health_lsn_history_t h;

	health_history_reset(&h);
	ck_assert_int_eq(health_lag_ms(&h, 100, 5000), -1);
}
END_TEST

START_TEST(test_health_history_ring_and_reset)
{
	health_lsn_history_t h;

	health_history_reset(&h);
	for (int i = 1; i <= HEALTH_LSN_HISTORY + 10; i++)
		health_history_add(&h, i * 10, (uint64_t)i * 100);
	ck_assert_int_eq(h.count, HEALTH_LSN_HISTORY);
	/* the oldest kept is i = 11 (LSN 1100 at t=110) */
	ck_assert_int_eq(health_lag_ms(&h, 0, 10000), 10000 - 110);
	ck_assert_int_eq(health_lag_ms(&h, 1100, 10000), 10000 - 120);
	/* an LSN going backwards (new primary) restarts the history */
	health_history_add(&h, 20000, 50);
	ck_assert_int_eq(h.count, 1);
	ck_assert_int_eq(health_lag_ms(&h, 10, 20500), 500);
}
END_TEST

START_TEST(test_health_eligibility_hysteresis)
{
	const int64_t max_bytes = 16 * MB, max_ms = 5000;
	bool eligible = true;

	/* within bounds: stays eligible, also exactly at the bound */
	eligible = health_lag_eligible(eligible, 10 * MB, 4000, max_bytes, max_ms);
	ck_assert(eligible);
	eligible = health_lag_eligible(eligible, 16 * MB, 5000, max_bytes, max_ms);
	ck_assert(eligible);
	/* over either bound: ineligible */
	ck_assert(!health_lag_eligible(true, 16 * MB + 1, 0, max_bytes, max_ms));
	ck_assert(!health_lag_eligible(true, 0, 5001, max_bytes, max_ms));
	eligible = health_lag_eligible(eligible, 20 * MB, 100, max_bytes, max_ms);
	ck_assert(!eligible);
	/* back under the bound but not under half: still ineligible */
	eligible = health_lag_eligible(eligible, 10 * MB, 100, max_bytes, max_ms);
	ck_assert(!eligible);
	eligible = health_lag_eligible(eligible, 8 * MB, 100, max_bytes, max_ms);
	ck_assert_msg(!eligible, "exactly 50%% is not below 50%%");
	/* bytes under half, time not: still ineligible (both must be) */
	eligible = health_lag_eligible(eligible, 1 * MB, 2500, max_bytes, max_ms);
	ck_assert(!eligible);
	/* both under half: eligible again */
	eligible = health_lag_eligible(eligible, 8 * MB - 1, 2499, max_bytes, max_ms);
	ck_assert(eligible);
}
END_TEST

START_TEST(test_health_eligibility_zero_bound_is_off)
{
	ck_assert(health_lag_eligible(true, INT64_MAX, 0, 0, 5000));
	ck_assert(health_lag_eligible(false, INT64_MAX, 0, 0, 5000));
	ck_assert(!health_lag_eligible(true, INT64_MAX, 6000, 0, 5000));
	/* odd bound: half of 1 byte rounds so that 0 is below it */
	ck_assert(health_lag_eligible(false, 0, 0, 1, 1));
	ck_assert(!health_lag_eligible(false, 1, 0, 1, 1));
}
END_TEST

START_TEST(test_health_no_monitor)
{
	const health_snapshot_t *snapshot = health_acquire();

	ck_assert_ptr_null(snapshot);
	ck_assert(health_node_allowed(NULL, 0, 0));
	ck_assert_ptr_null(health_snapshot_node(NULL, 0, 0));
	health_release(NULL);
	health_report(0, 0, false);   /* ignored, must not crash */
	health_report(-1, 99, false); /* out of range: ignored */
	health_stop();                /* not started: no-op */
	ck_assert_str_eq(node_state_name(NODE_UP), "up");
	ck_assert_str_eq(node_state_name(NODE_DOWN), "down");
	ck_assert_str_eq(node_state_name(NODE_UNKNOWN), "unknown");
}
END_TEST

static Suite *health_suite(void)
{
	Suite *s = suite_create("health");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_health_parse_lsn_text_form);
	tcase_add_test(tc, test_health_parse_lsn_rejects);
	tcase_add_test(tc, test_health_lag_bytes);
	tcase_add_test(tc, test_health_lag_idle_primary_is_not_lag);
	tcase_add_test(tc, test_health_lag_is_age_of_oldest_unreplayed);
	tcase_add_test(tc, test_health_lag_empty_history_unknown);
	tcase_add_test(tc, test_health_history_ring_and_reset);
	tcase_add_test(tc, test_health_eligibility_hysteresis);
	tcase_add_test(tc, test_health_eligibility_zero_bound_is_off);
	tcase_add_test(tc, test_health_no_monitor);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *runner = srunner_create(health_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
