#!/usr/bin/env bash
# Fetches cosign 2.5 and skopeo 1.18 from Debian 13 (trixie) into .cache/trixie/, for the tests of
# the cosign signer. Bookworm has no cosign, and its skopeo 1.9 is built without sigstore support.
#
# Nothing on the system changes: a private APT configuration (its own sources list, lists, cache
# and an empty dpkg status) downloads the .debs, and `dpkg-deb -x` unpacks them under
# .cache/trixie/root. The sources line is the machine's own Debian mirror with suite trixie.
#   .cache/trixie/bin/cosign   a symlink: cosign only needs glibc >= 2.34, it runs natively
#   .cache/trixie/bin/skopeo   a wrapper: skopeo needs glibc 2.38, it runs through trixie's loader
#   .cache/trixie/versions     "cosign 2.5.0-2+b4" / "skopeo 1.18.0+ds1-1+b5", from the .debs
# Debian builds cosign without version ldflags: `cosign version` says "GitVersion: devel", so its
# version is checked from the package that was unpacked (and that the binary runs).
# Idempotent: when both tools already work in the expected versions it does nothing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$here/.cache/trixie"
root="$cache/root"
bin="$cache/bin"
lib="$root/usr/lib/x86_64-linux-gnu"  # trixie has a merged /usr
log() { echo "fetch-trixie-tools: $*" >&2; }

tools_work() {
  grep -q '^cosign 2\.5\.' "$cache/versions" 2>/dev/null &&
    "$bin/cosign" version >/dev/null 2>&1 &&
    "$bin/skopeo" --version 2>&1 | grep -q '^skopeo version 1\.18\.'
}
if tools_work; then
  exit 0
fi
# One fetch at a time per checkout; a run that waited finds the tools there.
mkdir -p "$cache"
exec 9>"$cache.lock"
flock 9
if tools_work; then
  exit 0
fi

# -- a private APT (the machine's own Debian mirror, suite trixie) ---------------------------
. "$here/scripts/lib/private-apt.sh"
mkdir -p "$root" "$bin" "$cache/debs"
log "apt-get update (private config in $cache/apt)"
private_apt "$cache/apt" trixie

# skopeo's libraries in the versions it was linked against (ldd through trixie's loader below
# checks that nothing is missing); cosign needs only libc.
packages=(cosign skopeo libc6 libgpgme11t64 libassuan9 libgpg-error0 libsqlite3-0)
log "apt-get download ${packages[*]}"
rm -f "$cache/debs"/*.deb
(cd "$cache/debs" && apt-get "${apt_opts[@]}" download -qq "${packages[@]}" >&2)
for deb in "$cache/debs"/*.deb; do
  log "extract $(basename "$deb")"
  dpkg-deb -x "$deb" "$root"
done
for p in cosign skopeo; do
  echo "$p $(dpkg-deb -f "$cache/debs/${p}_"*.deb Version)"
done >"$cache/versions"

# -- wrappers (relative to where they are, so a moved checkout keeps working) ---------------
log "link $bin/cosign"
ln -sfn ../root/usr/bin/cosign "$bin/cosign"
log "write $bin/skopeo (trixie's loader and libraries)"
cat >"$bin/skopeo" <<'WRAPPER'
#!/bin/sh
# skopeo 1.18 from trixie needs glibc 2.38: run it with trixie's own loader and libraries only.
root=$(dirname "$(readlink -f "$0")")/../root
lib=$root/usr/lib/x86_64-linux-gnu
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$root/usr/bin/skopeo" "$@"
WRAPPER
chmod +x "$bin/skopeo"

# -- verify ---------------------------------------------------------------------------------
missing=$("$lib/ld-linux-x86-64.so.2" --library-path "$lib" --list "$root/usr/bin/skopeo" |
          grep 'not found' || true)
[ -z "$missing" ] || { log "FAILED: skopeo is missing libraries:"; echo "$missing" >&2; exit 1; }
log "installed $(paste -sd' ' "$cache/versions"); $("$bin/skopeo" --version 2>&1 || true)"
tools_work || { log "FAILED: expected cosign 2.5.x (running) and skopeo 1.18.x"; exit 1; }
