"""signaction.shard_files without a signer: a shard's signature files in each of cosign's forms
(the legacy ``.sig`` with its ``.payload``, with a ``.sigstore.json`` bundle beside it, a bundle
alone) found where their entry says and copied into a merged folder with the first free
number, as the signing run named them."""

from __future__ import annotations

import os

import pytest

from signaction.artifacts import Artifacts
from signaction.reference import parse_reference
from signaction.shard_files import copy, sources

REF = "r.io/ns/app:1"
DIGEST = "sha256:" + "ab" * 32


class Shard:
    def __init__(self, root):
        self.folder = self.root = os.path.realpath(root)
        self.artifacts = Artifacts(self.root)
        self.folders: set[str] = set()


def _signed(shard: Shard, main: str, companions: dict[str, bytes]) -> dict:
    """One entry as CosignFormat.write names its files (``main``: the signature's suffix)."""
    path = shard.artifacts.write_signature("cosign", parse_reference(REF)[0], DIGEST,
                                           b"main" + main.encode(), suffix=main,
                                           companions=companions)
    stem = shard.artifacts.relative(path).removesuffix(main)
    row = {"reference": REF, "digest": DIGEST, "signing_key": "k", "status": "ok",
           "signature_path": stem + main}
    for suffix in companions:
        row[{".payload": "payload_path", ".sigstore.json": "bundle_path",
             ".crt": "certificate_path"}[suffix]] = stem + suffix
    if main == ".sigstore.json":
        row["bundle_path"] = stem + main  # (a bundle alone: the same file)
    return row


@pytest.mark.parametrize("main,companions", [
    (".sig", {".payload": b"payload"}),
    (".sig", {".payload": b"payload", ".sigstore.json": b"bundle", ".crt": b"pem"}),
    (".sigstore.json", {}),
], ids=["legacy", "both", "bundle"])
def test_each_form_is_copied_with_the_first_free_number(tmp_path, main, companions):
    shard = Shard(tmp_path / "shard")
    row = _signed(shard, main, companions)
    out = Artifacts(tmp_path / "out")
    earlier = _signed(Shard(tmp_path / "out"), main, companions)  # (a re-used folder: N=1 taken)
    assert earlier["signature_path"].endswith("/signature-1" + main)
    moved = copy(out, row, sources(shard, row))
    assert set(moved) == {k for k in row if k.endswith("_path")}
    for key, path in moved.items():
        assert "/signature-2." in path and path.rpartition("/")[0] == \
            row[key].rpartition("/")[0]
        assert (out.root / path).read_bytes() == (shard.artifacts.root / row[key]).read_bytes()
    if main == ".sigstore.json":
        assert moved["bundle_path"] == moved["signature_path"]
