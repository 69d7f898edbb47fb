# oignon apply: one host's changes in ONE round trip, all-or-nothing up to the renames.
# Run as: sh -c "<this script>" oignon-apply ROOT < records
#   ROOT: "" on a real host; the image directory for the local transport.
# stdin, one record per line, tab-separated (oignon's one encoder refuses a tab, a newline or any
# other control character in every field; this script checks each field again for its context):
#   L WHO                         first record: take the lock, naming the holder
#   E PATH SHA256|0               the path must still be as planned (0: absent), else nothing is done
#   I NAME                        create relay instance NAME as tor-instance-create would
#   W PATH OWNER GROUP MODE VALIDATOR INSTANCE BASE64
#                                 write PATH (VALIDATOR: torrc grub sysctl systemd nft or -)
#   S PATH                        PATH holds a secret (a key, a password file): never copied into
#                                 /var/backups/oignon; removed by overwriting, never archived
#   R PATH                        archive PATH under /var/backups/oignon, then remove it
#   X NAME                        archive /etc/tor/instances/NAME (an instance that left the inventory)
#   M PATH SHA256                 the manifest of what oignon manages after this apply
#   H WORD...                     a handler to run after the changes; only the handlers oignon
#                                 plans are accepted (systemctl ... tor@NAME, sysctl --system...)
#   B                             record "reboot required" (the kernel command line changed)
# Once the files are in place it records the time and the L record's WHO in
# /var/lib/oignon/last-apply (TIME TAB WHO), which `oignon status` shows.
# stdout: one result per line: LOCKED WHO | STALE-LOCK WHO | STALE PATH WANT HAVE | INVALID PATH
#   + tor's words on stderr | REFUSED WHY | WROTE PATH | REMOVED PATH | RAN COMMAND |
#   HANDLER-FAILED COMMAND | SKIPPED COMMAND [WHY] | OFFLINE COMMAND | BACKUP-FAILED PATH |
#   NOTE TEXT | ROLLED-BACK PATH UNIT | CONFIRM SECONDS (a firewall loaded: confirm it over a new
#   connection within SECONDS, or the host restores the old ruleset) | DONE
# exit: 0 done, 3 locked, 4 stale, 5 invalid, 6 handler failed, 7 write failed, 9 a new unit file
#   made the first relay fail to start and was rolled back, 8 refused (a record
#   that is not what oignon sends, or a path that is not safe to write: nothing was changed)
#
# Safety rules (see README, "What apply does on a host"):
# - Nothing is written as root through a symbolic link: every component of every path below ROOT is
#   checked, and a link anywhere is refused.
# - A relay's DataDirectory (/var/lib/tor-instances/NAME) belongs to _tor-NAME. On a real host,
#   everything done inside it (hashing, temp files, chmod, rename, clean-up) runs AS _tor-NAME
#   (setpriv), so a link planted there only reaches what that user could reach anyway; and a
#   `keys` that is not a real directory owned by _tor-NAME is refused.
# - Temp files have random names (mktemp) and are created by their final owner's side.
# - The lock is flock(1) on /var/lib/oignon/lock, held by this shell: it dies with its holder.
set -u
root=$1
tab=$(printf '\t')
nl='
'
state=$root/var/lib/oignon
backups=$root/var/backups/oignon
keep=5
locked=0
work=

refuse() {
  printf 'REFUSED\t%s\n' "$(printf '%s' "$*" | tr '\t\n' '  ')"
  exit 8
}

no_links() {
  if l=$(link_in "$1"); then
    refuse "$1: $l is a symbolic link on the host; oignon never writes through links: replace it with a real directory or file (as root, after checking who made it), then apply again"
  fi
}

# Field checks: the same rules as oignon's loaders, again here, because this script runs as root.
check_path() {
  case $1 in
  /*) ;;
  *) refuse "record $2: path \"$1\" is not absolute" ;;
  esac
  case $1 in
  *[!A-Za-z0-9._@+/-]* | */../* | */.. | *//*) refuse "record $2: path \"$1\" holds characters or components oignon never sends" ;;
  esac
}
check_name() { # a relay instance: tor's nickname rule
  case $1 in
  '' | *[!A-Za-z0-9]*) refuse "record $2: instance \"$1\" is not a relay nickname" ;;
  esac
  [ "${#1}" -le 19 ] || refuse "record $2: instance \"$1\" is longer than 19 characters"
}
check_account() {
  case $1 in
  '' | -* | *[!A-Za-z0-9._-]*) refuse "record $2: \"$1\" is not a user or group name" ;;
  esac
}
check_mode() {
  case $1 in
  [0-7][0-7][0-7] | 0[0-7][0-7][0-7]) ;;
  *) refuse "record $2: mode \"$1\" is not an octal mode without special bits" ;;
  esac
  # As role.toml's loader: a file written as root is never writable by every user.
  case $1 in
  *[2367]) refuse "record $2: mode \"$1\" makes the file writable by every user" ;;
  esac
}
check_sha() {
  case $1 in
  0) ;;
  *[!0-9a-f]* | '') refuse "record $2: \"$1\" is not a sha256" ;;
  esac
}
# The handlers oignon plans, and nothing else.
check_handler() {
  case $1 in
  'systemctl daemon-reload' | 'sysctl --system' | 'update-grub') return 0 ;;
  'systemctl restart prometheus-node-exporter' | 'systemctl reload-or-restart nginx') return 0 ;;
  'systemctl reload tor@'* | 'systemctl restart tor@'*) n=${1##* tor@} ;;
  'systemctl enable --now tor@'* | 'systemctl disable --now tor@'*) n=${1##* tor@} ;;
  'oignon-nft-load '*)
    case ${1#oignon-nft-load } in '' | *[!0-9]* | ?????*) refuse "handler \"$1\": the confirmation window is not a number of seconds" ;; esac
    return 0
    ;;
  *) refuse "handler \"$1\" is not one oignon runs" ;;
  esac
  check_name "$n" H
}

# A relay's DataDirectory path: prints the instance user (_tor-NAME) for a path inside
# /var/lib/tor-instances/NAME/, nothing otherwise.
dd_user() {
  n=$(dd_name "$1")
  [ -z "$n" ] || printf '_tor-%s' "$n"
}
# Runs a command as USER: no capabilities, no supplementary groups, no new privileges.
as_user() {
  u=$1
  shift
  setpriv --reuid="$u" --regid="$u" --clear-groups --no-new-privs -- "$@"
}
# Whether files under a DataDirectory are handled as its user (a real host), or as root with every
# link refused (a local image: not a live system, and its uids mean nothing on this machine).
as_owner_side() {
  [ -z "$root" ]
}
# The DataDirectory and every directory between it and PATH's directory must be real directories
# owned by the instance user (a `keys` that is a link, or a root-owned directory, is refused).
check_data_dir() {
  p=$1 u=$2
  n=${u#_tor-}
  base=/var/lib/tor-instances/$n
  rel=${p#"$base"/}
  cur=$root$base
  while :; do
    if [ -L "$cur" ]; then
      refuse "$p: ${cur#"$root"} is a symbolic link; a relay's DataDirectory belongs to $u, and oignon never follows links there: move it away (e.g. mv ${cur#"$root"} ${cur#"$root"}.suspect) and apply again"
    fi
    if [ -e "$cur" ]; then
      [ -d "$cur" ] || refuse "$p: ${cur#"$root"} is not a directory: move it away and apply again"
      if [ -z "$root" ]; then
        owner=$(stat -c %U -- "$cur") || refuse "$p: cannot stat ${cur#"$root"}"
        [ "$owner" = "$u" ] || refuse "$p: ${cur#"$root"} belongs to $owner, not $u: fix its owner (chown $u ${cur#"$root"}) and apply again"
      fi
    fi
    case $rel in
    */*) cur=$cur/${rel%%/*} rel=${rel#*/} ;;
    *) break ;;
    esac
  done
}
# sha256 of ROOT/PATH, 0 when absent: as the instance user inside a DataDirectory (real host).
hash_of() {
  p=$1
  u=$(dd_user "$p")
  if [ -n "$u" ] && as_owner_side; then
    id -u "$u" >/dev/null 2>&1 || {
      [ -e "$p" ] || [ -L "$p" ] && echo unreadable || echo 0
      return
    }
    # shellcheck disable=SC2016
    as_user "$u" sh -c '[ -e "$1" ] || [ -L "$1" ] || { echo 0; exit; }; s=$(sha256sum -- "$1" 2>/dev/null) || { echo unreadable; exit; }; echo "${s%% *}"' sh "$p"
    return
  fi
  if link_in "$p" >/dev/null; then
    echo unread # as gather reports it: never read through a link
  elif [ -e "$root$p" ]; then
    s=$(sha256sum -- "$root$p" 2>/dev/null) || s=unreadable
    echo "${s%% *}"
  else
    echo 0
  fi
}

command -v flock >/dev/null 2>&1 || { echo "apply: flock (util-linux) is missing on this host" >&2; exit 7; }
command -v setpriv >/dev/null 2>&1 || { echo "apply: setpriv (util-linux) is missing on this host" >&2; exit 7; }

# Phase 1: the lock, before anything else is made: flock on an fd this shell holds, so the lock
# dies with its holder (a killed apply, a dropped ssh session, a reboot) and two applies can never
# both take it.
IFS="$tab" read -r kind who rest || exit 7
[ "$kind" = L ] || refuse "the first record must be L (the lock holder)"
for d in /var /var/lib /var/lib/oignon /var/backups /var/backups/oignon; do
  no_links "$d"
done
mkdir -p "$state" "$backups" || exit 7
lock=$state/lock
exec 9>>"$lock" || exit 7
if ! flock -n 9; then
  # The holder writes its name right after taking the lock: give it that moment.
  sleep 0.2 2>/dev/null || sleep 1
  printf 'LOCKED\t%s\n' "$(head -n 1 "$lock" 2>/dev/null | tr '\t' ' ')"
  exit 3
fi
locked=1
if [ -s "$lock" ]; then
  # A holder that died left its name: the lock itself died with it.
  printf 'STALE-LOCK\t%s\n' "$(head -n 1 "$lock" | tr '\t' ' ')"
fi
boot=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null) || boot=unknown
printf '%s\tpid %s\tsince %s\tboot %s\n' "$(printf '%s' "$who" | tr -d '\000-\037')" "$$" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$boot" > "$lock"

# The records (key files among them, base64) wait in RAM: /run is a tmpfs on Debian, so a key never
# touches the host's disk outside its own file. A local image's records stay on the controller.
# Holding the lock, any other work dir is a dead apply's (every apply makes its own only once it
# holds the lock): removed.
if [ -z "$root" ] && [ -d /run ] && [ -w /run ]; then
  mkdir -p -m 0700 /run/oignon || exit 7
  for d in /run/oignon/apply.*; do
    [ -e "$d" ] && rm -rf -- "$d"
  done
  work=$(umask 077 && mktemp -d /run/oignon/apply.XXXXXX) || exit 7
else
  work=$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/oignon-apply.XXXXXX") || exit 7
fi
cleanup() {
  # Temp files of an unfinished apply never survive it (inside a DataDirectory, removed as its user).
  if [ -n "$work" ] && [ -f "$work/temps" ]; then
    while IFS="$tab" read -r u t; do
      if [ "$u" = - ]; then rm -f -- "$t"; else as_user "$u" rm -f -- "$t"; fi
    done < "$work/temps"
  fi
  [ -n "$work" ] && rm -rf -- "$work"
  # The lock file stays (flock needs no clean-up); emptied, it names no holder.
  [ "$locked" = 1 ] && : > "$lock"
}
trap cleanup EXIT
trap 'exit 130' HUP INT TERM PIPE

# Phase 2: read and check every record; content goes to numbered files in the work dir.
: > "$work/temps"
: > "$work/writes"
: > "$work/expect"
: > "$work/handlers"
: > "$work/manifest"
: > "$work/instances"
: > "$work/removes"
: > "$work/xinstances"
: > "$work/secrets"
reboot=0
nw=0
while IFS="$tab" read -r kind a b c d e f g rest; do
  case $kind in
  E)
    check_path "$a" E
    check_sha "$b" E
    printf '%s\t%s\n' "$a" "$b" >> "$work/expect"
    ;;
  I)
    check_name "$a" I
    printf '%s\n' "$a" >> "$work/instances"
    ;;
  W)
    check_path "$a" W
    check_account "$b" W
    check_account "$c" W
    check_mode "$d" W
    case $e in torrc | grub | sysctl | systemd | nft | -) ;; *) refuse "record W: validator \"$e\" is unknown" ;; esac
    [ "$f" = - ] || check_name "$f" W
    case $g in '' | *[!A-Za-z0-9+/=]*) refuse "record W for $a: the content is not base64" ;; esac
    [ -z "$rest" ] || refuse "record W for $a has too many fields"
    u=$(dd_user "$a")
    if [ -n "$u" ]; then
      # Only the instance's own files, owned by its user, are ever written in a DataDirectory.
      check_name "${u#_tor-}" W
      [ "$b" = "$u" ] && [ "$c" = "$u" ] || refuse "record W for $a: a file in a relay's DataDirectory must belong to $u"
      [ "$e" = - ] || refuse "record W for $a: files in a DataDirectory have no validator"
    fi
    nw=$((nw + 1))
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$a" "$b" "$c" "$d" "$e" "$f" >> "$work/writes"
    printf '%s\n' "$g" > "$work/b64.$nw"
    ;;
  S)
    check_path "$a" S
    [ -z "$b" ] || refuse "record S for $a has too many fields"
    printf '%s\n' "$a" >> "$work/secrets"
    ;;
  R)
    check_path "$a" R
    [ -z "$(dd_user "$a")" ] || refuse "record R for $a: oignon never removes anything from a DataDirectory"
    printf '%s\n' "$a" >> "$work/removes"
    ;;
  X)
    check_name "$a" X
    printf '%s\n' "$a" >> "$work/xinstances"
    ;;
  M)
    check_path "$a" M
    check_sha "$b" M
    printf '%s\t%s\n' "$a" "$b" >> "$work/manifest"
    ;;
  H)
    cmd=$a
    for w in "$b" "$c" "$d" "$e" "$f" "$g"; do [ -n "$w" ] && cmd="$cmd $w"; done
    [ -z "$rest" ] || refuse "handler \"$cmd $rest\" is not one oignon runs"
    check_handler "$cmd"
    printf '%s\n' "$cmd" >> "$work/handlers"
    ;;
  B) reboot=1 ;;
  *) refuse "unknown record kind \"$(printf '%s' "$kind" | cut -c1-20)\"" ;;
  esac
done

# Phase 3: nothing moved since the plan.
stale=0
while IFS="$tab" read -r p want; do
  have=$(hash_of "$p")
  if [ "$have" != "$want" ]; then
    printf 'STALE\t%s\t%s\t%s\n' "$p" "$want" "$have"
    stale=1
  fi
done < "$work/expect"
[ "$stale" = 1 ] && exit 4

# Phase 4: every path is safe to write before anything is made.
while IFS="$tab" read -r p o g m v n; do
  u=$(dd_user "$p")
  if [ -n "$u" ]; then
    no_links "/var/lib/tor-instances"
    check_data_dir "$p" "$u"
  else
    no_links "$p"
  fi
done < "$work/writes"
while IFS= read -r p; do no_links "$p"; done < "$work/removes"
while IFS= read -r n; do
  no_links "/etc/tor/instances/$n"
  no_links "/var/lib/tor-instances/$n"
done < "$work/instances"
while IFS= read -r n; do no_links "/etc/tor/instances/$n"; done < "$work/xinstances"

# Phase 5: instances, as tor-instance-create makes them (idempotent).
while IFS= read -r n; do
  u=_tor-$n
  if [ -z "$root" ]; then
    getent group "$u" >/dev/null 2>&1 || groupadd --system "$u" || exit 7
    id -u "$u" >/dev/null 2>&1 || useradd --system --gid "$u" --home-dir "/var/lib/tor-instances/$n" \
      --no-create-home --shell /bin/false --comment "tor instance $n" "$u" || exit 7
    if [ -d "/var/lib/tor-instances/$n" ]; then
      check_data_dir "/var/lib/tor-instances/$n/x" "$u"
    else
      install -d -o "$u" -g "$u" -m 02700 "/var/lib/tor-instances/$n" || exit 7
    fi
  else
    # A local image: its own passwd/group, edited with --prefix (no chroot needed).
    mkdir -p "$root/etc" && touch "$root/etc/passwd" "$root/etc/group" "$root/etc/shadow" "$root/etc/gshadow"
    grep -q "^$u:" "$root/etc/group" || groupadd --prefix "$root" --system "$u" || exit 7
    grep -q "^$u:" "$root/etc/passwd" || useradd --prefix "$root" --system --gid "$u" --home-dir "/var/lib/tor-instances/$n" \
      --no-create-home --shell /bin/false "$u" || exit 7
    uid=$(awk -F: -v u="$u" '$1 == u { print $3 }' "$root/etc/passwd")
    gid=$(awk -F: -v u="$u" '$1 == u { print $3 }' "$root/etc/group")
    install -d -o "$uid" -g "$gid" -m 02700 "$root/var/lib/tor-instances/$n" || exit 7
  fi
  mkdir -p -m 0755 "$root/etc/tor/instances/$n" || exit 7
done < "$work/instances"

# Owner and group by name: the host's own users, or the image's for a local root.
owner_ids() {
  if [ -z "$root" ]; then
    printf '%s:%s' "$1" "$2"
  else
    u=$(awk -F: -v n="$1" '$1 == n { print $3 }' "$root/etc/passwd" 2>/dev/null)
    g=$(awk -F: -v n="$2" '$1 == n { print $3 }' "$root/etc/group" 2>/dev/null)
    [ -n "$u" ] || u=$(id -u "$1" 2>/dev/null) || u=0
    [ -n "$g" ] || g=$(getent group "$2" 2>/dev/null | cut -d: -f3) || g=0
    printf '%s:%s' "${u:-0}" "${g:-0}"
  fi
}

# What the instance user runs to make a temp file in DIR from stdin: created by mktemp (a random
# name, O_EXCL, 0600), mode MODE, synced; its name printed. Inside a DataDirectory only.
# shellcheck disable=SC2016
user_write='umask 077
mkdir -p -- "$1" || exit 1
t=$(mktemp -- "$1/.oignon-new.XXXXXXXX") || exit 1
if cat > "$t" && chmod "$2" -- "$t" && sync -- "$t"; then printf "%s\n" "$t"; else rm -f -- "$t"; exit 1; fi'

# Phase 6: temp files beside their targets: owner and mode BEFORE content, then fsync. Temps a
# killed apply left (`.oignon-new.*`) are swept first: holding the lock, none is a live apply's.
# Every directory of a managed file is swept, written to this time or not.
swept=$nl
cut -f1 "$work/writes" "$work/manifest" > "$work/sweep"
while IFS= read -r p; do
  dir=$(dirname -- "$p")
  case $swept in *"$nl$dir$nl"*) continue ;; esac
  swept=$swept$dir$nl
  u=$(dd_user "$p")
  if [ -n "$u" ] && as_owner_side; then
    # shellcheck disable=SC2016
    [ -d "$dir" ] && as_user "$u" sh -c 'rm -f -- "$1"/.oignon-new.*' sh "$dir"
  elif [ -d "$root$dir" ] && ! link_in "$dir" >/dev/null; then
    rm -f -- "$root$dir"/.oignon-new.*
  fi
done < "$work/sweep"
i=0
while IFS="$tab" read -r p o g m v n; do
  i=$((i + 1))
  dir=$(dirname -- "$p")
  u=$(dd_user "$p")
  if [ -n "$u" ] && as_owner_side; then
    t=$(base64 -d < "$work/b64.$i" | as_user "$u" sh -c "$user_write" sh "$dir" "$m") || exit 7
    [ -n "$t" ] || exit 7
    printf '%s\t%s\n' "$u" "$t" >> "$work/temps"
    continue
  fi
  if [ -n "$u" ]; then
    # A local image's DataDirectory: made here as root, every link refused above.
    ids=$(owner_ids "$o" "$g")
    [ -d "$root$dir" ] || install -d -o "${ids%%:*}" -g "${ids#*:}" -m 0700 -- "$root$dir" || exit 7
  else
    mkdir -p -- "$root$dir" || exit 7
  fi
  t=$(umask 077 && mktemp -- "$root$dir/.oignon-new.XXXXXXXX") || exit 7
  printf '%s\t%s\n' - "$t" >> "$work/temps"
  chown "$(owner_ids "$o" "$g")" "$t" || exit 7
  chmod "$m" "$t" || exit 7
  base64 -d < "$work/b64.$i" > "$t" || exit 7
  sync -- "$t" 2>/dev/null || sync
done < "$work/writes"

# Phase 7: validate every new file before any replaces its target.
invalid=0
i=0
while IFS="$tab" read -r p o g m v n; do
  i=$((i + 1))
  t=$(sed -n "${i}p" "$work/temps" | cut -f2)
  case $v in
  torrc)
    if [ -n "$root" ]; then
      continue # a local image's tor cannot run here; `oignon check` verified it on the controller
    fi
    sed -e "s/@@NAME@@/$n/g" /usr/share/tor/tor-service-defaults-torrc-instances > "$work/defaults.$n" || exit 7
    if ! out=$(tor --defaults-torrc "$work/defaults.$n" -f "$t" --verify-config --hush 2>&1); then
      printf 'INVALID\t%s\n' "$p"
      printf '%s\n' "$out" | grep -E '\[(warn|err)\]' | sed 's/^.*\(\[\(warn\|err\)\]\)/\1/' >&2
      invalid=1
    fi
    ;;
  grub)
    if ! sh -n "$t" 2>"$work/err" || ! grep -q '^GRUB_CMDLINE_LINUX=' "$t"; then
      printf 'INVALID\t%s\n' "$p"
      { cat "$work/err"; echo "expected a GRUB_CMDLINE_LINUX= assignment"; } >&2
      invalid=1
    fi
    ;;
  sysctl)
    while IFS= read -r line; do
      case $line in '' | '#'* | ';'*) continue ;; esac
      key=$(printf '%s' "${line%%=*}" | tr -d ' ')
      optional=0
      case $key in -*) optional=1 key=${key#-} ;; esac
      if [ -z "$root" ] && [ ! -e "/proc/sys/$(printf '%s' "$key" | tr . /)" ]; then
        if [ "$optional" = 1 ]; then
          # sysctl.d's `-key`: absent from this kernel, skipped by sysctl --system; said, not fatal.
          printf 'NOTE\tsysctl key %s is absent from this host'"'"'s kernel: skipped (optional, -%s in %s)\n' "$key" "$key" "$p"
        else
          printf 'INVALID\t%s\n' "$p"
          echo "sysctl key $key does not exist on this host (/proc/sys)" >&2
          invalid=1
        fi
      fi
    done < "$t"
    ;;
  nft)
    # The ruleset must parse and the running kernel must accept it (nft -c loads nothing).
    [ -n "$root" ] && continue # a local image's kernel is not this machine's
    if ! command -v nft >/dev/null 2>&1; then
      printf 'INVALID\t%s\n' "$p"
      echo "nft is missing on this host: cannot check the ruleset (install nftables)" >&2
      invalid=1
    elif ! nft -c -f "$t" >"$work/err" 2>&1; then
      printf 'INVALID\t%s\n' "$p"
      sed "s|$t|$p|g" "$work/err" >&2
      invalid=1
    fi
    ;;
  systemd)
    # Unit-file syntax first: sections, comments and Key=Value lines.
    if grep -vE '^[[:space:]]*($|[#;]|\[[A-Za-z]+\]$|[A-Za-z0-9]+=)' "$t" >"$work/err"; then
      printf 'INVALID\t%s\n' "$p"
      { echo "not a systemd unit file line:"; cat "$work/err"; } >&2
      invalid=1
      continue
    fi
    # Then systemd's own verdict on the unit with the new drop-in (no running systemd needed): the
    # drop-in is laid in a directory searched before the system's (SYSTEMD_UNIT_PATH, then the
    # defaults), so it overrides the live one of the same name. systemd-analyze says a misspelt key
    # only as a warning, with exit 0: any output is a failure.
    if [ -z "$root" ]; then
      dropdir=$(basename -- "$(dirname -- "$p")")
      case $dropdir in
      *.d) unit=${dropdir%.d} ;;
      *) continue ;;
      esac
      case $unit in *@.*) unit=${unit%%@.*}@oignon-verify.${unit#*@.} ;; esac
      if ! command -v systemd-analyze >/dev/null 2>&1; then
        printf 'INVALID\t%s\n' "$p"
        echo "systemd-analyze is missing on this host: cannot verify the drop-in (install systemd)" >&2
        invalid=1
        continue
      fi
      mkdir -p "$work/units.$i/$dropdir" && cp -- "$t" "$work/units.$i/$dropdir/$(basename -- "$p")" || exit 7
      out=$(SYSTEMD_UNIT_PATH="$work/units.$i:" systemd-analyze verify --man=no -- "$unit" 2>&1)
      if [ $? -ne 0 ] || [ -n "$out" ]; then
        printf 'INVALID\t%s\n' "$p"
        printf '%s\n' "$out" | sed "s|$work/units.$i/||" >&2
        invalid=1
      fi
    fi
    ;;
  esac
done < "$work/writes"
[ "$invalid" = 1 ] && exit 5

# Phase 8: handlers become pending BEFORE anything is replaced, so an interrupted apply still
# runs them next time. (A local image runs nothing: its services start when it boots.)
# One canonical order, whatever was left pending before: units reloaded first (a restart left
# pending by a failed apply must run under the drop-in this apply writes), kernel settings, then
# each instance's restart (which makes its reload needless), reload, and start.
if [ -s "$work/handlers" ] && [ -z "$root" ]; then
  cat "$state/pending" "$work/handlers" 2>/dev/null | awk '
    !seen[$0]++ {
      r = 9
      if ($0 == "systemctl daemon-reload") r = 0
      else if ($0 == "sysctl --system") r = 1
      else if ($0 == "update-grub") r = 2
      else if ($0 ~ /^systemctl disable --now /) r = 3
      else if ($0 ~ /^systemctl restart /) { r = 4; restarted[$3] = 1 }
      else if ($0 ~ /^systemctl reload /) r = 5
      else if ($0 ~ /^systemctl enable --now /) r = 6
      line[NR] = r "\t" NR "\t" $0
    }
    END {
      for (i in line) {
        split(line[i], f, "\t")
        if (f[3] ~ /^systemctl reload / && restarted[substr(f[3], 18)]) continue
        print line[i]
      }
    }' | sort -n -k1,1 -k2,2 | cut -f3- > "$state/pending.new" && mv -fT "$state/pending.new" "$state/pending" || exit 7
fi

# Phase 9: back up, then replace. Every backup is made (and checked) before the first rename: a
# full /var/backups fails the apply with every file still old. Each rename is atomic: every file is
# wholly old or wholly new.
stamp=$(date -u +%Y%m%dT%H%M%SZ).$$
: > "$work/backed"
: > "$work/restore"
# The secret paths: this apply's S records, and those an earlier apply recorded (a secret that
# leaves the inventory is still one when it is removed).
secret_list=$state/secret-paths
{ cat "$work/secrets"; [ -f "$secret_list" ] && [ ! -L "$secret_list" ] && cat "$secret_list"; } |
  sort -u > "$work/allsecrets"
is_secret() { grep -qxF -- "$1" "$work/allsecrets"; }
backup() {
  # Never copy anything out of tor's DataDirectory, nor any secret: keys have no place in backups.
  case $1 in /var/lib/tor-instances/*) return 0 ;; esac
  is_secret "$1" && return 0
  if [ ! -f "$root$1" ] || [ -L "$root$1" ]; then
    printf '%s\t-\n' "$1" >> "$work/restore" # new: a rollback removes it
    return 0
  fi
  flat=$(printf '%s' "$1" | sed 's|^/||; s|/|__|g')
  b=$backups/$flat.$stamp
  printf '%s\n' "$b" >> "$work/backed"
  printf '%s\t%s\n' "$1" "$b" >> "$work/restore"
  if ! cp -p -- "$root$1" "$b" 2>"$work/err" || ! cmp -s -- "$root$1" "$b"; then
    printf 'BACKUP-FAILED\t%s\n' "$1"
    sed 's/^/  /' "$work/err" >&2
    # Nothing was replaced yet: the partial backups go, the old files stay.
    while IFS= read -r x; do rm -f -- "$x"; done < "$work/backed"
    exit 7
  fi
}
# Bounded: keep the newest $keep copies per path.
prune() {
  flat=$(printf '%s' "$1" | sed 's|^/||; s|/|__|g')
  ls -1 "$backups" | awk -v f="$flat." 'index($0, f) == 1 && substr($0, length(f) + 1) ~ /^[0-9]+T[0-9]+Z/' |
    sort -r | tail -n +$((keep + 1)) | while IFS= read -r old; do rm -f -- "$backups/$old"; done
}
while IFS="$tab" read -r p o g m v n; do
  backup "$p"
done < "$work/writes"
sync
i=0
while IFS="$tab" read -r p o g m v n; do
  i=$((i + 1))
  line=$(sed -n "${i}p" "$work/temps")
  u=${line%%"$tab"*}
  t=${line#*"$tab"}
  if [ "$u" != - ]; then
    # As the instance user: -T, so a directory planted at the target's name is never entered.
    as_user "$u" mv -fT -- "$t" "$p" || exit 7
    as_user "$u" sync -- "$(dirname -- "$p")" 2>/dev/null || sync
  else
    mv -fT -- "$t" "$root$p" || exit 7
    prune "$p"
    sync -- "$(dirname -- "$root$p")" 2>/dev/null || sync
  fi
  printf 'WROTE\t%s\n' "$p"
done < "$work/writes"
: > "$work/temps"
while IFS= read -r p; do
  [ -e "$root$p" ] || [ -L "$root$p" ] || continue
  if is_secret "$p"; then
    # A secret is not archived: overwritten (a regular file, never through a link), then unlinked.
    [ -f "$root$p" ] && [ ! -L "$root$p" ] && shred -n 1 -z -- "$root$p" 2>/dev/null
    rm -f -- "$root$p" || exit 7
  else
    flat=$(printf '%s' "$p" | sed 's|^/||; s|/|__|g')
    mv -fT -- "$root$p" "$backups/$flat.removed.$stamp" || exit 7
  fi
  printf 'REMOVED\t%s\n' "$p"
done < "$work/removes"
while IFS= read -r n; do
  [ -d "$root/etc/tor/instances/$n" ] || continue
  mv -fT -- "$root/etc/tor/instances/$n" "$backups/etc__tor__instances__$n.removed.$stamp" || exit 7
  printf 'REMOVED\t/etc/tor/instances/%s\n' "$n"
done < "$work/xinstances"
sort -u "$work/manifest" > "$state/managed.new" && mv -fT "$state/managed.new" "$state/managed" || exit 7
# The secrets oignon manages now (this apply's S records): the next apply knows them even after
# they leave the inventory.
sort -u "$work/secrets" > "$state/secret-paths.new" && mv -fT "$state/secret-paths.new" "$secret_list" || exit 7
# When and by whom the files last changed, for `oignon status` (gather.sh's A record).
printf '%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(printf '%s' "$who" | tr -d '\000-\037')" > "$state/last-apply.new" &&
  mv -fT "$state/last-apply.new" "$state/last-apply" || exit 7
[ "$reboot" = 1 ] && date -u +%Y-%m-%dT%H:%M:%SZ > "$state/reboot-required"
sync

# Firewall confirm-or-revert (the oignon-nft-load handler; arg: the window in seconds). The running
# ruleset is saved, a timer that restores it is armed BEFORE the new rules load (a load that cuts
# this very connection is undone all the same), then every /etc/nftables.d/oignon-*.nft loads in
# one transaction. oignon confirms over a NEW connection (confirm: stop the timer, and make what
# was loaded the ruleset oignon-firewall.service loads at boot); unconfirmed, the timer puts the
# saved ruleset back (flush and load, one transaction), and the boot keeps the last confirmed one.
nft_revert_unit=oignon-nft-revert
nft_load() {
  w=$1
  set -- /etc/nftables.d/oignon-*.nft
  [ -e "$1" ] || return 0
  for f do no_links "$f"; done
  if systemctl is-active --quiet "$nft_revert_unit.timer"; then
    # An earlier change is still unconfirmed: the running rules are not known to be good. The
    # timer is re-armed below to restore what ran BEFORE that change, kept in nft-before.
    systemctl stop "$nft_revert_unit.timer"
  else
    (umask 077 && nft list ruleset > "$state/nft-before.new") && mv -fT "$state/nft-before.new" "$state/nft-before" || return 1
  fi
  systemctl reset-failed "$nft_revert_unit.service" "$nft_revert_unit.timer" 2>/dev/null
  # shellcheck disable=SC2016
  systemd-run --quiet --unit="$nft_revert_unit" --on-active="${w}s" --timer-property=AccuracySec=1s \
    /bin/sh -c '{ echo "flush ruleset"; cat /var/lib/oignon/nft-before; } | nft -f - && echo "oignon: firewall change not confirmed: the previous ruleset is back"' || return 1
  # What is loaded is kept: the confirmation makes it the ruleset loaded at boot.
  (umask 077 && cat -- "$@" > "$state/nft-loaded.new") && mv -fT "$state/nft-loaded.new" "$state/nft-loaded" || return 1
  if ! nft -f "$state/nft-loaded"; then
    systemctl stop "$nft_revert_unit.timer"
    return 1
  fi
}
# Words of a handler are fixed by oignon and checked (check_handler), never user text.
# shellcheck disable=SC2086
run_handler() {
  case $1 in
  'oignon-nft-load '*) nft_load "${1#oignon-nft-load }" ;;
  *) $1 ;;
  esac
}

# Phase 10: handlers, each once; a handler that ran leaves the pending list. Each runs without the
# lock's fd, so nothing it starts can hold the lock after this apply.
failed=0
if [ -n "$root" ]; then
  # A local image: nothing runs (its services start when it boots), but what the image must carry
  # is done offline: a relay's unit is enabled (or disabled) in the image as `systemctl --root`
  # does it, so it starts at the first boot.
  while IFS= read -r cmd; do
    case $cmd in
    'systemctl enable --now tor@'* | 'systemctl disable --now tor@'*)
      verb=${cmd#systemctl }
      verb=${verb%% *}
      unit=${cmd##* }.service
      if l=$(link_in /etc/systemd/system); then
        printf 'SKIPPED\t%s\t%s is a symbolic link in the image\n' "$cmd" "$l"
      elif ! command -v systemctl >/dev/null 2>&1; then
        printf 'SKIPPED\t%s\tsystemctl is missing here; enable %s in the image by hand\n' "$cmd" "$unit"
      elif out=$(systemctl --root="$root" --quiet "$verb" "$unit" 2>&1 9>&-); then
        printf 'OFFLINE\t%s\n' "systemctl --root=IMAGE $verb $unit"
      else
        printf 'SKIPPED\t%s\t%s\n' "$cmd" "$(printf '%s' "$out" | head -n 1 | tr '\t' ' ')"
      fi
      ;;
    update-grub)
      printf 'SKIPPED\t%s\tPENDING: the image'"'"'s GRUB configuration is not regenerated here; run update-grub in the image (chroot) or on its first boot: until then it boots with the old kernel command line\n' "$cmd"
      ;;
    *) printf 'SKIPPED\t%s\n' "$cmd" ;;
    esac
  done < "$work/handlers"
elif [ -f "$state/pending" ]; then
  # A changed tor@ drop-in is proven by the first relay it (re)starts: the canary. If that start
  # fails (a drop-in systemd accepts but tor cannot run under, e.g. RestrictAddressFamilies=AF_UNIX),
  # every unit file this apply wrote is put back as it was, systemd reloads, the relay is started
  # again under the old drop-in, and the apply answers ROLLED-BACK: the relay is never left down.
  units_changed=0
  grep -q '^/etc/systemd/system/' "$work/writes" && units_changed=1
  canary=0
  rolled=0
  while IFS= read -r cmd; do
    [ -n "$cmd" ] || continue
    check_handler "$cmd"
    starts=0
    case $cmd in 'systemctl restart tor@'* | 'systemctl enable --now tor@'*) starts=1 ;; esac
    if run_handler "$cmd" > "$work/out" 2>&1 9>&-; then
      printf 'RAN\t%s\n' "$cmd"
      case $cmd in 'oignon-nft-load '*) printf 'CONFIRM\t%s\n' "${cmd#oignon-nft-load }" ;; esac
      grep -vxF -- "$cmd" "$state/pending" > "$state/pending.new"
      mv -fT "$state/pending.new" "$state/pending"
    elif [ "$units_changed" = 1 ] && [ "$canary" = 0 ] && [ "$starts" = 1 ]; then
      unit=${cmd##* }
      { printf '%s failed under the new unit files:\n' "$unit"
        journalctl -u "$unit" -n 30 --no-pager -o cat 2>/dev/null | grep -iE 'warn|err|fail' | tail -n 8
        sed 's/^/  /' "$work/out"; } >&2
      while IFS="$tab" read -r p b; do
        case $p in /etc/systemd/system/*) ;; *) continue ;; esac
        if [ "$b" = - ]; then
          rm -f -- "$p"
          awk -F "$tab" -v p="$p" '$1 != p' "$state/managed" > "$state/managed.new"
        else
          cp -p -- "$b" "$p.oignon-restore" && mv -fT -- "$p.oignon-restore" "$p" || exit 7
          h=$(sha256sum -- "$p") && h=${h%% *}
          awk -F "$tab" -v OFS="$tab" -v p="$p" -v h="$h" '$1 == p { $2 = h } { print }' "$state/managed" > "$state/managed.new"
        fi
        mv -fT "$state/managed.new" "$state/managed" || exit 7
        printf 'ROLLED-BACK\t%s\t%s\n' "$p" "$unit"
      done < "$work/restore"
      systemctl daemon-reload 9>&- || true
      rolled=1
      if run_handler "$cmd" > "$work/out" 2>&1 9>&-; then
        printf 'RAN\t%s\n' "$cmd"
        grep -vxF -- "$cmd" "$state/pending" > "$state/pending.new"
        mv -fT "$state/pending.new" "$state/pending"
      else
        printf 'HANDLER-FAILED\t%s\n' "$cmd"
        sed 's/^/  /' "$work/out" >&2
        failed=1
      fi
    else
      printf 'HANDLER-FAILED\t%s\n' "$cmd"
      sed 's/^/  /' "$work/out" >&2
      failed=1
    fi
    [ "$starts" = 1 ] && canary=1
  done < "$state/pending"
  [ -s "$state/pending" ] || rm -f "$state/pending"
  [ "$rolled" = 1 ] && exit 9
fi
[ "$failed" = 1 ] && exit 6
printf 'DONE\n'
exit 0
