#!/usr/bin/env bash
#
# run.sh - build and run shardgate's libFuzzer harnesses.
#
# Usage: tests/fuzz/run.sh [SECONDS] [name...]
#
#   SECONDS  how long each harness fuzzes (default 30)
#   name     any of: fuzz_frontend fuzz_backend fuzz_scram fuzz_analyze fuzz_config
#            (default: all of them, in that order)
#
# Examples:
#   tests/fuzz/run.sh                        # every harness, 30 s each
#   tests/fuzz/run.sh 300 fuzz_scram         # one harness for 5 minutes
#   build/fuzz/fuzz_config some-input        # replay one input (e.g. a crash)
#
# Needs clang 14 with compiler-rt (Debian: clang-14, libclang-rt-14-dev) and
# the libraries the proxy builds with; no network. Runs as root or not.
#
# Build: every harness tests/fuzz/<name>.c is linked into build/fuzz/<name>
# with the src/*.c files it needs, all compiled by clang with
# -fsanitize=fuzzer,address,undefined (objects in build/fuzz/obj/, rebuilt
# when a source or header under src/ is newer). src/ and the Makefile are not
# touched.
#
# Run: each harness fuzzes for SECONDS with -max_total_time, -rss_limit_mb=2048,
# -timeout=10, -jobs=1 and -print_final_stats=1, stdin from /dev/null. The
# committed seeds in tests/fuzz/corpus/<name>/ are COPIED to
# build/fuzz/corpus-<name>/ first (fresh each run) and libFuzzer writes new
# inputs only to that copy: the committed corpus is never modified. Logs go to
# build/fuzz/run-<name>/fuzz-0.log, crash/leak/timeout/oom inputs to
# build/fuzz/artifacts-<name>/.
#
# Output: one line per harness with executions, exec/s and crash or not.
# Exit status: 0 when no harness crashed, 1 when one did (its input path and
# the sanitizer report are printed), 2 on a usage or build error.
#
# A crash input worth keeping goes into tests/fuzz/corpus/<name>/ as a
# regression seed once src/ is fixed.

set -u

ALL_HARNESSES="fuzz_frontend fuzz_backend fuzz_scram fuzz_analyze fuzz_config"

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT="${FUZZ_OUT:-$ROOT/build/fuzz}"

seconds=30
if [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
	seconds=$1
	shift
fi
if [ "$seconds" -lt 1 ]; then
	echo "run.sh: SECONDS must be at least 1" >&2
	exit 2
fi
names=("$@")
[ ${#names[@]} -eq 0 ] && read -r -a names <<<"$ALL_HARNESSES"
for name in "${names[@]}"; do
	case " $ALL_HARNESSES " in
	*" $name "*) ;;
	*)
		echo "run.sh: unknown harness \"$name\" (known: $ALL_HARNESSES)" >&2
		exit 2
		;;
	esac
done

CC=""
for candidate in clang-14 clang; do
	if command -v "$candidate" >/dev/null 2>&1; then
		CC=$candidate
		break
	fi
done
if [ -z "$CC" ]; then
	echo "run.sh: clang not found (apt-get install clang-14 libclang-rt-14-dev)" >&2
	exit 2
fi

SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Wno-unused-parameter $SAN -I$ROOT/src -I/usr/include/postgresql"
if ! PKG_LIBS=$(pkg-config --libs yaml-0.1 libpq libprotobuf-c openssl); then
	echo "run.sh: pkg-config could not find yaml-0.1, libpq, libprotobuf-c or openssl" >&2
	exit 2
fi
LIBS="$PKG_LIBS -lpg_query -lpthread -lm"

# The src/ files each harness links; hash.c and health.c come with route.c.
sources_for() {
	case "$1" in
	fuzz_frontend | fuzz_backend) echo "proto/proto.c core/buf.c" ;;
	fuzz_scram) echo "proto/auth.c" ;;
	fuzz_analyze)
		echo "analyze/analyze.c analyze/analyze_cache.c analyze/analyze_functions.c" \
			"analyze/analyze_shape.c analyze/keys.c analyze/pgtree.c route/shard.c" \
			"route/route.c route/hash.c health/health.c health/breaker.c" \
			"config/config.c core/buf.c core/hashmap.c core/log.c"
		;;
	fuzz_config) echo "config/config.c route/hash.c core/buf.c core/hashmap.c core/log.c" ;;
	esac
}

mkdir -p "$OUT/obj"

# The newest header under src/: objects older than it are rebuilt.
newest_header=$(find "$ROOT/src" -name '*.h' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)

compile_source() {
	local src="$ROOT/src/$1"
	local obj="$OUT/obj/${1//\//_}.o"
	if [ ! -f "$src" ]; then
		echo "run.sh: $src is missing" >&2
		return 1
	fi
	if [ -f "$obj" ] && [ "$obj" -nt "$src" ] &&
		{ [ -z "$newest_header" ] || [ "$obj" -nt "$newest_header" ]; }; then
		return 0
	fi
	echo "  cc src/$1"
	# shellcheck disable=SC2086
	$CC $CFLAGS -c -o "$obj" "$src"
}

build_harness() {
	local name=$1 objs=() src
	for src in $(sources_for "$name"); do
		compile_source "$src" || return 1
		objs+=("$OUT/obj/${src//\//_}.o")
	done
	echo "  link build/fuzz/$name"
	# shellcheck disable=SC2086
	$CC $CFLAGS -o "$OUT/$name" "$ROOT/tests/fuzz/$name.c" "${objs[@]}" $LIBS
}

echo "building with $CC into build/fuzz/"
for name in "${names[@]}"; do
	if ! build_harness "$name"; then
		echo "run.sh: building $name failed" >&2
		exit 2
	fi
done

# Sanitizer reports end the run with a stack trace; leaks count as crashes.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

crashed=0
summary=()
for name in "${names[@]}"; do
	corpus="$OUT/corpus-$name"
	artifacts="$OUT/artifacts-$name"
	rundir="$OUT/run-$name"
	rm -rf "$corpus" "$artifacts" "$rundir"
	mkdir -p "$corpus" "$artifacts" "$rundir"
	# A copy, so that the committed seeds are never rewritten or added to.
	if [ -d "$ROOT/tests/fuzz/corpus/$name" ]; then
		cp -R "$ROOT/tests/fuzz/corpus/$name/." "$corpus/"
	fi
	echo "fuzzing $name for ${seconds}s (corpus: build/fuzz/corpus-$name, $(find "$corpus" -type f | wc -l) seeds)"
	# -jobs=1 runs the fuzzer in a child process whose output goes to
	# fuzz-0.log in the working directory.
	(cd "$rundir" &&
		timeout -k 10 $((seconds + 300)) "$OUT/$name" \
			-max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -jobs=1 \
			-print_final_stats=1 -artifact_prefix="$artifacts/" "$corpus" \
			</dev/null >"$rundir/driver.log" 2>&1)
	status=$?
	log="$rundir/fuzz-0.log"
	[ -f "$log" ] || log="$rundir/driver.log"
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	inputs=$(find "$artifacts" -type f | sort)
	if [ $status -ne 0 ] || [ -n "$inputs" ]; then
		crashed=1
		result="CRASH"
		echo "---- $name: exit status $status; report from $log:"
		grep -n -A60 -E '^==[0-9]+==ERROR|runtime error:|^==[0-9]+== ERROR|ALARM: working on the last Unit|out-of-memory|deadly signal' "$log" | head -120
		for input in $inputs; do
			echo "---- $name: crash input: $input"
		done
		[ -z "$inputs" ] && echo "---- $name: no crash input saved; see $log"
	else
		result="no crash"
	fi
	summary+=("$(printf '%-14s executions %-12s exec/s %-8s %s' "$name" "${execs:-?}" "${rate:-?}" "$result")")
done

echo
echo "summary (${seconds}s each):"
printf '  %s\n' "${summary[@]}"
if [ $crashed -ne 0 ]; then
	echo "at least one harness crashed: replay with build/fuzz/<name> <crash input>"
	exit 1
fi
exit 0
