/*
 * breaker.h - a per-node circuit breaker (SPEC.md section 6).
 *
 * A pure state machine: every call takes the current time in milliseconds
 * from the caller (any monotonic clock), so tests drive it with a fake clock.
 * It is not thread-safe; the health monitor thread owns every breaker and
 * folds outcomes reported by workers into it once per round.
 *
 *   CLOSED    --(failures_to_open consecutive failures, or a failure rate of
 *                at least rate_percent % over at least rate_min_outcomes
 *                outcomes within the last rate_window_ms)--> OPEN
 *   OPEN      --(open_for_ms elapsed, noticed by breaker_allow)--> HALF_OPEN
 *   HALF_OPEN --(breaker_allow returns true exactly once: the probe)
 *             probe succeeds --> CLOSED (counters and window cleared)
 *             probe fails    --> OPEN (the cool-down starts again)
 *
 * Both opening rules apply: the consecutive rule reacts fast to a dead node,
 * the rate rule catches a flapping node whose failures are interleaved with
 * successes (e.g. 1 in 2 queries failing never makes 3 in a row).
 * Outcomes recorded while OPEN, and while HALF_OPEN other than the probe's
 * own, are ignored: only the probe can close the breaker.
 */
#ifndef SHARDGATE_BREAKER_H
#define SHARDGATE_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN } breaker_state_t;

/* Buckets of the failure-rate window; the window is rate_window_ms long and
 * each bucket covers rate_window_ms / BREAKER_WINDOW_BUCKETS. */
#define BREAKER_WINDOW_BUCKETS 10

typedef struct {
	int failures_to_open;   /* consecutive failures that open; >= 1 */
	int64_t open_for_ms;    /* cool-down before the probe */
	int64_t rate_window_ms; /* failure-rate window; default 10 s */
	int rate_min_outcomes;  /* fewer outcomes than this never open; 0 = rule off */
	int rate_percent;       /* failures * 100 >= rate_percent * outcomes opens */
} breaker_config_t;

typedef struct {
	int64_t slot; /* which rate_window_ms / BUCKETS slice of time it counts */
	uint32_t successes;
	uint32_t failures;
} breaker_bucket_t;

typedef struct {
	breaker_config_t config;
	breaker_state_t state;
	int consecutive_failures;
	int64_t opened_at_ms; /* when it last went OPEN */
	bool probe_granted;   /* HALF_OPEN: breaker_allow already said yes */
	breaker_bucket_t window[BREAKER_WINDOW_BUCKETS];
} breaker_t;

/* The defaults of the rate rule: >= 50 % of >= 10 outcomes in 10 s. */
#define BREAKER_DEFAULT_RATE_WINDOW_MS 10000
#define BREAKER_DEFAULT_RATE_MIN       10
#define BREAKER_DEFAULT_RATE_PERCENT   50

/* Fills config with failures_to_open and open_for_ms and the default rate
 * rule. */
void breaker_config_default(breaker_config_t *config, int failures_to_open, int64_t open_for_ms);

/* A CLOSED breaker with empty counters. */
void breaker_init(breaker_t *breaker, const breaker_config_t *config);

/*
 * May a request (or the monitor's check) go to the node now? CLOSED: yes.
 * OPEN: no, unless open_for_ms has passed, in which case it turns HALF_OPEN
 * and continues as HALF_OPEN. HALF_OPEN: yes exactly once (the probe), then
 * no until that probe's outcome is recorded.
 */
bool breaker_allow(breaker_t *breaker, int64_t now_ms);

/* Records one outcome. CLOSED: counts it and may open. HALF_OPEN after the
 * probe was granted: decides the probe. Otherwise ignored. */
void breaker_record(breaker_t *breaker, bool ok, int64_t now_ms);

/*
 * Records a batch of outcomes whose order is unknown (passive reports
 * gathered since the last round). Only acts while CLOSED: all of them count
 * toward the rate rule; for the consecutive rule a batch with any success
 * resets the count, and a batch of failures only adds to it.
 */
void breaker_record_batch(breaker_t *breaker, uint32_t successes, uint32_t failures,
                          int64_t now_ms);

const char *breaker_state_name(breaker_state_t state);

#endif
