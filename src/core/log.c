/*
 * log.c - JSON lines on stderr, one write(2) per line so lines from
 * different threads never interleave.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int current_level = LOG_INFO;

void log_set_level(log_level_t level)
{
	atomic_store(&current_level, (int)level);
}

log_level_t log_get_level(void)
{
	return (log_level_t)atomic_load(&current_level);
}

const char *log_json_escape(char *out, size_t outlen, const char *in)
{
	size_t o = 0;
	if (outlen == 0)
		return out;
	for (const unsigned char *p = (const unsigned char *)(in ? in : ""); *p; p++) {
		char tmp[8];
		const char *piece;
		size_t n;
		switch (*p) {
		case '"':
			piece = "\\\"";
			break;
		case '\\':
			piece = "\\\\";
			break;
		case '\n':
			piece = "\\n";
			break;
		case '\r':
			piece = "\\r";
			break;
		case '\t':
			piece = "\\t";
			break;
		default:
			if (*p < 0x20) {
				snprintf(tmp, sizeof(tmp), "\\u%04x", *p);
				piece = tmp;
			} else {
				tmp[0] = (char)*p;
				tmp[1] = '\0';
				piece = tmp;
			}
		}
		n = strlen(piece);
		if (o + n >= outlen)
			break;
		memcpy(out + o, piece, n);
		o += n;
	}
	out[o] = '\0';
	return out;
}

void log_event(log_level_t level, const char *event, const char *fields, ...)
{
	if ((int)level < atomic_load(&current_level))
		return;
	char line[4096];
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
			 "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
			 "\"event\":\"%s\"",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (long)(tv.tv_usec / 1000), log_level_name(level), event);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	if (fields && fields[0]) {
		line[n++] = ',';
		va_list ap;
		va_start(ap, fields);
		int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 2, fields, ap);
		va_end(ap);
		if (m < 0)
			m = 0;
		n += m;
		if ((size_t)n > sizeof(line) - 3)
			n = (int)sizeof(line) - 3;
	}
	line[n++] = '}';
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, (size_t)n);
	(void)w;
}
