#!/usr/bin/env bash
# Self-tests of the Kubernetes API stand-in. Exits non-zero on failure; the last line is a
# one-line summary.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="$("$HERE/setup.sh" --print-python | tail -n1)"
start=$(date +%s)
out="$(mktemp)"
# optional arguments: test names such as StandinTest.test_delete_with_finalizer
tests=()
for t in "$@"; do tests+=("test_standin.$t"); done
[ ${#tests[@]} -gt 0 ] || tests=(test_standin)
(cd "$HERE" && "$PY" -m unittest -v "${tests[@]}" < /dev/null) 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
summary="$(grep -E '^(Ran [0-9]+ tests?|OK|FAILED)' "$out" | tr "\n" " " | sed "s/ *$//")"
rm -f "$out"
if [ $rc -eq 0 ]; then
  echo "kube-standin self-tests: PASS ($summary in $(( $(date +%s) - start ))s)"
else
  echo "kube-standin self-tests: FAIL ($summary in $(( $(date +%s) - start ))s)"
fi
exit $rc
