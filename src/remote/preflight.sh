# oignon preflight: what `oignon bootstrap` must know about a new host before installing anything,
# in ONE round trip. It reads and reports; it changes nothing on the host.
# Run as: sh -c "<this script>" oignon-preflight ROOT < requests   (ROOT: "" on a real host)
# stdin, one request per line, tab-separated (src/remote/record.rs):
#   m PATH               report the free space of the file system holding PATH (a D record)
# Every other fact is reported whatever the inventory says; the Rust side compares.
# stdout, one record per line, tab-separated; the Rust side (src/remote/preflight.rs) parses it as
# data and decides (src/bootstrap.rs):
#   K KEY VALUE          a fact: os_id, version_id, codename, arch, init, container, ntp,
#                        ntp_synchronized, grub_cfg, grub_pkgs, tor_path, tor_version_line,
#                        tor_pkg, route4, route6; the last line is K end ok
#   A ADDR               an address on an interface (`ip -o addr`, without its prefix length)
#   L ADDR PORT WHO      a listening TCP socket; WHO is the unit of its process (tor@x.service),
#                        else `process NAME`, else `-`
#   D PATH KIB           free space (df -Pk) of the file system holding PATH (as requested)
#   S FILE URI SUITE     an apt source (one per URI and suite)
set -u
# Values cross as tab-separated fields: a fact's tabs, newlines and other control characters
# would forge records, so they are cut out.
clean() { tr -d '\000-\037\177' | cut -c1-300; }
fact() { printf 'K\t%s\t%s\n' "$1" "$(printf '%s' "$2" | clean)"; }

# The release, read as data (never sourced: os-release is not code to run as root). Debian's
# /etc/os-release is a link to /usr/lib/os-release: only regular files are read.
osr=
for f in /etc/os-release /usr/lib/os-release; do
  if [ -f "$f" ] && [ ! -L "$f" ]; then osr=$f; break; fi
done
field() { [ -n "$osr" ] && sed -n "s/^$1=//p" "$osr" | head -n 1 | tr -d '"'"'" | clean; }
fact os_id "$(field ID)"
fact version_id "$(field VERSION_ID)"
fact codename "$(field VERSION_CODENAME)"
fact arch "$(dpkg --print-architecture 2>/dev/null)"
fact init "$(cat /proc/1/comm 2>/dev/null)"
fact container "$(systemd-detect-virt --container 2>/dev/null || echo none)"

# Addresses on any interface.
ip -o addr show 2>/dev/null | awk '{ a = $4; sub(/\/.*/, "", a); if (a != "") print a }' |
  tr -d '\000-\010\013-\037\177' | while IFS= read -r a; do printf 'A\t%s\n' "$a"; done
fact route4 "$(ip -4 route show default 2>/dev/null | head -n 1)"
fact route6 "$(ip -6 route show default 2>/dev/null | head -n 1)"

# GRUB: its configuration, and the packages that install it.
if [ -f /boot/grub/grub.cfg ]; then fact grub_cfg 1; else fact grub_cfg 0; fi
fact grub_pkgs "$(dpkg-query -W -f '${Package}=${Status};' grub-pc grub-efi-amd64 grub-efi-arm64 grub-efi-ia32 grub-common 2>/dev/null |
  tr ';' '\n' | sed -n 's/=install ok installed$//p' | tr '\n' ' ')"

# Free space (KiB) where the requests ask.
while IFS="$(printf '\t')" read -r kind m; do
  [ "$kind" = m ] || continue
  df -Pk -- "$m" 2>/dev/null | awk -v m="$m" 'NR == 2 { print "D\t" m "\t" $4 }'
done

# The clock: NTP synchronised (the kernel's flag, as systemd reports it).
if command -v timedatectl >/dev/null 2>&1; then
  fact ntp "$(timedatectl show -p NTP --value 2>/dev/null)"
  fact ntp_synchronized "$(timedatectl show -p NTPSynchronized --value 2>/dev/null)"
else
  fact ntp_synchronized unknown
fi

# Listening TCP sockets, each with the systemd unit of its process (from its cgroup).
ss -Hltnp 2>/dev/null | while read -r _state _rq _sq local _peer rest; do
  port=${local##*:}
  addr=${local%:*}
  addr=${addr#[}
  addr=${addr%]}
  addr=${addr%%%*}
  # ss writes a dual-stack wildcard as `*`.
  [ "$addr" = '*' ] && addr=::
  who=-
  pid=$(printf '%s' "$rest" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1)
  if [ -n "$pid" ] && [ -r "/proc/$pid/cgroup" ]; then
    unit=$(sed -n 's|.*/\([^/]*\.service\)$|\1|p' "/proc/$pid/cgroup" | head -n 1)
    if [ -n "$unit" ]; then who=$unit
    else who="process $(printf '%s' "$rest" | sed -n 's/.*(("\([^"]*\)".*/\1/p')"
    fi
  fi
  printf 'L\t%s\t%s\t%s\n' "$(printf '%s' "$addr" | clean)" "$(printf '%s' "$port" | clean)" "$(printf '%s' "$who" | clean)"
done

# tor: the binary that would run, and the package.
if p=$(command -v tor 2>/dev/null); then
  fact tor_path "$p"
  fact tor_version_line "$(tor --version 2>/dev/null | head -n 1)"
fi
fact tor_pkg "$(dpkg-query -W -f '${Status}=${Version}' tor 2>/dev/null | sed -n 's/^install ok installed=//p')"

# apt sources: one-line (*.list) and deb822 (*.sources) files, as URI and suite.
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  awk -v f="$f" '$1 == "deb" {
      i = 2
      if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
      print "S\t" f "\t" $i "\t" $(i + 1) }' "$f"
done | tr -d '\000-\010\013-\037\177'
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  awk -v f="$f" '
    function flush() {
      if (deb && en) for (i = 1; i <= nu; i++) for (j = 1; j <= ns; j++) print "S\t" f "\t" u[i] "\t" s[j]
      nu = 0; ns = 0; deb = 0; en = 1
    }
    BEGIN { en = 1 }
    /^[ \t]*$/ { flush(); next }
    /^#/ { next }
    tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
    tolower($1) == "uris:" { for (i = 2; i <= NF; i++) u[++nu] = $i }
    tolower($1) == "suites:" { for (i = 2; i <= NF; i++) s[++ns] = $i }
    tolower($1) == "enabled:" { if (tolower($2) == "no") en = 0 }
    END { flush() }' "$f"
done | tr -d '\000-\010\013-\037\177'
fact end ok
