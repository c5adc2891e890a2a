#!/usr/bin/env bash
# Installs the Debian packages that the demo and the tests use, when they are missing.
#   gnupg           the gpg signer and the test keys
#   skopeo          the independent verifier (standalone-verify, copy with a policy)
#   docker-registry a real registry on loopback for the integration tests
# Debian 12 or later; needs root (or sudo) only when something is missing.
set -euo pipefail
packages=(gnupg skopeo docker-registry)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "setup: installing ${missing[*]}" >&2
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
