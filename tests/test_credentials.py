"""Credentials in a lookaside URL never leave the run, and a lookaside URL is a URL a consumer
can use (issue 22 item 4, issue 23 item 1)."""

from __future__ import annotations

import random

import pytest

from conftest import run_entrypoint
from signaction.errors import InputError
from signaction.inputs import parse_inputs
from signaction.urls import has_userinfo, without_userinfo

DIGEST = "sha256:" + "cd" * 32
SECRET = "s3cr3t-Pa55"


def test_a_lookaside_url_with_credentials_is_written_nowhere(tmp_path, gpg_keys):
    out = tmp_path / "out"
    url = f"https://robot:{SECRET}@lookaside.example.com/sigs/{{registry}}"
    run = run_entrypoint("--signer", "gpg", "--signing-key", gpg_keys.a, "--no-skip-signed",
                         "--lookaside-url", url, "--image", f"r.io/ns/app:1@{DIGEST}",
                         "--output-dir", str(out), env=gpg_keys.env(), timeout=120)
    assert run.returncode == 0, run.stderr
    assert SECRET not in run.stdout + run.stderr
    assert "nodes need credentials of their own" in run.stderr, run.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files
    leaked = [str(p) for p in files if SECRET.encode() in p.read_bytes()
              or b"robot:" in p.read_bytes()]
    assert not leaked, leaked
    # the cluster files still name the published lookaside, without the userinfo
    named = [p for p in files if b"https://lookaside.example.com/sigs/r.io" in p.read_bytes()]
    assert any("openshift" in str(p) for p in named), [str(p) for p in files]


def _hostile(rng: random.Random) -> str:
    """A lookaside URL no consumer should be given: another scheme, a control character or
    white space somewhere, no host, or far too long."""
    good = "https://sigs.example.com/{registry}/x"
    kind = rng.choice(["scheme", "control", "space", "nohost", "long", "noscheme", "at"])
    if kind == "scheme":
        return rng.choice(["ftp", "javascript", "gopher", "data", "ldap", "x-y"]) + \
            good[5:]
    if kind == "control":
        at = rng.randrange(len(good))
        return good[:at] + rng.choice(["\n", "\r", "\t", "\x00", "\x1b", "\x7f", "\x85", "\x9b",
                                       "\u200e", "\ufeff"]) + good[at:]
    if kind == "space":
        at = rng.randrange(8, len(good))
        return good[:at] + rng.choice([" ", "\u00a0", "\u2028"]) + good[at:]
    if kind == "nohost":
        return rng.choice(["https:///path", "http://", "https://?x", "http://#frag"])
    if kind == "long":
        return good + "a" * 3000
    if kind == "at":  # a raw '@' in the password: parsers disagree where the host starts
        return rng.choice(["https://u:p@ss@h/x", "http://a@b@c:1/{registry}"])
    return rng.choice(["sigs.example.com/x", "/srv/sigs", "::error::x", "C:\\sigs"])


@pytest.mark.parametrize("seed", range(40))
def test_hostile_lookaside_urls_are_refused_by_name_without_quoting(seed):
    url = _hostile(random.Random(seed))
    with pytest.raises(InputError) as e:
        parse_inputs(["--lookaside-url", url], {})
    assert str(e.value).startswith("--lookaside-url: "), e.value
    assert url not in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(InputError, match="^input 'lookaside-url': "):
        parse_inputs([], {"INPUT_LOOKASIDE-URL": url.replace("\n", "x") + " x"})


@pytest.mark.parametrize("url", ["https://sigs.example.com/{registry}", "file:///srv/sigs",
                                 "http://127.0.0.1:8080/sigs/{registry}",
                                 "https://u:p@[::1]:8443/s"])
def test_usable_lookaside_urls_are_taken(url):
    assert parse_inputs(["--lookaside-url", url], {}).lookaside_url == url


def test_a_bad_lookaside_url_stops_the_run_before_anything(tmp_path, gpg_keys):
    out = tmp_path / "out"
    run = run_entrypoint("--signer", "gpg", "--signing-key", gpg_keys.a, "--lookaside-url",
                         f"ftp://robot:{SECRET}@h/x", "--image", f"r.io/ns/app:1@{DIGEST}",
                         "--output-dir", str(out), env=gpg_keys.env(), timeout=60)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == ["error: --lookaside-url: not an https://, "
                                               "http:// or file:// URL (its scheme is 'ftp')"]
    assert SECRET not in run.stderr and not out.exists()


@pytest.mark.parametrize("url,stripped", [
    ("https://u:p@h/x", "https://h/x"), ("https://u@h/x@y", "https://h/x@y"),
    ("https://h/a@b", "https://h/a@b"), ("file:///x", "file:///x"),
    ("https://u:p@[::1]:1/{registry}", "https://[::1]:1/{registry}")])
def test_userinfo_is_what_comes_off(url, stripped):
    assert without_userinfo(url) == stripped
    assert has_userinfo(url) == (url != stripped)


def test_a_verified_signatures_url_is_kept_without_credentials():
    from signaction.plan import Image, SigningKey, WorkItem
    from signaction.reference import parse_reference
    from signaction.results import verdict_json
    from signaction.signing import VERIFIED, Verdict

    item = WorkItem(Image(parse_reference("r.io/ns/app:1")[0], DIGEST, "t"), SigningKey("k", "k"))
    where = f"https://robot:{SECRET}@sigs.example.com/ns/app@sha256=cd/signature-1"
    entry = verdict_json(item, Verdict(VERIFIED, f"signature-1 verifies at {where}",
                                       fields={"verified_signature": where}))
    assert SECRET not in str(entry), entry
    assert entry["verified_signature"].endswith("sigs.example.com/ns/app@sha256=cd/signature-1")


@pytest.mark.parametrize("url", ["https://u:p@ss@h/x", "http://a@b@c:1/{registry}"])
def test_a_raw_at_sign_in_the_userinfo_is_refused(url):
    """user:p@ss@host: the request splits at the last '@', a redactor at the first, and 'ss'
    would reach the cluster files; refused, with how to write it."""
    with pytest.raises(InputError, match="%40"):
        parse_inputs(["--lookaside-url", url], {})


@pytest.mark.parametrize("char", ["\x9b", "\x90", "\u200e", "\u202e", "\ufeff", "\U000e0001"])
def test_invisible_and_c1_characters_in_a_lookaside_url_are_refused(char):
    """C1 controls (\\x9b is CSI on some terminals), bidi and zero-width marks: a URL that
    shows as another one, or as nothing, in a log or a cluster file."""
    with pytest.raises(InputError, match="white space or control characters"):
        parse_inputs(["--lookaside-url", f"https://sigs.example.com/{char}x"], {})
