/*
 * buf.c - growable byte buffers.
 */
#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

#define BUF_MIN_CAP 512
#define BUF_KEEP_CAP (64 * 1024) /* larger empty buffers are released */

bool buf_reserve(buf_t *b, size_t extra)
{
	if (b->cap - b->len >= extra)
		return true;
	/* Reclaim consumed space before growing. */
	if (b->off > 0) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->cap - b->len >= extra)
			return true;
	}
	size_t need = b->len + extra;
	if (need < b->len)
		return false;
	size_t cap = b->cap ? b->cap : BUF_MIN_CAP;
	while (cap < need) {
		if (cap > SIZE_MAX / 2)
			return false;
		cap *= 2;
	}
	uint8_t *data = realloc(b->data, cap);
	if (!data)
		return false;
	b->data = data;
	b->cap = cap;
	return true;
}

bool buf_append(buf_t *b, const void *bytes, size_t n)
{
	if (!buf_reserve(b, n))
		return false;
	if (n)
		memcpy(b->data + b->len, bytes, n);
	b->len += n;
	return true;
}

void buf_consume(buf_t *b, size_t n)
{
	b->off += n;
	if (b->off >= b->len) {
		b->off = 0;
		b->len = 0;
	}
}

void buf_compact(buf_t *b)
{
	if (b->off == b->len) {
		b->off = b->len = 0;
		if (b->cap > BUF_KEEP_CAP) {
			free(b->data);
			b->data = NULL;
			b->cap = 0;
		}
		return;
	}
	if (b->off > 0) {
		memmove(b->data, b->data + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
	}
}

void buf_free(buf_t *b)
{
	free(b->data);
	b->data = NULL;
	b->off = b->len = b->cap = 0;
}

void buf_put_u8(buf_t *b, uint8_t v)
{
	b->data[b->len++] = v;
}

void buf_put_u16(buf_t *b, uint16_t v)
{
	b->data[b->len++] = (uint8_t)(v >> 8);
	b->data[b->len++] = (uint8_t)v;
}

void buf_put_u32(buf_t *b, uint32_t v)
{
	buf_set_u32(b->data + b->len, v);
	b->len += 4;
}

void buf_put_bytes(buf_t *b, const void *bytes, size_t n)
{
	if (n)
		memcpy(b->data + b->len, bytes, n);
	b->len += n;
}

void buf_put_cstr(buf_t *b, const char *s)
{
	buf_put_bytes(b, s, strlen(s) + 1);
}
