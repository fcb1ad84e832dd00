/*
 * pgtree.h - walking libpg_query's protobuf parse trees.
 *
 * libpg_query gives the parse tree as protobuf-c messages: a Node is a oneof
 * over some 250 node types, and every node type's children are message
 * fields, single or repeated. pgtree_walk visits every message below a root
 * by protobuf-c reflection, looking through Node wrappers, so that each
 * caller only says what it does with the node types it cares about.
 */
#ifndef SHARDGATE_ANALYZE_PGTREE_H
#define SHARDGATE_ANALYZE_PGTREE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

typedef enum {
	PGTREE_DESCEND, /* walk the message's children */
	PGTREE_SKIP     /* not its children */
} pgtree_action_t;

/* Called for each message (never a Node wrapper) before its children. */
typedef pgtree_action_t (*pgtree_visit_fn)(const ProtobufCMessage *msg, void *arg);

/*
 * Walks the tree under msg depth-first, msg included. Returns false when
 * the tree is deeper than max_depth levels (the messages below that depth
 * were not visited), true otherwise.
 */
bool pgtree_walk(const ProtobufCMessage *msg, int max_depth, pgtree_visit_fn visit, void *arg);

#endif
