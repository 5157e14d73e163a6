#!/usr/bin/env bash
# `make benchmark-capacity`: users held at the latency target per worker
# backend, side by side in one run on the demo host (`make demo` first):
# the demo is redeployed with its model on each backend in turn (same model,
# same host), swept by playbooks/capacity.yml, and each later report is drawn
# and tabled next to the earlier ones. The demo's own settings are restored
# at the end.
#   BACKENDS="hf vllm"   backends in order; the first is the baseline. "current"
#                        sweeps the demo as deployed, without redeploying.
#   CAPACITY_ARGS="-e capacity_users=[1,2,4,8,16,24,32]"   passed to every sweep.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=$PWD/.cache/demo
model=smollm2-135m-instruct
backends=${BACKENDS:-hf vllm}
out=${CAPACITY_OUT:-$PWD/.cache/capacity/benchmark-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
docker inspect slm-demo >/dev/null 2>&1 || { echo "no demo host: run make demo first" >&2; exit 1; }

deploy() {  # backend
  local models
  # The demo's own vLLM settings (inventories/demo) on the vLLM run.
  models=$(printf '[{"name": "%s", "source": "local", "path": "%s/SmolLM2-135M-Instruct", "family": "smollm2", "backend": "%s"%s}]' \
    "$model" "$demo" "$1" "$([ "$1" = vllm ] && echo ', "vllm": {"kv_cache_space": 1, "max_num_seqs": 32}')")
  echo "deploying the demo with the $1 worker (log: $out/deploy-$1.log)" >&2
  ansible-playbook -i inventories/demo site.yml --tags image,serve -e "{\"fastchat_models\": $models}" > "$out/deploy-$1.log"
}

compare=()
redeployed=
for backend in $backends; do
  [ "$backend" = current ] || { deploy "$backend"; redeployed=1; }
  # shellcheck disable=SC2086  # CAPACITY_ARGS is a list of words by design
  ansible-playbook -i inventories/demo playbooks/capacity.yml -e capacity_venv="$PWD/.cache/guidellm" \
    -e capacity_report_dir="$out" -e capacity_label="$backend" \
    -e "{\"capacity_compare\": $(printf '%s\n' "${compare[@]}" | python3 -c 'import json,sys; print(json.dumps([l for l in sys.stdin.read().split() if l]))')}" \
    ${CAPACITY_ARGS:-}
  runs=("$out/$backend"-*/)  # one per sweep of this label, oldest first (time-stamped names)
  compare+=("${runs[-1]}capacity.json")
done
if [ -n "$redeployed" ]; then
  echo "restoring the demo's own settings" >&2
  ansible-playbook -i inventories/demo site.yml --tags image,serve > "$out/deploy-restore.log"
fi
echo "side-by-side report: $(dirname "${compare[-1]}")/capacity.md"
