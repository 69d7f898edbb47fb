# oignon gather: the state of every managed path and the host's facts, in ONE round trip.
# Run as: sh -c "<this script>" oignon-gather ROOT < requests
#   ROOT: "" on a real host; the image directory for the local transport (every path is prefixed).
# stdin, one request per line, tab-separated:
#   f PATH    a managed file: its content comes back (base64), the controller hashes it
#   s PATH    a secret file: only its sha256 comes back, never its content
#   i NAME    a relay instance (Debian tor@NAME)
# stdout, one record per line, tab-separated:
#   F PATH 0                                  absent
#   F PATH 1 OWNER GROUP MODE SHA256|- [B64]  a regular file
#   T PATH TYPE                               something else is there (directory, symlink...)
#   I NAME USER DATADIR ACTIVE                user _tor-NAME exists (1/0), its DataDirectory exists (1/0), systemctl is-active
#   D NAME                                    a directory under /etc/tor/instances
#   M PATH SHA256 NOW                         what the last apply wrote (/var/lib/oignon/managed); NOW is
#                                             `-` for a requested path (see its F record), else its
#                                             sha256 now, or 0 when it is gone
#   P COMMAND                                 a handler an interrupted apply left pending
#   K KEY VALUE                               a fact
set -u
root=$1
tab=$(printf '\t')
state=$root/var/lib/oignon
nl='
'
requested=$nl
while IFS="$tab" read -r kind arg; do
  p=$root$arg
  requested=$requested$arg$nl
  case $kind in
  f | s)
    if [ -f "$p" ] && [ ! -L "$p" ]; then
      meta=$(stat -c "%U$tab%G$tab%a" -- "$p") || meta="?$tab?$tab?"
      if [ "$kind" = f ]; then
        printf 'F\t%s\t1\t%s\t-\t%s\n' "$arg" "$meta" "$(base64 -w0 -- "$p")"
      else
        sum=$(sha256sum -- "$p") || sum=unreadable
        printf 'F\t%s\t1\t%s\t%s\n' "$arg" "$meta" "${sum%% *}"
      fi
    elif [ -e "$p" ] || [ -L "$p" ]; then
      printf 'T\t%s\t%s\n' "$arg" "$(stat -c %F -- "$p")"
    else
      printf 'F\t%s\t0\n' "$arg"
    fi
    ;;
  i)
    user=0
    grep -q "^_tor-$arg:" "$root/etc/passwd" 2>/dev/null && user=1
    dd=0
    [ -d "$root/var/lib/tor-instances/$arg" ] && dd=1
    active=unknown
    if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then
      active=$(systemctl is-active "tor@$arg" 2>/dev/null) || true
      [ -n "$active" ] || active=unknown
    fi
    printf 'I\t%s\t%s\t%s\t%s\n' "$arg" "$user" "$dd" "$active"
    ;;
  esac
done
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
[ -f "$state/lock" ] && printf 'K\tlock\t%s\n' "$(tr '\n\t' '  ' < "$state/lock")"
if [ -z "$root" ]; then
  printf 'K\tcmdline\t%s\n' "$(cat /proc/cmdline 2>/dev/null)"
  printf 'K\ttor_version\t%s\n' "$(tor --version 2>/dev/null | head -n 1)"
fi
if [ -f "$root/etc/os-release" ]; then
  printf 'K\tos\t%s\n' "$(. "$root/etc/os-release" && echo "${PRETTY_NAME:-${ID:-unknown}}")"
fi
printf 'K\tend\tok\n'
