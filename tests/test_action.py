"""action.yml declares exactly the inputs the entrypoint reads, with the same defaults."""

from __future__ import annotations

from pathlib import Path

import yaml

from signaction.inputs import OPTIONS

ACTION = yaml.safe_load((Path(__file__).resolve().parent.parent / "action.yml").read_text())


def test_inputs_match_the_option_table():
    assert list(ACTION["inputs"]) == [o.input for o in OPTIONS]
    for opt in OPTIONS:
        declared = ACTION["inputs"][opt.input]
        assert declared["description"]
        if opt.default is None:
            assert "default" not in declared, opt.input
        else:
            expected = str(opt.default).lower() if opt.kind == "bool" else str(opt.default)
            assert declared["default"] == expected, opt.input


def test_outputs_are_the_ones_the_entrypoint_writes():
    assert set(ACTION["outputs"]) == {"status", "signed-count", "failed-count", "results-file",
                                      "signatures-dir"}
    assert ACTION["runs"] == {"using": "docker", "image": "Dockerfile"}
