#!/usr/bin/env bash
# Run named check steps (Makefile targets), keep going after a failure so one
# run shows every broken step, then print a table and a closing summary line.
set -uo pipefail
results=()
failed=0
for step in "$@"; do
  echo "=== $step"
  start=$SECONDS
  if make --no-print-directory "$step"; then
    results+=("PASS  $step ($((SECONDS - start)) s)")
  else
    results+=("FAIL  $step ($((SECONDS - start)) s)")
    failed=$((failed + 1))
  fi
done
echo "=== summary"
printf '%s\n' "${results[@]}"
echo "checks: $(( $# - failed )) passed, $failed failed"
[ "$failed" -eq 0 ]
