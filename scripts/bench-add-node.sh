#!/usr/bin/env bash
# How long adding a node to a cluster that holds ENTRIES entries takes: a three-node
# cluster on loopback is filled with `replog bench` until its log holds ENTRIES entries,
# then a fourth, empty node is started with `--join`, and the time is taken from its start
# until the leader's configuration holds it as a voter (it catches up as a learner from the
# leader's segments, and is promoted once its log reaches the commit index).
#
#   scripts/bench-add-node.sh [ENTRIES] [REPLOG]
#
# ENTRIES defaults to 1000000; REPLOG to target/release/replog. Everything lives in a
# fresh temporary directory, removed at the end; the nodes stop when the script does.
set -euo pipefail

entries=${1:-1000000}
replog=${2:-target/release/replog}
dir=$(mktemp -d /tmp/replog-add-node.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait; rm -rf "$dir"' EXIT

ports=(7301 7302 7303 7304)
peers="node1=127.0.0.1:${ports[0]},node2=127.0.0.1:${ports[1]},node3=127.0.0.1:${ports[2]}"
all="127.0.0.1:${ports[0]},127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
start_node() { # k, then extra flags
    local k=$1
    shift
    "$replog" start -i "node$k" -a "127.0.0.1:${ports[$((k - 1))]}" --data-dir "$dir/data" \
        "$@" 2>"$dir/node$k.log" &
    pids+=($!)
}
for k in 1 2 3; do
    start_node "$k" -p "$peers"
done
sleep 1

last_index() {
    "$replog" status -t "$all" --json | sed -n 's/.*"last_index":\([0-9]*\).*/\1/p'
}
echo "filling the log to $entries entries..."
while [ "$(last_index)" -lt "$entries" ]; do
    "$replog" bench -t "$all" --clients 64 --duration 10s --warmup 0s >/dev/null
    echo "  last index $(last_index)"
done

echo "starting node4 with --join..."
begin=$(date +%s.%N)
start_node 4 --join "127.0.0.1:${ports[0]}"
until "$replog" member list -t "$all" | grep -q '^node4 .* voter '; do
    sleep 0.05
done
end=$(date +%s.%N)
"$replog" member list -t "$all"
printf 'node4 was a caught-up voter %.2f s after its start (log of %s entries)\n' \
    "$(awk "BEGIN { print $end - $begin }")" "$(last_index)"
