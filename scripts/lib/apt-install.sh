# shellcheck shell=bash
# install_missing TAG PACKAGE...: installs the Debian packages that are not installed yet, with
# apt-get (root, or sudo), and starts no service (a policy-rc.d for the time of the install: e.g.
# rabbitmq-server must not start system-wide). Sourced by setup-system.sh and make-image.sh.
install_missing() {
  local tag=$1; shift
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "$tag: installing ${missing[*]}" >&2
  local as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "$tag: need root or sudo to install ${missing[*]}" >&2; return 1; }
    as_root=(sudo)
  fi
  local own_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${as_root[@]}" chmod +x /usr/sbin/policy-rc.d
    own_policy=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null || rc=$?
  [ -z "$own_policy" ] || "${as_root[@]}" rm -f /usr/sbin/policy-rc.d
  return $rc
}
