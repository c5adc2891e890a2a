# The action's image: this project installed in a venv with its pinned Python dependencies, and
# Debian's own cosign, skopeo and GnuPG.
#
# Two stages. "build" makes the venv /opt/venv with the compilers python-qpid-proton needs (it has
# no Linux wheel: pip builds it from source, and without `pkg-config openssl` it silently builds
# WITHOUT SSL, so the build fails unless proton.SSL.present()), then installs this project into it
# (pyproject.toml: the packages signaction and signers, the modules entrypoint and
# pubtools_commands, the config schema,
# and the commands container-sign and pubtools-sign's four in /opt/venv/bin). The final stage gets
# the venv and no compiler, and no source tree: the ENTRYPOINT is the console script
# /opt/venv/bin/container-sign (entrypoint:main). The base must be Debian trixie or later (cosign is packaged from trixie on) with a
# Python >= 3.11 as `python3`: the official python image (/usr/local/bin/python3) or plain Debian
# with its python3 (/usr/bin/python3; installed here if the base lacks it). Both stages use the same
# base, so the venv's python symlink points to an interpreter that exists in the final stage.
#
# GitHub docker actions run the container as root with the workspace mounted as the working
# directory: no USER, no WORKDIR. The ENTRYPOINT is exec-form with absolute paths.
#
# Build args:
#   BASE_IMAGE       the base of both stages. `make image` builds on a local Debian trixie base
#                    made with debootstrap (scripts/make-image.sh), where no image registry is
#                    reachable.
#   PIP_CONFIG_FILE  a pip.conf for the build stage's pip (index, CA bundle); unset: pip's defaults.
#                    `make image` mounts the host's pip settings and CA bundle at /mnt.
#   IMAGE_SOURCE, IMAGE_LICENSES, IMAGE_DESCRIPTION   OCI labels
# Python 3.13 is trixie's own python3: the official image and the Debian base that `make image`
# builds and checks run the same Python minor version.
ARG BASE_IMAGE=python:3.13-slim-trixie

FROM ${BASE_IMAGE} AS build
ARG PIP_CONFIG_FILE
# The official image's Python (/usr/local) has its headers and ensurepip; Debian's own python3 needs
# python3-dev and python3-venv (installing those on the official image would add a second Python).
RUN set -eu; \
    export DEBIAN_FRONTEND=noninteractive; \
    packages="gcc libc6-dev libssl-dev pkg-config"; \
    python=$(command -v python3 || true); \
    if [ -z "$python" ] || dpkg -S "$(readlink -f "$python")" >/dev/null 2>&1; then \
      packages="$packages python3 python3-dev python3-venv"; \
    fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends $packages; \
    rm -rf /var/lib/apt/lists/*; \
    pkg-config --exists openssl
COPY requirements.txt /tmp/requirements.txt
# Exactly the pinned requirements (--no-deps; `pip check` proves the pins complete). A layer of its
# own: a change to the source alone does not rebuild proton.
RUN set -eu; \
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/python -m pip install --no-deps -r /tmp/requirements.txt; \
    /opt/venv/bin/python -m pip check; \
    /opt/venv/bin/python -c 'import proton, sys; sys.exit(0 if proton.SSL.present() else "python-qpid-proton was built without SSL (is pkg-config openssl working?)")'
# This project, not editable and without dependencies (the pins above are them; `pip check` proves
# pyproject.toml's dependencies met): a wheel built from /src (setuptools from the index, in pip's
# isolated build environment), then pip itself leaves the venv: nothing installs into it later.
# signaction/config.schema.json is a link to schemas/: the wheel holds the file.
COPY pyproject.toml entrypoint.py pubtools_commands.py /src/
COPY signaction /src/signaction
COPY signers /src/signers
COPY schemas /src/schemas
RUN set -eu; \
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1; \
    /opt/venv/bin/python -m pip install --no-deps /src; \
    /opt/venv/bin/python -m pip check; \
    /opt/venv/bin/python -m pip uninstall -y -q pip setuptools; \
    ls -l /opt/venv/bin/python3 /opt/venv/bin/container-sign /opt/venv/bin/pubtools-sign-*

FROM ${BASE_IMAGE}
# cosign (2.5 in trixie), skopeo (1.18) and GnuPG from Debian; python3 only on a base without one.
# skopeo's containers-common needs some container network stack, which skopeo never uses: netavark
# (17 MB) is named so that apt does not pick containernetworking-plugins and iptables (60 MB).
RUN set -eu; \
    export DEBIAN_FRONTEND=noninteractive; \
    packages="ca-certificates cosign gnupg skopeo netavark"; \
    command -v python3 >/dev/null || packages="$packages python3"; \
    apt-get update; \
    apt-get install -y --no-install-recommends $packages; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/*; \
    cosign version >/dev/null; skopeo --version; gpg --version | head -n 1
COPY --from=build /opt/venv /opt/venv
# The venv's python resolves here (same base as the build stage), proton still has SSL (its
# libraries are in this stage too), the schema is found where it was installed, and every command
# starts (pip compiled the installed modules).
RUN set -eu; \
    /opt/venv/bin/python -c 'import proton, sys; sys.exit(0 if proton.SSL.present() else "proton lacks SSL")'; \
    /opt/venv/bin/python -c 'from signaction.config import load_schema; load_schema()'; \
    /opt/venv/bin/container-sign --help >/dev/null; \
    for cmd in pubtools-sign-msg-container-sign pubtools-sign-msg-clear-sign \
               pubtools-sign-msg-blob-sign pubtools-sign-cosign-container-sign; do \
      "/opt/venv/bin/$cmd" --help >/dev/null; \
    done
# Metadata last: other label values do not invalidate the cached layers above.
ARG IMAGE_SOURCE=""
ARG IMAGE_LICENSES=""
ARG IMAGE_DESCRIPTION="Sign container images with atomic GPG signatures (a local key, or a remote signing server over an AMQP 1.0 bus, wire-compatible with pubtools-sign) or cosign"
LABEL org.opencontainers.image.title="container-sign-action" \
      org.opencontainers.image.description="${IMAGE_DESCRIPTION}" \
      org.opencontainers.image.source="${IMAGE_SOURCE}" \
      org.opencontainers.image.licenses="${IMAGE_LICENSES}"
# The venv's commands on PATH (container-sign, and pubtools-sign's four for pipelines that call them)
ENV PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH
ENTRYPOINT ["/opt/venv/bin/container-sign"]
