/*
 * metrics.h - the Prometheus endpoint: GET /metrics on config->metrics,
 * answered from stats_prometheus() by a thread of its own (SPEC.md 5), so
 * a scrape never competes with client traffic on a worker's event loop.
 */
#ifndef SHARDGATE_NET_METRICS_H
#define SHARDGATE_NET_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/*
 * When config->has_metrics, listens on config->metrics and starts the
 * metrics thread; otherwise does nothing and returns true. `config` must
 * stay valid until metrics_stop(). On failure (the address cannot be
 * bound, out of memory) returns false with a message naming the address
 * in err, and nothing is left running. One endpoint per process.
 */
bool metrics_start(const config_t *config, char *err, size_t errlen);

/* Stops and joins the metrics thread and frees everything it held; safe
 * when not started, and to call twice. */
void metrics_stop(void);

/* The port the endpoint listens on (useful with port 0), or 0 when not
 * running. */
int metrics_port(void);

#endif
