#!/usr/bin/env bash
# shardgate explain: the route of a statement, why, and the monitor's view.
set -uo pipefail
: "${SG_SHARDGATE:?}" "${SG_CONFIG:?}"
status=0
expect() { # SQL, then patterns that must all appear in the output
	local sql=$1
	shift
	local out
	out=$("$SG_SHARDGATE" explain -c "$SG_CONFIG" "$sql" 2>&1)
	for pattern in "$@"; do
		if ! grep -qE "$pattern" <<<"$out"; then
			echo "explain \"$sql\": expected /$pattern/ in:"
			echo "$out" | sed 's/^/    /'
			status=1
		fi
	done
}
if [ "${SG_POOL_MODE:-transaction}" = session ]; then
	read_target='^target: +shard s0, primary '
else
	read_target='^target: +shard s0, replica 127\.0\.0\.1:'
fi
expect "select * from users where id = 1" '^kind: +read' '^table: +users \(read\)' '^class: +read' "$read_target"
expect "select * from users for update" '^class: +write' '^target: +shard s0, primary '
expect "with x as (delete from t returning *) select * from x" '^kind: +write' '^table: +t \(written\)' '^target: +shard s0, primary'
expect "select nextval('s')" '^function: +nextval' '^class: +write \(calls a function that may write\)'
expect "/* shardgate: primary */ select 1" '^hint: +primary' '^target: +shard s0, primary'
expect "prepare p as select 1" '^session: +pins the client'
expect "selec 1" 'not parseable' '^target: +shard s0, primary'
expect "select 1" '^nodes \(monitor\):' ' replica +up ' ' primary +up '
"$SG_SHARDGATE" explain -c "$SG_CONFIG" >/dev/null 2>&1 && { echo "explain without SQL must fail"; status=1; }
[ $status -eq 0 ] && echo "explain: all expectations met"
exit $status
