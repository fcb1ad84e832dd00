/*
 * proto.h - PostgreSQL frontend/backend protocol v3: framing, bounded
 * readers and message builders.
 *
 * Framing follows "Message Formats" of the PostgreSQL documentation
 * (protocol-message-formats): after startup, every message is a type byte
 * and an Int32 length that counts itself but not the type byte. The
 * startup-phase packets have no type byte. Every length is checked against
 * a caller-given limit before anything is allocated for it.
 */
#ifndef SHARDGATE_PROTO_H
#define SHARDGATE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define PROTO_VERSION_3 196608u	      /* 3.0 */
#define PROTO_CANCEL_REQUEST 80877102u /* 1234.5678 */
#define PROTO_SSL_REQUEST 80877103u    /* 1234.5679 */
#define PROTO_GSSENC_REQUEST 80877104u /* 1234.5680 */
#define PROTO_STARTUP_MAX 10000	      /* PostgreSQL's MAX_STARTUP_PACKET_LENGTH */
#define PROTO_MAX_PARAMS 64

typedef enum {
	FRAME_OK,	 /* a whole message is available */
	FRAME_NEED_MORE, /* wait for more bytes */
	FRAME_BAD_LENGTH,
	FRAME_TOO_LARGE
} frame_status_t;

const char *frame_status_name(frame_status_t status);

/*
 * Looks at the bytes at p[0..avail) for one typed message. On FRAME_OK sets
 * *type and *total (type byte + length field + body). A length below 4 is
 * FRAME_BAD_LENGTH; one whose total exceeds max_total is FRAME_TOO_LARGE
 * (reported as soon as the header is seen, before the body arrives).
 */
frame_status_t proto_frame(const uint8_t *p, size_t avail, size_t max_total, uint8_t *type,
			   size_t *total);

/* The same for a startup-phase packet (no type byte). */
frame_status_t proto_frame_startup(const uint8_t *p, size_t avail, size_t max_total,
				   size_t *total);

/* A bounded reader over one message body. Every getter returns false
 * instead of reading past the end, and leaves its output untouched then. */
typedef struct {
	const uint8_t *p;
	size_t len;
	size_t pos;
} proto_reader_t;

void proto_reader_init(proto_reader_t *r, const uint8_t *body, size_t len);
bool proto_read_u8(proto_reader_t *r, uint8_t *out);
bool proto_read_u16(proto_reader_t *r, uint16_t *out);
bool proto_read_u32(proto_reader_t *r, uint32_t *out);
bool proto_read_i32(proto_reader_t *r, int32_t *out);
/* A NUL-terminated string inside the body; *out points into the message. */
/* A NUL-terminated string; out and len may be NULL (skip it). */
bool proto_read_cstr(proto_reader_t *r, const char **out, size_t *len);
bool proto_read_bytes(proto_reader_t *r, size_t n, const uint8_t **out);
static inline size_t proto_reader_left(const proto_reader_t *r)
{
	return r->len - r->pos;
}

/* A parsed StartupMessage (protocol 3.0). Strings point into the packet. */
typedef struct {
	uint32_t code; /* PROTO_VERSION_3, PROTO_SSL_REQUEST, ... */
	/* CancelRequest */
	uint32_t cancel_pid;
	uint32_t cancel_key;
	/* StartupMessage */
	const char *user;
	const char *database;
	const char *names[PROTO_MAX_PARAMS];
	const char *values[PROTO_MAX_PARAMS];
	int n_params; /* other than user and database */
} proto_startup_t;

typedef enum {
	STARTUP_OK,
	STARTUP_BAD_VERSION,
	STARTUP_MALFORMED,
	STARTUP_TOO_MANY_PARAMS,
	STARTUP_NO_USER
} startup_status_t;

/* Parses a whole startup packet (length field included). */
startup_status_t proto_parse_startup(const uint8_t *packet, size_t len, proto_startup_t *out);
const char *startup_status_name(startup_status_t status);

/*
 * Builders append one whole message to a buffer. They return false only
 * when memory runs out.
 */
bool proto_put_message(buf_t *b, uint8_t type, const void *body, size_t len);
/* An ErrorResponse/NoticeResponse with S, V, C and M fields. */
bool proto_put_error(buf_t *b, const char *severity, const char *sqlstate, const char *message);
bool proto_put_auth_request(buf_t *b, uint32_t code, const void *extra, size_t len);
bool proto_put_parameter_status(buf_t *b, const char *name, const char *value);
bool proto_put_backend_key(buf_t *b, uint32_t pid, uint32_t key);
bool proto_put_ready(buf_t *b, char status);
bool proto_put_query(buf_t *b, const char *sql);
bool proto_put_empty(buf_t *b, uint8_t type);
/* StartupMessage with user, database and extra name/value pairs. */
bool proto_put_startup(buf_t *b, const char *user, const char *database, const char **names,
		       const char **values, int n);
bool proto_put_cancel(buf_t *b, uint32_t pid, uint32_t key);

#endif
