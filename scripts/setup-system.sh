#!/usr/bin/env bash
# Installs the Debian packages that the demo and the tests use, when they are missing.
#   gnupg           the gpg signer and the test keys
#   skopeo          the independent verifier (standalone-verify, copy with a policy)
#   docker-registry a real registry on loopback for the integration tests
#   rabbitmq-server a real AMQP 1.0 broker for the messaging signer's tests (run as a private node)
#   gcc python3-dev libssl-dev pkg-config   to build python-qpid-proton with SSL
#   jq              runs Konflux's check-signing-response script in the pubtools-sign drop-in tests
# then cosign 2.5 and skopeo 1.18 from trixie into .cache/trixie (fetch-trixie-tools.sh: no root),
# and cosign 3 from sid into .cache/sid (fetch-sid-cosign.sh: the bundles' independent reader).
# Debian 12 or later; needs root (or sudo) only when something is missing.
set -euo pipefail
here="$(dirname "$0")"
# shellcheck source=lib/apt-install.sh
. "$here/lib/apt-install.sh"
install_missing setup gnupg skopeo docker-registry rabbitmq-server gcc python3-dev libssl-dev \
  pkg-config jq
"$here/fetch-trixie-tools.sh"
exec "$here/fetch-sid-cosign.sh"
