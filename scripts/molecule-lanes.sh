#!/usr/bin/env bash
# Run Molecule scenarios in parallel lanes; each lane runs its scenarios one
# after another. Usage: molecule-lanes.sh LANE [LANE...] -- SCENARIO [SCENARIO...]
# where a LANE is a comma-separated list of scenario names. Scenarios given
# after `--` that no lane names join the last lane, so a new scenario is never
# skipped. Why lanes: the CPU-bound scenarios (image builds, inference) and
# the ones that mostly wait on package installs and systemd share two cores
# better side by side than in one queue (docs/development.md has the minutes).
#
# Every line a scenario prints is prefixed with its name; the whole output of
# each also goes to .cache/molecule-logs/<scenario>.log. Exit status: 0 when
# every scenario passed.
set -uo pipefail

lanes=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do lanes+=("$1"); shift; done
[ "${1:-}" = -- ] && shift
all=("$@")
[ ${#lanes[@]} -gt 0 ] || lanes=("")

# Scenarios to run: the lanes' names that exist, then the rest into the last lane.
declare -A wanted=() placed=()
for s in "${all[@]}"; do wanted[$s]=1; done
for i in "${!lanes[@]}"; do
  kept=()
  IFS=, read -ra names <<<"${lanes[$i]}"
  for s in "${names[@]}"; do
    if [ -n "$s" ] && [ -n "${wanted[$s]:-}" ]; then kept+=("$s"); placed[$s]=1; fi
  done
  lanes[i]="${kept[*]}"
done
last=$((${#lanes[@]} - 1))
for s in "${all[@]}"; do
  [ -n "${placed[$s]:-}" ] || lanes[last]="${lanes[$last]} $s"
done

logs=.cache/molecule-logs
mkdir -p "$logs"
results=$(mktemp)
trap 'rm -f "$results"' EXIT

run_lane() {
  local s start rc
  for s in "$@"; do
    start=$SECONDS
    echo "--- molecule test -s $s"
    molecule test -s "$s" 2>&1 | tee "$logs/$s.log" | sed -u "s/^/[$s] /"
    rc=${PIPESTATUS[0]}
    echo "$s $rc $((SECONDS - start))" >>"$results"
    echo "--- $s: $([ "$rc" -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - start)) s"
  done
}

# Python would otherwise hand lines to the pipe in 4 KiB blocks.
export PYTHONUNBUFFERED=1
pids=()
for lane in "${lanes[@]}"; do
  # shellcheck disable=SC2086 # a lane is a space-separated list of names
  [ -n "${lane// /}" ] && { run_lane $lane & pids+=($!); }
done
for p in "${pids[@]}"; do wait "$p"; done

echo "--- molecule scenarios"
failed=
while read -r s rc secs; do
  printf '%-6s %-20s %5d s\n' "$([ "$rc" -eq 0 ] && echo PASS || echo FAIL)" "$s" "$secs"
  [ "$rc" -eq 0 ] || failed="$failed $s"
done <"$results"
if [ -n "$failed" ]; then echo "failed scenarios:$failed (logs in $logs/)"; exit 1; fi
