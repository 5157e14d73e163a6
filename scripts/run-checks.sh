#!/usr/bin/env bash
# Run named check steps (Makefile targets), keep going after a failure so one
# run shows every broken step, then print a table and a closing summary line.
# CI keeps only the end of what a run prints, and a failed step's own lines
# scroll past under the steps after it: each step's output is also kept in
# $CHECKS_LOG_DIR, and a failed step's failures are repeated before the table.
set -uo pipefail
logs=${CHECKS_LOG_DIR:-.cache/checks}
mkdir -p "$logs"
results=()
failed=()
for step in "$@"; do
  echo "=== $step"
  start=$SECONDS
  if make --no-print-directory "$step" 2>&1 | tee "$logs/$step.log"; then
    results+=("PASS  $step ($((SECONDS - start)) s)")
  else
    results+=("FAIL  $step ($((SECONDS - start)) s)")
    failed+=("$step")
  fi
done
for step in "${failed[@]}"; do
  echo "=== $step failed ($logs/$step.log); its failures:"
  # pytest's short summary (prefixed with its scenario inside Molecule) and
  # Molecule's failed scenarios name what broke; any other step's last lines
  # say why it stopped.
  grep -E '^(\[[a-z0-9_-]+\] )?(FAILED|ERROR) |^FAIL |fatal: |Error: ' "$logs/$step.log" \
    | grep -v 'FAILED - RETRYING' | tail -n 15 \
    || tail -n 15 "$logs/$step.log"
done
echo "=== summary"
printf '%s\n' "${results[@]}"
echo "checks: $(( $# - ${#failed[@]} )) passed, ${#failed[@]} failed"
[ "${#failed[@]}" -eq 0 ]
