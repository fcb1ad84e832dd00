/*
 * copy_split.h - split the data of COPY ... FROM STDIN into rows and shard keys.
 *
 * The client's CopyData messages cut the data anywhere: a row may span
 * several messages and a message may hold many rows. The splitter finds the
 * rows as PostgreSQL 15 does (CopyReadLineText, CopyReadAttributesText,
 * CopyReadAttributesCSV, CopyReadBinaryTupleData in
 * src/backend/commands/copyfromparse.c) and hands each one over with its
 * exact bytes, to be forwarded verbatim to one shard as CopyData, and the
 * value of its shard-key field, to be routed with shard_of_text() (text and
 * CSV) or shard_of_binary() (binary).
 *
 * Text and CSV:
 *   - a row ends at the first line terminator outside a CSV quoted field; the
 *     terminator style (\n, \r\n or \r) is fixed by the first line, and a
 *     different one later is an error, as in PostgreSQL;
 *   - text: a backslash escapes the next byte, so backslash-newline is a
 *     newline inside the row (a data byte), not its end;
 *   - "\." ends the data: in text anywhere on a line (the bytes before it on
 *     that line are the last row), in CSV only alone on a line. It is
 *     swallowed, and everything after it up to CopyDone is ignored, as
 *     PostgreSQL ignores it;
 *   - HEADER: the first line goes to header_fn, never to row_fn;
 *   - a row's bytes are the stream's, its terminator included. Only the
 *     last row of the data can lack one: when the data ends without a
 *     newline, or when "\." cut the line (the row is then the bytes before
 *     it). The caller forwards it as it is and sends nothing after it on
 *     that shard (nothing follows it in the data): the shard then parses it
 *     as PostgreSQL parsed the client's data. Appending "\n" would change
 *     it: CSV "\." at the very end is a data row but "\.\n" ends the data,
 *     and a final unpaired backslash, which PostgreSQL drops, would escape
 *     the newline.
 *
 * Binary:
 *   - the file header (signature, flags, extension) must reach every shard
 *     once: header_fn receives it as signature + flags + a zero-length
 *     extension (PostgreSQL skips extension bytes, so the shards read the
 *     same rows);
 *   - each tuple (int16 field count, then int32 length + bytes per field) is
 *     one row and its key is the field's raw bytes (length -1: NULL);
 *   - the trailer (int16 -1) is swallowed: the caller ends each shard's
 *     stream with its own trailer. Bytes after it are an error.
 *
 * Errors carry PostgreSQL's message and SQLSTATE (copy_split_sqlstate()):
 * the caller fails the COPY with them. After an error every call fails.
 * Not checked here, the shard rejects them: the column count beyond the key
 * field (text, CSV) or the exact field count (binary), the encoding of the
 * data, the key value's syntax for its type.
 */
#ifndef SHARDGATE_ROUTE_COPY_SPLIT_H
#define SHARDGATE_ROUTE_COPY_SPLIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest row (and header) accepted by default: PostgreSQL's line buffer
 * cannot grow past MaxAllocSize (1 GiB - 1) either. */
#define COPY_SPLIT_MAX_ROW ((size_t)1 << 30)

/* PostgreSQL's MaxHeapAttributeNumber: no table has more columns. */
#define COPY_SPLIT_MAX_COLUMNS 1600

typedef struct copy_split copy_split_t;

typedef struct {
	char format;             /* 't' text, 'c' csv, 'b' binary */
	char delimiter;          /* 0: the format's default (tab text, ',' csv) */
	const char *null_string; /* NULL: the format's default ("\N" text, "" csv) */
	bool header;             /* HEADER (text, csv): the first line is no row */
	char quote, escape;      /* csv; 0: defaults ('"', escape = quote) */
	int key_position;        /* 0-based field index of the shard key */
	const char *key_column;  /* for messages; NULL: "at position N" */
	bool key_force_not_null; /* csv FORCE_NOT_NULL names the key column */
	bool key_force_null;     /* csv FORCE_NULL names the key column */
	size_t max_row_bytes;    /* 0 (or more): COPY_SPLIT_MAX_ROW */
} copy_split_opts_t;

/*
 * One row: its exact bytes, terminator included (text, CSV: only the data's
 * last row may lack one, see above) or the whole tuple (binary), and the key
 * field's value: de-escaped (text), unquoted (CSV), raw (binary). key is
 * NULL when key_is_null, else it points to key_len bytes (not
 * NUL-terminated). row and key are valid during the call only; callbacks
 * must not call the splitter.
 */
typedef void (*copy_split_row_fn)(void *arg, const uint8_t *row, size_t row_len, const char *key,
                                  size_t key_len, bool key_is_null);

/* The HEADER line as sent (text, CSV) or the binary header (19 bytes). */
typedef void (*copy_split_header_fn)(void *arg, const uint8_t *line, size_t len);

/*
 * A splitter for one COPY. NULL when out of memory or when the options are
 * ones PostgreSQL's ProcessCopyOptions rejects (a delimiter that is a
 * newline, or in text a backslash, '.', a lowercase letter or a digit; a
 * delimiter or CSV quote inside the NULL string; quote equal to delimiter;
 * CSV options with another format; HEADER or DELIMITER with binary), and
 * when key_position is outside 0..COPY_SPLIT_MAX_COLUMNS-1 or quote or
 * escape is a newline.
 */
copy_split_t *copy_split_new(const copy_split_opts_t *opts);

/*
 * Feeds the bytes of one CopyData message (any cut). Calls row_fn for each
 * row completed, header_fn (may be NULL: the header is dropped) for the
 * header. Bytes of an incomplete row are kept until the next call. After
 * "\." (text, CSV) the data is ignored; after the binary trailer any byte
 * is an error. False on malformed data: err holds PostgreSQL's message
 * (when errlen > 0) and the COPY must fail.
 */
bool copy_split_feed(copy_split_t *s, const uint8_t *data, size_t len, copy_split_row_fn row_fn,
                     copy_split_header_fn header_fn, void *arg, char *err, size_t errlen);

/*
 * End of data (CopyDone): passes a last row that had no line terminator
 * (as it is, see above) and checks that the data did not stop
 * inside a CSV quoted field, a binary header or a binary tuple. As in
 * PostgreSQL, a binary stream may end without its trailer, or with one
 * stray byte where a tuple would start. False on malformed data.
 */
bool copy_split_finish(copy_split_t *s, copy_split_row_fn row_fn, copy_split_header_fn header_fn,
                       void *arg, char *err, size_t errlen);

/* Rows passed to row_fn so far (the header not counted). */
uint64_t copy_split_rows(const copy_split_t *s);

/* SQLSTATE of the failure feed or finish reported: "22P04"
 * (bad_copy_file_format), "54000" (a row over max_row_bytes), "53200"
 * (out of memory), "XX000" (a bug here); NULL while nothing failed. */
const char *copy_split_sqlstate(const copy_split_t *s);

void copy_split_free(copy_split_t *s);

#endif
