# oignon gather: the state of every managed path and the host's facts, in ONE round trip, with a
# fixed number of processes whatever the number of files (one stat, one sha256sum, one systemctl).
# Run as: sh -c "<this script>" oignon-gather ROOT < requests
#   ROOT: "" on a real host; the image directory for the local transport (every path is prefixed).
# stdin, one request per line, tab-separated:
#   f PATH SHA256   a managed file and the sha256 oignon wants there: its content comes back
#                   (base64) only when it differs, for the diff
#   s PATH          a secret file: only its sha256 comes back, never its content
#   i NAME          a relay instance (Debian tor@NAME)
#   q NAME PORT     `oignon status` asks, for instance NAME: tor's fingerprint, the signing
#                   certificate, and whether its MetricsPort (PORT, or - for none) answers
# stdout, one record per line, tab-separated:
#   F PATH 0                                      absent
#   F PATH 1 OWNER GROUP MODE SHA256 [BASE64]     a regular file
#   T PATH TYPE                                   something else is there (directory, symlink...), or
#                                                 the path goes through a symbolic link, or (in a
#                                                 DataDirectory) through a directory not its user's
# Nothing is read as root through a link: a symbolic link anywhere in a path is reported, not
# followed; inside a relay's DataDirectory (its user's) files are stat'ed and hashed AS that user
# (setpriv, one call per instance). Files of the host, /etc/os-release included, are read as data.
#   R NAME USER DATADIR ACTIVE                    a requested instance: user _tor-NAME exists (1/0),
#                                                 its DataDirectory exists (1/0), `systemctl
#                                                 is-active tor@NAME`
#   I NAME ACTIVESTATE UNITFILESTATE IDSHA        every tor instance found on the host (a directory
#                                                 in /etc/tor/instances or /var/lib/tor-instances):
#                                                 systemd's states of tor@NAME (`-` unknown), the
#                                                 sha256 of keys/ed25519_master_id_public_key read
#                                                 as _tor-NAME (`-` absent): one identity, one place
#   X NAME TO WHEN FINGERPRINT                    a tombstone (/var/lib/oignon/moved/NAME): the relay
#                                                 moved TO another host (or was retired) at WHEN
#   N NAME FROM WHEN FINGERPRINT                  an arrival (/var/lib/oignon/arrived/NAME): the relay
#                                                 was migrated here FROM another host at WHEN
#   D NAME                                        a directory under /etc/tor/instances
#   M PATH SHA256 NOW                             what the last apply wrote (/var/lib/oignon/managed);
#                                                 NOW is `-` for a requested path (see its F record),
#                                                 else its sha256 now, or 0 when it is gone
#   P COMMAND                                     a handler an interrupted apply left pending
#   I NAME ACTIVESTATE UNITFILESTATE IDSHA        one per directory in /etc/tor/instances/ or
#                                                 /var/lib/tor-instances/ named as a nickname
#                                                 (`systemctl show`, - if unknown), IDSHA the sha256
#                                                 of keys/ed25519_master_id_public_key read as
#                                                 _tor-NAME (- if absent)
#   S NAME FINGERPRINT CERT METRICS               for each q request: the RSA fingerprint tor wrote
#                                                 (DataDirectory/fingerprint; - none, ? a file
#                                                 that is not tor's), keys/ed25519_signing_cert
#                                                 (base64; its expiry is read by oignon), and
#                                                 MetricsPort up|down|- (none asked)
#   A WHEN WHO                                    the last apply (/var/lib/oignon/last-apply)
#   K KEY VALUE                                   a fact; the last line is K end ok
#                                                 (K reboot_required yes|no: /run/reboot-required)
#                                                 (K lock: an apply holds the lock now; K lock-left:
#                                                 a dead apply's name is in the lock file)
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
asked=
# What a DataDirectory's user runs to describe its files (args: paths): F or T records.
# shellcheck disable=SC2016
user_stat='for p do
  if [ -L "$p" ]; then printf "T\t%s\tsymbolic link\n" "$p"
  elif [ -f "$p" ]; then
    if m=$(stat -c "%U	%G	%a" -- "$p") && s=$(sha256sum -- "$p" 2>/dev/null); then
      printf "F\t%s\t1\t%s\t%s\n" "$p" "$m" "${s%% *}"
    else printf "T\t%s\tfile its relay user cannot read\n" "$p"; fi
  elif [ -e "$p" ]; then printf "T\t%s\t%s\n" "$p" "$(stat -c %F -- "$p")"
  else printf "F\t%s\t0\n" "$p"; fi
done'
# A DataDirectory path's problem, seen as root without following anything: the DataDirectory or a
# directory below it that is a link, not a directory, or not owned by _tor-NAME.
dd_problem() {
  p=$1 n=$2
  base=/var/lib/tor-instances/$n
  rel=${p#"$base"/}
  cur=$base
  while :; do
    if [ -L "$cur" ]; then
      printf 'path through the symbolic link %s' "$cur"
      return 0
    fi
    [ -e "$cur" ] || return 1
    [ -d "$cur" ] || { printf 'path through %s, which is not a directory' "$cur"; return 0; }
    o=$(stat -c %U -- "$cur" 2>/dev/null)
    [ "$o" = "_tor-$n" ] || { printf 'path through %s, owned by %s instead of _tor-%s' "$cur" "${o:-?}" "$n"; return 0; }
    case $rel in
    */*) cur=$cur/${rel%%/*} rel=${rel#*/} ;;
    *) return 1 ;;
    esac
  done
}
ddpaths=$nl
while IFS="$tab" read -r kind arg sum; do
  requested=$requested$arg$nl
  case $kind in
  f | s)
    p=$root$arg
    [ "$kind" = s ] && secret=$secret$arg$nl
    [ "$kind" = f ] && want=$want$arg$tab$sum$nl
    n=$(dd_name "$arg")
    if [ -n "$n" ] && [ -z "$root" ]; then
      if l=$(link_in "/var/lib/tor-instances/$n"); then
        printf 'T\t%s\tpath through the symbolic link %s\n' "$arg" "$l"
      elif why=$(dd_problem "$arg" "$n"); then
        printf 'T\t%s\t%s\n' "$arg" "$why"
      elif [ -d "/var/lib/tor-instances/$n" ]; then
        if id -u "_tor-$n" >/dev/null 2>&1; then
          ddpaths=$ddpaths$n$tab$arg$nl
        else
          printf 'T\t%s\tpath in a DataDirectory whose user _tor-%s does not exist\n' "$arg" "$n"
        fi
      else
        printf 'F\t%s\t0\n' "$arg"
      fi
    elif l=$(link_in "$arg"); then
      printf 'T\t%s\tpath through the symbolic link %s\n' "$arg" "$l"
    elif [ -f "$p" ] && [ ! -L "$p" ]; then
      files=$files$p$nl
    elif [ -e "$p" ] || [ -L "$p" ]; then
      printf 'T\t%s\t%s\n' "$arg" "$(stat -c %F -- "$p")"
    else
      printf 'F\t%s\t0\n' "$arg"
    fi
    ;;
  i) instances="$instances $arg" ;;
  q)
    # Checked again here: these become a user's argument and a TCP port on this host.
    case $arg in '' | *[!A-Za-z0-9]*) continue ;; esac
    case $sum in - | [1-9] | [1-9][0-9] | [1-9][0-9][0-9] | [1-9][0-9][0-9][0-9] | [1-9][0-9][0-9][0-9][0-9]) ;; *) continue ;; esac
    asked=$asked$arg$tab$sum$nl
    ;;
  esac
done
# DataDirectory files, as their users: one setpriv per instance.
if [ "$ddpaths" != "$nl" ]; then
  for n in $(printf '%s' "$ddpaths" | cut -f1 | sort -u); do
    # shellcheck disable=SC2046
    set -- $(printf '%s' "$ddpaths" | awk -F "$tab" -v n="$n" '$1 == n { print $2 }')
    setpriv --reuid="_tor-$n" --regid="_tor-$n" --clear-groups --no-new-privs -- sh -c "$user_stat" sh "$@"
  done
fi
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
    printf 'R\t%s\t%s\t%s\t%s\n' "$n" "$user" "$dd" "${active:-unknown}"
  done
fi
# Tombstones (X) and arrivals (N): each field through the same character rules (the host's data).
marks() {
  [ -d "$state/$1" ] && ! link_in "/var/lib/oignon/$1" >/dev/null || return 0
  for t in "$state/$1"/*; do
    [ -f "$t" ] && [ ! -L "$t" ] || continue
    n=${t##*/}
    case $n in '' | *[!A-Za-z0-9]*) continue ;; esac
    to=$(sed -n 's/^to\t//p' "$t" | head -n 1 | tr -cd 'A-Za-z0-9.-')
    when=$(sed -n 's/^when\t//p' "$t" | head -n 1 | tr -cd 'A-Za-z0-9:.+-')
    fp=$(sed -n 's/^fingerprint\t//p' "$t" | head -n 1 | tr -cd 'A-F0-9')
    printf '%s\t%s\t%s\t%s\t%s\n' "$2" "$n" "${to:--}" "${when:--}" "${fp:--}"
  done
}
marks moved X
marks arrived N
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
      n=$(dd_name "$path")
      if [ -n "$n" ] || link_in "$path" >/dev/null; then
        # Not read as root: a retired relay's key, or a path through a link, counts as present.
        if [ -e "$root$path" ] || [ -L "$root$path" ]; then now=unread; fi
      elif [ -f "$root$path" ]; then
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
if [ -s "$state/lock" ] && [ ! -L "$state/lock" ]; then
  IFS= read -r lock < "$state/lock" || true
  # The lock is flock(1) held by the apply's shell: the file's content alone may be a dead apply's.
  if command -v flock >/dev/null 2>&1 && flock -n -s "$state/lock" true 2>/dev/null; then
    printf 'K\tlock-left\t%s\n' "$(printf '%s' "$lock" | tr '\t' ' ')"
  else
    printf 'K\tlock\t%s\n' "$(printf '%s' "$lock" | tr '\t' ' ')"
  fi
fi
if [ -z "$root" ]; then
  IFS= read -r cmdline < /proc/cmdline || true
  printf 'K\tcmdline\t%s\n' "${cmdline:-}"
  v=$(tor --version 2>/dev/null) || v=
  printf 'K\ttor_version\t%s\n' "${v%%"$nl"*}"
fi
if [ -f "$root/etc/os-release" ] && ! link_in /etc/os-release >/dev/null; then
  # Read as data, never sourced: an image's os-release is not code to run here.
  os=$(sed -n 's/^PRETTY_NAME=//p' "$root/etc/os-release" | head -n 1 | tr -d '"\000-\037' | cut -c1-200)
  printf 'K\tos\t%s\n' "${os:-unknown}"
fi
# What a relay's user reads in its own DataDirectory (args: DIR WANT): the sha256 of the ed25519
# master public key, then with WANT=1 the RSA fingerprint tor wrote and the signing certificate
# (base64). Every value is checked again by root before it becomes a record: it is the user's data.
# shellcheck disable=SC2016
user_facts='d=$1
s=-
if [ -f "$d/keys/ed25519_master_id_public_key" ]; then s=$(sha256sum < "$d/keys/ed25519_master_id_public_key") || s=-; fi
printf "%s\n" "${s%% *}"
[ "$2" = 1 ] || exit 0
f=-
if [ -e "$d/fingerprint" ] || [ -L "$d/fingerprint" ]; then f=$(head -c 200 "$d/fingerprint" 2>/dev/null | head -n 1 | cut -d " " -f 2); f=${f:-?}; fi
printf "%s\n" "$f"
c=-
if [ -f "$d/keys/ed25519_signing_cert" ]; then c=$(head -c 4096 "$d/keys/ed25519_signing_cert" | base64 -w0); fi
printf "%s\n" "${c:--}"'
# Reads a DataDirectory's facts as its user, or prints `-` lines when that is not safe: no such
# user, or the directory is a link, not a directory, or not the user's (args: NAME WANT).
dd_facts() {
  if [ -z "$root" ] && id -u "_tor-$1" >/dev/null 2>&1 && ! link_in "/var/lib/tor-instances/$1" >/dev/null &&
    ! dd_problem "/var/lib/tor-instances/$1/x" "$1" >/dev/null && [ -d "/var/lib/tor-instances/$1" ]; then
    setpriv --reuid="_tor-$1" --regid="_tor-$1" --clear-groups --no-new-privs -- sh -c "$user_facts" sh "/var/lib/tor-instances/$1" "$2" 2>/dev/null
  else
    printf -- '-\n-\n-\n'
  fi
}
# Whether a MetricsPort on loopback answers HTTP 200 within 3 s (arg: PORT): up, down, or - .
metrics_probe() {
  # A local image runs nothing, and this machine's loopback is not the image's.
  [ "$1" = - ] || [ -n "$root" ] && { echo -; return; }
  command -v bash >/dev/null 2>&1 || { echo down; return; }
  # shellcheck disable=SC2016
  l=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
printf "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
head -n 1 <&3' sh "$1" 2>/dev/null)
  case $l in "HTTP/1."[01]" 200"*) echo up ;; *) echo down ;; esac
}
# One I record per relay directory, in the inventory or not (`plan` refuses one identity active on
# two hosts; `status` shows each unit): its unit's states (one systemctl call for all) and its
# identity's hash, read as the relay's user. Names are checked as nicknames (a directory name is
# the host's data, not ours).
instance_states() {
  names=
  for d in "$root"/etc/tor/instances/*/ "$root"/var/lib/tor-instances/*/; do
    [ -d "$d" ] || continue
    n=${d%/}
    n=${n##*/}
    case $n in '' | *[!A-Za-z0-9]*) continue ;; esac
    [ "${#n}" -le 19 ] || continue
    case " $names " in *" $n "*) continue ;; esac
    names="$names $n"
  done
  [ -n "$names" ] || return 0
  shows=
  if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    shows=$(for n in $names; do printf 'tor@%s.service\n' "$n"; done |
      xargs systemctl show -p Id -p ActiveState -p UnitFileState -- 2>/dev/null)
  fi
  for n in $names; do
    states=$(printf '%s\n' "$shows" | awk -F= -v id="tor@$n.service" '
      /^$/ { if (mine) exit; a = ""; u = ""; next }
      $1 == "Id" && $2 == id { mine = 1 }
      $1 == "ActiveState" { a = $2 }
      $1 == "UnitFileState" { u = $2 }
      END { if (mine) printf "%s\t%s", (a == "" ? "-" : a), (u == "" ? "-" : u); else printf "-\t-" }')
    a=${states%%"$tab"*}
    u=${states#*"$tab"}
    case $a in *[!a-z-]*) a=- ;; esac
    case $u in *[!a-z-]*) u=- ;; esac
    idsha=$(dd_facts "$n" 0 | head -n 1)
    case $idsha in '' | *[!0-9a-f]*) idsha=- ;; esac
    printf 'I\t%s\t%s\t%s\t%s\n' "$n" "$a" "$u" "$idsha"
  done
}
instance_states
if [ -n "$asked" ]; then
  printf '%s' "$asked" | while IFS="$tab" read -r n port; do
    facts=$(dd_facts "$n" 1)
    fpr=$(printf '%s\n' "$facts" | sed -n 2p)
    cert=$(printf '%s\n' "$facts" | sed -n 3p)
    # - : no fingerprint file; ? : one that is not tor's (unreadable, or not 40 hex digits).
    case $fpr in - | '?') ;; '' | *[!0-9A-F]*) fpr='?' ;; esac
    [ "$fpr" = - ] || [ "$fpr" = '?' ] || [ "${#fpr}" -eq 40 ] || fpr='?'
    case $cert in '' | *[!A-Za-z0-9+/=]*) cert=- ;; esac
    printf 'S\t%s\t%s\t%s\t%s\n' "$n" "$fpr" "$cert" "$(metrics_probe "$port")"
  done
  if [ -f "$state/last-apply" ] && [ ! -L "$state/last-apply" ]; then
    IFS="$tab" read -r when who < "$state/last-apply" || true
    case $when in '' | *[!0-9TZ:-]*) when=- ;; esac
    printf 'A\t%s\t%s\n' "$when" "$(printf '%s' "${who:--}" | tr -d '\000-\037' | cut -c1-200)"
  fi
  r=no
  [ -e "$root/run/reboot-required" ] && r=yes
  printf 'K\treboot_required\t%s\n' "$r"
fi
printf 'K\tend\tok\n'
