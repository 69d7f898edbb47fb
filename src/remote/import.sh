# import.sh: reads each relay's identity keys and the fingerprint tor wrote, over one round trip.
# Arguments: ROOT NICKNAME... Answer, one line each: K NICK FILE BASE64 (a key file), N NICK FILE (a
# key file that is missing), F NICK FINGERPRINT. Inside a DataDirectory (its user's), the files are
# read AS that user on a host: a link planted there reaches nothing more.
root=$1; shift
read_keys='d=$1 n=$2
for f in secret_id_key ed25519_master_id_secret_key; do
  if [ -f "$d/keys/$f" ] && [ ! -L "$d/keys/$f" ] && [ ! -L "$d/keys" ]; then
    k=$(base64 -w0 "$d/keys/$f") || exit 1
    printf "K\t%s\t%s\t%s\n" "$n" "$f" "$k"
  else
    printf "N\t%s\t%s\n" "$n" "$f"
  fi
done
if [ -f "$d/fingerprint" ] && [ ! -L "$d/fingerprint" ]; then
  printf "F\t%s\t%s\n" "$n" "$(cut -d" " -f2 "$d/fingerprint")"
fi
exit 0'
for n in "$@"; do
  d=$root/var/lib/tor-instances/$n
  if [ -L "$d" ]; then echo "$d is a symbolic link" >&2; exit 1; fi
  if [ -z "$root" ] && id -u "_tor-$n" >/dev/null 2>&1; then
    setpriv --reuid="_tor-$n" --regid="_tor-$n" --clear-groups --no-new-privs -- sh -c "$read_keys" sh "$d" "$n" || exit 1
  else
    sh -c "$read_keys" sh "$d" "$n" || exit 1
  fi
done
exit 0
