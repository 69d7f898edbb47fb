# oignon apply: one host's changes in ONE round trip, all-or-nothing up to the renames.
# Run as: sh -c "<this script>" oignon-apply ROOT < records
#   ROOT: "" on a real host; the image directory for the local transport.
# stdin, one record per line, tab-separated (values never contain tabs or newlines):
#   L WHO                         take the lock, naming the holder (a stale lock of a dead apply is taken over)
#   E PATH SHA256|0               the path must still be as planned (0: absent), else nothing is done
#   I NAME                        create relay instance NAME as tor-instance-create would
#   W PATH OWNER GROUP MODE VALIDATOR INSTANCE BASE64
#                                 write PATH (VALIDATOR: torrc grub sysctl systemd or -)
#   R PATH                        archive PATH under /var/backups/oignon, then remove it
#   X NAME                        archive /etc/tor/instances/NAME (an instance that left the inventory)
#   M PATH SHA256                 the manifest of what oignon manages after this apply
#   H COMMAND...                  a handler to run after the changes (words separated by spaces)
#   B                             record "reboot required" (the kernel command line changed)
# stdout: one result per line: LOCKED WHO | STALE PATH WANT HAVE | INVALID PATH + tor's words on
#   stderr | WROTE PATH | REMOVED PATH | RAN COMMAND | HANDLER-FAILED COMMAND | DONE
# exit: 0 done, 3 locked, 4 stale, 5 invalid, 6 handler failed, 7 write failed
set -u
root=$1
tab=$(printf '\t')
state=$root/var/lib/oignon
backups=$root/var/backups/oignon
keep=5
mkdir -p "$state" "$backups" || exit 7
# The records (key files among them, base64) wait in RAM: /run is a tmpfs on Debian, so a key never
# touches the host's disk outside its own file. A local image's records stay on the controller.
if [ -z "$root" ] && [ -d /run ] && [ -w /run ]; then
  mkdir -p -m 0700 /run/oignon || exit 7
  work=$(umask 077 && mktemp -d /run/oignon/apply.XXXXXX) || exit 7
else
  work=$(umask 077 && mktemp -d "${TMPDIR:-/tmp}/oignon-apply.XXXXXX") || exit 7
fi
lock=$state/lock
locked=0
cleanup() {
  # Temp files of an unfinished apply never survive it.
  if [ -f "$work/temps" ]; then
    while IFS= read -r t; do rm -f -- "$t"; done < "$work/temps"
  fi
  rm -rf -- "$work"
  [ "$locked" = 1 ] && rm -f -- "$lock"
}
trap cleanup EXIT
trap 'exit 130' HUP INT TERM PIPE

# Phase 1: read every record; content goes straight into temp files next to their targets.
: > "$work/temps"
: > "$work/writes"
: > "$work/expect"
: > "$work/handlers"
: > "$work/manifest"
: > "$work/instances"
: > "$work/removes"
: > "$work/xinstances"
reboot=0
who=unknown
while IFS="$tab" read -r kind a b c d e f g; do
  case $kind in
  L) who=$a ;;
  E) printf '%s\t%s\n' "$a" "$b" >> "$work/expect" ;;
  I) printf '%s\n' "$a" >> "$work/instances" ;;
  W) printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$a" "$b" "$c" "$d" "$e" "$f" >> "$work/writes"
     printf '%s\n' "$g" > "$work/b64.$(wc -l < "$work/writes" | tr -d ' ')" ;;
  R) printf '%s\n' "$a" >> "$work/removes" ;;
  X) printf '%s\n' "$a" >> "$work/xinstances" ;;
  M) printf '%s\t%s\n' "$a" "$b" >> "$work/manifest" ;;
  H) printf '%s\n' "$a" >> "$work/handlers" ;;
  B) reboot=1 ;;
  esac
done

# Phase 2: the lock. mkdir-free: `set -C` makes the create atomic (O_EXCL).
if ! (set -C; printf '%s\tpid %s\tsince %s\n' "$who" "$$" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$lock") 2>/dev/null; then
  holder=$(cat "$lock" 2>/dev/null)
  pid=$(printf '%s' "$holder" | sed -n 's/.*pid \([0-9]*\).*/\1/p')
  if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
    # The holder's shell is gone (its ssh session died): a stale lock, taken over.
    printf 'STALE-LOCK\t%s\n' "$(printf '%s' "$holder" | tr '\t' ' ')"
    rm -f -- "$lock"
    if ! (set -C; printf '%s\tpid %s\tsince %s\n' "$who" "$$" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$lock") 2>/dev/null; then
      printf 'LOCKED\t%s\n' "$(cat "$lock" 2>/dev/null | tr '\t' ' ')"
      exit 3
    fi
  else
    printf 'LOCKED\t%s\n' "$(printf '%s' "$holder" | tr '\t' ' ')"
    exit 3
  fi
fi
locked=1
# Holding the lock, any other apply work dir is a dead apply's (killed before its cleanup ran).
if [ -z "$root" ]; then
  for d in /run/oignon/apply.*; do
    [ "$d" = "$work" ] || rm -rf -- "$d"
  done
fi

# Phase 3: nothing moved since the plan.
stale=0
while IFS="$tab" read -r p want; do
  have=0
  if [ -e "$root$p" ] || [ -L "$root$p" ]; then
    have=$(sha256sum -- "$root$p" 2>/dev/null) || have=unreadable
    have=${have%% *}
  fi
  if [ "$have" != "$want" ]; then
    printf 'STALE\t%s\t%s\t%s\n' "$p" "$want" "$have"
    stale=1
  fi
done < "$work/expect"
[ "$stale" = 1 ] && exit 4

# Phase 4: instances, as tor-instance-create makes them (idempotent).
while IFS= read -r n; do
  u=_tor-$n
  if [ -z "$root" ]; then
    getent group "$u" >/dev/null 2>&1 || groupadd --system "$u" || exit 7
    id -u "$u" >/dev/null 2>&1 || useradd --system --gid "$u" --home-dir "/var/lib/tor-instances/$n" \
      --no-create-home --shell /bin/false --comment "tor instance $n" "$u" || exit 7
    install -d -o "$u" -g "$u" -m 02700 "/var/lib/tor-instances/$n" || exit 7
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
  install -d -m 0755 "$root/etc/tor/instances/$n" || exit 7
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

# Phase 5: temp files beside their targets: owner and mode BEFORE content, then fsync.
i=0
while IFS="$tab" read -r p o g m v n; do
  i=$((i + 1))
  dir=$(dirname -- "$root$p")
  case $p in
  /var/lib/tor-instances/*/keys/*)
    # tor's KeyDirectory: owned by the instance user, 0700, or tor refuses to start.
    ids=$(owner_ids "$o" "$g")
    install -d -o "${ids%%:*}" -g "${ids#*:}" -m 0700 -- "$dir" || exit 7
    ;;
  *) mkdir -p -- "$dir" || exit 7 ;;
  esac
  t=$dir/.oignon-new.$(basename -- "$p").$$
  printf '%s\n' "$t" >> "$work/temps"
  (umask 077 && : > "$t") || exit 7
  chown "$(owner_ids "$o" "$g")" "$t" || exit 7
  chmod "$m" "$t" || exit 7
  base64 -d < "$work/b64.$i" > "$t" || exit 7
  sync -- "$t" 2>/dev/null || sync
done < "$work/writes"

# Phase 6: validate every new file before any replaces its target.
invalid=0
i=0
while IFS="$tab" read -r p o g m v n; do
  i=$((i + 1))
  t=$(sed -n "${i}p" "$work/temps")
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
      if [ -z "$root" ] && [ ! -e "/proc/sys/$(printf '%s' "$key" | tr . /)" ]; then
        printf 'INVALID\t%s\n' "$p"
        echo "sysctl key $key does not exist on this host (/proc/sys)" >&2
        invalid=1
      fi
    done < "$t"
    ;;
  systemd)
    # Unit-file syntax: sections, comments and Key=Value lines. (`systemd-analyze verify` checks a
    # whole unit, not a drop-in on its own, and needs a running systemd.)
    if grep -vE '^[[:space:]]*($|[#;]|\[[A-Za-z]+\]$|[A-Za-z0-9]+=)' "$t" >"$work/err"; then
      printf 'INVALID\t%s\n' "$p"
      { echo "not a systemd unit file line:"; cat "$work/err"; } >&2
      invalid=1
    fi
    ;;
  esac
done < "$work/writes"
[ "$invalid" = 1 ] && exit 5

# Phase 7: handlers become pending BEFORE anything is replaced, so an interrupted apply still
# runs them next time. (A local image runs nothing: its services start when it boots.)
if [ -s "$work/handlers" ] && [ -z "$root" ]; then
  cat "$state/pending" "$work/handlers" 2>/dev/null | awk '!seen[$0]++' > "$state/pending.new" && mv -f "$state/pending.new" "$state/pending" || exit 7
fi

# Phase 8: back up and replace. Each rename is atomic: every file is wholly old or wholly new.
stamp=$(date -u +%Y%m%dT%H%M%SZ).$$
backup() {
  # Never copy anything out of tor's DataDirectory: key files have no place in backups.
  case $1 in /var/lib/tor-instances/*) return 0 ;; esac
  flat=$(printf '%s' "$1" | sed 's|^/||; s|/|__|g')
  cp -p -- "$root$1" "$backups/$flat.$stamp" 2>/dev/null || return 0
  # Bounded: keep the newest $keep copies per path.
  ls -1 "$backups" | awk -v f="$flat." 'index($0, f) == 1 && substr($0, length(f) + 1) ~ /^[0-9]+T[0-9]+Z/' |
    sort -r | tail -n +$((keep + 1)) | while IFS= read -r old; do rm -f -- "$backups/$old"; done
}
i=0
while IFS="$tab" read -r p o g m v n; do
  i=$((i + 1))
  t=$(sed -n "${i}p" "$work/temps")
  [ -f "$root$p" ] && backup "$p"
  mv -f -- "$t" "$root$p" || exit 7
  sync -- "$(dirname -- "$root$p")" 2>/dev/null || sync
  printf 'WROTE\t%s\n' "$p"
done < "$work/writes"
: > "$work/temps"
while IFS= read -r p; do
  [ -e "$root$p" ] || continue
  flat=$(printf '%s' "$p" | sed 's|^/||; s|/|__|g')
  mv -f -- "$root$p" "$backups/$flat.removed.$stamp" || exit 7
  printf 'REMOVED\t%s\n' "$p"
done < "$work/removes"
while IFS= read -r n; do
  [ -d "$root/etc/tor/instances/$n" ] || continue
  mv -f -- "$root/etc/tor/instances/$n" "$backups/etc__tor__instances__$n.removed.$stamp" || exit 7
  printf 'REMOVED\t/etc/tor/instances/%s\n' "$n"
done < "$work/xinstances"
sort -u "$work/manifest" > "$state/managed.new" && mv -f "$state/managed.new" "$state/managed" || exit 7
[ "$reboot" = 1 ] && date -u +%Y-%m-%dT%H:%M:%SZ > "$state/reboot-required"
sync

# Phase 9: handlers, each once; a handler that ran leaves the pending list.
failed=0
if [ -n "$root" ]; then
  while IFS= read -r cmd; do printf 'SKIPPED\t%s\n' "$cmd"; done < "$work/handlers"
elif [ -f "$state/pending" ]; then
  while IFS= read -r cmd; do
    [ -n "$cmd" ] || continue
    # Words of a handler are fixed by oignon (systemctl reload tor@NAME...), never user text.
    # shellcheck disable=SC2086
    if $cmd > "$work/out" 2>&1; then
      printf 'RAN\t%s\n' "$cmd"
      grep -vxF -- "$cmd" "$state/pending" > "$state/pending.new"
      mv -f "$state/pending.new" "$state/pending"
    else
      printf 'HANDLER-FAILED\t%s\n' "$cmd"
      sed 's/^/  /' "$work/out" >&2
      failed=1
    fi
  done < "$state/pending"
  [ -s "$state/pending" ] || rm -f "$state/pending"
fi
[ "$failed" = 1 ] && exit 6
printf 'DONE\n'
exit 0
