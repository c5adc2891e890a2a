"""The plan's per-image memory (issue 26 item 2): an Image keeps a sha256 digest as its 32 bytes
and an images file entry's origin as the file's label and the entry's number, and still reads,
compares, hashes, prints and pickles as the frozen dataclass of its five fields did; duplicates
collapse as before, and the Recorder finds an item's positions in the plan through a table of
positions (``results.Positions``), not a dict and an int per image. A plan of 20,000 images
stays under 400 bytes an image (tracemalloc: 465 before)."""

from __future__ import annotations

import dataclasses
import gc
import json
import pickle
import tracemalloc

import pytest

from signaction.inputs import parse_inputs
from signaction.plan import Image, build_plan
from signaction.reference import parse_reference
from signaction.results import Positions

D1 = "sha256:" + "1f" * 32
REF = parse_reference("r.io/ns/app:1.0")[0]
OTHER = parse_reference("r.io/ns/other:1.0")[0]


def plan_of(tmp_path, entries, *argv):
    listing = tmp_path / "images.json"
    listing.write_text(json.dumps(entries))
    return build_plan(parse_inputs(["--signing-key", "K", "--images-file", str(listing),
                                    *argv], {}), {})


@pytest.mark.parametrize("digest", [D1, None, "sha256:" + "AB" * 32, "sha256:abc",
                                    "sha512:" + "ab" * 32, "sha256:" + "zz" * 32])
def test_the_digest_reads_back_as_given(digest):
    image = Image(REF, digest, "test")
    assert image.digest == digest
    if digest == D1:
        assert isinstance(image._digest, bytes) and len(image._digest) == 32
    else:
        assert image._digest == digest  # not a canonical sha256: kept as it is


def test_an_image_is_the_frozen_dataclass_it_was():
    a = Image(REF, D1, "input 'images' line 2", OTHER, "linux/arm64")
    b = Image(REF, D1, "input 'images' line 2", OTHER, "linux/arm64")
    assert a == b and hash(a) == hash(b) and a is not b
    assert (a.reference, a.digest, a.origin, a.location, a.platform) == \
        (REF, D1, "input 'images' line 2", OTHER, "linux/arm64")
    assert a != Image(REF, D1, "input 'images' line 3", OTHER, "linux/arm64")
    assert a != Image(REF, D1.replace("1f", "2f"), "input 'images' line 2", OTHER,
                      "linux/arm64")
    assert a.__eq__(object()) is NotImplemented
    assert repr(a) == (f"Image(reference={REF!r}, digest={D1!r}, origin=\"input 'images' "
                       f"line 2\", location={OTHER!r}, platform='linux/arm64')")
    assert a.source == OTHER and Image(REF, D1, "x").source == REF
    assert not hasattr(a, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.digest = D1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.reference = OTHER  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del a.platform
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(ValueError, match="never resolved"):
        _ = Image(REF, None, "x").known_digest


def test_an_entrys_origin_is_made_when_read_and_equals_the_string(tmp_path):
    p = plan_of(tmp_path, [{"reference": "r.io/ns/a:1", "digest": D1},
                           {"reference": "r.io/ns/b:2", "digest": D1,
                            "identity": "r.io/prod/b:2"}])
    label = f"--images-file {tmp_path / 'images.json'}"
    assert [i.origin for i in p.images] == [f"{label} entry 1", f"{label} entry 2"]
    first = p.images[0]
    assert first._origin == label and first._entry == 1
    assert first == Image(first.reference, D1, f"{label} entry 1")  # the same fields
    assert hash(first) == hash(Image(first.reference, D1, f"{label} entry 1"))
    assert str(p.images[1].location) == "r.io/ns/b:2"


def test_duplicates_collapse_to_the_first_given(tmp_path):
    entries = [{"reference": "r.io/ns/a:1", "digest": D1},
               {"reference": "r.io/ns/b:1", "digest": D1},
               {"reference": "r.io/ns/a:1", "digest": D1},  # the first again
               {"reference": "r.io/ns/a:1", "digest": D1, "identity": "r.io/ns/a:1"},  # same
               {"reference": "r.io/ns/c:1", "digest": D1, "identity": "r.io/ns/a:1"}]  # not
    p = plan_of(tmp_path, entries)
    assert [(str(i.reference), i.origin.rsplit(" ", 1)[1]) for i in p.images] == [
        ("r.io/ns/a:1", "1"), ("r.io/ns/b:1", "2"), ("r.io/ns/a:1", "5")]
    assert p.duplicates == 2


def test_the_recorders_positions_find_every_equal_thing_in_order():
    things = ["a", "b", "a", "c", "a"] + [f"x{i}" for i in range(100)]
    positions = Positions(things)
    assert positions.find("a") == [0, 2, 4]
    assert positions.find("c") == [3] and positions.find("x99") == [104]
    assert positions.find("nothing") == [] and Positions([]).find("a") == []
    images = [Image(REF, D1, "one"), Image(OTHER, D1, "two"), Image(REF, D1, "one")]
    assert Positions(images).find(Image(REF, D1, "one")) == [0, 2]  # equal, not the same


def test_a_plan_of_20000_images_takes_under_400_bytes_an_image(tmp_path):
    n = 20_000
    listing = tmp_path / "images.json"
    listing.write_text(json.dumps([{"reference": f"127.0.0.1:5000/bench/app-{i % 200}:v{i}",
                                    "digest": f"sha256:{i:064x}"} for i in range(n)]))
    inputs = parse_inputs(["--signing-key", "K", "--images-file", str(listing)], {})
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        p = build_plan(inputs, {})
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(p.images) == n
    assert used / n < 400, f"{used / n:.0f} bytes an image"
