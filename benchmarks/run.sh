#!/usr/bin/env bash
# `make benchmark`: figures for docs/performance.md, measured on the running
# demo host (`make demo` first), all in one run so they compare:
#   - time to first token, API server direct vs through nginx (1 client)
#   - throughput and p50/p99 latency, 8 concurrent clients, for
#     1 worker vs 2 workers, and lottery vs shortest_queue dispatch.
# The load generator runs on the host itself (benchmarks/load.py, stdlib only)
# so direct and proxied requests start from the same place. The demo is
# redeployed between configurations and restored at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
host=slm-demo
model=smollm2-135m-instruct
demo=$PWD/.cache/demo
requests=${BENCH_REQUESTS:-24}
OPENAI_API_KEY=$(cat "$demo/api_key")
export OPENAI_API_KEY
out=${BENCH_OUT:-.cache/benchmark}
mkdir -p "$out"

docker inspect "$host" >/dev/null 2>&1 || { echo "no demo host: run make demo first" >&2; exit 1; }
docker cp benchmarks/load.py "$host:/var/tmp/slm-load.py"
docker cp "$demo/ca/ca.crt" "$host:/var/tmp/slm-bench-ca.crt"

deploy() {  # workers dispatch
  local models
  models=$(printf '[{"name": "%s", "source": "local", "path": "%s/SmolLM2-135M-Instruct", "family": "smollm2", "workers": %d}]' \
    "$model" "$demo" "$1")
  echo "deploying $1 worker(s), $2 dispatch" >&2
  ansible-playbook -i inventories/demo site.yml --tags image,serve \
    -e "{\"fastchat_models\": $models, \"serve_dispatch_method\": \"$2\"}" > "$out/deploy-$1-$2.log"
}
load() {  # label url concurrency [n]
  # The key travels in the environment (-e NAME copies it from ours), not in argv.
  docker exec -e OPENAI_API_KEY "$host" python3 /var/tmp/slm-load.py "$2" "$model" --ca /var/tmp/slm-bench-ca.crt \
    --concurrency "$3" --requests "${4:-$requests}" | tee "$out/$1.json"
}

deploy 1 lottery
load direct-1client http://127.0.0.1:8000/v1 1 8
load nginx-1client https://127.0.0.1/v1 1 8
load w1-lottery-8clients https://127.0.0.1/v1 8
deploy 2 lottery
load w2-lottery-8clients https://127.0.0.1/v1 8
deploy 2 shortest_queue
load w2-shortest_queue-8clients https://127.0.0.1/v1 8
echo "restoring the demo's own settings" >&2
ansible-playbook -i inventories/demo site.yml --tags image,serve > "$out/deploy-restore.log"

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
r = {name[:-5]: json.load(open(os.path.join(out, name))) for name in os.listdir(out) if name.endswith('.json')}
d, n = r['direct-1client'], r['nginx-1client']
print('\ntime to first token, 1 client: direct %.4f s, via nginx %.4f s, ratio %.2f'
      % (d['ttft_p50'], n['ttft_p50'], n['ttft_p50'] / d['ttft_p50']))
print('\n%-28s %10s %10s %10s %8s' % ('8 clients', 'tokens/s', 'p50 s', 'p99 s', 'vs 1w'))
base = r['w1-lottery-8clients']['tokens_per_second']
for name in ('w1-lottery-8clients', 'w2-lottery-8clients', 'w2-shortest_queue-8clients'):
    x = r[name]
    print('%-28s %10.1f %10.3f %10.3f %8.2f' % (name, x['tokens_per_second'], x['latency_p50'], x['latency_p99'],
                                              x['tokens_per_second'] / base))
PY
