/*
 * fuzz_backend.c - libFuzzer harness for the server-side message reader.
 *
 * Mirrors the read loop of src/net/server.c: the bytes a PostgreSQL server
 * sends are framed with proto_frame() under SERVER_MAX_MESSAGE (1 GiB), and
 * the body of every R, S, K, E, N, T, D, C, Z, 1, 2, 3, n and t message is
 * walked with the bounded reader as "Message Formats"
 * (protocol-message-formats) lays it out: authentication requests and SASL
 * mechanism lists, ErrorResponse/NoticeResponse fields, RowDescription
 * fields, DataRow columns, ParameterDescription types.
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
#define FUZZ_MAX_MESSAGE ((size_t)1 << 30) /* SERVER_MAX_MESSAGE in src/net/server.c */

static bool fuzz_read_cstr(proto_reader_t *r, size_t *len_out)
{
	const char *s;
	size_t len;
	if (!proto_read_cstr(r, &s, &len))
		return false;
	fuzz_check(strlen(s) == len);
	fuzz_check(r->pos <= r->len);
	if (len_out)
		*len_out = len;
	return true;
}

/* Authentication*: Int32 code, then code-specific data. */
static void fuzz_auth(proto_reader_t *r)
{
	uint32_t code;
	const uint8_t *bytes;
	size_t len;

	if (!proto_read_u32(r, &code))
		return;
	switch (code) {
	case 5: /* MD5Password: Byte4 salt */
		proto_read_bytes(r, 4, &bytes);
		break;
	case 10: /* SASL: mechanism names, ended by an empty one */
		while (fuzz_read_cstr(r, &len) && len > 0)
			;
		break;
	case 11: /* SASLContinue: the rest is SCRAM data */
	case 12: /* SASLFinal */
		len = proto_reader_left(r);
		if (proto_read_bytes(r, len, &bytes))
			fuzz_touch(bytes, len);
		break;
	default: /* Ok (0), CleartextPassword (3), ...: no data */
		break;
	}
}

/* ErrorResponse / NoticeResponse: (Byte1 code, String value)*, Byte1 0. */
static void fuzz_fields(proto_reader_t *r)
{
	uint8_t code;
	while (proto_read_u8(r, &code) && code != 0)
		if (!fuzz_read_cstr(r, NULL))
			return;
}

/* RowDescription: Int16 n, n x (String name, Int32 table oid, Int16 attnum,
 * Int32 type oid, Int16 type size, Int32 type modifier, Int16 format). */
static void fuzz_row_description(proto_reader_t *r)
{
	uint16_t n, u16;
	uint32_t u32;
	int32_t i32;
	if (!proto_read_u16(r, &n))
		return;
	for (uint16_t i = 0; i < n; i++)
		if (!fuzz_read_cstr(r, NULL) || !proto_read_u32(r, &u32) ||
		    !proto_read_u16(r, &u16) || !proto_read_u32(r, &u32) ||
		    !proto_read_u16(r, &u16) || !proto_read_i32(r, &i32) ||
		    !proto_read_u16(r, &u16))
			return;
}

/* DataRow: Int16 n, n x (Int32 length or -1 for NULL, bytes). */
static void fuzz_data_row(proto_reader_t *r)
{
	uint16_t n;
	int32_t len;
	const uint8_t *bytes;
	if (!proto_read_u16(r, &n))
		return;
	for (uint16_t i = 0; i < n; i++) {
		if (!proto_read_i32(r, &len))
			return;
		if (len == -1)
			continue;
		if (len < 0 || !proto_read_bytes(r, (size_t)len, &bytes))
			return;
		fuzz_touch(bytes, (size_t)len);
	}
}

static void fuzz_parse_body(uint8_t type, const uint8_t *body, size_t len)
{
	proto_reader_t r;
	uint32_t u32;
	uint16_t n;
	uint8_t u8;
	const uint8_t *bytes;

	proto_reader_init(&r, body, len);
	switch (type) {
	case 'R':
		fuzz_auth(&r);
		break;
	case 'S': /* ParameterStatus: String name, String value */
		if (fuzz_read_cstr(&r, NULL))
			fuzz_read_cstr(&r, NULL);
		break;
	case 'K': /* BackendKeyData: Int32 pid, Int32 key */
		if (proto_read_u32(&r, &u32))
			proto_read_u32(&r, &u32);
		break;
	case 'E':
	case 'N':
		fuzz_fields(&r);
		break;
	case 'T':
		fuzz_row_description(&r);
		break;
	case 'D':
		fuzz_data_row(&r);
		break;
	case 'C': /* CommandComplete: String tag */
		fuzz_read_cstr(&r, NULL);
		break;
	case 'Z': /* ReadyForQuery: Byte1 'I', 'T' or 'E' */
		proto_read_u8(&r, &u8);
		break;
	case '1': /* ParseComplete, BindComplete, CloseComplete, NoData: no body */
	case '2':
	case '3':
	case 'n':
		break;
	case 't': /* ParameterDescription: Int16 n, n x Int32 type oid */
		if (!proto_read_u16(&r, &n))
			break;
		for (uint16_t i = 0; i < n; i++)
			if (!proto_read_u32(&r, &u32))
				break;
		break;
	default:
		return;
	}
	fuzz_check(r.pos <= r.len);
	size_t left = proto_reader_left(&r);
	if (proto_read_bytes(&r, left, &bytes))
		fuzz_touch(bytes, left);
	fuzz_check(proto_reader_left(&r) == 0);
	/* Past the end must fail and leave the output alone. */
	u8 = 0xA5;
	fuzz_check(!proto_read_u8(&r, &u8) && u8 == 0xA5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > FUZZ_INPUT_MAX)
		return -1;
	size_t pos = 0;
	while (pos < size) {
		uint8_t type = 0;
		size_t total = 0;
		frame_status_t st =
		    proto_frame(data + pos, size - pos, FUZZ_MAX_MESSAGE, &type, &total);
		(void)frame_status_name(st);
		if (st != FRAME_OK)
			break;
		fuzz_check(total >= 5 && total <= size - pos);
		uint8_t *msg = malloc(total);
		if (!msg)
			break;
		memcpy(msg, data + pos, total);
		fuzz_parse_body(type, msg + 5, total - 5);
		free(msg);
		pos += total;
	}
	return 0;
}
