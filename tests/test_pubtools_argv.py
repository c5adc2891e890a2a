"""pubtools-sign's commands given hostile command lines (issue 23): each case is a valid command
line with one defect generated into it (seeded: the id says which seed and what it did):
counts that do not pair, line breaks, carriage returns, escape sequences and GitHub workflow
commands inside values, empty and huge values, unknown flags. Each is refused before anything is
sent: exit 2, one line on stderr naming what is wrong, the hostile value never echoed raw, nothing
on stdout, nothing written."""

from __future__ import annotations

import json
import logging
import random

import pytest

from pubtools_commands import main

D = "sha256:" + "ab" * 32
HOSTILE = ["line\nbreak", "carriage\rreturn", "esc\x1b[31mred", "::error::injected",
           "tab\there", "\u2028separator", "nul-ish\x7f", ""]


@pytest.fixture(autouse=True)
def loggers_as_they_were():
    """The run sets up the signaction and signers loggers for itself (a handler, no
    propagation): put them back, or later tests' caplog sees nothing."""
    saved = {n: (lg.handlers[:], lg.level, lg.propagate)
             for n in ("signaction", "signers") for lg in [logging.getLogger(n)]}
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate


@pytest.fixture
def conf(tmp_path):
    for name in ("client.pem", "ca.crt"):
        (tmp_path / name).write_text("not used: refused before the bus\n")
    path = tmp_path / "conf.yaml"
    path.write_text(json.dumps({"msg_signer": {
        "messaging_brokers": ["amqp://127.0.0.1:9"], "messaging_cert_key":
        str(tmp_path / "client.pem"), "messaging_ca_cert": str(tmp_path / "ca.crt"),
        "topic_send_to": "topic://S", "topic_listen_to": "queue://Consumer.{creator}.{task_id}.R",
        "environment": "prod", "service": "pubtools-sign", "timeout": 1, "retries": 1,
        "send_retries": 1, "message_id_key": "request_id", "log_level": "info"}}))
    return path


def hostile_argv(seed: int, conf, out) -> tuple[str, list[str]]:
    rng = random.Random(seed)
    n = rng.randint(1, 4)
    refs = [f"registry.example.com/ns/app{i}:v1" for i in range(n)]
    digests = [D] * n
    keys, names = ["0123456789ABCDEF"], ["release"]
    task = "task-1"
    how = rng.choice(["counts", "names", "reference", "digest", "task", "key", "key-name",
                      "huge", "unknown", "empty-key"])
    value = rng.choice(HOSTILE)
    if how == "counts":
        digests = [D] * (n + rng.randint(1, 3))
    elif how == "names":
        names = ["a", "b"][: 1 + len(keys)] + ["c"]
    elif how == "reference":
        refs[rng.randrange(n)] = f"registry.example.com/ns/{value}:v1"
    elif how == "digest":
        digests[rng.randrange(n)] = D + value if value else ""
    elif how == "task":
        task = f"task{value}" if value else ""
    elif how == "key":
        keys = [f"0123456789ABCDEF{value}"]
    elif how == "key-name":
        names = [f"release{value}"] if value else [""]
    elif how == "huge":
        refs[0] = "registry.example.com/" + "a" * 100_000 + ":v1"
    elif how == "empty-key":
        keys = [""]
    argv = ["--config-file", str(conf), "--task-id", task, "--deadline", "2",
            "--output-dir", str(out)]
    argv += [a for k in keys for a in ("--signing-key", k)]
    argv += [a for k in names for a in ("--signing-key-name", k)]
    argv += [a for r, d in zip(refs, digests, strict=False) for a in ("--reference", r)]
    argv += [a for d in digests for a in ("--digest", d)]
    if how == "unknown":
        argv += [rng.choice(["--no-such-flag", "--reference-file", "--sig-key"]), "x"]
    return f"{how} {value!r}", argv


@pytest.mark.parametrize("seed", range(40))
def test_a_hostile_command_line_is_one_line_and_exit_2(seed, conf, tmp_path, capsys):
    what, argv = hostile_argv(seed, conf, tmp_path / "out")
    code = main("pubtools-sign-msg-container-sign", argv, {"PATH": "/usr/bin:/bin"})
    captured = capsys.readouterr()
    assert code == 2, (what, captured.err[-500:])
    lines = captured.err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), (what, captured.err[-500:])
    line = lines[0]
    assert not any(ord(c) < 32 or c in "\x7f\u2028\u2029" for c in line), (what, line)
    assert not line.startswith("::") and "\n::error::" not in captured.err, what
    assert len(line) < 4200, (what, len(line))  # values quoted are capped (outside.cap)
    assert captured.out == "", what
    assert not (tmp_path / "out").exists(), what
