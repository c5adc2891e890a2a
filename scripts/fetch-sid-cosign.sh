#!/usr/bin/env bash
# Fetches cosign 3.x from Debian sid into .cache/sid/, the independent reader of the Sigstore
# bundles (cosign 3's format) in the tests. cosign is one static Go binary that needs only libc:
# it runs natively on Debian 12.
#
# Nothing on the system changes: a private APT configuration (scripts/lib/private-apt.sh: its own
# sources list with the machine's own Debian mirror and suite sid, lists, cache, an empty dpkg
# status) downloads the .deb, and `dpkg-deb -x` unpacks it under .cache/sid/root.
#   .cache/sid/bin/cosign   a symlink to the unpacked binary
#   .cache/sid/versions     "cosign 3.1.1-1", from the .deb (Debian's build says "devel")
# sid's Release file is only valid for a few days; a mirror's snapshot may be older, so its
# Valid-Until is not checked (Acquire::Check-Valid-Until=false); its signature is.
# Idempotent: when cosign 3 already runs it does nothing. Exit 0 without cosign 3 when the mirror
# has no sid (the tests that need it say so and skip).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$here/.cache/sid"
root="$cache/root"
bin="$cache/bin"
log() { echo "fetch-sid-cosign: $*" >&2; }

tool_works() {
  grep -q '^cosign 3\.' "$cache/versions" 2>/dev/null && "$bin/cosign" version >/dev/null 2>&1
}
if tool_works; then
  exit 0
fi
mkdir -p "$cache"
exec 9>"$cache.lock"
flock 9
if tool_works; then
  exit 0
fi

. "$here/scripts/lib/private-apt.sh"
mkdir -p "$root" "$bin" "$cache/debs"
log "apt-get update (private config in $cache/apt)"
if ! PRIVATE_APT_IGNORE_VALID_UNTIL=1 private_apt "$cache/apt" sid; then
  log "the mirror has no sid: cosign 3 not fetched"
  exit 0
fi
rm -f "$cache/debs"/*.deb
(cd "$cache/debs" && apt-get "${apt_opts[@]}" download -qq cosign >&2)
deb=$(ls "$cache/debs"/cosign_*.deb)
log "extract $(basename "$deb")"
dpkg-deb -x "$deb" "$root"
echo "cosign $(dpkg-deb -f "$deb" Version)" >"$cache/versions"
ln -sfn ../root/usr/bin/cosign "$bin/cosign"
tool_works || { log "FAILED: expected cosign 3.x (running); got $(cat "$cache/versions")"; exit 1; }
log "installed $(cat "$cache/versions")"
