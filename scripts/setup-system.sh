#!/usr/bin/env bash
# Installs the Debian packages that the demo and the tests use, when they are missing.
#   gnupg           the gpg signer and the test keys
#   skopeo          the independent verifier (standalone-verify, copy with a policy)
#   docker-registry a real registry on loopback for the integration tests
#   rabbitmq-server a real AMQP 1.0 broker for the messaging signer's tests (run as a private node)
#   gcc python3-dev libssl-dev pkg-config   to build python-qpid-proton with SSL
# then cosign 2.5 and skopeo 1.18 from trixie into .cache/trixie (fetch-trixie-tools.sh: no root).
# Debian 12 or later; needs root (or sudo) only when something is missing.
set -euo pipefail
packages=(gnupg skopeo docker-registry rabbitmq-server gcc python3-dev libssl-dev pkg-config)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
fetch_trixie="$(dirname "$0")/fetch-trixie-tools.sh"
[ ${#missing[@]} -eq 0 ] && exec "$fetch_trixie"
echo "setup: installing ${missing[*]}" >&2
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  as_root=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
# Install only: a package's service (rabbitmq-server) must not start system-wide.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee /usr/sbin/policy-rc.d >/dev/null
  "${as_root[@]}" chmod +x /usr/sbin/policy-rc.d
  trap '"${as_root[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
fi
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
"$fetch_trixie"
