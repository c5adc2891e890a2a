"""sigstore-python 4.5.1, an independent reader of the keyless bundles the project writes, in a
venv of its own.

``ensure_sigstore_python()`` creates the venv once (pip from the package index: the first run
needs it, later runs use the cache in ``<repo>/.cache/``). ``verify_dsse_bundles(bundles,
trusted_root, identity, issuer)`` judges bundles offline, in one process, as a sigstore-python
user does: ``Verifier(trusted_root=TrustedRoot.from_file(...)).verify_dsse(bundle,
policy.Identity(identity=..., issuer=...))`` (certificate chain at the log's integrated time,
embedded SCT against the trusted root's ctlogs, identity and issuer, inclusion proof, signed
checkpoint and SET, the DSSE signature, the ``dsse`` 0.0.1 body against the envelope), then
what ``verify_dsse`` leaves to its caller: the payload is an in-toto Statement naming the
expected digest among its subjects.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

VERSION = "4.5.1"
ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".cache" / f"sigstore-python-{VERSION}"
# Everything pinned (as resolved on 2026-12-07), so every machine judges with the same code.
REQUIREMENTS = (
    f"sigstore=={VERSION}", "annotated-types==0.8.0", "certifi==2026.10.19.post1",
    "cffi==2.1.1", "charset-normalizer==3.5.3", "cryptography==51.0.1", "dnspython==2.9.2",
    "email-validator==2.4.0", "id==1.6.1", "idna==3.21", "markdown-it-py==4.3.0",
    "mdurl==0.1.2", "platformdirs==4.14.9", "pycparser==3.12", "pydantic==2.14.4",
    "pydantic_core==2.50.5", "Pygments==2.21.0", "PyJWT==2.15.1", "requests==2.34.2",
    "rfc3161-client==1.0.9", "rfc8785==0.1.4", "rich==15.0.0", "securesystemslib==1.6.0",
    "sigstore-models==0.0.6", "sigstore-rekor-types==0.0.18", "tuf==7.0.1",
    "typing-inspection==0.4.5", "typing_extensions==4.16.0", "urllib3==2.8.0",
)
_INSTALLED = VENV / ".installed"  # written last (the venv is complete), holds REQUIREMENTS
_PINS = "\n".join(REQUIREMENTS) + "\n"
_LOCK = VENV.parent / f"sigstore-python-{VERSION}.lock"

# Run in the venv: JSON on stdin ({"trusted_root", "identity", "issuer", "digest", "bundles":
# {name: bundle JSON text}}), JSON on stdout ({name: null when verified, else the reason}).
_VERIFY = r"""
import json, sys
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier, policy

job = json.load(sys.stdin)
verifier = Verifier(trusted_root=TrustedRoot.from_file(job["trusted_root"]))
identity = policy.Identity(identity=job["identity"], issuer=job["issuer"])
algorithm, _, value = job["digest"].partition(":")
verdicts = {}
for name, text in job["bundles"].items():
    try:
        kind, payload = verifier.verify_dsse(Bundle.from_json(text), identity)
        if kind != "application/vnd.in-toto+json":
            raise ValueError(f"payload type {kind}")
        subjects = json.loads(payload)["subject"]
        if not any(s.get("digest", {}).get(algorithm) == value for s in subjects):
            raise ValueError(f"the Statement does not name {job['digest']}")
        verdicts[name] = None
    except Exception as e:  # every refusal is a verdict
        verdicts[name] = f"{type(e).__name__}: {e}"
json.dump(verdicts, sys.stdout)
"""


def ensure_sigstore_python(timeout: float = 900) -> Path:
    """The python of a venv holding sigstore-python, made once (again when REQUIREMENTS
    change); the first process to get the lock makes it, the others wait and use it."""
    python = VENV / "bin" / "python"
    if _pins_installed():
        return python
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _pins_installed():
            return python
        shutil.rmtree(VENV, ignore_errors=True)  # a half-made venv from an interrupted run
        made = [[getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(VENV)],
                [str(python), "-m", "pip", "install", "--quiet",
                 "--disable-pip-version-check", *REQUIREMENTS],
                [str(python), "-c", "import sigstore.verify"]]  # it imports: it is whole
        for argv in made:
            step = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            if step.returncode:
                shutil.rmtree(VENV, ignore_errors=True)
                raise RuntimeError(f"installing sigstore-python {VERSION}: {argv[1:4]} exited "
                                   f"{step.returncode}:\n{step.stdout[-3000:]}"
                                   f"{step.stderr[-3000:]}")
        _INSTALLED.write_text(_PINS)
    return python


def _pins_installed() -> bool:
    try:
        return _INSTALLED.read_text() == _PINS
    except OSError:
        return False


def verify_dsse_bundles(bundles: Mapping[str, bytes], trusted_root: str | Path, identity: str,
                        issuer: str, digest: str,
                        timeout: float = 120) -> dict[str, str | None]:
    """Each of ``bundles`` (name -> bundle JSON) judged offline by sigstore-python as a
    signature of ``digest`` (``sha256:<hex>``) by ``identity`` from ``issuer``, trusting only
    ``trusted_root`` (a trusted_root.json): name -> None (verified) or why it was refused."""
    job = {"trusted_root": str(trusted_root), "identity": identity, "issuer": issuer,
           "digest": digest, "bundles": {k: v.decode() for k, v in bundles.items()}}
    proc = subprocess.run([str(ensure_sigstore_python()), "-c", _VERIFY], input=json.dumps(job),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"sigstore-python exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)
