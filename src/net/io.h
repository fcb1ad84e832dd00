/*
 * io.h - non-blocking socket reads and writes shared by client and server
 * connections.
 *
 * Reads go into the worker's scratch buffer when the connection has no
 * partial message pending, so an idle connection holds no buffer at all;
 * only a partial message is copied into the connection's own buffer. A
 * connection in TLS reads and writes the same way, through net/tls.h.
 */
#ifndef SHARDGATE_IO_H
#define SHARDGATE_IO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/time.h>

#include "net/net.h"

#define IO_HIGH_WATER (512 * 1024) /* stop reading the peer above this */
#define IO_LOW_WATER (64 * 1024)   /* resume below this */
#define IO_READ_CHUNK (64 * 1024)

enum { IO_OK = 0, IO_AGAIN = 1, IO_EOF = 2, IO_ERROR = 3 };

/* The bytes available to parse after a read. */
typedef struct {
	const uint8_t *data;
	size_t len;
	bool scratch; /* data is the worker's scratch buffer */
} io_view_t;

/*
 * Reads what the socket has (through TLS when ssl is not NULL: the
 * connection's handshake is done); on IO_OK *view covers pending + new
 * bytes.
 */
int io_read(worker_t *w, int fd, struct ssl_st *ssl, buf_t *in, io_view_t *view);
/* Keeps the unparsed tail (from `consumed` on) in `in` for the next read. */
void io_keep(buf_t *in, const io_view_t *view, size_t consumed);
/* Views the connection's own buffered bytes (no read). */
void io_view_buffer(buf_t *in, io_view_t *view);
/*
 * Writes as much of `out` as the socket takes (through TLS when ssl is not
 * NULL); arms ev_write for the rest. Returns false on a broken connection.
 */
bool io_flush(int fd, struct ssl_st *ssl, buf_t *out, struct event *ev_write);
/* One best-effort write of a few bytes (a goodbye before closing). */
void io_send_now(int fd, struct ssl_st *ssl, const void *data, size_t len);
void io_pause_read(struct event *ev_read, bool *paused);
void io_resume_read(struct event *ev_read, bool *paused);
struct timeval io_timeval(int64_t ms);

#endif
