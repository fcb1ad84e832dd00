/*
 * pgtree.c - a depth-bounded walk over protobuf-c parse trees.
 */
#include "analyze/pgtree.h"

#include <pg_query/pg_query.pb-c.h>

static bool walk(const ProtobufCMessage *msg, int depth, int max_depth, pgtree_visit_fn visit,
		 void *arg)
{
	if (depth > max_depth)
		return false;
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	const char *base = (const char *)msg;

	if (d == &pg_query__node__descriptor) {
		/* A Node: only its set member, one level down. */
		const PgQuery__Node *node = (const PgQuery__Node *)msg;
		if (node->node_case == PG_QUERY__NODE__NODE__NOT_SET)
			return true;
		const ProtobufCFieldDescriptor *f =
		    protobuf_c_message_descriptor_get_field(d, (unsigned)node->node_case);
		if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE)
			return true;
		const ProtobufCMessage *child =
		    *(const ProtobufCMessage *const *)(base + f->offset);
		return child ? walk(child, depth + 1, max_depth, visit, arg) : true;
	}
	if (visit(msg, arg) == PGTREE_SKIP)
		return true;
	bool whole = true;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
		    *(const uint32_t *)(base + f->quantifier_offset) != f->id)
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const ProtobufCMessage *const *items =
			    *(const ProtobufCMessage *const *const *)(base + f->offset);
			for (size_t j = 0; j < n; j++)
				if (items[j] && !walk(items[j], depth + 1, max_depth, visit, arg))
					whole = false;
		} else {
			const ProtobufCMessage *child =
			    *(const ProtobufCMessage *const *)(base + f->offset);
			if (child && !walk(child, depth + 1, max_depth, visit, arg))
				whole = false;
		}
	}
	return whole;
}

bool pgtree_walk(const ProtobufCMessage *msg, int max_depth, pgtree_visit_fn visit, void *arg)
{
	return walk(msg, 0, max_depth, visit, arg);
}
