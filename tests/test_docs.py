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


def test_the_architecture_names_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for package in ("signaction", "signers"):
        for path in sorted((ROOT / package).iterdir()):
            if path.name.startswith("_") or path.name == "__pycache__" or \
                    (path.is_file() and path.suffix != ".py"):
                continue
            named = f"{path.name}/`" if path.is_dir() else f"{path.name}`"
            assert named in text, f"docs/architecture.md does not say what {package}/{path.name} is"
