"""Wire formats and the trust decisions made on them: parse, build, verify. No I/O, no config,
no logging: what a signer or verify mode has read is handed in, and a verdict comes back, as a
``signaction.signing.Problem`` (or None: accepted).

- ``keys``: a signature over bytes with a PEM public key, as cosign and sigstore's logs make them.
- ``fulcio``: a Fulcio certificate: its chain to the configured roots under X.509 path
  validation (``cryptography.x509.verification``), its identity and OIDC issuer, its SCT.
- ``rekor``: a Rekor entry: its body is this signature, its signed entry timestamp, its
  inclusion proof and checkpoint.
"""
