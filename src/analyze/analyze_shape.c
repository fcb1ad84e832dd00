/*
 * analyze_shape.c - literal-free keys for statement texts, from
 * PostgreSQL's scanner (pg_query_scan), so that routing decisions are cached
 * per statement shape rather than per text: simple-protocol clients send a
 * new text for every literal value.
 */
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <string.h>

#include "analyze/analyze.h"

static bool is_literal(PgQuery__Token token)
{
	switch (token) {
	case PG_QUERY__TOKEN__ICONST:
	case PG_QUERY__TOKEN__FCONST:
	case PG_QUERY__TOKEN__SCONST:
	case PG_QUERY__TOKEN__USCONST:
	case PG_QUERY__TOKEN__BCONST:
	case PG_QUERY__TOKEN__XCONST:
		return true;
	default:
		return false;
	}
}

size_t analyze_shape_key(const char *sql, size_t len, char *out, size_t outlen,
			 bool *had_literals)
{
	if (sql[len] != '\0' || outlen < 2)
		return 0;
	PgQueryScanResult scan = pg_query_scan(sql);
	if (scan.error) {
		pg_query_free_scan_result(scan);
		return 0;
	}
	PgQuery__ScanResult *result =
		pg_query__scan_result__unpack(NULL, scan.pbuf.len, (const uint8_t *)scan.pbuf.data);
	pg_query_free_scan_result(scan);
	if (!result)
		return 0;
	size_t used = 0;
	bool literals = false, fits = true;
	for (size_t i = 0; i < result->n_tokens && fits; i++) {
		const PgQuery__ScanToken *t = result->tokens[i];
		if (t->start < 0 || t->end < t->start || (size_t)t->end > len) {
			fits = false;
			break;
		}
		const char *piece = sql + t->start;
		size_t n = (size_t)(t->end - t->start);
		char marker[2] = {'\x01', (char)('A' + (t->token % 26))};
		if (is_literal(t->token)) {
			/* One marker per literal kind: 'a' and 1 stay different. */
			piece = marker;
			n = 2;
			literals = true;
		}
		if (used + n + 1 > outlen) {
			fits = false;
			break;
		}
		memcpy(out + used, piece, n);
		used += n;
		out[used++] = ' '; /* tokens stay apart: "a b" is not "ab" */
	}
	pg_query__scan_result__free_unpacked(result, NULL);
	if (!fits)
		return 0;
	*had_literals = literals;
	return used;
}

static bool ident_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '$' || c >= 0x80;
}

size_t analyze_fast_shape_key(const char *sql, size_t len, char *out, size_t outlen,
			      bool *had_literals)
{
	if (len + 1 > outlen)
		return 0;
	/* Comments may hold hints, quoted identifiers name tables: such texts
	 * take the scanner's path, which reads them exactly. */
	for (size_t i = 0; i < len; i++) {
		char ch = sql[i];
		if (ch == '"' || ch == '\0' || (ch == '-' && i + 1 < len && sql[i + 1] == '-') ||
		    (ch == '/' && i + 1 < len && sql[i + 1] == '*'))
			return 0;
	}
	size_t used = 0;
	bool in_string = false, literals = false;
	for (size_t i = 0; i < len;) {
		unsigned char ch = (unsigned char)sql[i];
		if (in_string) {
			/* Kept verbatim: a misread string end can only keep digits
			 * that could have been masked, never mask code. */
			out[used++] = (char)ch;
			if (ch == '\'')
				in_string = false;
			i++;
			continue;
		}
		if (ch == '\'') {
			in_string = true;
			out[used++] = (char)ch;
			i++;
			continue;
		}
		if (ch >= '0' && ch <= '9' && (i == 0 || !ident_char((unsigned char)sql[i - 1]))) {
			/* A numeric literal: digits, a fraction, an exponent. */
			while (i < len && ((sql[i] >= '0' && sql[i] <= '9') || sql[i] == '.' ||
					   sql[i] == 'e' || sql[i] == 'E' || sql[i] == '_'))
				i++;
			out[used++] = '#';
			literals = true;
			continue;
		}
		out[used++] = (char)ch;
		i++;
	}
	*had_literals = literals;
	return used;
}
