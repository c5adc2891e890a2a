# The action's image. Completed by the shipping work (multi-stage build, proton with SSL, cosign);
# for now it runs the gpg signer. GitHub docker actions need root and the mounted workspace: no
# USER, no WORKDIR. BASE_IMAGE lets a build use a locally made base where no registry is reachable.
ARG BASE_IMAGE=python:3.11-slim-trixie
FROM ${BASE_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends gnupg \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt /opt/container-sign-action/requirements.txt
RUN python3 -m pip install --no-cache-dir --no-deps -r /opt/container-sign-action/requirements.txt
COPY entrypoint.py /opt/container-sign-action/
COPY signaction /opt/container-sign-action/signaction
COPY signers /opt/container-sign-action/signers
COPY schemas /opt/container-sign-action/schemas
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["/usr/local/bin/python3", "/opt/container-sign-action/entrypoint.py"]
