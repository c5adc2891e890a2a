"""What each tool this program starts gets from the environment: gpg (and the gpg-agent it starts),
gpgconf and cosign see an allowlist, never the action's inputs (INPUT_CONFIG may hold registry
passwords), GitHub's tokens, or a secret meant for another tool. Wrappers on PATH record the
environment of every call, then run the real tool (gpg) or stand in for it (cosign)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from conftest import run_entrypoint
from signers.tools import child_env

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64

# Secrets a CI job may well have in its environment, each meant for something else than gpg.
SECRETS = {
    "GITHUB_TOKEN": "ghp-github-token-SECRET",
    "ACTIONS_RUNTIME_TOKEN": "actions-runtime-SECRET",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "id-token-request-SECRET",
    "ACTIONS_ID_TOKEN_REQUEST_URL": "https://token.invalid/id-token-url-SECRET",
    "REGISTRY_PASSWORD": "registry-password-SECRET",  # a secret registry password
    "UNRELATED_SECRET": "unrelated-SECRET",
}
COSIGN_PASSWORD = "cosign-password-SECRET"
IN_CONFIG = "registry-password-in-config-SECRET"  # as GitHub substitutes ${{ secrets.X }}


def recorded(log: Path) -> list[tuple[list[str], dict[str, str]]]:
    """(argv, environment) of every call a recording wrapper saw."""
    calls = []
    for env_file in sorted(log.glob("env.*")):
        if env_file.suffix == ".argv":
            continue
        raw = env_file.read_bytes().split(b"\0")
        env = dict(item.decode().split("=", 1) for item in raw if item)
        argv = env_file.with_name(env_file.name + ".argv").read_text().split("\0")[:-1]
        calls.append((argv, env))
    return calls


def recording_wrapper(bindir: Path, log: Path, name: str, then: str) -> None:
    """``bindir/name``: records its environment (env -0) and argv in ``log``, then ``then``."""
    bindir.mkdir(exist_ok=True)
    log.mkdir(exist_ok=True)
    wrapper = bindir / name
    wrapper.write_text("#!/bin/sh\n"
                       f'f=$(mktemp "{log}/env.{name}.XXXXXXXX")\n'
                       'env -0 > "$f"\n'
                       'for a in "$@"; do printf "%s\\0" "$a"; done > "$f.argv"\n'
                       f"{then}\n")
    wrapper.chmod(0o755)


def assert_no_secret(calls, allowed: dict[str, str] | None = None) -> None:
    for argv, env in calls:
        for name, value in env.items():
            assert not name.startswith("INPUT_"), (argv, name)
            for secret_name, secret in {**SECRETS, "COSIGN_PASSWORD": COSIGN_PASSWORD,
                                        "INPUT_CONFIG": IN_CONFIG}.items():
                if (allowed or {}).get(name) == secret:
                    continue
                assert secret not in value, f"{secret_name}'s value reached {argv[:3]} as {name}"
        for name in SECRETS:
            assert name not in env, (argv, name)


# -- the helper ------------------------------------------------------------------------------

def test_child_env_is_an_allowlist_that_never_passes_inputs_or_tokens():
    environ = {"PATH": "/bin", "HOME": "/h", "LANG": "C", "LC_ALL": "C", "TZ": "UTC",
               "TMPDIR": "/t", "GNUPGHOME": "/g", "COSIGN_EXPERIMENTAL": "1",
               "INPUT_CONFIG": "x", "INPUT_COSIGN_THING": "x", "GITHUB_TOKEN": "t",
               "ACTIONS_RUNTIME_TOKEN": "t", "ACTIONS_ID_TOKEN_REQUEST_URL": "u",
               "COSIGN_PASSWORD": "p", "SOMETHING": "s"}
    assert child_env(environ) == {"PATH": "/bin", "HOME": "/h", "LANG": "C", "LC_ALL": "C",
                                  "TZ": "UTC", "TMPDIR": "/t"}
    got = child_env(environ, keep=("GNUPGHOME", "COSIGN_*", "INPUT_*", "GITHUB_TOKEN",
                                   "ACTIONS_*"))
    assert set(got) == {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "GNUPGHOME",
                        "COSIGN_EXPERIMENTAL", "COSIGN_PASSWORD"}  # a keep pattern never wins
    got = child_env(environ, keep=("GNUPGHOME",), extra={"GNUPGHOME": "/private", "X": "1"})
    assert got["GNUPGHOME"] == "/private" and got["X"] == "1"  # chosen values win


# -- gpg -------------------------------------------------------------------------------------

def test_gpg_and_gpgconf_get_no_secret_meant_for_others(tmp_path, gpg_keys):
    """The README's workflow environment: COSIGN_PASSWORD, GITHUB_TOKEN and the runner's tokens
    set, the config (with a registry password) as INPUT_CONFIG. gpg signs with a protected key
    (its passphrase on a pipe) and sees none of them."""
    log, bindir = tmp_path / "log", tmp_path / "bin"
    for tool in ("gpg", "gpgconf"):
        recording_wrapper(bindir, log, tool, f'exec {shutil.which(tool)} "$@"')
    passfile = tmp_path / "pass"
    passfile.write_text(gpg_keys.passphrase + "\n")
    config = (f"gpg_signer: {{passphrase_file: {passfile}}}\n"
              f"cosign_signer: {{registry_user: bot, registry_password: {IN_CONFIG}}}\n")
    env = {**gpg_keys.env(), **SECRETS, "COSIGN_PASSWORD": COSIGN_PASSWORD,
           "INPUT_CONFIG": config, "LC_ALL": "C", "PATH": f"{bindir}:{os.environ['PATH']}"}
    run = run_entrypoint("--signing-key", gpg_keys.protected, "--signing-key", gpg_keys.a,
                         "--reference", "r.io/ns/a:1", "--digest", D1, "--reference",
                         "r.io/ns/b:1", "--digest", D2, "--output-dir", str(tmp_path / "out"),
                         env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "out" / "results.json").read_text())["summary"]["signed"] == 4
    calls = recorded(log)
    assert len([argv for argv, _ in calls if "--sign" in argv]) == 4  # gpg signed
    assert any("--kill" in argv for argv, _ in calls)  # gpgconf ended the run's gpg-agent
    assert_no_secret(calls)
    for argv, env in calls:
        assert "COSIGN_PASSWORD" not in env and "INPUT_CONFIG" not in env, argv
        assert env.get("LC_ALL") == "C" and env["PATH"].startswith(str(bindir))  # what it needs
        allowed = {"PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "GNUPGHOME",
                   "PWD"}  # (PWD: the wrapper's shell sets it)
        assert set(env) <= allowed | {n for n in env if n.startswith("LC_")}, (argv, sorted(env))


# -- cosign ----------------------------------------------------------------------------------

FAKE_COSIGN = r"""
case "$1" in
  sign) echo "      --key string   --output-payload --output-signature"; exit 0;;  # sign --help
  public-key) printf -- '-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n'; exit 0;;
esac
while [ $# -gt 0 ]; do
  case "$1" in
    --output-payload) printf '{"critical": {}}' > "$2"; shift;;
    --output-signature) printf 'c2lnbmF0dXJl' > "$2"; shift;;
  esac
  shift
done
"""


def test_cosign_gets_its_password_only_where_a_key_needs_it_and_no_other_secret(tmp_path):
    """A key file (its passphrase: COSIGN_PASSWORD), an env:// key (the variable it names, and
    the passphrase) and a KMS key (no passphrase: COSIGN_PASSWORD empty). The registry password
    of the config reaches cosign only in its private docker config, never its environment."""
    log, bindir = tmp_path / "log", tmp_path / "bin"
    recording_wrapper(bindir, log, "cosign", FAKE_COSIGN)
    key = tmp_path / "cosign.key"
    key.write_text("an encrypted cosign key\n")
    config = (f"cosign_signer: {{cosign_bin: {bindir / 'cosign'}, registry_user: bot, "
              f"registry_password: {IN_CONFIG}, upload_tlog: false, "
              "env_variables: {MY_COSIGN_SETTING: chosen}}\n")
    env = {**SECRETS, "COSIGN_PASSWORD": COSIGN_PASSWORD, "INPUT_CONFIG": config,
           "COSIGN_REPOSITORY": "r.io/sigs", "SIGSTORE_ROOT_FILE": "/root.json",
           "AWS_REGION": "eu-west-1", "HTTPS_PROXY": "http://proxy.invalid:3128",
           "RELEASE_KEY_PEM": "the key itself", "GNUPGHOME": "/not/for/cosign"}
    run = run_entrypoint("--signer", "cosign", "--signing-key", str(key), "--signing-key",
                         "env://RELEASE_KEY_PEM", "--signing-key", "awskms:///alias/release",
                         "--reference", "r.io/ns/a:1", "--digest", D1, "--no-expand-index",
                         "--no-skip-signed", "--output-dir", str(tmp_path / "out"), env=env)
    assert run.returncode == 0, run.stderr
    calls = recorded(log)
    by_key: dict[str, list[dict]] = {}
    for argv, call_env in calls:
        k = argv[argv.index("--key") + 1] if "--key" in argv else None
        by_key.setdefault(k, []).append(call_env)
    assert {k: len(v) for k, v in by_key.items()} == {
        None: 1, str(key): 2, "env://RELEASE_KEY_PEM": 2, "awskms:///alias/release": 2}
    for k, envs in by_key.items():
        for call_env in envs:
            wanted = COSIGN_PASSWORD if k in (str(key), "env://RELEASE_KEY_PEM") else ""
            assert call_env["COSIGN_PASSWORD"] == wanted, k
            assert ("RELEASE_KEY_PEM" in call_env) == (k == "env://RELEASE_KEY_PEM"), k
            # what cosign legitimately reads, and the config's env_variables
            assert call_env["COSIGN_REPOSITORY"] == "r.io/sigs"
            assert call_env["SIGSTORE_ROOT_FILE"] == "/root.json"
            assert call_env["AWS_REGION"] == "eu-west-1"
            assert call_env["HTTPS_PROXY"] == "http://proxy.invalid:3128"
            assert call_env["MY_COSIGN_SETTING"] == "chosen"
            assert "GNUPGHOME" not in call_env and "INPUT_CONFIG" not in call_env
    private = [argv for argv, e in calls if "sign" in argv and "--key" in argv and
               Path(e.get("DOCKER_CONFIG", "/")).parent.name.startswith("cosign-")]
    assert len(private) == 3  # the sign calls: the private docker config, with the password
    assert_no_secret(calls, allowed={"COSIGN_PASSWORD": COSIGN_PASSWORD})
