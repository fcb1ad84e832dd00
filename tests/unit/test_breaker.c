/*
 * test_breaker.c - Check suite for the circuit breaker (src/health/breaker).
 *
 * The breaker takes the time from its caller, so every case drives it with
 * an explicit clock: `now` in milliseconds.
 */
#include <check.h>
#include <stdlib.h>

#include "health/breaker.h"

/* 3 consecutive failures open, 5 s cool-down, rate rule at its defaults. */
static breaker_t make_breaker(void)
{
	breaker_config_t config;
	breaker_t breaker;

	breaker_config_default(&config, 3, 5000);
	breaker_init(&breaker, &config);
	return breaker;
}

static void expect_state(const breaker_t *b, breaker_state_t state)
{
	ck_assert_msg(b->state == state, "expected breaker %s, got %s", breaker_state_name(state),
	              breaker_state_name(b->state));
}

/* Opens b at time now with three failures. */
static void open_at(breaker_t *b, int64_t now)
{
	for (int i = 0; i < 3; i++)
		breaker_record(b, false, now);
	expect_state(b, BREAKER_OPEN);
}

START_TEST(test_breaker_starts_closed_and_allows)
{
	breaker_t b = make_breaker();

	expect_state(&b, BREAKER_CLOSED);
	for (int i = 0; i < 5; i++)
		ck_assert(breaker_allow(&b, 1000 + i));
}
END_TEST

START_TEST(test_breaker_opens_after_consecutive_failures)
{
	breaker_t b = make_breaker();

	breaker_record(&b, false, 1000);
	breaker_record(&b, false, 1100);
	expect_state(&b, BREAKER_CLOSED);
	breaker_record(&b, false, 1200);
	expect_state(&b, BREAKER_OPEN);
	ck_assert_msg(!breaker_allow(&b, 1200), "an open breaker must refuse");
	ck_assert_msg(!breaker_allow(&b, 6199), "still refusing 1 ms before the cool-down ends");
}
END_TEST

START_TEST(test_breaker_success_resets_the_streak)
{
	breaker_t b = make_breaker();

	breaker_record(&b, false, 1000);
	breaker_record(&b, false, 1000);
	breaker_record(&b, true, 1000);
	breaker_record(&b, false, 1000);
	breaker_record(&b, false, 1000);
	expect_state(&b, BREAKER_CLOSED);
	breaker_record(&b, false, 1000);
	expect_state(&b, BREAKER_OPEN);
}
END_TEST

START_TEST(test_breaker_half_open_allows_exactly_one_probe)
{
	breaker_t b = make_breaker();

	open_at(&b, 1000);
	ck_assert(breaker_allow(&b, 6000)); /* cool-down of 5000 ms over */
	expect_state(&b, BREAKER_HALF_OPEN);
	ck_assert_msg(!breaker_allow(&b, 6000), "a second probe was allowed");
	ck_assert_msg(!breaker_allow(&b, 20000), "a probe was allowed while one is out");
	expect_state(&b, BREAKER_HALF_OPEN);
}
END_TEST

START_TEST(test_breaker_probe_success_closes)
{
	breaker_t b = make_breaker();

	open_at(&b, 1000);
	ck_assert(breaker_allow(&b, 6500));
	breaker_record(&b, true, 6510);
	expect_state(&b, BREAKER_CLOSED);
	ck_assert(breaker_allow(&b, 6520));
	ck_assert(breaker_allow(&b, 6530));
	/* counters were cleared: two failures do not open again */
	breaker_record(&b, false, 6600);
	breaker_record(&b, false, 6700);
	expect_state(&b, BREAKER_CLOSED);
}
END_TEST

START_TEST(test_breaker_probe_failure_restarts_cool_down)
{
	breaker_t b = make_breaker();

	open_at(&b, 1000);
	ck_assert(breaker_allow(&b, 6000));
	breaker_record(&b, false, 7000);
	expect_state(&b, BREAKER_OPEN);
	ck_assert_msg(!breaker_allow(&b, 11999), "cool-down must restart at the failed probe");
	ck_assert(breaker_allow(&b, 12000));
	expect_state(&b, BREAKER_HALF_OPEN);
}
END_TEST

START_TEST(test_breaker_ignores_outcomes_unless_probe)
{
	breaker_t b = make_breaker();

	open_at(&b, 1000);
	breaker_record(&b, true, 2000); /* a late success while OPEN */
	expect_state(&b, BREAKER_OPEN);
	ck_assert(breaker_allow(&b, 6000));
	expect_state(&b, BREAKER_HALF_OPEN);

	/* a HALF_OPEN breaker whose probe was not granted ignores outcomes */
	b.probe_granted = false;
	breaker_record(&b, true, 6001);
	expect_state(&b, BREAKER_HALF_OPEN);
	breaker_record_batch(&b, 10, 0, 6002);
	expect_state(&b, BREAKER_HALF_OPEN);
}
END_TEST

START_TEST(test_breaker_rate_rule_opens_interleaved_failures)
{
	breaker_t b = make_breaker();

	/* alternate: never 3 in a row; the 10th outcome makes 5 of 10 */
	for (int i = 0; i < 9; i++) {
		breaker_record(&b, i % 2 == 1, 1000 + i * 100);
		expect_state(&b, BREAKER_CLOSED);
	}
	breaker_record(&b, false, 1900);
	expect_state(&b, BREAKER_OPEN);
}
END_TEST

START_TEST(test_breaker_rate_rule_below_threshold)
{
	breaker_t b = make_breaker();

	/* 4 failures in 10 outcomes: 40 % < 50 % */
	for (int i = 0; i < 10; i++)
		breaker_record(&b, i % 5 >= 2, 1000 + i * 100);
	expect_state(&b, BREAKER_CLOSED);
	/* too few outcomes: 2 of 3 failed, but 3 < 10 */
	b = make_breaker();
	breaker_record(&b, false, 1000);
	breaker_record(&b, true, 1000);
	breaker_record(&b, false, 1000);
	expect_state(&b, BREAKER_CLOSED);
}
END_TEST

START_TEST(test_breaker_rate_window_forgets_old_outcomes)
{
	breaker_t b = make_breaker();

	/* 4 failures among 8 outcomes long ago... */
	for (int i = 0; i < 8; i++)
		breaker_record(&b, i % 2 == 1, 1000);
	expect_state(&b, BREAKER_CLOSED);
	/* ...then, 20 s later, 2 outcomes with one failure: only 2 in window */
	breaker_record(&b, true, 21000);
	breaker_record(&b, false, 21000);
	expect_state(&b, BREAKER_CLOSED);
	/* within the window they would have opened it */
	b = make_breaker();
	for (int i = 0; i < 8; i++)
		breaker_record(&b, i % 2 == 1, 1000);
	breaker_record(&b, true, 9000);
	breaker_record(&b, false, 9000);
	expect_state(&b, BREAKER_OPEN);
}
END_TEST

START_TEST(test_breaker_batch_rules)
{
	breaker_t b = make_breaker();

	/* a batch with any success resets the streak: no open */
	breaker_record_batch(&b, 1, 2, 1000);
	breaker_record_batch(&b, 1, 2, 1100);
	expect_state(&b, BREAKER_CLOSED);
	/* a batch of only failures adds to the streak */
	b = make_breaker();
	breaker_record(&b, false, 1000);
	breaker_record_batch(&b, 0, 2, 1100);
	expect_state(&b, BREAKER_OPEN);
	/* the rate rule sees every outcome of a batch */
	b = make_breaker();
	breaker_record_batch(&b, 50, 50, 1000);
	expect_state(&b, BREAKER_OPEN);
	b = make_breaker();
	breaker_record_batch(&b, 51, 49, 1000);
	expect_state(&b, BREAKER_CLOSED);
}
END_TEST

START_TEST(test_breaker_state_names)
{
	ck_assert_str_eq(breaker_state_name(BREAKER_CLOSED), "closed");
	ck_assert_str_eq(breaker_state_name(BREAKER_OPEN), "open");
	ck_assert_str_eq(breaker_state_name(BREAKER_HALF_OPEN), "half_open");
}
END_TEST

START_TEST(test_breaker_one_failure_to_open)
{
	breaker_config_t config;
	breaker_t b;

	breaker_config_default(&config, 1, 0);
	breaker_init(&b, &config);
	breaker_record(&b, false, 5);
	expect_state(&b, BREAKER_OPEN);
	/* open_for 0: the probe is allowed at once */
	ck_assert(breaker_allow(&b, 5));
	ck_assert(!breaker_allow(&b, 5));
}
END_TEST

static Suite *breaker_suite(void)
{
	Suite *s = suite_create("breaker");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_breaker_starts_closed_and_allows);
	tcase_add_test(tc, test_breaker_opens_after_consecutive_failures);
	tcase_add_test(tc, test_breaker_success_resets_the_streak);
	tcase_add_test(tc, test_breaker_half_open_allows_exactly_one_probe);
	tcase_add_test(tc, test_breaker_probe_success_closes);
	tcase_add_test(tc, test_breaker_probe_failure_restarts_cool_down);
	tcase_add_test(tc, test_breaker_ignores_outcomes_unless_probe);
	tcase_add_test(tc, test_breaker_rate_rule_opens_interleaved_failures);
	tcase_add_test(tc, test_breaker_rate_rule_below_threshold);
	tcase_add_test(tc, test_breaker_rate_window_forgets_old_outcomes);
	tcase_add_test(tc, test_breaker_batch_rules);
	tcase_add_test(tc, test_breaker_state_names);
	tcase_add_test(tc, test_breaker_one_failure_to_open);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *runner = srunner_create(breaker_suite());
	int failed;

	srunner_run_all(runner, CK_NORMAL);
	failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
