/*
 * buf.h - growable byte buffers for socket input and output.
 *
 * Bytes live in data[off, len); consumers advance off, producers append at
 * len. A buffer never grows past the limit its owner checks before calling
 * buf_reserve(), so a length read from the network is validated first.
 */
#ifndef SHARDGATE_BUF_H
#define SHARDGATE_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	uint8_t *data;
	size_t off; /* first unconsumed byte */
	size_t len; /* end of the bytes held */
	size_t cap;
} buf_t;

static inline size_t buf_avail(const buf_t *b)
{
	return b->len - b->off;
}

static inline const uint8_t *buf_head(const buf_t *b)
{
	return b->data + b->off;
}

/* Makes room for `extra` more bytes after len; false only when out of memory. */
bool buf_reserve(buf_t *b, size_t extra);
bool buf_append(buf_t *b, const void *bytes, size_t n);
void buf_consume(buf_t *b, size_t n);
/* Moves unconsumed bytes to the front; frees storage when empty and large. */
void buf_compact(buf_t *b);
void buf_free(buf_t *b);

/* Big-endian writers used by the protocol builders; they assume room was
 * reserved. */
void buf_put_u8(buf_t *b, uint8_t v);
void buf_put_u16(buf_t *b, uint16_t v);
void buf_put_u32(buf_t *b, uint32_t v);
void buf_put_bytes(buf_t *b, const void *bytes, size_t n);
void buf_put_cstr(buf_t *b, const char *s);

static inline uint32_t buf_get_u32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint16_t buf_get_u16(const uint8_t *p)
{
	return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

static inline void buf_set_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

#endif
