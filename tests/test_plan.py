"""The plan: every image checked and named when wrong, duplicates collapsed, keys resolved."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest

from signaction.errors import InputError
from signaction.inputs import parse_inputs
from signaction.plan import build_plan
from signaction.reference import parse_reference

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def plan(argv, env=None, aliases=None):
    return build_plan(parse_inputs(argv, env or {}), aliases or {})


def test_references_and_digests_pair_by_position_and_keys_multiply():
    p = plan(["--reference", "r.io/ns/a:1", "--digest", D1, "--reference", "r.io/ns/b:2",
              "--digest", D2, "--signing-key", "K1", "--signing-key", "K2"])
    assert [(str(i.image.reference), i.image.digest, i.key.key) for i in p.items()] == [
        ("r.io/ns/a:1", D1, "K1"), ("r.io/ns/a:1", D1, "K2"),
        ("r.io/ns/b:2", D2, "K1"), ("r.io/ns/b:2", D2, "K2")]
    assert len(p) == 4


def test_all_three_sources_combine(tmp_path):
    f = tmp_path / "images.json"
    f.write_text(json.dumps([{"reference": "r.io/c:3", "digest": D2}]))
    p = plan(["--signing-key", "K", "--images-file", str(f)],
             {"INPUT_REFERENCES": "r.io/a:1", "INPUT_DIGESTS": D1,
              "INPUT_IMAGES": f"r.io/b:2@{D1}\n"})
    assert [str(i.reference) for i in p.images] == ["r.io/a:1", "r.io/b:2", "r.io/c:3"]


def test_exact_duplicates_collapse_but_one_identity_may_have_many_digests():
    p = plan(["--signing-key", "K", "--image", f"r.io/a:1@{D1}", "--image", f"r.io/a:1@{D1}",
              "--image", f"r.io/a:1@{D2}"])
    assert [(str(i.reference), i.digest) for i in p.images] == [("r.io/a:1", D1), ("r.io/a:1", D2)]
    assert p.duplicates == 1


def test_key_aliases_resolve_and_names_pair():
    p = plan(["--reference", "r.io/a:1", "--digest", D1, "--signing-key", "prod",
              "--signing-key", "ABCD", "--signing-key-name", "release", "--signing-key-name",
              "beta"], aliases={"prod": "199e2f91fd431d51"})
    assert [(k.given, k.key, k.name) for k in p.keys] == [
        ("prod", "199e2f91fd431d51", "release"), ("ABCD", "ABCD", "beta")]


BAD_LINES = [
    ("ns/app:1", "input 'images' line 2: 'ns/app:1@sha256:", "is not fully qualified"),
    ("r.io/ns/app", "input 'images' line 2: 'r.io/ns/app@", "has no tag"),
    ("r.io/ns/App:1", "input 'images' line 2: ", "must be lowercase"),
]


@pytest.mark.parametrize("ref,prefix,problem", BAD_LINES)
def test_a_bad_image_line_is_named(ref, prefix, problem):
    env = {"INPUT_IMAGES": f"r.io/ok:1@{D1}\n{ref}@{D2}\n", "INPUT_SIGNING-KEYS": "K"}
    with pytest.raises(InputError) as err:
        plan([], env)
    assert str(err.value).startswith(prefix) and problem in str(err.value), str(err.value)


@pytest.mark.parametrize("digest,problem", [
    ("sha256:" + "A" * 64, "must be lowercase hex"),
    ("sha512:" + "a" * 128, "only sha256 digests are supported"),
    ("sha256:abc", "is not sha256: followed by 64 hex characters"),
    ("1" * 64, "is not sha256: followed by 64 hex characters"),
])
def test_a_bad_digest_is_named(digest, problem):
    with pytest.raises(InputError) as err:
        plan(["--reference", "r.io/a:1", "--digest", D1, "--reference", "r.io/b:1", "--digest",
              digest, "--signing-key", "K"])
    assert str(err.value).startswith("--reference #2: digest ") and problem in str(err.value)


def test_an_image_without_digest_waits_for_the_registry():
    p = plan(["--image", "r.io/a:1", "--signing-key", "K"])
    assert p.images[0].digest is None and str(p.images[0].reference) == "r.io/a:1"


def test_identity_syntax_in_lines_flags_and_files(tmp_path):
    listing = tmp_path / "images.yaml"
    listing.write_text(f"- reference: stage.io/s/app:1\n  digest: {D1}\n"
                       "  identity: r.io/pub/app:1.0\n")
    p = plan(["--image", f"stage.io/s/app:1@{D1} as r.io/pub/app:1.0",
              "--reference", "stage.io/s/app:2", "--digest", D1, "--identity", "r.io/pub/app:2",
              "--images-file", str(listing), "--signing-key", "K"])
    got = [(str(i.reference), str(i.source), i.digest) for i in p.images]
    assert got == [("r.io/pub/app:2", "stage.io/s/app:2", D1),
                   ("r.io/pub/app:1.0", "stage.io/s/app:1", D1)]
    assert p.duplicates == 1  # the line and the file entry say the same thing


def test_identity_errors_are_named():
    with pytest.raises(InputError, match=r"^--image #1: nothing after ' as '"):
        plan(["--image", f"r.io/a:1@{D1} as ", "--signing-key", "K"])
    with pytest.raises(InputError, match=r"^--image #1: .*tag"):
        plan(["--image", f"r.io/a:1@{D1} as r.io/b", "--signing-key", "K"])
    with pytest.raises(InputError, match=r"--identity has 2 value\(s\) but --reference has 1"):
        plan(["--reference", "r.io/a:1", "--digest", D1, "--identity", "r.io/b:1",
              "--identity", "r.io/c:1", "--signing-key", "K"])


def test_a_digest_inside_a_reference_is_refused():
    with pytest.raises(InputError, match="give the digest separately"):
        plan(["--reference", f"r.io/a:1@{D1}", "--digest", D1, "--signing-key", "K"])


def test_counts_must_pair():
    with pytest.raises(InputError, match=r"^--reference has 2 value\(s\) but --digest has 1"):
        plan(["--reference", "r.io/a:1", "--reference", "r.io/b:1", "--digest", D1,
              "--signing-key", "K"])
    with pytest.raises(InputError, match=r"^input 'signing-key-names' has 2 value\(s\) but "
                                         r"--signing-key has 1"):
        plan(["--image", f"r.io/a:1@{D1}", "--signing-key", "K"],
             {"INPUT_SIGNING-KEY-NAMES": "a\nb"})


def test_nothing_to_sign_and_no_key():
    with pytest.raises(InputError, match="^nothing to sign"):
        plan(["--signing-key", "K"])
    with pytest.raises(InputError, match="^no signing key"):
        plan(["--image", f"r.io/a:1@{D1}"])


@pytest.mark.parametrize("content,problem", [
    ('[{"reference": "r.io/a:1", "digest": "%s"}, {"reference": "r.io/b:1", "digest": 5}]' % D1,
     "entry 2: digest is not a string"),
    ('[{"reference": "r.io/a:1", "digest": "%s", "tag": "x"}]' % D1,
     "entry 1: unknown key 'tag' (allowed: reference, digest, identity)"),
    ('{"images": []}', "must hold a list of {reference, digest} entries"),
    ("- reference: r.io/a:1\n  digest: %s\n- [oops\n" % D1, "line 4, column 1: did not find"),
    ("- reference: ns/a:1\n  digest: %s\n" % D1, "entry 1: 'ns/a:1' is not fully qualified"),
    ("- just a string\n", "entry 1: must be a mapping with reference and digest"),
])
def test_bad_images_files_are_named(tmp_path, content, problem):
    f = tmp_path / "images.yaml"
    f.write_text(content)
    with pytest.raises(InputError) as err:
        plan(["--images-file", str(f), "--signing-key", "K"])
    assert str(err.value).startswith(f"--images-file {f}") and problem in str(err.value), \
        str(err.value)


def test_a_missing_images_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        plan(["--images-file", str(tmp_path / "none.yaml"), "--signing-key", "K"])


def test_a_large_yaml_images_file(tmp_path):
    lines = [f"- reference: r.io/ns/app{n}:v1\n  digest: sha256:{n:064x}\n" for n in range(10_000)]
    f = tmp_path / "images.yaml"
    f.write_text("".join(lines))
    p = plan(["--images-file", str(f), "--signing-key", "K"])
    assert len(p.images) == 10_000
    assert p.images[-1].digest == f"sha256:{9999:064x}"
    assert p.images[-1].origin.endswith("entry 10000")


@pytest.mark.parametrize("ref", ["r.io/a:1", "127.0.0.1:5000/ns/a:v1", "localhost/a/b/c:x",
                                 "r.io/a__b/c-d.e:Tag_1.0-rc"])
def test_valid_references(ref):
    parsed, digest = parse_reference(ref)
    assert str(parsed) == ref and digest is None


@pytest.mark.parametrize("ref", ["r.io/../etc:1", "r.io/a//b:1", "r.io/./a:1", "r.io/a/:1",
                                 "r.io/a:", "r.io/a:-x", "r.io/a b:1", "/a:1", "r.io:x/a:1",
                                 "r.io/a\n:1"])
def test_invalid_references(ref):
    with pytest.raises(InputError):
        parse_reference(ref)


FAST_PATH_CASES = [
    "- reference: r.io/a:1\n  digest: sha256:%s\n" % ("1" * 64),
    "---\n# images\n- reference: 'r.io/a:1'\n  digest: \"sha256:%s\"  # comment\n\n"
    "-   digest: sha256:%s\n    reference: r.io/b:2\n" % ("1" * 64, "2" * 64),
    "- reference: r.io/a:1\n  digest: sha256:%s\n- reference: r.io/b:2\n" % ("1" * 64),
]
SLOW_PATH_CASES = [
    "- reference: r.io/a:1\n   digest: sha256:1\n",  # deeper indent: a YAML error or other shape
    "- reference: r.io/a:1\n  digest: sha256:1\n  digest: sha256:2\n",  # duplicate key
    "- reference: r.io/a:1 # c\n  digest: 'it''s'\n",  # an escape inside quotes
    "- {reference: r.io/a:1, digest: x}\n",  # flow mapping
    "images:\n  - reference: r.io/a:1\n",  # not a top-level list
    "- reference: r.io/a:1\n  tag: x\n",  # another key
    "- reference: null\n  digest: true\n",
    "- reference: r.io/a:1\n  digest: 1:20\n",  # YAML 1.1 reads 1:20 as the integer 80
    "- reference: 'r.io/a:1\"\n",  # unbalanced quotes
    "",
]


@pytest.mark.parametrize("text", FAST_PATH_CASES)
def test_fast_images_file_parser_agrees_with_yaml(text):
    import yaml

    from signaction.plan import _fast_yaml_list
    fast = _fast_yaml_list(text)
    assert fast is not None  # the fast path took it
    assert fast == yaml.safe_load(text)


@pytest.mark.parametrize("text", SLOW_PATH_CASES)
def test_fast_images_file_parser_leaves_anything_else_to_yaml(text):
    from signaction.plan import _fast_yaml_list
    assert _fast_yaml_list(text) is None


# -- hardening (issue 10): images files bounded, duplicate keys, special files; digest messages

def images_file(tmp_path, content: str, name: str = "images.yaml"):
    f = tmp_path / name
    f.write_text(content)
    return f


def plan_error(argv) -> str:
    start = time.monotonic()
    with pytest.raises(InputError) as err:
        plan(argv)
    assert time.monotonic() - start < 0.5  # never a hang
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("content,name,problem", [
    ("- reference: r.io/a:1\n  x0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"  x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)),
     "bomb.yaml", "entry 1: more than 5,000,000 values"),
    ("- &e [" + ", ".join(["x"] * 10) + "]\n" + "".join(
        f"- &e{i} [{', '.join(['*e' if i == 0 else f'*e{i - 1}'] * 10)}]\n" for i in range(9)),
     "bomb2.yaml", "more than 5,000,000 values"),
    ("- &x [*x]\n", "loop.yaml", "alias *x is used inside the node it names"),
    ("[" * 500 + "]" * 500, "deep.json", "entry 1: nested deeper than 32 levels"),
    ("[" * 100_000 + "]" * 100_000, "deeper.json", "nested deeper than 32 levels"),
    ("[{\"reference\": " + "[" * 500 + "]" * 500 + "}]", "deep-entry.json",
     "entry 1: nested deeper than 32 levels"),
    ("- reference: " + "[" * 500 + "]" * 500 + "\n", "deep.yaml",
     "entry 1: nested deeper than 32 levels"),
    ("- " * 500 + "x\n", "deep-block.yaml", "entry 1: nested deeper than 32 levels"),
])
def test_images_file_bombs_and_depth_are_refused_quickly(tmp_path, content, name, problem):
    """Item 8, for images files: JSON, the usual YAML shape and any other YAML."""
    f = images_file(tmp_path, content, name)
    message = plan_error(["--images-file", str(f), "--signing-key", "K"])
    assert message.startswith(f"--images-file {f}") and problem in message, message


@pytest.mark.parametrize("content,name,expected", [
    (f"- reference: r.io/a:1\n  digest: {D1}\n- reference: r.io/b:1\n  digest: {D1}\n"
     f"  digest: {D2}\n", "images.yaml", "entry 2: duplicate key 'digest' (line 5, column 3)"),
    (f"- reference: r.io/a:1\n  reference: r.io/b:1\n  digest: {D1}\n", "images.yaml",
     "entry 1: duplicate key 'reference' (line 2, column 3)"),
    (f"- {{reference: r.io/a:1, digest: {D1}, 'digest': {D2}}}\n", "flow.yaml",
     "entry 1: duplicate key 'digest' (line 1, column "),
    (f"- reference: r.io/a:1\n  digest: {D1}\n  \"digest\": {D2}\n", "quoted.yaml",
     "entry 1: duplicate key 'digest' (line 3, column 3)"),
    (json.dumps([{"reference": "r.io/a:1", "digest": D1}])[:-1] +
     f', {{"reference": "r.io/b:1", "digest": "{D1}", "digest": "{D2}"}}]', "images.json",
     "entry 2: duplicate key 'digest'"),
    ('{"images": [], "images": []}', "top.json", "duplicate key 'images'"),
])
def test_duplicate_keys_in_images_files_are_refused_naming_the_entry(tmp_path, content, name,
                                                                    expected):
    """Item 9: a reviewer reads the first digest, the tool signed the second."""
    f = images_file(tmp_path, content, name)
    message = plan_error(["--images-file", str(f), "--signing-key", "K"])
    assert message.startswith(f"--images-file {f}") and expected in message, message


def test_the_fast_path_leaves_a_repeated_key_to_yaml_which_refuses(tmp_path):
    from signaction.plan import _fast_yaml_list
    text = "".join(f"- reference: r.io/ns/a{n}:1\n  digest: sha256:{n:064x}\n"
                   for n in range(1000)) + f"  digest: {D2}\n"
    assert _fast_yaml_list(text) is None
    message = plan_error(["--images-file", str(images_file(tmp_path, text)), "--signing-key",
                          "K"])
    assert "entry 1000: duplicate key 'digest' (line 2001, column 3)" in message, message


def test_images_files_are_regular_files_of_bounded_size(tmp_path, monkeypatch):
    """Item 10 (a FIFO hung, /dev/zero was read until memory ran out: end to end below)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "images.sock"))
    for path, problem in [(tmp_path / "images.sock", "is a socket, not a regular file"),
                          (tmp_path, "is a folder, not a file"),
                          (tmp_path / "none.yaml", "file not found")]:
        assert plan_error(["--images-file", str(path), "--signing-key", "K"]) == \
            f"--images-file {path}: {problem}"
    from signaction import plan as planning  # 100,000 long entries fit twice in the real cap
    entry = "- reference: registry.example.com/namespace/application-99999:v1.2.3\n" \
            f"  digest: sha256:{'f' * 64}\n  identity: registry.example.com/ns/app-99999:1.0\n"
    assert len(entry) * 100_000 * 2 < planning.IMAGES_FILE_BYTES
    monkeypatch.setattr("signaction.plan.IMAGES_FILE_BYTES", 1 << 20)
    big = images_file(tmp_path, f"- reference: r.io/a:1\n  digest: {D1}\n" * 30_000)
    assert plan_error(["--images-file", str(big), "--signing-key", "K"]) == \
        f"--images-file {big}: larger than 1 MiB"
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"- reference: r.io/\xe9:1\n")
    assert "not UTF-8 text" in plan_error(["--images-file", str(latin), "--signing-key", "K"])
    sock.close()


@pytest.mark.parametrize("value,problem", [
    ("r.io/a:1@sha256:abc", "digest 'sha256:abc' is not sha256: followed by 64 hex characters"),
    (f"r.io/a:1@sha256:{'A' * 64}", "must be lowercase hex"),
    (f"r.io/a:1@sha512:{'a' * 128}", "only sha256 digests are supported"),
    ("r.io/a:1@", "digest '' is not sha256: followed by 64 hex characters"),
    (f"r.io/a:1@{'1' * 64}", "is not sha256: followed by 64 hex characters"),
    ("r.io/a:1@sha256:abc as r.io/b:1", "digest 'sha256:abc' is not sha256"),
])
def test_an_image_with_a_bad_digest_says_what_is_wrong_with_the_digest(tmp_path, value, problem):
    """Item 17: not only "is not a valid docker reference"."""
    message = plan_error(["--image", value, "--signing-key", "K"])
    assert message.startswith("--image #1: ") and problem in message, message
    f = images_file(tmp_path, f"- reference: '{value.split(' as ')[0]}'\n")
    message = plan_error(["--images-file", str(f), "--signing-key", "K"])
    assert message.startswith(f"--images-file {f} entry 1: ") and problem in message, message


def test_a_duplicate_key_in_an_images_file_end_to_end(tmp_path):
    from test_config import invalid_run
    f = images_file(tmp_path, f"- reference: r.io/a:1\n  digest: {D1}\n  digest: {D2}\n")
    line = invalid_run(tmp_path, "--images-file", str(f), secret=D2)
    assert line == f"error: --images-file {f} entry 1: duplicate key 'digest' (line 3, column 3)"


def test_a_fifo_or_dev_zero_as_images_file_end_to_end(tmp_path):
    from test_config import invalid_run
    os.mkfifo(tmp_path / "fifo.json")
    line = invalid_run(tmp_path, "--images-file", str(tmp_path / "fifo.json"), timeout=20)
    assert line.endswith("fifo.json: is a named pipe (FIFO), not a regular file")
    line = invalid_run(tmp_path, "--images-file", "/dev/zero")
    assert line == "error: --images-file /dev/zero: is a character device, not a regular file"
