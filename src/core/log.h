/*
 * log.h - one JSON object per line on stderr.
 *
 * Every line carries ts, level and event; callers add the ids that matter
 * (client, server, shard, node) as further fields. Never pass a password
 * or a row.
 */
#ifndef SHARDGATE_LOG_H
#define SHARDGATE_LOG_H

#include <stddef.h>

#include "config/config.h"

void log_set_level(log_level_t level);
log_level_t log_get_level(void);

/*
 * Writes {"ts":..., "level":..., "event":<event>, <fields>} where `fields`
 * is a printf format producing zero or more `"key":value` pairs joined by
 * commas. String values must go through log_json_escape().
 */
void log_event(log_level_t level, const char *event, const char *fields, ...)
	__attribute__((format(printf, 3, 4)));

/* Escapes `in` for a JSON string body into out (always NUL-terminated). */
const char *log_json_escape(char *out, size_t outlen, const char *in);

#define log_debug(event, ...) log_event(LOG_DEBUG, event, __VA_ARGS__)
#define log_info(event, ...) log_event(LOG_INFO, event, __VA_ARGS__)
#define log_warning(event, ...) log_event(LOG_WARNING, event, __VA_ARGS__)
#define log_error(event, ...) log_event(LOG_ERROR, event, __VA_ARGS__)

#endif
