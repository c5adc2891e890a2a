"""Config: pubtools-sign's files are valid unchanged; each bad one gives its one-line error."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signaction.config import load_config
from signaction.errors import InputError

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
ENV = {"GPG_PASSPHRASE_FILE": "/run/secrets/pass", "MSG_CERT_KEY_FILE": "/c.pem",
       "MSG_TIMEOUT": "60"}

MSG = """msg_signer:
  messaging_brokers: [amqps://b:5671]
  messaging_cert_key: c.pem
  messaging_ca_cert: ca.crt
  topic_send_to: topic://x
  topic_listen_to: queue://y
  environment: prod
  service: s
  timeout: {timeout}
  retries: 3
  send_retries: 2
  message_id_key: request_id
"""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_config_is_valid(path):
    config = load_config(str(path), None, ENV)
    assert config.data  # and nothing raised


def test_the_pubtools_sign_example_has_every_section_and_key():
    config = load_config(str(EXAMPLES[0].parent / "pubtools-sign-conf.yaml"), None, ENV)
    assert set(config.data) == {"msg_signer", "cosign_signer"}
    assert config.data["msg_signer"]["key_aliases"] == {"prod": "199e2f91fd431d51"}
    assert config.data["cosign_signer"]["timeout"] == "3m0s"
    assert config.data["cosign_signer"]["num_threads"] == 10


def test_environment_variables_are_interpolated_and_integers_coerced():
    config = load_config(str(EXAMPLES[0].parent / "rabbitmq-msg-conf.yaml"), None, ENV)
    assert config.data["msg_signer"]["messaging_cert_key"] == "/c.pem"
    assert config.data["msg_signer"]["timeout"] == 60


def test_interpolation_inside_a_longer_string():
    config = load_config(None, "gpg_signer:\n  gnupg_home: ${BASE}/gnupg-${N}\n",
                         {"BASE": "/home/u", "N": "2"})
    assert config.data["gpg_signer"]["gnupg_home"] == "/home/u/gnupg-2"


def test_secret_values_are_collected_for_masking():
    config = load_config(None, "cosign_signer:\n  registry_password: ${PW}\n"
                               "  env_variables: {AWS_SECRET_ACCESS_KEY: abc}\n",
                         {"PW": "s3cret\nline2"})
    assert set(config.secrets) == {"s3cret\nline2", "abc"}


def test_no_config_file_anywhere_gives_an_empty_config(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("signaction.config.CONFIG_PATHS", (str(tmp_path / "none.yaml"),))
    config = load_config(None, None, {})
    assert config.data == {}


def test_the_default_location_is_used(monkeypatch, tmp_path):
    (tmp_path / ".config" / "pubtools-sign").mkdir(parents=True)
    (tmp_path / ".config" / "pubtools-sign" / "conf.yaml").write_text("gpg_signer: {}\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    config = load_config(None, None, {})
    assert config.data == {"gpg_signer": {}}
    assert config.source.endswith(".config/pubtools-sign/conf.yaml")


BAD = [
    (MSG.format(timeout="abc"), "config: msg_signer.timeout: 'abc' is not of type 'integer'"),
    (MSG.format(timeout=60) + "  bogus: 1\n",
     "config: msg_signer.bogus: unknown key (allowed: messaging_brokers, "),
    (MSG.format(timeout=60).replace("  service: s\n", ""),
     "config: msg_signer: missing required key 'service'"),
    ("msg_signr: {}\n", "config: msg_signr: unknown section (allowed: msg_signer, "),
    ("msg_signer:\n  messaging_brokers: amqps://b\n",
     "config: msg_signer.messaging_brokers: 'amqps://b' is not of type 'array'"),
    ("msg_batch_signer:\n  chunk_size: x\n",
     "config: msg_batch_signer.chunk_size: 'x' is not of type 'integer'"),
    ("msg_batch_signer:\n  chunk_size: 5\n",
     "config: msg_batch_signer: missing required key 'messaging_brokers'"),
    ("cosign_signer:\n  num_threads: 0\n",
     "config: cosign_signer.num_threads: 0 is less than the minimum of 1"),
    ("cosign_signer:\n  upload_tlog: maybe\n",
     "config: cosign_signer.upload_tlog: 'maybe' is not of type 'boolean'"),
    ("cosign_signer:\n  timeout: 180\n",
     "config: cosign_signer.timeout: 180 is not of type 'string'"),
    ("cosign_signer:\n  key_aliases: {prod: [1]}\n",
     "config: cosign_signer.key_aliases.prod: a list is not of type 'string'"),
    ("gpg_signer:\n  gnupg_home: ${NOPE}\n",
     "config: gpg_signer.gnupg_home: environment variable NOPE is not set"),
    ("gpg_signer: [a]\n", "config: gpg_signer: a list is not of type 'object'"),
    ("- just a list\n", "config: inline config: the top level must be a mapping"),
    ("gpg_signer:\n  gnupg_home: [\n", "config: inline config line 3, column 1: "),
    ("msg_signer:\n  messaging_brokers: [1]\n",
     "config: msg_signer.messaging_brokers[0]: 1 is not of type 'string'"),
]


@pytest.mark.parametrize("text,expected", BAD, ids=[e.split(":")[1].strip() + f"-{i}"
                                                     for i, (_, e) in enumerate(BAD)])
def test_bad_configs_give_one_line_naming_the_key(text, expected):
    with pytest.raises(InputError) as err:
        load_config(None, text, {})
    message = str(err.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_a_bad_secret_is_not_echoed_in_the_error():
    with pytest.raises(InputError) as err:
        load_config(None, "cosign_signer:\n  registry_password: [hunter2]\n", {})
    assert "registry_password" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_a_yaml_error_does_not_echo_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("cosign_signer:\n  registry_password: hunter2: oops\n")
    with pytest.raises(InputError) as err:
        load_config(str(path), None, {})
    assert str(err.value).startswith(f"config: {path} line 2, column ")
    assert "hunter2" not in str(err.value)


def test_a_named_config_file_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(InputError, match=r"^config: '.*nope.yaml': file not found$"):
        load_config(str(tmp_path / "nope.yaml"), None, {})


def test_config_file_and_inline_config_together_are_refused(tmp_path):
    with pytest.raises(InputError, match="not both"):
        load_config(str(EXAMPLES[0]), "gpg_signer: {}", {})


# -- hardening (issue 10): what an error may show, bounded parsing, duplicate keys, files, numbers

SECRET = "TOPSECRET"  # every case below puts it where an error used to quote it


LEAKS = [  # each puts SECRET where an error could quote it; the first ones did, before
    'cosign_signer: {env_variables: ["${S}"]}',  # the example: a list where a map goes
    'cosign_signer: {env_variables: "${S}"}',
    "cosign_signer: {env_variables: TOPSECRET}",  # literal, but where secrets go
    'cosign_signer: {annotations: {a: ["${S}"]}}',
    'cosign_signer: {annotations: {a: {b: "${S}"}}}',
    'cosign_signer: {signature_format: "${S}"}',  # enum
    'cosign_signer: ["${S}"]',
    'gpg_signer: "${S}"',
    'gpg_signer: {gnupg_home: ["${S}"]}',
    'gpg_signer: {key_files: [[[["${S}"]]]]}',
    'gpg_signer: {key_files: "x${S}y"}',
    'msg_signer: {messaging_brokers: [{a: "${S}"}]}',
    'msg_signer: {timeout: "${S}"}',
    'msg_signer: {deadline: "${S}"}',
    "cosign_signer: {env_variables: {K: [TOPSECRET]}}",
    "cosign_signer: {registry_password: [TOPSECRET]}",
    "cosign_signer: {registry_password: {TOPSECRET: x}}",
    'msg_batch_signer: {chunk_size: "${S}", bogus: "${S}"}',
    'cosign_signer: {registry_password: "${S}", bogus: 1}',
]


def test_no_error_quotes_an_interpolated_or_secret_value():
    """Item 1: a value from ${VAR} or under a secret key is never quoted, at any depth, also
    when the container holding it has the wrong type."""
    for text in LEAKS:
        with pytest.raises(InputError) as err:
            load_config(None, text, {"S": SECRET})
        message = str(err.value)
        assert SECRET not in message and "\n" not in message, (text, message)
        assert message.startswith("config: ") and ": " in message[8:], message


@pytest.mark.parametrize("text,expected", [
    ('cosign_signer: {env_variables: ["${S}"]}',
     "config: cosign_signer.env_variables: a list is not of type 'object'"),
    ('msg_signer: {timeout: "${S}"}',
     "config: msg_signer.timeout: '${S}' (value not shown) is not of type 'integer'"),
    ('cosign_signer: {signature_format: "${S}"}',
     "config: cosign_signer.signature_format: '${S}' (value not shown) is not one of "
     "'legacy', 'bundle', 'both'"),
    ('cosign_signer: {num_threads: "${N}"}',
     "config: cosign_signer.num_threads: '${N}' (value not shown) is less than the minimum of 1"),
    ("cosign_signer: {registry_password: 5}",
     "config: cosign_signer.registry_password: an integer (secret, not shown) is not of type "
     "'string'"),
    ("cosign_signer: {signature_format: x}",  # literal and not secret: quoted
     "config: cosign_signer.signature_format: 'x' is not one of 'legacy', 'bundle', 'both'"),
])
def test_errors_name_the_key_and_the_problem(text, expected):
    with pytest.raises(InputError) as err:
        load_config(None, text, {"S": SECRET, "N": "-7"})
    assert str(err.value) == expected


def test_values_from_the_environment_and_secrets_quote_as_their_template():
    """What a signer's message quotes later (repr) is the template, never the value."""
    config = load_config(None, "gpg_signer: {gnupg_home: '${S}/gnupg'}\n"
                               "cosign_signer: {registry_password: hunter2}\n", {"S": SECRET})
    home = config.data["gpg_signer"]["gnupg_home"]
    assert home == f"{SECRET}/gnupg" and isinstance(home, str)
    assert repr(home) == "'${S}/gnupg' (value not shown)" and f"{home!r}".find(SECRET) < 0
    assert "hunter2" not in repr(config.data["cosign_signer"])
    assert config.secrets == ("hunter2",)


def bomb(levels: int) -> str:
    """A "billion laughs": 9 ** (levels + 1) values once its aliases are expanded."""
    return "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefghi"[:levels],
                                                                     "bcdefghij"))


BOMB = bomb(9)  # 3,486,784,401 values: end to end (it hung the run, eating the memory)


@pytest.mark.parametrize("text,problem", [
    (bomb(4), "more than 10,000 values"),  # 59,049 once expanded; the old code took them
    ("a: &a [*a]\n", "alias *a is used inside the node it names"),
    ("gpg_signer: {key_files: " + "[" * 500 + "]" * 500 + "}", "nested deeper than 32 levels"),
    ("gpg_signer:\n  key_files:\n" + "    " + "- " * 500 + "x\n", "nested deeper than 32 levels"),
    ('{"gpg_signer": {"key_files": ' + "[" * 500 + "]" * 500 + "}}",
     "nested deeper than 32 levels"),
    ("gpg_signer: {key_files: [" + ", ".join(["x"] * 20_000) + "]}", "more than 10,000 values"),
])
def test_alias_bombs_and_deep_nesting_are_refused_quickly(text, problem):
    """Item 8: refused in well under a second, one line, never a hang or a RecursionError."""
    start = time.monotonic()
    with pytest.raises(InputError) as err:
        load_config(None, text, {})
    assert time.monotonic() - start < 0.5
    assert problem in str(err.value) and "\n" not in str(err.value), str(err.value)
    assert str(err.value).startswith("config: inline config")


@pytest.mark.parametrize("text,expected", [
    ("gpg_signer: {}\ncosign_signer: {}\ngpg_signer: {gnupg_home: /x}\n",
     "config: inline config: duplicate key 'gpg_signer' (line 3, column 1)"),
    ("gpg_signer:\n  gnupg_home: /a\n  gnupg_home: /b\n",
     "config: inline config: gpg_signer: duplicate key 'gnupg_home' (line 3, column 3)"),
    ('{"gpg_signer": {"gnupg_home": "/a", "gnupg_home": "/b"}}',
     "config: inline config: gpg_signer: duplicate key 'gnupg_home' (line 1, column 37)"),
    ("gpg_signer: {key_aliases: {yes: A, true: B}}",  # one key once read
     "config: inline config: gpg_signer.key_aliases: duplicate key 'true' (line 1, column 36)"),
    ("base: &b {gnupg_home: /a}\ngpg_signer: {<<: *b, <<: *b}",
     "config: inline config: gpg_signer: duplicate key '<<' (line 2, column 22)"),
])
def test_duplicate_keys_are_refused_naming_the_key(text, expected):
    """Item 9: the last one silently won."""
    with pytest.raises(InputError) as err:
        load_config(None, text, {})
    assert str(err.value) == expected


def test_duplicate_keys_in_a_config_file_name_the_file(tmp_path):
    path = tmp_path / "conf.yaml"
    path.write_text("cosign_signer:\n  registry_user: a\n  registry_user: b\n")
    with pytest.raises(InputError, match=rf"^config: {path}: cosign_signer: duplicate key "
                                         r"'registry_user' \(line 3, column 3\)$"):
        load_config(str(path), None, {})


def test_only_regular_files_of_at_most_1_mib_are_read(tmp_path, monkeypatch):
    """Item 10 (a FIFO, which hung, and /dev/zero, read until memory ran out: end to end
    below, in a process with a memory limit)."""
    start = time.monotonic()
    with pytest.raises(InputError, match=r"^config: '.*': is a folder, not a file$"):
        load_config(str(tmp_path), None, {})
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(InputError, match=r"^config: '.*big.yaml': larger than 1 MiB$"):
        load_config(str(big), None, {})
    with pytest.raises(InputError, match=r"^config: inline config: larger than 1 MiB$"):
        load_config(None, "#" * ((1 << 20) + 1), {})
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"gpg_signer: {gnupg_home: /h\xe9}\n")
    with pytest.raises(InputError, match=r"^config: '.*latin.yaml': not UTF-8 text"):
        load_config(str(latin), None, {})
    with socket.socket(socket.AF_UNIX) as server:  # found at a default location: refused too
        server.bind(str(tmp_path / "conf.yaml"))
        monkeypatch.setattr("signaction.config.CONFIG_PATHS", (str(tmp_path / "conf.yaml"),))
        with pytest.raises(InputError, match=r"^config: '.*conf.yaml': is a socket, not a "
                                             "regular file$"):
            load_config(None, None, {})
    assert time.monotonic() - start < 1


DEADLINE_MSG = MSG.format(timeout=60) + "  deadline: {deadline}\n"


NON_FINITE = [(".nan", {}), (".inf", {}), ("-.inf", {}), (".NaN", {}), ("+.inf", {}),
              ("1.0e+999", {}), ('"${D}"', {"D": "1e999"}), ('"${D}"', {"D": "-1e999"}),
              ('"${D}"', {"D": "nan"}), ('"${D}"', {"D": "inf"}), ("nan", {}), ("Infinity", {}),
              ('"1e400"', {})]


def test_non_finite_numbers_are_refused_naming_the_key():
    """Item 11: `deadline: .nan` or `.inf` silently turned the deadline off."""
    for deadline, env in NON_FINITE:
        with pytest.raises(InputError) as err:
            load_config(None, DEADLINE_MSG.format(deadline=deadline), env)
        message = str(err.value)
        assert "msg_signer.deadline: " in message and "\n" not in message, message
        assert "finite number" in message or "is not of type 'number'" in message, message
        assert not env or env["D"] not in message, message


def test_number_keys_accept_a_decimal_string_and_deadline_flags_refuse_non_finite():
    config = load_config(None, DEADLINE_MSG.format(deadline='"${D}"'), {"D": "90.5"})
    assert config.data["msg_signer"]["deadline"] == 90.5
    from signaction.inputs import parse_inputs
    for text in ("nan", "inf", "-inf", "1e999", "Infinity", "0", "-5"):
        with pytest.raises(InputError, match="is not a positive number of seconds"):
            parse_inputs([f"--deadline={text}"], {})
        with pytest.raises(InputError, match="^input 'deadline': .* is not a positive number"):
            parse_inputs([], {"INPUT_DEADLINE": text})


# -- end to end: exit 2, one error line, nothing written, the secret nowhere ------------------

def invalid_run(tmp_path, *args: str, env: dict | None = None, secret: str = SECRET,
                timeout: float = 30) -> str:
    """Run the entrypoint as a GitHub action (at most 2 GiB of memory); return its one error
    line after checking: exit 2, nothing else on stderr, nothing written, the secret nowhere."""
    from conftest import ENTRYPOINT
    summary, output = tmp_path / "summary.md", tmp_path / "output"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    run = subprocess.run(
        [sys.executable, str(ENTRYPOINT), *args, "--signing-key", "K", "--output-dir",
         str(tmp_path / "out")],
        env={**base, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary),
             "GITHUB_OUTPUT": str(output), **(env or {})},
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30)))
    assert run.returncode == 2, (run.returncode, run.stdout[-2000:], run.stderr[-2000:])
    lines = run.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr[-2000:]
    assert "Traceback" not in run.stdout + run.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "signatures").exists()
    for text in (run.stdout, run.stderr, summary.read_text(), output.read_text()):
        assert secret not in text, text
    assert "::error title=Invalid input::" in run.stdout
    return lines[0]


D1 = "sha256:" + "1" * 64


@pytest.mark.parametrize("config,expected", [
    ('cosign_signer: {env_variables: ["${S}"]}',
     "error: config: cosign_signer.env_variables: a list is not of type 'object'"),
    ('gpg_signer: {gnupg_home: "${S}"}',  # quoted by the gpg signer's own message
     "error: config: gpg_signer.gnupg_home: '${S}' (value not shown) is not a folder"),
    (BOMB, "error: config: inline config: e: more than 10,000 values"),
    ("gpg_signer: {gnupg_home: /a, gnupg_home: /b}",
     "error: config: inline config: gpg_signer: duplicate key 'gnupg_home'"),
    (DEADLINE_MSG.format(deadline=".nan"),
     "error: config: inline config: msg_signer.deadline: NaN is not a finite number"),
], ids=["secret", "interpolated", "bomb", "duplicate", "nan"])
def test_bad_configs_end_to_end(tmp_path, config, expected):
    line = invalid_run(tmp_path, "--image", f"r.io/a:1@{D1}", "--dry-run",
                       env={"INPUT_CONFIG": config, "S": SECRET})
    assert line.startswith(expected), line


def test_100000_nested_brackets_end_to_end(tmp_path):
    """libyaml's own composer recursed in C on these and crashed the interpreter (SIGSEGV)."""
    path = tmp_path / "conf.yaml"
    path.write_text("gpg_signer: {key_files: " + "[" * 100_000 + "]" * 100_000 + "}\n")
    line = invalid_run(tmp_path, "--config-file", str(path), "--image", f"r.io/a:1@{D1}")
    assert line.startswith(f"error: config: {path}: gpg_signer: nested deeper than 32 levels")


def test_a_fifo_or_dev_zero_as_config_file_is_refused_end_to_end(tmp_path):
    os.mkfifo(tmp_path / "conf.yaml")
    line = invalid_run(tmp_path, "--config-file", str(tmp_path / "conf.yaml"), "--image",
                       f"r.io/a:1@{D1}", timeout=20)
    assert line == f"error: config: '{tmp_path / 'conf.yaml'}': is a named pipe (FIFO), not a " \
                   "regular file"
    line = invalid_run(tmp_path, "--config-file", "/dev/zero", "--image", f"r.io/a:1@{D1}")
    assert line == "error: config: '/dev/zero': is a character device, not a regular file"
