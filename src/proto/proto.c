/*
 * proto.c - protocol v3 framing, readers and builders.
 */
#include "proto/proto.h"

#include <string.h>

const char *frame_status_name(frame_status_t status)
{
	switch (status) {
	case FRAME_OK:
		return "ok";
	case FRAME_NEED_MORE:
		return "need_more";
	case FRAME_BAD_LENGTH:
		return "bad_length";
	case FRAME_TOO_LARGE:
		return "too_large";
	}
	return "unknown";
}

frame_status_t proto_frame(const uint8_t *p, size_t avail, size_t max_total, uint8_t *type,
			   size_t *total)
{
	if (avail < 5)
		return FRAME_NEED_MORE;
	uint32_t len = buf_get_u32(p + 1);
	if (len < 4)
		return FRAME_BAD_LENGTH;
	if ((uint64_t)len + 1 > max_total)
		return FRAME_TOO_LARGE;
	size_t whole = (size_t)len + 1;
	if (avail < whole)
		return FRAME_NEED_MORE;
	*type = p[0];
	*total = whole;
	return FRAME_OK;
}

frame_status_t proto_frame_startup(const uint8_t *p, size_t avail, size_t max_total,
				   size_t *total)
{
	if (avail < 4)
		return FRAME_NEED_MORE;
	uint32_t len = buf_get_u32(p);
	if (len < 8) /* length and a code at least */
		return FRAME_BAD_LENGTH;
	if (len > max_total)
		return FRAME_TOO_LARGE;
	if (avail < len)
		return FRAME_NEED_MORE;
	*total = len;
	return FRAME_OK;
}

void proto_reader_init(proto_reader_t *r, const uint8_t *body, size_t len)
{
	r->p = body;
	r->len = len;
	r->pos = 0;
}

bool proto_read_u8(proto_reader_t *r, uint8_t *out)
{
	if (r->len - r->pos < 1)
		return false;
	*out = r->p[r->pos++];
	return true;
}

bool proto_read_u16(proto_reader_t *r, uint16_t *out)
{
	if (r->len - r->pos < 2)
		return false;
	*out = buf_get_u16(r->p + r->pos);
	r->pos += 2;
	return true;
}

bool proto_read_u32(proto_reader_t *r, uint32_t *out)
{
	if (r->len - r->pos < 4)
		return false;
	*out = buf_get_u32(r->p + r->pos);
	r->pos += 4;
	return true;
}

bool proto_read_i32(proto_reader_t *r, int32_t *out)
{
	uint32_t v;
	if (!proto_read_u32(r, &v))
		return false;
	*out = (int32_t)v;
	return true;
}

bool proto_read_cstr(proto_reader_t *r, const char **out, size_t *len)
{
	if (r->pos >= r->len)
		return false;
	const uint8_t *start = r->p + r->pos;
	const uint8_t *nul = memchr(start, '\0', r->len - r->pos);
	if (!nul)
		return false;
	if (out)
		*out = (const char *)start;
	if (len)
		*len = (size_t)(nul - start);
	r->pos += (size_t)(nul - start) + 1;
	return true;
}

bool proto_read_bytes(proto_reader_t *r, size_t n, const uint8_t **out)
{
	if (r->len - r->pos < n)
		return false;
	*out = r->p + r->pos;
	r->pos += n;
	return true;
}

const char *startup_status_name(startup_status_t status)
{
	switch (status) {
	case STARTUP_OK:
		return "ok";
	case STARTUP_BAD_VERSION:
		return "unsupported protocol version";
	case STARTUP_MALFORMED:
		return "malformed startup packet";
	case STARTUP_TOO_MANY_PARAMS:
		return "too many startup parameters";
	case STARTUP_NO_USER:
		return "no PostgreSQL user name specified in startup packet";
	}
	return "unknown";
}

/*
 * StartupMessage: Int32 length, Int32 code, then name/value string pairs
 * ended by an empty name (protocol-message-formats, StartupMessage).
 */
startup_status_t proto_parse_startup(const uint8_t *packet, size_t len, proto_startup_t *out)
{
	proto_reader_t r;
	uint32_t total, code;
	proto_startup_t s;

	memset(&s, 0, sizeof(s));
	proto_reader_init(&r, packet, len);
	if (!proto_read_u32(&r, &total) || total != len || !proto_read_u32(&r, &code))
		return STARTUP_MALFORMED;
	s.code = code;
	if (code == PROTO_SSL_REQUEST || code == PROTO_GSSENC_REQUEST) {
		if (len != 8)
			return STARTUP_MALFORMED;
		*out = s;
		return STARTUP_OK;
	}
	if (code == PROTO_CANCEL_REQUEST) {
		if (len != 16 || !proto_read_u32(&r, &s.cancel_pid) ||
		    !proto_read_u32(&r, &s.cancel_key))
			return STARTUP_MALFORMED;
		*out = s;
		return STARTUP_OK;
	}
	if ((code >> 16) != 3)
		return STARTUP_BAD_VERSION;
	for (;;) {
		const char *name, *value;
		size_t name_len;
		if (!proto_read_cstr(&r, &name, &name_len))
			return STARTUP_MALFORMED;
		if (name_len == 0)
			break;
		if (!proto_read_cstr(&r, &value, NULL))
			return STARTUP_MALFORMED;
		if (strcmp(name, "user") == 0) {
			s.user = value;
		} else if (strcmp(name, "database") == 0) {
			s.database = value;
		} else {
			if (s.n_params >= PROTO_MAX_PARAMS)
				return STARTUP_TOO_MANY_PARAMS;
			s.names[s.n_params] = name;
			s.values[s.n_params] = value;
			s.n_params++;
		}
	}
	if (proto_reader_left(&r) != 0)
		return STARTUP_MALFORMED;
	if (!s.user || !s.user[0])
		return STARTUP_NO_USER;
	if (!s.database || !s.database[0])
		s.database = s.user; /* PostgreSQL's default */
	*out = s;
	return STARTUP_OK;
}

bool proto_put_message(buf_t *b, uint8_t type, const void *body, size_t len)
{
	if (len > UINT32_MAX - 4 || !buf_reserve(b, len + 5))
		return false;
	buf_put_u8(b, type);
	buf_put_u32(b, (uint32_t)(len + 4));
	buf_put_bytes(b, body, len);
	return true;
}

/* Starts a message whose length is patched by end_message(). */
static size_t begin_message(buf_t *b, uint8_t type)
{
	buf_put_u8(b, type);
	size_t at = b->len;
	buf_put_u32(b, 0);
	return at;
}

static void end_message(buf_t *b, size_t at)
{
	buf_set_u32(b->data + at, (uint32_t)(b->len - at));
}

bool proto_put_error(buf_t *b, const char *severity, const char *sqlstate, const char *message)
{
	size_t need = 5 + 3 * (2 + strlen(severity)) + 2 + strlen(sqlstate) + 2 +
		      strlen(message) + 1;
	if (!buf_reserve(b, need))
		return false;
	size_t at = begin_message(b, 'E');
	buf_put_u8(b, 'S');
	buf_put_cstr(b, severity);
	buf_put_u8(b, 'V');
	buf_put_cstr(b, severity);
	buf_put_u8(b, 'C');
	buf_put_cstr(b, sqlstate);
	buf_put_u8(b, 'M');
	buf_put_cstr(b, message);
	buf_put_u8(b, 0);
	end_message(b, at);
	return true;
}

bool proto_put_auth_request(buf_t *b, uint32_t code, const void *extra, size_t len)
{
	if (!buf_reserve(b, 9 + len))
		return false;
	size_t at = begin_message(b, 'R');
	buf_put_u32(b, code);
	buf_put_bytes(b, extra, len);
	end_message(b, at);
	return true;
}

bool proto_put_parameter_status(buf_t *b, const char *name, const char *value)
{
	if (!buf_reserve(b, 5 + strlen(name) + strlen(value) + 2))
		return false;
	size_t at = begin_message(b, 'S');
	buf_put_cstr(b, name);
	buf_put_cstr(b, value);
	end_message(b, at);
	return true;
}

bool proto_put_backend_key(buf_t *b, uint32_t pid, uint32_t key)
{
	if (!buf_reserve(b, 13))
		return false;
	size_t at = begin_message(b, 'K');
	buf_put_u32(b, pid);
	buf_put_u32(b, key);
	end_message(b, at);
	return true;
}

bool proto_put_ready(buf_t *b, char status)
{
	uint8_t s = (uint8_t)status;
	return proto_put_message(b, 'Z', &s, 1);
}

bool proto_put_query(buf_t *b, const char *sql)
{
	return proto_put_message(b, 'Q', sql, strlen(sql) + 1);
}

bool proto_put_empty(buf_t *b, uint8_t type)
{
	return proto_put_message(b, type, NULL, 0);
}

bool proto_put_startup(buf_t *b, const char *user, const char *database, const char **names,
		       const char **values, int n)
{
	size_t need = 8 + strlen("user") + strlen(user) + strlen("database") + strlen(database) +
		      5;
	for (int i = 0; i < n; i++)
		need += strlen(names[i]) + strlen(values[i]) + 2;
	if (!buf_reserve(b, need))
		return false;
	size_t at = b->len;
	buf_put_u32(b, 0);
	buf_put_u32(b, PROTO_VERSION_3);
	buf_put_cstr(b, "user");
	buf_put_cstr(b, user);
	buf_put_cstr(b, "database");
	buf_put_cstr(b, database);
	for (int i = 0; i < n; i++) {
		buf_put_cstr(b, names[i]);
		buf_put_cstr(b, values[i]);
	}
	buf_put_u8(b, 0);
	buf_set_u32(b->data + at, (uint32_t)(b->len - at));
	return true;
}

bool proto_put_cancel(buf_t *b, uint32_t pid, uint32_t key)
{
	if (!buf_reserve(b, 16))
		return false;
	buf_put_u32(b, 16);
	buf_put_u32(b, PROTO_CANCEL_REQUEST);
	buf_put_u32(b, pid);
	buf_put_u32(b, key);
	return true;
}
