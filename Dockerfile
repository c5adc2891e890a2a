# The action's image. The shipping work (issue 5) completes and proves it (cosign, buildah run
# tests); this version builds the wheels in a first stage, with the compilers python-qpid-proton
# needs, and keeps compilers out of the final stage. GitHub docker actions need root and the
# mounted workspace: no USER, no WORKDIR. BASE_IMAGE lets a build use a locally made base where no
# image registry is reachable.
ARG BASE_IMAGE=python:3.11-slim-trixie

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /tmp/requirements.txt
RUN python3 -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels -r /tmp/requirements.txt

FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends gnupg \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN python3 -m pip install --no-cache-dir --no-deps --no-index /wheels/*.whl && rm -rf /wheels \
 && python3 -c 'import proton, sys; sys.exit(0 if proton.SSL.present() else "proton lacks SSL")'
COPY entrypoint.py /opt/container-sign-action/
COPY signaction /opt/container-sign-action/signaction
COPY signers /opt/container-sign-action/signers
COPY schemas /opt/container-sign-action/schemas
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["/usr/local/bin/python3", "/opt/container-sign-action/entrypoint.py"]
