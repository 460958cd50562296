#!/usr/bin/env bash
# Side-by-side baseline for `replog bench`: a 3-member etcd 3.4 cluster on loopback with
# default settings (fsync on), loaded through its JSON gateway (POST /v3/kv/put) by wrk with
# one connection per client, closed loop, 64-byte values.
#
#   scripts/bench-etcd.sh [clients...]      default: 1 4 16 64 256
#
# Needs the Debian packages etcd-server and wrk (apt-get install etcd-server wrk).
set -euo pipefail

clients=("$@")
[ ${#clients[@]} -eq 0 ] && clients=(1 4 16 64 256)
duration=${DURATION:-10s}
command -v etcd >/dev/null || { echo "error: etcd not installed (apt-get install etcd-server)" >&2; exit 1; }
command -v wrk >/dev/null || { echo "error: wrk not installed (apt-get install wrk)" >&2; exit 1; }

dir=$(mktemp -d /tmp/replog-etcd-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

cluster="e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803"
for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$dir/e$i" \
        --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
        --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
        --initial-cluster "$cluster" --initial-cluster-state new --log-level error \
        >"$dir/e$i.log" 2>&1 &
    pids+=($!)
done

leader=""
for _ in $(seq 1 100); do
    for i in 1 2 3; do
        status=$(curl -s -X POST "http://127.0.0.1:2379$i/v3/maintenance/status" -d '{}' || true)
        if [ -n "$status" ] && python3 -c 'import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s.get("leader")==s["header"]["member_id"] else 1)' "$status" 2>/dev/null; then
            leader="http://127.0.0.1:2379$i"
        fi
    done
    [ -n "$leader" ] && break
    sleep 0.1
done
[ -n "$leader" ] || { echo "error: etcd elected no leader" >&2; exit 1; }
echo "etcd leader: $leader"

# 64-byte value, base64-encoded as the gateway wants; a fixed key (each put is a new revision).
cat >"$dir/put.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"key":"YmVuY2gta2V5","value":"' .. string.rep("eHh4", 21) .. 'eA=="}'
done = function(summary, latency, requests)
    io.write(string.format("RESULT ops/s=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f errors=%d\n",
        summary.requests / (summary.duration / 1e6),
        latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(99) / 1000, latency.max / 1000,
        summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

for c in "${clients[@]}"; do
    threads=$(( c < 2 ? 1 : 2 ))
    printf 'clients %-4s ' "$c"
    wrk -t"$threads" -c"$c" -d"$duration" --latency -s "$dir/put.lua" "$leader/v3/kv/put" | grep RESULT
done
