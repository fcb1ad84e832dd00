/*
 * io.c - non-blocking reads and writes, in plaintext or through TLS.
 *
 * io_recv and io_send are the only places that touch the socket for a
 * connection's data; everything above them (the scratch buffer, the
 * connection's own buffers, the write event) is the same for both.
 */
#include "net/io.h"

#include <errno.h>
#include <event2/event.h>
#include <sys/socket.h>

#include "net/tls.h"

/* TLS 1.2 and 1.3 records carry at most 2^14 bytes of plaintext. */
#define TLS_RECORD_MAX 16384

/*
 * Reads into dst[0, cap): IO_OK with *got > 0, or IO_AGAIN, IO_EOF,
 * IO_ERROR. Plaintext: one recv. TLS: record after record while a whole
 * one still fits, so that no decrypted byte is left inside OpenSSL when the
 * socket has nothing more (the read event only sees the socket); an error
 * after some bytes is left for the next read, which meets it again.
 */
static inline int io_recv(int fd, struct ssl_st *ssl, uint8_t *dst, size_t cap, size_t *got)
{
	if (!ssl) {
		ssize_t n = recv(fd, dst, cap, 0);
		if (n > 0) {
			*got = (size_t)n;
			return IO_OK;
		}
		if (n == 0)
			return IO_EOF;
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return IO_AGAIN;
		return IO_ERROR;
	}
	size_t total = 0;
	int rc;
	do {
		size_t n = 0;
		rc = tls_recv(ssl, dst + total, cap - total, &n);
		if (rc != IO_OK)
			break;
		total += n;
	} while (cap - total >= TLS_RECORD_MAX);
	*got = total;
	return total > 0 ? IO_OK : rc;
}

/* Writes part of src: IO_OK with *sent (0: TLS waits for a read), IO_AGAIN
 * (the socket is full), IO_ERROR. */
static inline int io_send(int fd, struct ssl_st *ssl, const uint8_t *src, size_t len, size_t *sent)
{
	if (ssl)
		return tls_send(ssl, src, len, sent);
	ssize_t n = send(fd, src, len, MSG_NOSIGNAL);
	if (n > 0) {
		*sent = (size_t)n;
		return IO_OK;
	}
	if (n < 0 && errno == EINTR) {
		*sent = 0;
		return IO_OK;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return IO_AGAIN;
	return IO_ERROR;
}

int io_read(worker_t *w, int fd, struct ssl_st *ssl, buf_t *in, io_view_t *view)
{
	size_t n = 0;
	int rc;
	if (buf_avail(in) == 0) {
		rc = io_recv(fd, ssl, w->scratch, w->scratch_cap, &n);
		if (rc == IO_OK) {
			view->data = w->scratch;
			view->len = n;
			view->scratch = true;
		}
		return rc;
	}
	if (!buf_reserve(in, IO_READ_CHUNK))
		return IO_ERROR;
	rc = io_recv(fd, ssl, in->data + in->len, in->cap - in->len, &n);
	if (rc == IO_OK) {
		in->len += n;
		io_view_buffer(in, view);
	}
	return rc;
}

void io_view_buffer(buf_t *in, io_view_t *view)
{
	view->data = buf_head(in);
	view->len = buf_avail(in);
	view->scratch = false;
}

void io_keep(buf_t *in, const io_view_t *view, size_t consumed)
{
	if (view->scratch) {
		if (consumed < view->len)
			buf_append(in, view->data + consumed, view->len - consumed);
		return;
	}
	buf_consume(in, consumed);
	buf_compact(in);
}

bool io_flush(int fd, struct ssl_st *ssl, buf_t *out, struct event *ev_write)
{
	while (buf_avail(out) > 0) {
		size_t sent = 0;
		int rc = io_send(fd, ssl, buf_head(out), buf_avail(out), &sent);
		if (rc == IO_OK) {
			if (sent == 0 && ssl)
				return true; /* TLS wants to read first: the read event flushes */
			buf_consume(out, sent);
			continue;
		}
		if (rc == IO_AGAIN) {
			if (!event_pending(ev_write, EV_WRITE, NULL))
				event_add(ev_write, NULL);
			return true;
		}
		return false;
	}
	buf_compact(out);
	return true;
}

void io_send_now(int fd, struct ssl_st *ssl, const void *data, size_t len)
{
	size_t sent = 0;
	(void)io_send(fd, ssl, data, len, &sent);
}

void io_pause_read(struct event *ev_read, bool *paused)
{
	if (!*paused) {
		event_del(ev_read);
		*paused = true;
	}
}

void io_resume_read(struct event *ev_read, bool *paused)
{
	if (*paused) {
		event_add(ev_read, NULL);
		*paused = false;
	}
}

struct timeval io_timeval(int64_t ms)
{
	struct timeval tv;
	tv.tv_sec = (time_t)(ms / 1000);
	tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
	return tv;
}
