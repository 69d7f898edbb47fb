#!/usr/bin/env bash
# Render benchmark: a generated fleet of 200 hosts / 1,000 instances (scripts/gen-fleet).
# Reports wall time (hyperfine) and peak RSS (/usr/bin/time) of the whole render, in memory (to
# /dev/null) and written out as a tree on tmpfs; the floor is `cp -r` of the same tree in the same run.
#   bench/render.sh [N_HOSTS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
command -v hyperfine >/dev/null || { echo "bench: apt-get install hyperfine" >&2; exit 2; }
cargo build --release --quiet
bin=$PWD/target/release/oignon
# tmpfs: the VM disk's metadata latency varies 10x from run to run and would drown the render.
work=$(mktemp -d /dev/shm/oignon-bench-render.XXXXXX)
trap 'rm -rf "$work"' EXIT
scripts/gen-fleet "$n" "$work/inv" 5
"$bin" --inventory "$work/inv" render --out "$work/tree" >/dev/null
hyperfine -N --warmup 3 --runs 20 --export-json "$work/r.json" \
  -n "render (in memory)" "$bin --inventory $work/inv render" \
  >/dev/null
hyperfine --warmup 2 --runs 10 --export-json "$work/w.json" \
  -n "cp -r of the tree (floor)" --prepare "rm -rf $work/copy" "cp -r $work/tree $work/copy" \
  -n "render --out (tree written)" --prepare "rm -rf $work/out" "$bin --inventory $work/inv render --out $work/out" \
  >/dev/null
rss=$( { /usr/bin/time -f '%M' "$bin" --inventory "$work/inv" render >/dev/null; } 2>&1 | tail -n1)
python3 - "$work/r.json" "$work/w.json" "$rss" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"] + json.load(open(sys.argv[2]))["results"]
by = {x["command"]: x for x in r}
floor = by["cp -r of the tree (floor)"]["median"]
print(f"render benchmark: {sys.argv[4]} hosts x 5 instances, median of runs (min-max)")
for x in r:
    ratio = x["median"] / floor
    print(f"  {x['command']:<30} {x['median']*1000:8.1f} ms  ({x['min']*1000:.1f}-{x['max']*1000:.1f})  {ratio:5.2f}x cp -r")
print(f"  peak RSS of render: {int(sys.argv[3])/1024:.1f} MiB")
PY
