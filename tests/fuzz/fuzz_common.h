/*
 * fuzz_common.h - what every harness shares: a sink that keeps the
 * compiler from dropping reads, and an assertion that aborts (so libFuzzer
 * records the input) when a promise of the code under test is broken.
 */
#ifndef SHARDGATE_FUZZ_COMMON_H
#define SHARDGATE_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static volatile uint8_t fuzz_sink;

/* Reads every byte of p[0..n): ASan reports any that are out of bounds. */
static inline void fuzz_touch(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc ^= p[i];
	fuzz_sink = acc;
}

static inline void fuzz_check(int cond)
{
	if (!cond)
		abort();
}

#endif
