#!/usr/bin/env bash
# `make benchmark-api`: slm.fastchat's OpenAI layer (slm_fastchat.api_server)
# against FastChat's own openai_api_server, side by side on the running demo
# (`make demo` first): same controller, same worker, same container, loopback
# HTTP, no nginx. FastChat's server runs for the duration as a second process
# in the API server's container on 127.0.0.1:8001 and is stopped at the end.
# Rounds alternate between the two servers so drift (another job on the
# machine) hits both alike. Prints time to first token and tokens/s per
# server and their ratios; the issue's target is at most 5 % overhead.
set -euo pipefail
cd "$(dirname "$0")/.."
host=slm-demo
container=fastchat-fastchat-api-server-1
model=smollm2-135m-instruct
rounds=${BENCH_ROUNDS:-3}
requests=${BENCH_REQUESTS:-8}
OPENAI_API_KEY=$(cat .cache/demo/api_key)
export OPENAI_API_KEY
out=${BENCH_OUT:-.cache/benchmark-api}
mkdir -p "$out"

docker inspect "$host" >/dev/null 2>&1 || { echo "no demo host: run make demo first" >&2; exit 1; }
docker cp benchmarks/load.py "$host:/var/tmp/slm-load.py"
docker exec "$host" docker cp /var/tmp/slm-load.py "$container:/tmp/slm-load.py"
# The image has no pkill: the server's shell records its PID, and kill ends it.
stop_fastchat() { docker exec "$host" docker exec "$container" sh -c 'kill "$(cat /tmp/fastchat-api.pid)"' || true; }
trap stop_fastchat EXIT
docker exec "$host" docker exec -d "$container" sh -c 'echo $$ > /tmp/fastchat-api.pid; exec python -m \
  fastchat.serve.openai_api_server --controller-address http://fastchat-controller:21001 --host 127.0.0.1 --port 8001'
for _ in $(seq 1 60); do
  docker exec "$host" docker exec "$container" python -c \
    "import urllib.request as u; u.urlopen('http://127.0.0.1:8001/v1/models', timeout=2)" 2>/dev/null && break
  sleep 1
done

load() {  # label port concurrency
  # The key travels in the environment (-e NAME copies it from ours), not in argv.
  docker exec -e OPENAI_API_KEY "$host" docker exec -e OPENAI_API_KEY "$container" python /tmp/slm-load.py \
    "http://127.0.0.1:$2/v1" "$model" --concurrency "$3" --requests "$requests" --max-tokens 32 > "$out/$1.json"
  echo "$1: $(cat "$out/$1.json")" >&2
}
for round in $(seq 1 "$rounds"); do
  for clients in 1 4; do
    load "slm-$clients-$round" 8000 "$clients"
    load "fastchat-$clients-$round" 8001 "$clients"
  done
done

python3 - "$out" "$rounds" <<'PY'
import json, os, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def median(server, clients, field):
    return statistics.median(json.load(open(os.path.join(out, '%s-%d-%d.json' % (server, clients, r))))[field]
                             for r in range(1, rounds + 1))
print('\n%-10s %-22s %12s %12s %8s' % ('clients', 'figure (median of %d)' % rounds, 'FastChat', 'slm.fastchat',
                                       'ratio'))
for clients in (1, 4):
    for field in ('ttft_p50', 'tokens_per_second'):
        fast, ours = median('fastchat', clients, field), median('slm', clients, field)
        print('%-10d %-22s %12.4f %12.4f %8.3f' % (clients, field, fast, ours, ours / fast))
PY
