/*
 * fuzz_config.c - libFuzzer harness for the configuration loader
 * (src/config/config.h): config_load_string() on the input as YAML text,
 * config_free() on success. The error message must be a terminated string
 * within its buffer, and a loaded config must satisfy the bounds config.h
 * states.
 *
 * Secrets written "file:/path" make the loader read that file; run.sh runs
 * the fuzzer with stdin from /dev/null so no path can wait for input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "config/config.h"

#define FUZZ_INPUT_MAX (1024 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_INPUT_MAX)
		return -1;
	/* An exact-size copy: the loader takes (text, len) and must not read past it. */
	char *text = malloc(size ? size : 1);
	if (!text)
		return 0;
	memcpy(text, data, size);

	config_t *config = NULL;
	char err[512];
	memset(err, 0x5a, sizeof(err));
	if (config_load_string("fuzz.yaml", text, size, &config, err, sizeof(err))) {
		fuzz_check(config != NULL);
		fuzz_check(config->n_shards >= 1 && config->n_shards <= CONFIG_MAX_SHARDS);
		fuzz_check(config->default_shard >= 0 && config->default_shard < config->n_shards);
		for (int i = 0; i < config->n_shards; i++)
			fuzz_check(config->shards[i].n_replicas >= 0 &&
			           config->shards[i].n_replicas <= CONFIG_MAX_REPLICAS);
		for (int i = 0; i < config->n_tables; i++) {
			const cfg_table_t *t = &config->tables[i];
			if (t->strategy == STRATEGY_HASH) {
				fuzz_check(t->buckets >= 1 && t->buckets <= CONFIG_MAX_BUCKETS);
				for (int b = 0; b < t->buckets; b++)
					fuzz_check(t->placement[b] >= 0 &&
					           t->placement[b] < config->n_shards);
			}
			if (t->strategy == STRATEGY_RANGE)
				for (int r = 0; r < t->n_ranges; r++)
					fuzz_check(t->ranges[r].shard >= 0 &&
					           t->ranges[r].shard < config->n_shards);
			fuzz_check(config_find_table(config, t->name) >= 0);
		}
		config_free(config);
	} else {
		fuzz_check(config == NULL);
		fuzz_check(memchr(err, '\0', sizeof(err)) != NULL);
	}
	free(text);
	return 0;
}
