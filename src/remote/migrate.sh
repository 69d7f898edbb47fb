# oignon migrate: the host-side steps of moving (or retiring) a relay, one verb per call.
# Run as: sh -c "<this script>" oignon-migrate ROOT VERB NAME [ARGS...]
#   ROOT must be "": these steps drive systemd and tor on a live host (no local images).
# Every verb checks the host's state first and does only what is left, so a rerun after a killed
# controller (the step done on the host, the journal not yet written) is safe and says ALREADY.
# Verbs (NAME: a relay nickname; every argument is checked again here, this script runs as root):
#   probe NAME PORT        what migrate needs to know, one record a line (see below)
#   stop NAME              stop, disable and mask tor@NAME (a masked unit cannot start, even at boot)
#   quarantine NAME        move DataDirectory/keys to /var/lib/oignon/quarantine/NAME (root, 0700)
#   tombstone NAME TO WHEN FINGERPRINT
#                          write /var/lib/oignon/moved/NAME: where the relay went, when, which identity
#   arrive NAME FROM WHEN FINGERPRINT
#                          write /var/lib/oignon/arrived/NAME on the target: plan refuses to remove
#                          the relay there on an inventory that lacks it (an older checkout)
#   verify NAME PORT SECONDS
#                          wait (at most SECONDS) for tor@NAME to run, log its fingerprint and listen
#                          on PORT; then report what tor said (probe records)
#   purge NAME             overwrite then unlink the quarantined keys; archive /etc/tor/instances/NAME
#                          under /var/backups/oignon and drop the instance from oignon's manifest
#                          (and its arrival mark: the relay ends here)
#   rollback NAME          the source again: keys back from quarantine, tombstone removed, unmasked,
#                          enable --now
#   resurrect NAME         an operator's explicit choice (`--resurrect`): tombstone removed, unmasked
# stdout, tab-separated: DONE VERB | ALREADY VERB | REFUSED WHY (exit 8) | probe records:
#   T 1|0                  tor is installed
#   S ACTIVESTATE UNITFILESTATE
#   C 1|0                  /etc/tor/instances/NAME exists
#   U 1|0                  user _tor-NAME exists
#   D 1|0                  its DataDirectory exists
#   Y 1|0                  DataDirectory/keys/secret_id_key exists (seen as _tor-NAME)
#   F FINGERPRINT          the DataDirectory's `fingerprint` file (read as _tor-NAME)
#   J FINGERPRINT          the fingerprint tor logged in this run of tor@NAME (journal)
#   Q 1|0                  the quarantine holds keys
#   X NAME TO WHEN FP      the tombstone
#   L ADDR:PORT            a socket listening on PORT
#   A ADDRESS              an address of the host (global scope)
#   K end ok               last line
# Nothing is done as root through a link: the DataDirectory and its keys are checked not to be
# links; moving keys is rename(2), which moves a link itself rather than what it points to; the
# quarantine is a root-only directory, so once moved nothing there is reachable by _tor-NAME.
set -u
root=$1
verb=${2:-}
name=${3:-}
tab=$(printf '\t')
state=/var/lib/oignon
backups=/var/backups/oignon

refuse() {
  printf 'REFUSED\t%s\n' "$(printf '%s' "$*" | tr '\t\n' '  ')"
  exit 8
}
[ -z "$root" ] || refuse "migrate runs on live hosts only (systemd and tor), not on a local image"
case $name in '' | *[!A-Za-z0-9]*) refuse "\"$name\" is not a relay nickname" ;; esac
[ "${#name}" -le 19 ] || refuse "\"$name\" is longer than 19 characters"
unit=tor@$name
user=_tor-$name
dd=/var/lib/tor-instances/$name
quarantine=$state/quarantine/$name
tomb=$state/moved/$name

check_port() {
  case $1 in '' | *[!0-9]*) refuse "\"$1\" is not a port" ;; esac
  [ "$1" -ge 1 ] && [ "$1" -le 65535 ] || refuse "\"$1\" is not a port"
}
as_user() {
  setpriv --reuid="$user" --regid="$user" --clear-groups --no-new-privs -- "$@"
}
user_exists() { id -u "$user" >/dev/null 2>&1; }
# The DataDirectory is a real directory owned by _tor-NAME, and its keys is not a link.
check_dd() {
  if link_in "$dd" >/dev/null; then refuse "$dd goes through a symbolic link ($(link_in "$dd")): move it away by hand"; fi
  [ -e "$dd/keys" ] || [ -L "$dd/keys" ] || return 0
  [ ! -L "$dd/keys" ] || refuse "$dd/keys is a symbolic link: a relay's keys are a directory; move it away by hand (as root, after checking who made it)"
  [ -d "$dd/keys" ] || refuse "$dd/keys is not a directory: move it away by hand"
}
unit_state() {
  systemctl show -p ActiveState -p UnitFileState -- "$unit" 2>/dev/null |
    awk -F= '$1 == "ActiveState" { a = $2 } $1 == "UnitFileState" { u = $2 } END { printf "%s\t%s\n", (a == "" ? "-" : a), (u == "" ? "-" : u) }'
}
is_active() {
  case $(unit_state) in active"$tab"* | activating"$tab"* | reloading"$tab"* | deactivating"$tab"*) return 0 ;; esac
  return 1
}
# Keys present in the DataDirectory, seen as its user (never as root through its links).
dd_has_keys() {
  [ -d "$dd" ] && user_exists && as_user sh -c '[ -f "$1/keys/secret_id_key" ] && [ ! -L "$1/keys/secret_id_key" ]' sh "$dd" 2>/dev/null
}
dd_fingerprint() {
  [ -d "$dd" ] && user_exists || return 0
  as_user sh -c '[ -f "$1/fingerprint" ] && [ ! -L "$1/fingerprint" ] && cut -d" " -f2 "$1/fingerprint"' sh "$dd" 2>/dev/null | tr -cd 'A-F0-9' | cut -c1-40
}
journal_fingerprint() {
  inv=$(systemctl show -p InvocationID --value -- "$unit" 2>/dev/null)
  [ -n "$inv" ] || return 0
  journalctl --no-pager -o cat "_SYSTEMD_INVOCATION_ID=$inv" 2>/dev/null |
    sed -n "s/.*Your Tor server's identity key fingerprint is '$name \([0-9A-F]\{40\}\)'.*/\1/p" | tail -n 1
}
listening() {
  ss -Hltn 2>/dev/null | awk -v p=":$1" '{ a = $4; if (substr(a, length(a) - length(p) + 1) == p) print a }'
}
tombstone_record() {
  [ -f "$tomb" ] && [ ! -L "$tomb" ] || return 0
  to=$(sed -n 's/^to\t//p' "$tomb" | head -n 1 | tr -cd 'A-Za-z0-9.-')
  when=$(sed -n 's/^when\t//p' "$tomb" | head -n 1 | tr -cd 'A-Za-z0-9:.+-')
  fp=$(sed -n 's/^fingerprint\t//p' "$tomb" | head -n 1 | tr -cd 'A-F0-9')
  printf 'X\t%s\t%s\t%s\t%s\n' "$name" "${to:--}" "${when:--}" "${fp:--}"
}
probe() {
  port=$1
  if command -v tor >/dev/null 2>&1; then echo "T${tab}1"; else echo "T${tab}0"; fi
  printf 'S\t%s\n' "$(unit_state)"
  if [ -d "/etc/tor/instances/$name" ]; then echo "C${tab}1"; else echo "C${tab}0"; fi
  if user_exists; then echo "U${tab}1"; else echo "U${tab}0"; fi
  if [ -d "$dd" ] && [ ! -L "$dd" ]; then echo "D${tab}1"; else echo "D${tab}0"; fi
  if [ ! -L "$dd" ] && dd_has_keys; then echo "Y${tab}1"; else echo "Y${tab}0"; fi
  if [ ! -L "$dd" ]; then
    f=$(dd_fingerprint)
    [ -z "$f" ] || printf 'F\t%s\n' "$f"
  fi
  j=$(journal_fingerprint)
  [ -z "$j" ] || printf 'J\t%s\n' "$j"
  if [ -d "$quarantine/keys" ] && [ ! -L "$quarantine/keys" ]; then echo "Q${tab}1"; else echo "Q${tab}0"; fi
  tombstone_record
  listening "$port" | while IFS= read -r a; do printf 'L\t%s\n' "$a"; done
  ip -o addr show scope global 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print "A\t" $4 }'
  printf 'K\tend\tok\n'
}

case $verb in
probe)
  check_port "${4:-}"
  probe "$4"
  ;;
stop)
  if ! is_active && [ "$(systemctl is-enabled -- "$unit" 2>/dev/null)" = masked ]; then
    echo "ALREADY${tab}stop"
    exit 0
  fi
  # disable --now: no boot starts it again; mask: neither can anything else (an older checkout's
  # apply, a colleague's `systemctl start`), until the operator unmasks it on purpose.
  systemctl disable --now --quiet -- "$unit" 2>/dev/null || systemctl stop -- "$unit" || refuse "systemctl stop $unit failed"
  systemctl mask --quiet -- "$unit" || refuse "systemctl mask $unit failed"
  is_active && refuse "$unit is still running after stop"
  echo "DONE${tab}stop"
  ;;
quarantine)
  is_active && refuse "$unit is running: stop it first (migrate stops it in its first step)"
  check_dd
  if [ -d "$quarantine/keys" ] && [ ! -L "$quarantine/keys" ] && [ ! -e "$dd/keys" ]; then
    echo "ALREADY${tab}quarantine"
    exit 0
  fi
  [ -d "$dd/keys" ] || refuse "$dd/keys is missing: there are no keys to move"
  [ ! -e "$quarantine" ] || [ -d "$quarantine" ] || refuse "$quarantine exists and is not a directory"
  [ ! -e "$quarantine/keys" ] || refuse "$quarantine/keys exists already, and so does $dd/keys: compare them by hand"
  link_in "$state" >/dev/null && refuse "$state goes through a symbolic link"
  umask 077
  mkdir -p -- "$state/quarantine" "$quarantine" || refuse "cannot create $quarantine"
  chown root:root -- "$state/quarantine" "$quarantine" && chmod 0700 -- "$state/quarantine" "$quarantine" || refuse "cannot make $quarantine root-only"
  # rename(2) needs one filesystem; across two, mv would copy, and root would read the user's tree.
  [ "$(stat -c %d -- "$dd")" = "$(stat -c %d -- "$quarantine")" ] || refuse "$dd and $quarantine are on different filesystems: move the keys by hand"
  mv -T -- "$dd/keys" "$quarantine/keys" || refuse "moving $dd/keys to $quarantine failed"
  # _tor-NAME could have swapped keys for a link after the check above; rename moved the link
  # itself. chmod follows a link named on its command line: never hand it one.
  if [ -L "$quarantine/keys" ] || [ ! -d "$quarantine/keys" ]; then
    refuse "$dd/keys turned into a symbolic link or a file while it was moved; it is now $quarantine/keys (root only): inspect it by hand"
  fi
  # Now out of _tor-NAME's reach: -R without -L changes links themselves, never what they name.
  chown -R -P root:root -- "$quarantine/keys" && chmod -R go-rwx -- "$quarantine/keys" || refuse "cannot make $quarantine/keys root-only"
  sync
  echo "DONE${tab}quarantine"
  ;;
tombstone | arrive)
  to=${4:-} when=${5:-} fp=${6:-}
  dir=$state/moved
  [ "$verb" = arrive ] && dir=$state/arrived
  tomb=$dir/$name
  case $to in '' | *[!A-Za-z0-9.-]*) refuse "\"$to\" is not a host name" ;; esac
  case $when in '' | *[!0-9TZ:-]*) refuse "\"$when\" is not a UTC time" ;; esac
  case $fp in *[!0-9A-F]*) refuse "\"$fp\" is not a fingerprint" ;; esac
  [ "${#fp}" = 40 ] || refuse "\"$fp\" is not a fingerprint (40 hex digits)"
  want=$(printf 'to\t%s\nwhen\t%s\nfingerprint\t%s' "$to" "$when" "$fp")
  if [ -f "$tomb" ] && [ ! -L "$tomb" ] && [ "$(sed -n '/^to\t/p; /^fingerprint\t/p' "$tomb")" = "$(printf 'to\t%s\nfingerprint\t%s' "$to" "$fp")" ]; then
    echo "ALREADY${tab}$verb"
    exit 0
  fi
  link_in "$state" >/dev/null && refuse "$state goes through a symbolic link"
  mkdir -p -- "$dir" || refuse "cannot create $dir"
  [ ! -L "$dir" ] || refuse "$dir is a symbolic link"
  t=$(mktemp "$dir/.$name.XXXXXX") || refuse "cannot write in $dir"
  chmod 0644 -- "$t"
  printf '%s\n' "$want" > "$t" && sync -- "$t" 2>/dev/null; mv -fT -- "$t" "$tomb" || refuse "cannot write $tomb"
  sync
  echo "DONE${tab}$verb"
  ;;
verify)
  check_port "${4:-}"
  secs=${5:-60}
  case $secs in '' | *[!0-9]*) refuse "\"$secs\" is not a number of seconds" ;; esac
  i=0
  while [ "$i" -lt "$((secs * 2))" ]; do
    if is_active && [ -n "$(journal_fingerprint)" ] && [ -n "$(listening "$4")" ]; then break; fi
    sleep 0.5
    i=$((i + 1))
  done
  probe "$4"
  ;;
purge)
  is_active && refuse "$unit is running here: it must not, once its keys went elsewhere"
  if [ -d "$quarantine" ] && [ ! -L "$quarantine" ]; then
    # Root-only since the move, so nothing under it can be swapped for a link now; -type f never
    # matches a link, and `find -P` never follows one.
    find -P "$quarantine" -type f -exec shred -n 1 -z -u -- {} + || refuse "overwriting the keys in $quarantine failed"
    rm -rf -- "$quarantine" || refuse "removing $quarantine failed"
    done_keys=1
  else
    done_keys=0
  fi
  done_conf=0
  if [ -f "$state/arrived/$name" ] || [ -L "$state/arrived/$name" ]; then
    rm -f -- "$state/arrived/$name"
    done_conf=1
  fi
  if [ -d "/etc/tor/instances/$name" ] && ! link_in "/etc/tor/instances/$name" >/dev/null; then
    mkdir -p -- "$backups" || refuse "cannot create $backups"
    stamp=$(date -u +%Y%m%dT%H%M%SZ).$$
    mv -fT -- "/etc/tor/instances/$name" "$backups/etc__tor__instances__$name.removed.$stamp" || refuse "archiving /etc/tor/instances/$name failed"
    done_conf=1
  fi
  if [ -f "$state/managed" ] && grep -q -e "^/etc/tor/instances/$name/" -e "^$dd/" "$state/managed"; then
    # Under apply's lock: the manifest is apply's, and never edited while an apply runs.
    exec 9>>"$state/lock" || refuse "cannot open $state/lock"
    flock -n 9 || refuse "an apply holds the lock on this host; run migrate again when it is done"
    grep -v -e "^/etc/tor/instances/$name/" -e "^$dd/" "$state/managed" > "$state/managed.new"
    mv -fT -- "$state/managed.new" "$state/managed" || refuse "cannot rewrite $state/managed"
    exec 9>&-
    done_conf=1
  fi
  sync
  if [ "$done_keys$done_conf" = 00 ]; then echo "ALREADY${tab}purge"; else echo "DONE${tab}purge"; fi
  ;;
rollback)
  check_dd
  if [ -d "$quarantine/keys" ] && [ ! -L "$quarantine/keys" ]; then
    [ ! -e "$dd/keys" ] || refuse "$dd/keys exists again, and $quarantine/keys too: compare them by hand, keep one"
    [ -d "$dd" ] || refuse "$dd is missing: the instance is gone; restore it by hand from $quarantine"
    user_exists || refuse "user $user is missing"
    chown -R -P "$user:$user" -- "$quarantine/keys" || refuse "cannot give $quarantine/keys back to $user"
    mv -T -- "$quarantine/keys" "$dd/keys" || refuse "moving the keys back to $dd failed"
    rmdir -- "$quarantine" 2>/dev/null || true
  elif ! dd_has_keys; then
    refuse "no keys to restore: neither $quarantine/keys nor $dd/keys holds them (were they purged?)"
  fi
  rm -f -- "$tomb"
  systemctl unmask --quiet -- "$unit" || refuse "systemctl unmask $unit failed"
  systemctl enable --now --quiet -- "$unit" || refuse "systemctl enable --now $unit failed: $(journalctl -u "$unit" -n 5 --no-pager -o cat 2>/dev/null | tr '\n' ' ')"
  sync
  echo "DONE${tab}rollback"
  ;;
resurrect)
  if [ ! -e "$tomb" ] && [ "$(systemctl is-enabled -- "$unit" 2>/dev/null)" != masked ]; then
    echo "ALREADY${tab}resurrect"
    exit 0
  fi
  rm -f -- "$tomb"
  systemctl unmask --quiet -- "$unit" || refuse "systemctl unmask $unit failed"
  echo "DONE${tab}resurrect"
  ;;
*) refuse "unknown verb \"$verb\"" ;;
esac
exit 0
