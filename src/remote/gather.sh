# oignon gather: the state of every managed path and the host's facts, in ONE round trip, with a
# fixed number of processes whatever the number of files (one stat, one sha256sum, one systemctl).
# Run as: sh -c "<this script>" oignon-gather ROOT < requests
#   ROOT: "" on a real host; the image directory for the local transport (every path is prefixed).
# stdin, one request per line, tab-separated:
#   f PATH SHA256   a managed file and the sha256 oignon wants there: its content comes back
#                   (base64) only when it differs, for the diff
#   s PATH          a secret file: only its sha256 comes back, never its content
#   i NAME          a relay instance (Debian tor@NAME)
# stdout, one record per line, tab-separated:
#   F PATH 0                                      absent
#   F PATH 1 OWNER GROUP MODE SHA256 [BASE64]     a regular file
#   T PATH TYPE                                   something else is there (directory, symlink...)
#   I NAME USER DATADIR ACTIVE                    user _tor-NAME exists (1/0), its DataDirectory
#                                                 exists (1/0), `systemctl is-active tor@NAME`
#   D NAME                                        a directory under /etc/tor/instances
#   M PATH SHA256 NOW                             what the last apply wrote (/var/lib/oignon/managed);
#                                                 NOW is `-` for a requested path (see its F record),
#                                                 else its sha256 now, or 0 when it is gone
#   P COMMAND                                     a handler an interrupted apply left pending
#   K KEY VALUE                                   a fact; the last line is K end ok
set -u
root=$1
tab=$(printf '\t')
nl='
'
state=$root/var/lib/oignon
requested=$nl
files=
want=$nl
secret=$nl
instances=
while IFS="$tab" read -r kind arg sum; do
  requested=$requested$arg$nl
  case $kind in
  f | s)
    p=$root$arg
    [ "$kind" = s ] && secret=$secret$arg$nl
    [ "$kind" = f ] && want=$want$arg$tab$sum$nl
    if [ -f "$p" ] && [ ! -L "$p" ]; then
      files=$files$p$nl
    elif [ -e "$p" ] || [ -L "$p" ]; then
      printf 'T\t%s\t%s\n' "$arg" "$(stat -c %F -- "$p")"
    else
      printf 'F\t%s\t0\n' "$arg"
    fi
    ;;
  i) instances="$instances $arg" ;;
  esac
done
if [ -n "$files" ]; then
  # One stat and one sha256sum for every present file; paths hold no tab or newline (oignon's own).
  if [ -z "$root" ]; then
    metas=$(printf '%s' "$files" | tr '\n' '\0' | xargs -0 stat -c "%n$tab%U$tab%G$tab%a" --)
  else
    # A local image: owners are named by the image's passwd and group, not this machine's.
    metas=$(printf '%s' "$files" | tr '\n' '\0' | xargs -0 stat -c "%n$tab%u$tab%g$tab%a" --)
    uids=$nl
    gids=$nl
    [ -f "$root/etc/passwd" ] && while IFS=: read -r n _ id _; do uids=$uids$id:$n$nl; done < "$root/etc/passwd"
    [ -f "$root/etc/group" ] && while IFS=: read -r n _ id _; do gids=$gids$id:$n$nl; done < "$root/etc/group"
    [ "${uids#*"${nl}0:"}" = "$uids" ] && uids=${uids}0:root$nl
    [ "${gids#*"${nl}0:"}" = "$gids" ] && gids=${gids}0:root$nl
  fi
  sums=$(printf '%s' "$files" | tr '\n' '\0' | xargs -0 sha256sum --)
  # Both lists come in argument order: walk them side by side (fd 3 and 4), no process per file.
  while IFS="$tab" read -r p owner group mode <&3 && read -r sum f <&4; do
    if [ "$f" != "$p" ]; then
      echo "gather: a managed file appeared or vanished while it was read ($p); plan again" >&2
      exit 9
    fi
    arg=${p#"$root"}
    if [ -n "$root" ]; then
      case $uids in *"$nl$owner:"*) owner=${uids#*"$nl$owner:"} owner=${owner%%"$nl"*} ;; esac
      case $gids in *"$nl$group:"*) group=${gids#*"$nl$group:"} group=${group%%"$nl"*} ;; esac
    fi
    case $secret$want in
    *"$nl$arg$nl"* | *"$nl$arg$tab$sum$nl"*) printf 'F\t%s\t1\t%s\t%s\t%s\t%s\n' "$arg" "$owner" "$group" "$mode" "$sum" ;;
    *) printf 'F\t%s\t1\t%s\t%s\t%s\t%s\t%s\n' "$arg" "$owner" "$group" "$mode" "$sum" "$(base64 -w0 -- "$p")" ;;
    esac
  done 3<<EOF3 4<<EOF4
$metas
EOF3
$sums
EOF4
fi
if [ -n "$instances" ]; then
  users=$nl
  if [ -f "$root/etc/passwd" ]; then
    while IFS=: read -r u _; do users=$users$u$nl; done < "$root/etc/passwd"
  fi
  actives=
  if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    actives=$(for n in $instances; do printf 'tor@%s ' "$n"; done | xargs systemctl is-active 2>/dev/null)
  fi
  for n in $instances; do
    user=0
    case $users in *"${nl}_tor-$n$nl"*) user=1 ;; esac
    dd=0
    [ -d "$root/var/lib/tor-instances/$n" ] && dd=1
    active=unknown
    if [ -n "$actives" ]; then
      active=${actives%%"$nl"*}
      case $actives in *"$nl"*) actives=${actives#*"$nl"} ;; *) actives= ;; esac
    fi
    printf 'I\t%s\t%s\t%s\t%s\n' "$n" "$user" "$dd" "${active:-unknown}"
  done
fi
for d in "$root"/etc/tor/instances/*/; do
  [ -d "$d" ] || continue
  d=${d%/}
  printf 'D\t%s\n' "${d##*/}"
done
if [ -f "$state/managed" ]; then
  while IFS="$tab" read -r path sum; do
    case $requested in
    *"$nl$path$nl"*) now=- ;;
    *)
      now=0
      if [ -f "$root$path" ]; then
        now=$(sha256sum -- "$root$path") || now=unreadable
        now=${now%% *}
      fi
      ;;
    esac
    printf 'M\t%s\t%s\t%s\n' "$path" "$sum" "$now"
  done < "$state/managed"
fi
if [ -f "$state/pending" ]; then
  while IFS= read -r cmd; do
    [ -n "$cmd" ] && printf 'P\t%s\n' "$cmd"
  done < "$state/pending"
fi
if [ -f "$state/lock" ]; then
  IFS= read -r lock < "$state/lock" || true
  printf 'K\tlock\t%s\n' "$(printf '%s' "$lock" | tr '\t' ' ')"
fi
if [ -z "$root" ]; then
  IFS= read -r cmdline < /proc/cmdline || true
  printf 'K\tcmdline\t%s\n' "${cmdline:-}"
  v=$(tor --version 2>/dev/null) || v=
  printf 'K\ttor_version\t%s\n' "${v%%"$nl"*}"
fi
if [ -f "$root/etc/os-release" ]; then
  printf 'K\tos\t%s\n' "$(. "$root/etc/os-release" && echo "${PRETTY_NAME:-${ID:-unknown}}")"
fi
printf 'K\tend\tok\n'
