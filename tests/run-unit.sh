#!/usr/bin/env bash
# Runs Check unit-test programs; prints one line each and a closing total.
set -uo pipefail
passed=0
failed=0
for t in "$@"; do
	name=$(basename "$t")
	if out=$("$t" 2>&1); then
		passed=$((passed + 1))
		echo "unit $name: $(echo "$out" | grep -E '^[0-9]+%' | tail -1)"
	else
		failed=$((failed + 1))
		echo "unit $name: FAILED"
		echo "$out" | tail -40
	fi
done
echo "unit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
