# oignon host scripts' shared functions: prepended to gather.sh and apply.sh (src/remote/mod.rs),
# so each rule about paths has one text. Functions only; each script sets `root` before using them.

# The first component of ROOT/PATH below ROOT that is a symbolic link (printed), if any.
link_in() {
  rest=${1#/}
  cur=$root
  while [ -n "$rest" ]; do
    case $rest in
    */*) c=${rest%%/*} rest=${rest#*/} ;;
    *) c=$rest rest= ;;
    esac
    [ -n "$c" ] || continue
    cur=$cur/$c
    if [ -L "$cur" ]; then
      printf '%s' "${cur#"$root"}"
      return 0
    fi
    [ -e "$cur" ] || return 1
  done
  return 1
}

# A path inside /var/lib/tor-instances/NAME/: prints NAME.
dd_name() {
  case $1 in
  /var/lib/tor-instances/*/*)
    n=${1#/var/lib/tor-instances/}
    printf '%s' "${n%%/*}"
    ;;
  esac
}
