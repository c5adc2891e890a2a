# shellcheck shell=bash
# Sourced by the scripts that fetch packages of another Debian release without touching the
# system (fetch-trixie-tools.sh, fetch-sid-cosign.sh). After `. scripts/lib/private-apt.sh`:
#   private_apt DIR SUITE   a private APT configuration in DIR (its own sources list: the machine's
#                           own Debian mirror with SUITE; lists, cache, an empty dpkg status),
#                           updated; fills the array apt_opts for `apt-get "${apt_opts[@]}" ...`.
#                           sid's Release files expire within days of a snapshot mirror's date:
#                           PRIVATE_APT_IGNORE_VALID_UNTIL=1 accepts them (their signature is still
#                           checked).
here_lib=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=debian-mirror.sh
. "$here_lib/debian-mirror.sh"

private_apt() {
  local apt_dir=$1 suite=$2 mirror signed_by
  read -r mirror signed_by < <(find_mirror | head -n 1) || true
  [ -n "${mirror:-}" ] || { echo "no Debian source for '$codename' with 'main' in the apt sources" >&2; return 1; }
  signed_by=${signed_by:-/usr/share/keyrings/debian-archive-keyring.gpg}
  echo "private apt: mirror $mirror (keyring $signed_by), suite $suite" >&2
  mkdir -p "$apt_dir/sources.list.d" "$apt_dir/preferences.d" "$apt_dir/lists/partial" \
           "$apt_dir/cache/archives/partial"
  echo "deb [signed-by=$signed_by] $mirror $suite main" >"$apt_dir/sources.list"
  : >"$apt_dir/status"
  apt_opts=(
    -o "Dir::Etc::sourcelist=$apt_dir/sources.list"
    -o "Dir::Etc::sourceparts=$apt_dir/sources.list.d"
    -o "Dir::Etc::preferences=$apt_dir/preferences"
    -o "Dir::Etc::preferencesparts=$apt_dir/preferences.d"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::State::status=$apt_dir/status"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=$(id -un)"  # it downloads into this user's directories
  )
  if [ "${PRIVATE_APT_IGNORE_VALID_UNTIL:-0}" = 1 ]; then
    apt_opts+=(-o "Acquire::Check-Valid-Until=false")
  fi
  apt-get "${apt_opts[@]}" update -qq >&2
}
