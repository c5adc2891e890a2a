"""A TUF repository on loopback, laid out as sigstore's (consistent snapshots: ``N.root.json``,
``timestamp.json``, ``N.snapshot.json``, ``N.targets.json``, ``targets/<sha256>.<name>``),
serving the test bed's ``trusted_root.json`` and ``signing_config.v0.2.json``. Built with
python-tuf's metadata API (tuf.api.metadata) and keys of securesystemslib, the repository side
of the client the project reads it with.

``TufRepository(folder, targets)`` publishes version 1 of every role; ``initial_root`` is the
root a client starts from. Hostile and changing repositories for the tests: ``rotate_root``
(a root v2 signed by the old and the new root keys), ``publish`` (new target bytes, new
versions of targets, snapshot and timestamp), ``expire("timestamp")`` (re-signed, expired),
``tamper_target(name)`` (the file changed after signing), ``forge("targets")`` (signed by a
key the root does not name). ``requests`` lists the paths asked for (a cache test counts
them)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer

ROLES = ("root", "targets", "snapshot", "timestamp")


def _in(days: float) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


class TufRepository:
    def __init__(self, folder: Path, targets: dict[str, bytes]):
        self.folder = folder
        (folder / "targets").mkdir(parents=True, exist_ok=True)
        self.signers = {role: CryptoSigner.generate_ecdsa() for role in ROLES}
        self.targets = dict(targets)
        self.requests: list[str] = []
        root = Root(expires=_in(365), consistent_snapshot=True)
        for role, signer in self.signers.items():
            root.add_key(signer.public_key, role)
        self.root = Metadata(root)
        self._write_root([self.signers["root"]])
        self.initial_root = (folder / "1.root.json").read_bytes()
        self.versions = {"targets": 0, "snapshot": 0, "timestamp": 0}
        self.publish()
        self._server: ThreadingHTTPServer | None = None

    # -- publishing --------------------------------------------------------------------------

    def _write_root(self, signers: list[CryptoSigner]) -> None:
        self.root.signatures.clear()
        for signer in signers:
            self.root.sign(signer, append=True)
        self.root.to_file(str(self.folder / f"{self.root.signed.version}.root.json"),
                          JSONSerializer(compact=False))

    def publish(self, targets: dict[str, bytes] | None = None,
                targets_signer: CryptoSigner | None = None) -> None:
        """New target bytes (or the same again), then new versions of targets, snapshot and
        timestamp, signed by their keys (targets: by ``targets_signer`` if given)."""
        self.targets.update(targets or {})
        signed = Targets(version=self.versions["targets"] + 1, expires=_in(30))
        for name, data in self.targets.items():
            info = TargetFile.from_data(name, data, ["sha256"])
            signed.targets[name] = info
            (self.folder / "targets" / f"{info.hashes['sha256']}.{name}").write_bytes(data)
        self._write("targets", signed, targets_signer)
        self._write("snapshot", Snapshot(version=self.versions["snapshot"] + 1, expires=_in(7),
                                         meta={"targets.json": MetaFile(
                                             self.versions["targets"])}))
        self._timestamp(_in(1))

    def _timestamp(self, expires: datetime) -> None:
        self._write("timestamp", Timestamp(version=self.versions["timestamp"] + 1,
                                           expires=expires, snapshot_meta=MetaFile(
                                               self.versions["snapshot"])))

    def _write(self, role: str, signed, signer: CryptoSigner | None = None) -> None:
        md = Metadata(signed)
        md.sign(signer or self.signers[role])
        self.versions[role] = signed.version
        name = "timestamp.json" if role == "timestamp" else f"{signed.version}.{role}.json"
        md.to_file(str(self.folder / name), JSONSerializer(compact=False))

    def rotate_root(self) -> None:
        """Root v(N+1) with a new root key, signed by the old key and the new (TUF 5.3.4)."""
        old = self.signers["root"]
        new = CryptoSigner.generate_ecdsa()
        self.root.signed.revoke_key(old.public_key.keyid, "root")
        self.root.signed.add_key(new.public_key, "root")
        self.root.signed.version += 1
        self.signers["root"] = new
        self._write_root([old, new])

    def expire(self, role: str) -> None:
        """``timestamp`` re-signed already expired (a frozen or stale mirror)."""
        assert role == "timestamp"
        self._timestamp(_in(-1))

    def tamper_target(self, name: str) -> None:
        """The target's file changed on the mirror after the metadata signed its hash."""
        info = TargetFile.from_data(name, self.targets[name], ["sha256"])
        path = self.folder / "targets" / f"{info.hashes['sha256']}.{name}"
        data = path.read_bytes()  # one byte other, the length the same
        path.write_bytes(data[:-2] + (b" " if data[-2:-1] != b" " else b"\t") + data[-1:])

    def forge(self, role: str) -> None:
        """A new version of ``role`` (targets) listing a forged target, signed by a key the
        root does not name; snapshot and timestamp re-signed genuinely over it (a mirror that
        holds the snapshot and timestamp keys but not the targets key)."""
        assert role == "targets"
        self.publish({"trusted_root.json": b'{"forged": true}'}, CryptoSigner.generate_ecdsa())

    # -- serving -----------------------------------------------------------------------------

    def __enter__(self) -> TufRepository:
        repo = self

        class Handler(SimpleHTTPRequestHandler):
            disable_nagle_algorithm = True  # as Go's net/http: no delayed-ACK stall per answer

            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(repo.folder), **kwargs)

            def do_GET(self):
                repo.requests.append(self.path)
                super().do_GET()

            def log_message(self, format, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
