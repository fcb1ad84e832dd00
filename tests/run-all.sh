#!/usr/bin/env bash
# Runs every test against one build flavour:
#   tests/run-all.sh BUILD_DIR [integration]
# Unit tests first (unless "integration" is given), then the integration
# suite against a real cluster (tests/cluster.sh) and a real proxy, once in
# transaction pooling and once in session pooling.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: tests/run-all.sh BUILD_DIR [integration]}
only=${2:-all}

base=${SG_TEST_BASE_PORT:-25432}
proxy_port=$((base + 1000))
work=$build/test-run
mkdir -p "$work"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

unit_status=0
if [ "$only" = all ]; then
	mapfile -t unit_tests < <(find "$build/tests" -maxdepth 1 -name 'test_*' ! -name '*.d' -type f | sort)
	tests/run-unit.sh "${unit_tests[@]}" || unit_status=1
fi

proxy_pid=
stop_proxy() {
	if [ -n "$proxy_pid" ] && kill -0 "$proxy_pid" 2>/dev/null; then
		kill -INT "$proxy_pid"
		local rc=0
		wait "$proxy_pid" || rc=$?
		proxy_pid=
		return $rc
	fi
	proxy_pid=
	return 0
}
cleanup() {
	stop_proxy || true
	tests/cluster.sh stop --base-port "$base" >/dev/null 2>&1 || true
}
trap cleanup EXIT

tests/cluster.sh start --base-port "$base" >/dev/null

# Writes the proxy configuration used by the integration tests.
write_config() {
	local mode=$1 file=$2
	cat >"$file" <<YAML
listen: 127.0.0.1:$proxy_port
workers: 2
max_client_conn: 5000
pool: { mode: $mode, size: 20 }
timeouts: { wait: 5s, login: 10s }
log: { level: info }
health: { interval: 100ms, failures_to_open: 3, open_for: 1s }
routing: { max_replica_lag: { bytes: 1MB, time: 3s }, read_your_writes_wait: 20ms }
auth: { method: trust }
admin: { users: [postgres] }
metrics: 127.0.0.1:$((proxy_port + 1))
backend: { user: postgres, password: postgres }
shards:
  - name: s0
    primary: 127.0.0.1:$base
    replicas: [127.0.0.1:$((base + 1)), 127.0.0.1:$((base + 2))]
  - name: s1
    primary: 127.0.0.1:$((base + 3))
default_shard: s0
# Sharded tables of tests/integration/test_sharding*.py (other tests use
# their own unlisted tables, which live on the default shard).
tables:
  sg_users:     { key: id, strategy: hash, buckets: 16 }
  sg_orders:    { key: user_id, strategy: hash, colocate_with: sg_users }
  sg_typed:     { key: id, strategy: hash, buckets: 8 }
  sg_big:       { key: id, strategy: hash, buckets: 4 }
  sg_texts:     { key: k, type: text, strategy: hash, buckets: 8 }
  sg_uuids:     { key: u, type: uuid, strategy: hash, buckets: 8 }
  sg_events:
    key: id
    strategy: range
    ranges: [ { below: 1000, shard: s0 }, { shard: s1 } ]
  sg_tenants:
    key: tenant_id
    type: text
    strategy: directory
    directory: { shard: s0, table: shardgate.directory, assign: round_robin }
  sg_countries: { strategy: reference }
YAML
}

start_proxy() {
	local cfg=$1 log=$2
	"$build"/shardgate -c "$cfg" >"$log" 2>&1 &
	proxy_pid=$!
	for _ in $(seq 1 100); do
		if pg_isready -q -h 127.0.0.1 -p "$proxy_port" -U postgres -d app 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "proxy did not start; its log:" >&2
	cat "$log" >&2
	return 1
}

passed=0
failed=0
failures=()
run_test() {
	local name=$1
	shift
	local start end out rc=0
	start=$(date +%s%N)
	out=$("$@" 2>&1) || rc=$?
	end=$(date +%s%N)
	local ms=$(((end - start) / 1000000))
	local secs="$((ms / 1000)).$(((ms % 1000) / 100))"
	if [ $rc -eq 0 ]; then
		passed=$((passed + 1))
		echo "ok   $name (${secs}s)"
	else
		failed=$((failed + 1))
		failures+=("$name")
		echo "FAIL $name (${secs}s, exit $rc)"
		echo "$out" | tail -40 | sed 's/^/     /'
	fi
}

export PGTEST_DSN="host=127.0.0.1 port=$base user=postgres password=postgres dbname=app"
export PGTEST_BASE_PORT=$base
export SG_SHARDGATE=$build/shardgate
export SG_HOST=127.0.0.1 SG_PORT=$proxy_port
export SG_DSN="host=127.0.0.1 port=$proxy_port user=postgres dbname=app"
export SG_METRICS=127.0.0.1:$((proxy_port + 1))
export PYTHONDONTWRITEBYTECODE=1

for mode in transaction session; do
	cfg=$work/shardgate-$mode.yaml
	log=$work/shardgate-$mode.log
	write_config "$mode" "$cfg"
	export SG_POOL_MODE=$mode SG_CONFIG=$cfg SG_PROXY_LOG=$log
	start_proxy "$cfg" "$log"
	echo "== integration, pool mode $mode (proxy log: $log)"
	for t in "$build"/itests/test_*; do
		[[ -x "$t" && "$t" != *.d ]] || continue
		run_test "$mode/$(basename "$t")" "$t"
	done
	for t in tests/integration/test_*.py; do
		[ -f "$t" ] || continue
		run_test "$mode/$(basename "$t")" /usr/bin/python3 "$t"
	done
	for t in tests/integration/test_*.sh; do
		[ -f "$t" ] || continue
		run_test "$mode/$(basename "$t")" bash "$t"
	done
	# The proxy must still be alive after everything, and exit cleanly
	# (under ASan this includes the leak check).
	if ! kill -0 "$proxy_pid" 2>/dev/null; then
		failed=$((failed + 1))
		failures+=("$mode/proxy-survived")
		echo "FAIL $mode/proxy-survived: the proxy died; log tail:"
		tail -30 "$log" | sed 's/^/     /'
		proxy_pid=
	elif stop_proxy; then
		passed=$((passed + 1))
		echo "ok   $mode/proxy-clean-exit"
	else
		failed=$((failed + 1))
		failures+=("$mode/proxy-clean-exit")
		echo "FAIL $mode/proxy-clean-exit; log tail:"
		grep -v '"level":"\(info\|debug\)"' "$log" | tail -40 | sed 's/^/     /'
	fi
done

echo "integration ($build): $passed passed, $failed failed"
if [ $failed -gt 0 ]; then
	printf 'failed: %s\n' "${failures[@]}"
fi
[ $failed -eq 0 ] && [ $unit_status -eq 0 ]
