/*
 * fuzz_frontend.c - libFuzzer harness for the client-side message reader.
 *
 * Mirrors run_messages() in src/net/client.c: startup-phase packets are
 * framed with proto_frame_startup(PROTO_STARTUP_MAX) and parsed with
 * proto_parse_startup() until a StartupMessage is accepted; the bytes after
 * it (or the whole input when the first packet does not frame) are framed
 * with proto_frame() and a 64 MiB limit, and the body of every Q, P, B, D,
 * E, C and S message is walked field by field with the bounded reader, as
 * "Message Formats" (protocol-message-formats) lays them out.
 *
 * Each framed message is copied into a heap block of exactly its size, so
 * AddressSanitizer reports a reader that strays past its message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "proto/proto.h"

#define FUZZ_INPUT_MAX   (1024 * 1024)
#define FUZZ_MAX_MESSAGE ((size_t)64 * 1024 * 1024) /* the proxy's default max_message_size */

/* A string getter must return a NUL-terminated string of the length it
 * reports, inside the body. */
static bool fuzz_read_cstr(proto_reader_t *r)
{
	const char *s;
	size_t len;
	if (!proto_read_cstr(r, &s, &len))
		return false;
	fuzz_check(strlen(s) == len);
	fuzz_check(r->pos <= r->len);
	return true;
}

/* Int16 count, then count Int16 format codes (Bind). */
static bool fuzz_read_formats(proto_reader_t *r)
{
	uint16_t n, code;
	if (!proto_read_u16(r, &n))
		return false;
	for (uint16_t i = 0; i < n; i++)
		if (!proto_read_u16(r, &code))
			return false;
	return true;
}

static void fuzz_parse_body(uint8_t type, const uint8_t *body, size_t len)
{
	proto_reader_t r;
	uint8_t u8;
	uint16_t n;
	uint32_t oid;
	int32_t i32;
	const uint8_t *bytes;

	proto_reader_init(&r, body, len);
	switch (type) {
	case 'Q': /* Query: String */
		fuzz_read_cstr(&r);
		break;
	case 'P': /* Parse: String name, String query, Int16 n, n x Int32 type oid */
		if (!fuzz_read_cstr(&r) || !fuzz_read_cstr(&r) || !proto_read_u16(&r, &n))
			break;
		for (uint16_t i = 0; i < n; i++)
			if (!proto_read_u32(&r, &oid))
				break;
		break;
	case 'B': /* Bind: portal, statement, formats, Int16 n, n x (Int32 len, bytes), formats */
		if (!fuzz_read_cstr(&r) || !fuzz_read_cstr(&r) || !fuzz_read_formats(&r) ||
		    !proto_read_u16(&r, &n))
			break;
		for (uint16_t i = 0; i < n; i++) {
			if (!proto_read_i32(&r, &i32))
				return;
			if (i32 == -1)
				continue; /* NULL */
			if (i32 < 0 || !proto_read_bytes(&r, (size_t)i32, &bytes))
				return;
			fuzz_touch(bytes, (size_t)i32);
		}
		fuzz_read_formats(&r);
		break;
	case 'D': /* Describe: Byte1 'S' or 'P', String name */
	case 'C': /* Close: the same */
		if (proto_read_u8(&r, &u8))
			fuzz_read_cstr(&r);
		break;
	case 'E': /* Execute: String portal, Int32 max rows */
		if (fuzz_read_cstr(&r))
			proto_read_i32(&r, &i32);
		break;
	case 'S': /* Sync: no body */
		break;
	default:
		return;
	}
	fuzz_check(r.pos <= r.len);
	fuzz_check(proto_reader_left(&r) == r.len - r.pos);
	/* Whatever is left over is still inside the body. */
	if (proto_read_bytes(&r, proto_reader_left(&r), &bytes))
		fuzz_touch(bytes, r.len - (size_t)(bytes - body));
}

/* Copies one framed message into an exact-size block. */
static uint8_t *fuzz_copy(const uint8_t *p, size_t n)
{
	uint8_t *copy = malloc(n ? n : 1);
	if (copy)
		memcpy(copy, p, n);
	return copy;
}

/*
 * Startup phase: SSLRequest/GSSENCRequest are followed by another startup
 * packet; a parsed StartupMessage ends the phase; anything else ends the
 * connection. Returns the offset where typed messages start, or -1.
 */
static long fuzz_startup(const uint8_t *data, size_t size)
{
	size_t pos = 0;
	for (;;) {
		size_t total = 0;
		frame_status_t st =
		    proto_frame_startup(data + pos, size - pos, PROTO_STARTUP_MAX, &total);
		if (st != FRAME_OK)
			return -1;
		fuzz_check(total >= 8 && total <= PROTO_STARTUP_MAX && total <= size - pos);
		uint8_t *packet = fuzz_copy(data + pos, total);
		if (!packet)
			return -1;
		proto_startup_t s;
		startup_status_t rc = proto_parse_startup(packet, total, &s);
		(void)startup_status_name(rc);
		pos += total;
		if (rc != STARTUP_OK) {
			free(packet);
			return -1;
		}
		if (s.code == PROTO_SSL_REQUEST || s.code == PROTO_GSSENC_REQUEST) {
			free(packet);
			continue;
		}
		if (s.code == PROTO_CANCEL_REQUEST) {
			free(packet);
			return -1;
		}
		/* Every string must lie inside the packet and be terminated there. */
		fuzz_check(s.user && s.database && s.n_params >= 0 &&
		           s.n_params <= PROTO_MAX_PARAMS);
		const char *lo = (const char *)packet, *hi = (const char *)packet + total;
		fuzz_check(s.user >= lo && s.user < hi && strlen(s.user) < (size_t)(hi - s.user));
		fuzz_check(s.database >= lo && s.database < hi);
		fuzz_touch((const uint8_t *)s.database, strlen(s.database));
		for (int i = 0; i < s.n_params; i++) {
			fuzz_check(s.names[i] >= lo && s.names[i] < hi);
			fuzz_check(s.values[i] >= lo && s.values[i] < hi);
			fuzz_touch((const uint8_t *)s.names[i], strlen(s.names[i]));
			fuzz_touch((const uint8_t *)s.values[i], strlen(s.values[i]));
		}
		free(packet);
		return (long)pos;
	}
}

static void fuzz_messages(const uint8_t *data, size_t size)
{
	size_t pos = 0;
	while (pos < size) {
		uint8_t type = 0;
		size_t total = 0;
		frame_status_t st =
		    proto_frame(data + pos, size - pos, FUZZ_MAX_MESSAGE, &type, &total);
		(void)frame_status_name(st);
		if (st != FRAME_OK)
			return;
		fuzz_check(total >= 5 && total <= size - pos && total <= FUZZ_MAX_MESSAGE);
		uint8_t *msg = fuzz_copy(data + pos, total);
		if (!msg)
			return;
		fuzz_parse_body(type, msg + 5, total - 5);
		free(msg);
		pos += total;
		if (type == 'X')
			return; /* Terminate */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_INPUT_MAX)
		return -1; /* keep it out of the corpus */
	long typed = fuzz_startup(data, size);
	fuzz_messages(data + (typed > 0 ? (size_t)typed : 0),
	              size - (typed > 0 ? (size_t)typed : 0));
	return 0;
}
