#!/usr/bin/env bash
# Plan and apply benchmarks against real lab hosts (scripts/lab), as ratios to a floor measured in
# the same run: one fresh `ssh HOST cat <the host's managed files>` per host, all hosts in parallel.
#   bench/plan.sh [N_HOSTS...]     (default: 6 50)
# For each N: floor; plan on fresh hosts (all creates); apply on fresh hosts; converged plan, status and
# converged apply (no changes). Medians and ranges of several runs, via hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-6 50}")
[[ $# -gt 0 ]] || sizes=(6 50)
command -v hyperfine >/dev/null || { echo "bench: apt-get install hyperfine" >&2; exit 2; }
cargo build --release --quiet
bin=$PWD/target/release/oignon
work=$(mktemp -d /dev/shm/oignon-bench.XXXXXX)
lab=$work/lab
cleanup() { scripts/lab stop "$lab" --clean >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
per=5
for n in "${sizes[@]}"; do
  scripts/lab stop "$lab" --clean >/dev/null 2>&1 || true
  scripts/lab start "$lab" "$n" >/dev/null
  rm -rf "$work/inv"
  scripts/gen-fleet "$n" "$work/inv" "$per" lab 2>/dev/null
  [[ -e /proc/sys/kernel/yama ]] || sed -i 's/^\[defaults\]$/[defaults]\nsysctl_remove = ["kernel.yama.ptrace_scope"]/' "$work/inv/fleet.toml"
  cfg=$lab/ssh_config
  files="/etc/default/grub.d/oignon.cfg /etc/sysctl.d/90-oignon.conf /etc/systemd/system/tor@.service.d/oignon.conf"
  cat > "$work/floor.sh" <<SH
#!/usr/bin/env bash
for i in \$(seq 1 $n); do
  ssh -F $cfg lab\$i "cat $files \$(for r in \$(seq 1 $per); do printf '/etc/tor/instances/h%dr%d/torrc ' \$i \$r; done) >/dev/null 2>&1; true" &
done
wait
SH
  chmod +x "$work/floor.sh"
  reset="for i in \$(seq 1 $n); do scripts/lab exec $lab lab\$i sh -c 'rm -rf /etc/tor/instances/* /var/lib/oignon/* /etc/default/grub.d/oignon.cfg /etc/sysctl.d/90-oignon.conf /etc/systemd/system/tor@.service.d' ; done"
  oi="$bin --ssh-config $cfg --inventory $work/inv"
  runs=$(( n > 10 ? 5 : 10 ))
  hyperfine --warmup 1 --runs "$runs" --export-json "$work/plan-$n.json" \
    -n "floor: parallel ssh cat ($n hosts)" "$work/floor.sh" \
    -n "plan, fresh hosts" --prepare "$reset" "$oi plan --brief" \
    >/dev/null 2>&1
  hyperfine --runs 3 --export-json "$work/apply-$n.json" \
    -n "floor: parallel ssh cat ($n hosts)" "$work/floor.sh" \
    -n "apply, fresh hosts" --prepare "$reset" "$oi apply --yes --brief" \
    >/dev/null 2>&1
  $oi apply --yes --brief >/dev/null 2>&1 || true
  $oi plan --detailed-exitcode >/dev/null 2>&1 || { echo "bench: fleet did not converge" >&2; exit 1; }
  # The same converged hosts planned against an inventory that changes every torrc.
  rm -rf "$work/inv2" && cp -r "$work/inv" "$work/inv2"
  sed -i 's/^exit_policy_prepend = \["reject \*:25"\]/exit_policy_prepend = ["reject *:25", "reject *:6667"]/' "$work/inv2/fleet.toml"
  oi2="$bin --ssh-config $cfg --inventory $work/inv2"
  hyperfine --warmup 1 --runs "$runs" --export-json "$work/conv-$n.json" \
    -n "floor: parallel ssh cat ($n hosts)" "$work/floor.sh" \
    -n "plan, converged" "$oi plan --brief" \
    -n "plan, every torrc changed" "$oi2 plan --brief" \
    -n "apply, converged" "$oi apply --yes --brief" \
    >/dev/null 2>&1
  # status: plan's round trip plus the status facts (fingerprint, signing cert, MetricsPort probe,
  # last apply). The namespace lab's units are stand-ins, so status exits 2 (attention): -i.
  hyperfine -i --warmup 1 --runs "$runs" --export-json "$work/status-$n.json" \
    -n "floor: parallel ssh cat ($n hosts)" "$work/floor.sh" \
    -n "status, converged" "$oi status" \
    -n "plan, converged (again)" "$oi plan --brief" \
    >/dev/null 2>&1
  # Round trips per host, from oignon's own log.
  rt=$($oi -v plan --brief 2>&1 >/dev/null | grep -c 'round_trips=1' || true)
  python3 - "$n" "$rt" "$work/plan-$n.json" "$work/apply-$n.json" "$work/conv-$n.json" "$work/status-$n.json" <<'PY'
import json, sys
n, rt = sys.argv[1], sys.argv[2]
print(f"\n{n} lab hosts x 5 instances (median, min-max, ratio to the floor of the same hyperfine run)")
for f in sys.argv[3:]:
    res = json.load(open(f))["results"]
    floor = next((x["median"] for x in res if x["command"].startswith("floor")), None)
    for x in res:
        ratio = f"{x['median']/floor:5.2f}x floor" if floor else ""
        print(f"  {x['command']:<36} {x['median']:7.3f} s  ({x['min']:.3f}-{x['max']:.3f})  {ratio}")
print(f"  hosts gathered with 1 connection + 1 round trip (oignon -v): {rt} of {n}")
PY
done
