/*
 * breaker.c - the circuit breaker state machine (see breaker.h).
 */
#include "health/breaker.h"

#include <string.h>

void breaker_config_default(breaker_config_t *config, int failures_to_open, int64_t open_for_ms)
{
	config->failures_to_open = failures_to_open > 0 ? failures_to_open : 1;
	config->open_for_ms = open_for_ms > 0 ? open_for_ms : 0;
	config->rate_window_ms = BREAKER_DEFAULT_RATE_WINDOW_MS;
	config->rate_min_outcomes = BREAKER_DEFAULT_RATE_MIN;
	config->rate_percent = BREAKER_DEFAULT_RATE_PERCENT;
}

static void clear_counters(breaker_t *breaker)
{
	breaker->consecutive_failures = 0;
	memset(breaker->window, 0, sizeof(breaker->window));
}

void breaker_init(breaker_t *breaker, const breaker_config_t *config)
{
	memset(breaker, 0, sizeof(*breaker));
	breaker->config = *config;
	if (breaker->config.failures_to_open < 1)
		breaker->config.failures_to_open = 1;
	breaker->state = BREAKER_CLOSED;
}

/* The slice of time now_ms falls in; slices are window / BUCKETS long. */
static int64_t window_slot(const breaker_t *breaker, int64_t now_ms)
{
	int64_t width = breaker->config.rate_window_ms / BREAKER_WINDOW_BUCKETS;

	if (width < 1)
		width = 1;
	return now_ms >= 0 ? now_ms / width : -((-now_ms + width - 1) / width);
}

/* Adds outcomes to the bucket of now_ms, recycling a bucket whose slot has
 * fallen out of the window. */
static void window_add(breaker_t *breaker, uint32_t successes, uint32_t failures, int64_t now_ms)
{
	int64_t slot = window_slot(breaker, now_ms);
	int64_t index = slot % BREAKER_WINDOW_BUCKETS;
	breaker_bucket_t *bucket;

	if (index < 0)
		index += BREAKER_WINDOW_BUCKETS;
	bucket = &breaker->window[index];
	if (bucket->slot != slot) {
		bucket->slot = slot;
		bucket->successes = 0;
		bucket->failures = 0;
	}
	bucket->successes += successes;
	bucket->failures += failures;
}

/* True when the buckets still inside the window hold enough outcomes and
 * enough of them are failures. */
static bool window_rate_exceeded(const breaker_t *breaker, int64_t now_ms)
{
	const breaker_config_t *config = &breaker->config;
	int64_t slot = window_slot(breaker, now_ms);
	uint64_t outcomes = 0, failures = 0;

	if (config->rate_min_outcomes <= 0 || config->rate_percent <= 0)
		return false;
	for (int i = 0; i < BREAKER_WINDOW_BUCKETS; i++) {
		const breaker_bucket_t *bucket = &breaker->window[i];
		if (bucket->slot > slot - BREAKER_WINDOW_BUCKETS && bucket->slot <= slot) {
			outcomes += (uint64_t)bucket->successes + bucket->failures;
			failures += bucket->failures;
		}
	}
	return outcomes >= (uint64_t)config->rate_min_outcomes &&
	       failures * 100 >= (uint64_t)config->rate_percent * outcomes;
}

static void trip_open(breaker_t *breaker, int64_t now_ms)
{
	breaker->state = BREAKER_OPEN;
	breaker->opened_at_ms = now_ms;
	breaker->probe_granted = false;
}

/* CLOSED only: opens when either rule says so. */
static void evaluate_closed(breaker_t *breaker, int64_t now_ms)
{
	if (breaker->consecutive_failures >= breaker->config.failures_to_open ||
	    window_rate_exceeded(breaker, now_ms))
		trip_open(breaker, now_ms);
}

bool breaker_allow(breaker_t *breaker, int64_t now_ms)
{
	switch (breaker->state) {
	case BREAKER_CLOSED:
		return true;
	case BREAKER_OPEN:
		if (now_ms - breaker->opened_at_ms < breaker->config.open_for_ms)
			return false;
		breaker->state = BREAKER_HALF_OPEN;
		breaker->probe_granted = false;
		/* fall through */
	case BREAKER_HALF_OPEN:
		if (breaker->probe_granted)
			return false;
		breaker->probe_granted = true;
		return true;
	}
	return false;
}

void breaker_record(breaker_t *breaker, bool ok, int64_t now_ms)
{
	switch (breaker->state) {
	case BREAKER_CLOSED:
		window_add(breaker, ok ? 1 : 0, ok ? 0 : 1, now_ms);
		if (ok)
			breaker->consecutive_failures = 0;
		else
			breaker->consecutive_failures++;
		evaluate_closed(breaker, now_ms);
		break;
	case BREAKER_HALF_OPEN:
		if (!breaker->probe_granted)
			break;
		if (ok) {
			breaker->state = BREAKER_CLOSED;
			breaker->probe_granted = false;
			clear_counters(breaker);
		} else {
			trip_open(breaker, now_ms);
		}
		break;
	case BREAKER_OPEN:
		break;
	}
}

void breaker_record_batch(breaker_t *breaker, uint32_t successes, uint32_t failures, int64_t now_ms)
{
	if (breaker->state != BREAKER_CLOSED || (successes == 0 && failures == 0))
		return;
	window_add(breaker, successes, failures, now_ms);
	if (successes > 0)
		breaker->consecutive_failures = 0;
	else if (failures > (uint32_t)(INT32_MAX - breaker->consecutive_failures))
		breaker->consecutive_failures = INT32_MAX;
	else
		breaker->consecutive_failures += (int)failures;
	evaluate_closed(breaker, now_ms);
}

const char *breaker_state_name(breaker_state_t state)
{
	switch (state) {
	case BREAKER_CLOSED:
		return "closed";
	case BREAKER_OPEN:
		return "open";
	case BREAKER_HALF_OPEN:
		return "half_open";
	}
	return "unknown";
}
