# oignon bootstrap: makes a host hold what a relay needs before `oignon apply` (tor from the
# inventory's source, unattended-upgrades set up for tor's updates, the roles' packages), with
# Debian's single-instance tor masked. Idempotent: what already holds is left alone and not
# reported, so a second run reports no change.
# Run as: sh -c "<this script>" oignon-bootstrap ROOT < requests   (ROOT: "" on a real host)
# stdin, one request per line, tab-separated (src/remote/record.rs):
#   M UNIT                 mask this unit (and stop it if it runs), before anything is installed
#   W PATH MODE BASE64     this file must hold exactly these bytes, owner root, this octal mode
#   P PACKAGE              this Debian package must be installed
# stdout, one record per line, tab-separated:
#   C WHAT                 a change made (masked U, stopped U, wrote P, installed P…, upgraded…)
#   E MESSAGE              why it stopped (then exit 1); what was done before is in the C records
#   K tor_version V        the installed tor package's version afterwards
#   K end ok               the last line of a complete run
# Nothing is written as root through a symbolic link (link_in, from paths.sh). apt-get runs
# noninteractive, keeping any configuration file an admin changed (--force-confold).
set -u
root=$1
tab=$(printf '\t')
say() { printf '%s\t%s\n' "$1" "$(printf '%s' "$2" | tr '\n\t' '  ' | tr -d '\000-\037\177' | cut -c1-600)"; }
fail() {
  say E "$1"
  exit 1
}
masks=
pkgs=
wfile=$(mktemp) || fail "mktemp failed"
log=$(mktemp) || fail "mktemp failed"
trap 'rm -f "$wfile" "$log"' EXIT
while IFS="$tab" read -r kind a b c; do
  case $kind in
  M | P)
    # Unit and package names only: they are split on spaces below.
    case $a in
    '' | *[!A-Za-z0-9@.+_-]*) fail "refusing the name '$a' in a $kind request" ;;
    esac
    if [ "$kind" = M ]; then masks="$masks $a"; else pkgs="$pkgs $a"; fi
    ;;
  W) printf '%s\t%s\t%s\n' "$a" "$b" "$c" >>"$wfile" ;;
  *) fail "unknown request '$kind'" ;;
  esac
done

# Debian's tor.service (tor@default) first: masked before tor is installed, it never starts.
for u in $masks; do
  if [ "$(systemctl is-enabled "$u" 2>/dev/null)" != masked ]; then
    systemctl mask "$u" >"$log" 2>&1 || fail "systemctl mask $u failed: $(cat "$log")"
    say C "masked $u"
  fi
  if systemctl is-active --quiet "$u" 2>/dev/null; then
    systemctl stop "$u" >"$log" 2>&1 || fail "systemctl stop $u failed: $(cat "$log")"
    say C "stopped $u"
  fi
done

sources_changed=0
while IFS="$tab" read -r p mode b64; do
  case $p in
  /*) ;;
  *) fail "refusing the relative path '$p'" ;;
  esac
  case $mode in
  '' | *[!0-7]*) fail "refusing the mode '$mode' for $p" ;;
  esac
  if l=$(link_in "$p"); then fail "$p goes through the symbolic link $l: not writing through it as root"; fi
  d=${p%/*}
  if [ ! -d "$root$d" ]; then
    mkdir -p -m 0755 "$root$d" || fail "cannot create $d"
  fi
  want=$(printf '%s' "$b64" | base64 -d | sha256sum) || fail "bad content for $p"
  if [ -f "$root$p" ] && [ "$(sha256sum <"$root$p")" = "$want" ] &&
    [ "$(stat -c '%a %U %G' "$root$p")" = "$(printf '%o' "0$mode") root root" ]; then
    continue
  fi
  tmp=$(mktemp "$root$d/.oignon-bootstrap.XXXXXX") || fail "cannot write in $d"
  # Owner and mode before content, then one rename: the file is wholly old or wholly new.
  chown root:root "$tmp" && chmod "$mode" "$tmp" &&
    printf '%s' "$b64" | base64 -d >"$tmp" && sync "$tmp" 2>/dev/null
  if [ "$(sha256sum <"$tmp")" != "$want" ] || ! mv -fT "$tmp" "$root$p"; then
    rm -f "$tmp"
    fail "cannot write $p"
  fi
  say C "wrote $p"
  case $p in
  /etc/apt/sources.list.d/* | /etc/apt/keyrings/*) sources_changed=1 ;;
  esac
done <"$wfile"

installed() { [ "$(dpkg-query -W -f '${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
missing=
for p in $pkgs; do
  installed "$p" || missing="$missing $p"
done
before=$(dpkg-query -W -f '${Version}' tor 2>/dev/null)
if [ -n "$missing" ] || [ "$sources_changed" = 1 ]; then
  apt-get update --error-on=any >"$log" 2>&1 ||
    fail "apt-get update failed: $(tail -n 8 "$log")"
  # A changed source installs every package again: tor moves to the new source's version.
  if [ "$sources_changed" = 1 ]; then todo=$pkgs; else todo=$missing; fi
  # shellcheck disable=SC2086 # names checked above: no spaces, no globs
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold $todo >"$log" 2>&1 ||
    fail "apt-get install$todo failed: $(tail -n 8 "$log")"
  [ -z "$missing" ] || say C "installed$missing"
  after=$(dpkg-query -W -f '${Version}' tor 2>/dev/null)
  if [ -z "$missing" ] && [ "$before" != "$after" ]; then say C "upgraded tor $before -> $after"; fi
fi
# Installing tor may have started something despite the masks: nothing of Debian's single
# instance may run beside the relays.
for u in $masks; do
  if systemctl is-active --quiet "$u" 2>/dev/null; then
    systemctl stop "$u" >"$log" 2>&1 || fail "systemctl stop $u failed: $(cat "$log")"
    say C "stopped $u"
  fi
done
printf 'K\ttor_version\t%s\n' "$(dpkg-query -W -f '${Version}' tor 2>/dev/null | tr -d '\000-\037\177')"
printf 'K\tend\tok\n'
