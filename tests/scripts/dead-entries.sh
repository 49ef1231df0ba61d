#!/usr/bin/env bash
# Fresh `hyperdht lookup` and `hyperdht announce` processes on a loopback network, healthy and
# then with dead entries in the nodes' tables: a dht-bootstrap node and 30 hyperdht nodes, then
# 3 more nodes join and are killed (about 10 % of the entries dead). Each operation is timed
# 5 times (wall clock, whole process: start, bootstrap, walk, answer); the median is printed.
#
#   cargo build --release -p hyperdht-cli -p dht-bootstrap && tests/scripts/dead-entries.sh
#
# Everything listens on 127.0.0.1 (ports 20100-20140 and ephemeral ones) and is stopped at the
# end. BIN=path/to/binaries to use another build.
set -euo pipefail
BIN=${BIN:-"$(dirname "$0")/../../target/release"}
BOOT=127.0.0.1:20100
KEY=6465616420656e7472696573206f6e206c6f6f706261636b2074657374206b65
pids=()
tmp=$(mktemp)
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -f "$tmp"; }
trap cleanup EXIT

"$BIN/dht-bootstrap" --host 127.0.0.1 --port 20100 -q >/dev/null 2>&1 & pids+=($!)
sleep 0.3
for i in $(seq 1 30); do
    "$BIN/hyperdht" -p $((20100 + i)) -b "$BOOT" -q >/dev/null 2>&1 & pids+=($!)
    sleep 0.05
done
sleep 3
# The announcer the lookups must find (port 7777 is announced, not listened on).
"$BIN/hyperdht" announce "$KEY" --port 7777 -b "$BOOT" -q >/dev/null 2>&1 & pids+=($!)
sleep 2

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
median() { sort -n | sed -n 3p; }

measure() {
    local label=$1 lookups=() announces=() found=0
    for run in 1 2 3 4 5; do
        local t0 out
        t0=$(date +%s%N)
        out=$("$BIN/hyperdht" lookup "$KEY" -b "$BOOT" 2>/dev/null || true)
        lookups+=("$(ms "$t0")")
        if grep -q ":7777" <<<"$out"; then found=$((found + 1)); fi
        # A fresh announce: until it prints that it announced (then it is stopped).
        t0=$(date +%s%N)
        local key2
        key2=$(printf '%064x' $((RANDOM * 100000 + run)))
        "$BIN/hyperdht" announce "$key2" --port 8000 -b "$BOOT" >"$tmp" 2>/dev/null &
        local apid=$!
        while [ ! -s "$tmp" ] && kill -0 "$apid" 2>/dev/null; do sleep 0.002; done
        announces+=("$(ms "$t0")")
        kill -9 "$apid" 2>/dev/null || true
        wait "$apid" 2>/dev/null || true
        : >"$tmp"
    done
    echo "$label: lookup median $(printf '%s\n' "${lookups[@]}" | median) ms (${lookups[*]}), found the announcer $found/5; announce median $(printf '%s\n' "${announces[@]}" | median) ms (${announces[*]})"
}

measure "healthy (30 nodes)"
doomed=()
for i in 31 32 33; do
    "$BIN/hyperdht" -p $((20100 + i)) -b "$BOOT" -q >/dev/null 2>&1 & doomed+=($!)
done
sleep 3
# Another round of re-bootstraps spreads them further; then they die without a word.
kill -9 "${doomed[@]}"
wait "${doomed[@]}" 2>/dev/null || true
measure "3 of 33 nodes killed"
