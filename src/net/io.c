/*
 * io.c - non-blocking reads and writes.
 */
#include "net/io.h"

#include <errno.h>
#include <event2/event.h>
#include <sys/socket.h>

int io_read(worker_t *w, int fd, buf_t *in, io_view_t *view)
{
	ssize_t n;
	if (buf_avail(in) == 0) {
		n = recv(fd, w->scratch, w->scratch_cap, 0);
		if (n > 0) {
			view->data = w->scratch;
			view->len = (size_t)n;
			view->scratch = true;
			return IO_OK;
		}
	} else {
		if (!buf_reserve(in, IO_READ_CHUNK))
			return IO_ERROR;
		n = recv(fd, in->data + in->len, in->cap - in->len, 0);
		if (n > 0) {
			in->len += (size_t)n;
			io_view_buffer(in, view);
			return IO_OK;
		}
	}
	if (n == 0)
		return IO_EOF;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return IO_AGAIN;
	return IO_ERROR;
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

bool io_flush(int fd, buf_t *out, struct event *ev_write)
{
	while (buf_avail(out) > 0) {
		ssize_t n = send(fd, buf_head(out), buf_avail(out), MSG_NOSIGNAL);
		if (n > 0) {
			buf_consume(out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!event_pending(ev_write, EV_WRITE, NULL))
				event_add(ev_write, NULL);
			return true;
		}
		return false;
	}
	buf_compact(out);
	return true;
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
