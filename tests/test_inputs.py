"""Inputs: flags and INPUT_ variables (both name forms), flags winning, defaults, help."""

from __future__ import annotations

import dataclasses

import pytest

from signaction.errors import InputError
from signaction.inputs import OPTIONS, Inputs, build_parser, parse_inputs
from signers import available

SIGNERS = {"gpg": "a local key", "msg": "a signing server", "cosign": "sigstore"}


def test_runner_form_with_hyphen_is_read():
    inputs = parse_inputs([], {"INPUT_TASK-ID": "t-1", "INPUT_SIGNING-KEYS": "a\nb\n"})
    assert inputs.task_id == "t-1"
    assert [v for v in inputs.signing_keys if v] == ["a", "b"]


def test_underscore_form_is_read_too():
    inputs = parse_inputs([], {"INPUT_TASK_ID": "t-2", "INPUT_OUTPUT_DIR": "o"})
    assert (inputs.task_id, inputs.output_dir) == ("t-2", "o")


def test_the_hyphen_form_wins_over_the_underscore_form():
    inputs = parse_inputs([], {"INPUT_TASK-ID": "hyphen", "INPUT_TASK_ID": "underscore"})
    assert inputs.task_id == "hyphen"


def test_flags_win_over_inputs():
    env = {"INPUT_TASK-ID": "env", "INPUT_REFERENCES": "r.io/a:1\nr.io/b:1",
           "INPUT_DRY-RUN": "false", "INPUT_SIGNER": "msg"}
    inputs = parse_inputs(["--task-id", "flag", "--reference", "r.io/c:1", "--dry-run",
                           "--signer", "gpg"], env)
    assert inputs.task_id == "flag"
    assert inputs.references == ("r.io/c:1",)
    assert inputs.dry_run is True
    assert inputs.signer == "gpg"
    assert inputs.origin["task_id"] == "flag"


def test_empty_inputs_are_not_given():
    inputs = parse_inputs([], {"INPUT_OUTPUT-DIR": "", "INPUT_SIGNER": "  "})
    assert inputs.output_dir == "signatures"
    assert inputs.signer == "gpg"


def test_defaults_are_the_same_in_the_table_and_the_dataclass():
    fields = {f.name: f.default for f in dataclasses.fields(Inputs)
              if f.name not in ("origin", "misplaced")}
    for opt in OPTIONS:
        expected = () if opt.kind == "list" else opt.default
        if opt.kind == "bool":
            assert opt.default in (None, True, False), opt.input  # None: decided later
        assert fields[opt.attr] == expected, opt.input
    assert set(fields) == {o.attr for o in OPTIONS}


@pytest.mark.parametrize("text,value", [("true", True), ("True", True), ("yes", True),
                                        ("false", False), ("FALSE", False), ("0", False)])
def test_boolean_inputs(text, value):
    assert parse_inputs([], {"INPUT_DRY-RUN": text}).dry_run is value


def test_a_bad_boolean_names_the_input():
    with pytest.raises(InputError, match=r"^input 'dry-run': 'maybe' is not a boolean"):
        parse_inputs([], {"INPUT_DRY-RUN": "maybe"})


def test_a_bad_choice_names_the_input_and_the_choices():
    with pytest.raises(InputError,
                       match=r"^input 'signer': 'notary' is not one of gpg, msg, cosign"):
        parse_inputs([], {"INPUT_SIGNER": "notary"}, SIGNERS)
    with pytest.raises(InputError, match="invalid choice"):
        parse_inputs(["--signer", "notary"], {}, SIGNERS)


def test_the_signers_are_the_modules_of_the_signers_package():
    found = available()
    assert set(found) == {"gpg", "msg", "cosign"} and next(iter(found)) == "gpg"  # the default
    assert all(cls.name == name and cls.summary for name, cls in found.items())


def test_choices_are_case_insensitive():
    assert parse_inputs(["--log-level", "DEBUG"], {}).log_level == "debug"
    assert parse_inputs([], {"INPUT_LOG-LEVEL": "Warning"}).log_level == "warning"


def test_list_values_are_numbered_where_the_user_wrote_them():
    inputs = parse_inputs([], {"INPUT_REFERENCES": "a\n\n  b  \n"})
    assert inputs.numbered("references") == [("input 'references' line 1", "a"),
                                             ("input 'references' line 3", "b")]
    flags = parse_inputs(["--reference", "a", "--reference", "b"], {})
    assert flags.numbered("references") == [("--reference #1", "a"), ("--reference #2", "b")]


def test_unknown_flags_are_input_errors():
    with pytest.raises(InputError, match="unrecognized arguments: --nope"):
        parse_inputs(["--nope"], {})


def test_help_lists_every_option_with_an_example(capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for opt in OPTIONS:
        assert opt.flag in text
    assert "examples:" in text and "--dry-run" in text and "exit codes" in text


def test_thousands_of_repeated_flags_are_read_in_order_and_in_linear_time():
    argv = []
    for n in range(20_000):
        argv += ["--reference", f"r.io/a:{n}", f"--digest=sha256:{n:064x}"]
    inputs = parse_inputs(argv + ["--task-id", "t", "--signing-key", "K"], {})
    assert len(inputs.references) == 20_000 and inputs.references[-1] == "r.io/a:19999"
    assert inputs.digests[0] == f"sha256:{0:064x}" and inputs.task_id == "t"
    assert inputs.signing_keys == ("K",) and inputs.origin["references"] == "flag"


def test_a_list_flag_without_value_is_still_argparses_error():
    with pytest.raises(InputError, match="expected one argument"):
        parse_inputs(["--reference"], {})


# -- hardening (issue 10, item 17) ----------------------------------------------------------

D1 = "sha256:" + "1" * 64


@pytest.mark.parametrize("argv,expected", [
    (["--image", "  "], "--image #1: the value is empty"),
    (["--image", f"r.io/a:1@{D1}", "--image", ""], "--image #2: the value is empty"),
    (["--image", f"r.io/a:1@{D1}", "--signing-key", "\t"], "--signing-key #1: the value is empty"),
    (["--reference", "r.io/a:1", "--digest", " ", "--signing-key", "K"],
     "--digest #1: the value is empty"),
    (["--signing-key", "K", "--values", "images", f"r.io/a:1@{D1}", " "],
     "--image #2: the value is empty"),
])
def test_a_blank_value_says_it_is_empty(argv, expected):
    from signaction.plan import build_plan
    with pytest.raises(InputError) as err:
        build_plan(parse_inputs(argv + (["--signing-key", "K"] if "--signing-key" not in argv
                                        else []), {}), {})
    assert str(err.value) == expected
    # the blank lines of an input are still skipped (a list may end with a newline)
    inputs = parse_inputs([], {"INPUT_IMAGES": f"\n  \nr.io/a:1@{D1}\n\t\n"})
    assert inputs.numbered("images") == [("input 'images' line 3", f"r.io/a:1@{D1}")]


@pytest.mark.parametrize("argv,flag", [
    (["--values", "references", "r.io/a:1", "--signer", "gpg"], "--signer"),
    (["--values", "images", f"r.io/a:1@{D1}", "--dry-run"], "--dry-run"),
    (["--values", "images", f"r.io/a:1@{D1}", "--no-skip-signed"], "--no-skip-signed"),
    (["--values", "signing-keys", "K", "--config-file=c.yaml"], "--config-file"),
    (["--values", "digests", D1, "--values", "references", "r.io/a:1", "--help"], "--help"),
])
def test_flags_after_values_are_refused_saying_values_must_come_last(argv, flag):
    from signaction.plan import build_plan
    inputs = parse_inputs(argv, {})  # read as values, as before: never obeyed
    with pytest.raises(InputError) as err:
        build_plan(inputs, {})
    message = str(err.value)
    assert message.startswith("--values ") and f"'{flag}" in message, message
    assert "is read as a value, not as a flag" in message and "must come last" in message


def test_help_shows_no_python_booleans(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: True)" not in text and "(default: False)" not in text
    assert "for the same identity (cosign: in the registry) (default: on)" in text


def test_bad_inputs_end_to_end(tmp_path):
    from test_config import invalid_run
    assert invalid_run(tmp_path, "--image", "  ") == "error: --image #1: the value is empty"
    line = invalid_run(tmp_path, "--values", "images", f"r.io/a:1@{D1}", "--signer", "gpg")
    assert line.startswith("error: --values images: '--signer' is read as a value"), line
