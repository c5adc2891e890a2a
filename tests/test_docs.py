"""Documentation that is generated or quoted stays true."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_configuration_reference_is_generated_from_the_schema():
    spec = importlib.util.spec_from_file_location("config_reference",
                                                  ROOT / "scripts" / "config-reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "configuration.md").read_text() == module.render(), \
        "docs/configuration.md is stale: run python scripts/config-reference.py"
