/*
 * analyze_internal.h - shared between the files of src/analyze/ only.
 */
#ifndef SHARDGATE_ANALYZE_INTERNAL_H
#define SHARDGATE_ANALYZE_INTERNAL_H

#include "analyze/analyze.h"

/* A new analysis of sql[0..len) with one reference, or NULL when out of memory. */
analysis_t *analyze_new_analysis(const char *sql, size_t len);

#endif
