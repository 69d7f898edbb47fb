#!/usr/bin/env bash
# Warm plan (ssh masters kept by an earlier run, --ssh-persist) against cold plan (new masters,
# --ssh-persist 0) on real lab hosts, as ratios to a floor measured in the same hyperfine run: one
# fresh `ssh HOST cat <the host's managed files>` per host, all hosts in parallel.
#   bench/ssh_persist.sh [N_HOSTS]     (default: 4)
# The hosts are converged first (apply), so each plan gathers and finds no change.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-4}
command -v hyperfine >/dev/null || { echo "bench: apt-get install hyperfine" >&2; exit 2; }
cargo build --release --quiet
bin=$PWD/target/release/oignon
work=$(mktemp -d /dev/shm/oignon-bench.XXXXXX)
lab=$work/lab
cleanup() { scripts/lab stop "$lab" --clean >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
per=5
scripts/lab start "$lab" "$n" >/dev/null
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
# oignon's masters' directory for this benchmark only.
mkdir -m 0700 "$work/run"
export XDG_RUNTIME_DIR=$work/run
oi="$bin --ssh-config $cfg --inventory $work/inv"
$oi apply --yes --brief >/dev/null 2>&1 || true
$oi plan --detailed-exitcode >/dev/null 2>&1 || { echo "bench: fleet did not converge" >&2; exit 1; }
# hyperfine's warmup run of the warm plan leaves the masters the counted runs reuse.
hyperfine --warmup 1 --runs 15 --export-json "$work/persist.json" \
  -n "floor: parallel ssh cat ($n hosts)" "$work/floor.sh" \
  -n "plan, cold (--ssh-persist 0)" "$oi --ssh-persist 0 plan --brief" \
  -n "plan, warm (masters of an earlier run)" "$oi plan --brief" \
  >/dev/null 2>&1
reused=$($oi -v plan --brief 2>&1 >/dev/null | grep -c 'connection="reused"' || true)
python3 - "$n" "$reused" "$work/persist.json" <<'PY'
import json, sys
n, reused = sys.argv[1], sys.argv[2]
print(f"\n{n} lab hosts x 5 instances, converged (median, min-max, ratio to the floor of the same hyperfine run)")
res = json.load(open(sys.argv[3]))["results"]
floor = next(x["median"] for x in res if x["command"].startswith("floor"))
for x in res:
    print(f"  {x['command']:<40} {x['median']:7.3f} s  ({x['min']:.3f}-{x['max']:.3f})  {x['median']/floor:5.2f}x floor")
print(f"  hosts gathered over a reused connection (oignon -v): {reused} of {n}")
PY
