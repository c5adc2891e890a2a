"""Cold start (issue 26): `--help` and a one-image gpg dry run import only what they need.

Each run is the entrypoint as a process under ``python -X importtime``, whose report names
every module imported; a heavy package imported at start fails the test, naming the chain of
imports that brought it in. No clock is read: bench/start_bench.py measures the time.

What a gpg dry run of an image given by digest truly needs: the inputs, the config (none here:
the key is in GNUPGHOME), the plan, the gpg signer and its preflight (gpg itself, a process).
Not the registry client (requests, urllib3; signaction.registry, which also imports
cryptography through the cosign format), no schema validator when there is no config to check
(jsonschema), no other signer (cosign: cryptography, tuf, securesystemslib, nacl; msg: proton),
and no signature check (pysequoia: verify mode and skip-signed). yaml is allowed: signaction.
safeload, which every run reads its files through (the config's default paths included),
imports it at its top, and costs a few milliseconds.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import signers
from conftest import ENTRYPOINT
from signaction import config

D1 = "sha256:" + "1" * 64

# top-level packages (and our modules) a cold start must not import
HEAVY = ("requests", "urllib3", "jsonschema", "cryptography", "proton", "cproton", "tuf",
         "securesystemslib", "nacl", "pysequoia", "signaction.registry", "signers.cosign",
         "signers.msg")


def imports(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, list]:
    """The entrypoint run under ``-X importtime``: the process, and the modules it imported as
    (depth, name), in the order importtime reports them (a module after what it imported)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INPUT_", "GITHUB_"))}
    proc = subprocess.run([sys.executable, "-X", "importtime", str(ENTRYPOINT), *args],
                          env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=120)
    modules = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and not line.rstrip().endswith("imported package"):
            name = line.rsplit("|", 1)[1]
            modules.append(((len(name) - len(name.lstrip())) // 2, name.strip()))
    return proc, modules


def heavy(modules: list, allowed: tuple[str, ...] = ()) -> list[str]:
    """Each heavy module imported by one that is not, with the chain of modules that imported
    it (``cryptography <- signaction.formats.cosign <- signaction.registry <- signers.base``)."""
    def is_heavy(name: str) -> bool:
        return any(name == h or name.startswith(h + ".") for h in HEAVY if h not in allowed)

    found = []
    for n, (depth, name) in enumerate(modules):
        if not is_heavy(name):
            continue
        chain, want = [name], depth
        for d, importer in modules[n + 1:]:  # importtime reports an importer after its imports
            if d < want:
                chain.append(importer)
                want = d
        if len(chain) == 1 or not is_heavy(chain[1]):
            found.append(" <- ".join(chain))
    return found


def test_help_imports_nothing_heavy():
    proc, modules = imports("--help")
    assert proc.returncode == 0 and "--signer" in proc.stdout, proc.stderr[-2000:]
    assert "signaction.inputs" in {name for _, name in modules}  # (the report was read)
    assert not heavy(modules), "\n".join(heavy(modules))


def test_help_lists_every_signer_without_importing_them():
    proc, modules = imports("--help")
    assert all(f"{name} ({summary})" in " ".join(proc.stdout.split())
               for name, summary in signers.SIGNERS.items()), proc.stdout
    assert not {name for _, name in modules} & {f"signers.{n}" for n in signers.SIGNERS}


def test_a_gpg_dry_run_of_one_image_by_digest_imports_nothing_heavy(gpg_keys, tmp_path):
    proc, modules = imports("--signer", "gpg", "--image", f"r.io/ns/a:1@{D1}",
                            "--signing-key", gpg_keys.a, "--dry-run",
                            "--output-dir", str(tmp_path / "out"), env=gpg_keys.env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"would sign r.io/ns/a:1@{D1} with key {gpg_keys.a}")
    # (signer_class's importlib.import_module is not in importtime's report; what it imports is)
    assert "signers.gpg.signer" in {name for _, name in modules}
    assert not heavy(modules), "\n".join(heavy(modules))


def test_with_a_config_file_only_the_schema_validator_is_added(gpg_keys, tmp_path):
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"gpg_signer: {{gnupg_home: {gpg_keys.home}}}\n")
    proc, modules = imports("--config-file", str(conf), "--image", f"r.io/ns/a:1@{D1}",
                            "--signing-key", gpg_keys.a, "--dry-run",
                            "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "jsonschema" in {name for _, name in modules}  # a config is checked, always
    assert not heavy(modules, allowed=("jsonschema",)), "\n".join(heavy(modules, ("jsonschema",)))


def test_a_registry_section_is_still_checked_before_anything_is_done(gpg_keys, tmp_path):
    # the client is built on first use; a config's registry settings are checked at start
    proc, _ = imports("--config", "registry: {user: someone}", "--image", f"r.io/ns/a:1@{D1}",
                      "--signing-key", gpg_keys.a, "--dry-run",
                      "--output-dir", str(tmp_path / "out"), env=gpg_keys.env())
    assert proc.returncode == 2
    assert "error: config: registry: " in proc.stderr and "password" in proc.stderr


def test_the_signers_table_is_what_the_signer_packages_define():
    defined = {}
    for module in pkgutil.iter_modules(signers.__path__):
        signer = getattr(importlib.import_module(f"signers.{module.name}"), "SIGNER", None)
        if signer is not None:
            assert signer.name == module.name  # signer_class imports signers.<name>
            defined[signer.name] = signer.summary
    assert defined == signers.SIGNERS
    assert signers.available() == {name: importlib.import_module(f"signers.{name}").SIGNER
                                   for name in signers.SIGNERS}


def test_no_config_is_valid_so_it_needs_no_validator():
    # load_config skips the validator (and importing jsonschema) when there is no config
    assert not list(config._validator()(config.load_schema()).iter_errors({}))


@pytest.mark.parametrize("text", ["", "{}", "# nothing\n"])
def test_an_empty_config_is_still_an_empty_config(text):
    assert config.load_config(None, text, {}).data == {}
