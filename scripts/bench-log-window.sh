#!/usr/bin/env bash
# The log window's figures on a local 3-node cluster (README, Performance, "Memory,
# restart and catch-up"):
#   scripts/bench-log-window.sh catch-up [SECONDS]   a node down while SECONDS of 64-client
#                                                   appends commit, then restarted: the time
#                                                   until it has committed all of them
#   scripts/bench-log-window.sh restart DATA_DIR     the time from `replog start` to a
#                                                   `status` answer, on node 1 of a data
#                                                   directory kept by `replog bench --local
#                                                   --data-dir DATA_DIR` (DATA_DIR/data/1)
# Uses ./target/release/replog (or $REPLOG) and loopback ports 17101-17103.
set -euo pipefail

bin=${REPLOG:-./target/release/replog}
peers=127.0.0.1:17101,127.0.0.1:17102,127.0.0.1:17103
dir=$(mktemp -d /tmp/replog-window-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT

commit_index() { "$bin" status -t "$1" --json 2>/dev/null | sed -n 's/.*"commit_index":\([0-9]*\).*/\1/p'; }
now() { date +%s.%N; }

case "${1:-}" in
catch-up)
    seconds=${2:-20}
    for i in 1 2 3; do
        "$bin" start -i $i -a 127.0.0.1:1710$i -p $peers --data-dir "$dir/data" --scheduling batch 2>"$dir/n$i.log" &
        pids[$i]=$!
    done
    sleep 2
    kill -9 "${pids[3]}"
    "$bin" bench -t 127.0.0.1:17101,127.0.0.1:17102 --clients 64 --duration "${seconds}s" >/dev/null
    target=$(commit_index 127.0.0.1:17101)
    start=$(now)
    "$bin" start -i 3 -a 127.0.0.1:17103 -p $peers --data-dir "$dir/data" --scheduling batch 2>>"$dir/n3.log" &
    pids[3]=$!
    until [ "$(commit_index 127.0.0.1:17103 || echo 0)" -ge "$target" ] 2>/dev/null; do sleep 0.05; done
    echo "node 3 was $target entries behind; caught up in $(echo "$(now) - $start" | bc) s"
    ;;
restart)
    data=${2:?restart needs the DATA_DIR of replog bench --local --data-dir}
    # "starting node 1 (id 1) on ADDR in cluster ... (id ...; members 1=NAME@ADDR,2=NAME@ADDR,...)"
    addr=$(sed -n 's/.*starting node 1 (id 1) on \([0-9.:]*\) .*/\1/p' "$data/node-1.log" | head -1)
    members=$(sed -n 's/.*members \([^)]*\)).*/\1/p' "$data/node-1.log" | head -1 | sed 's/[0-9]*=[^@]*@//g')
    start=$(now)
    "$bin" start -i 1 -a "$addr" -p "$members" --data-dir "$data/data" 2>"$dir/restart.log" &
    pids[1]=$!
    until "$bin" status -t "$addr" --json >/dev/null 2>&1; do sleep 0.005; done
    echo "answered status $(echo "$(now) - $start" | bc) s after start; $(grep -o 'log to index [0-9]*' "$dir/restart.log")"
    ;;
*)
    echo "usage: $0 catch-up [SECONDS] | restart DATA_DIR" >&2
    exit 2
    ;;
esac
