"""Where the cosign signer's Sigstore trust material comes from: ``trusted_root.json`` and
``signing_config.json`` files (config keys, action inputs), or a TUF repository read with
python-tuf, the TUF project's own client: the public instance's from the root pinned in
``tuf_roots/`` (the same root.json sigstore's clients embed), any other from the initial root
the config names (``tuf_root_file``).

TUF is what makes the fetched files trustworthy: each role's metadata signed by the threshold of
keys the (pinned, then rotated) root names, not expired, no version older than one seen before
(the cache keeps them); the targets' lengths and hashes as the signed metadata says. Anything
else is refused: exit 2 with one line naming the repository and what failed, no fallback to an
unverified copy. The metadata and targets are cached between steps of a job (a docker action's
HOME, ``/github/home``, is kept across steps): only the timestamp is fetched again when nothing
changed."""

from __future__ import annotations

import logging
import os
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from signaction.errors import InputError
from signaction.formats import trust
from signaction.registry import RegistryClient, RegistryError
from signaction.safeload import read_regular_file

log = logging.getLogger("signers.cosign")
T = TypeVar("T")

PUBLIC_TUF = "https://tuf-repo-cdn.sigstore.dev"
# The public instance's root.json (version 15), as sigstore's own clients pin it; TUF rotates
# it forward to the repository's current root on the first fetch.
EMBEDDED = {PUBLIC_TUF: Path(__file__).with_name("tuf_roots") / "sigstore-public.json"}
TRUSTED_ROOT = "trusted_root.json"
SIGNING_CONFIG = "signing_config.v0.2.json"
MAX_METADATA = 2 << 20  # bytes of one TUF metadata file or target (python-tuf bounds them too)


@dataclass(frozen=True)
class Material:
    """Trust material read and checked: ``root`` (and its bytes, copied into verification/ as
    cosign 3's ``--trusted-root``), ``services`` (the URLs of the signing config), and where it
    came from, for messages."""
    root: trust.TrustedRoot | None
    root_bytes: bytes | None
    services: trust.SigningConfig | None
    origin: str


def read_files(root_path: str | None, config_path: str | None, root_what: str,
               config_what: str) -> Material | None:
    """The trusted root and signing config files named by the config or the inputs."""
    if not root_path and not config_path:
        return None
    root = root_bytes = services = None
    if root_path:
        root_bytes = read_file(root_path, root_what)
        root = _parse(trust.read_trusted_root, root_bytes, f"{root_what}: {root_path!r}")
    if config_path:
        services = _parse(trust.read_signing_config, read_file(config_path, config_what),
                          f"{config_what}: {config_path!r}")
    return Material(root, root_bytes, services, "files")


def _parse(reader: Callable[[bytes, str], T], data: bytes, what: str) -> T:
    try:
        return reader(data, what)
    except ValueError as e:
        raise InputError(str(e)) from None


def read_file(path: str, what: str, limit: int = trust.MAX_FILE) -> bytes:
    """A trust file the config or an input names (a regular file, at most ``limit`` bytes)."""
    path = os.path.abspath(os.path.expanduser(path))
    return read_regular_file(path, f"{what}: {path!r}", limit)


def cache_dir(configured: str | None, environ: Mapping[str, str]) -> Path:
    """``tuf_cache_dir``, else ``$XDG_CACHE_HOME`` or ``~/.cache``, under
    ``container-sign-action/tuf``."""
    if configured:
        return Path(os.path.expanduser(configured))
    base = environ.get("XDG_CACHE_HOME") or os.path.join(
        environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return Path(base) / "container-sign-action" / "tuf"


def fetch(registry: RegistryClient, url: str, initial_root: bytes | None,
          cache: Path, configured: bool = True) -> Material:
    """The trusted root and signing config of the TUF repository at ``url``, verified from
    ``initial_root`` (None: the pinned root of the public instance). ``configured``: the
    config named it (tuf_url), else it is the public instance's, taken by default."""
    # python-tuf only when a run reads a TUF repository (not at start: issue 26's cold start)
    from tuf.api import exceptions
    from tuf.ngclient import Updater, UpdaterConfig

    url = url.rstrip("/")
    what = f"config: cosign_signer.tuf_url: TUF repository {url}" if configured else \
        f"the public Sigstore's trust material (no roots configured): TUF repository {url}"
    if initial_root is None:
        if url not in EMBEDDED:
            raise InputError(f"{what}: no initial root pinned for it; set "
                             "cosign_signer.tuf_root_file (its root.json, obtained out of band)")
        initial_root = EMBEDDED[url].read_bytes()
    where = _writable(cache / urllib.parse.quote(url, safe=""))
    try:
        updater = Updater(metadata_dir=str(where / "metadata"), metadata_base_url=url + "/",
                          target_dir=str(where / "targets"), target_base_url=url + "/targets/",
                          fetcher=_fetcher(registry, url),
                          config=UpdaterConfig(app_user_agent="container-sign-action"),
                          bootstrap=initial_root)
        updater.refresh()
        files = {}
        for name in (TRUSTED_ROOT, SIGNING_CONFIG):
            info = updater.get_targetinfo(name)
            if info is None:
                if name == SIGNING_CONFIG:
                    continue  # an older repository: the trusted root alone
                raise InputError(f"{what}: the repository has no {name}")
            path = updater.find_cached_target(info) or updater.download_target(info)
            files[name] = Path(path).read_bytes()
    except (exceptions.RepositoryError, exceptions.DownloadLengthMismatchError) as e:
        # expired, unsigned, rolled back, a hash or length other than the metadata signs
        raise InputError(f"{what}: refused: {type(e).__name__}: {_clean(e)}") from None
    except exceptions.DownloadError as e:
        cause = e.__cause__ or e.__context__
        raise InputError(f"{what}: cannot be read: {_clean(cause or e)}") from None
    except (ValueError, OSError) as e:  # an initial root that is not TUF metadata, a disk
        raise InputError(f"{what}: {type(e).__name__}: {_clean(e)}") from None
    root = _parse(trust.read_trusted_root, files[TRUSTED_ROOT], f"{what}: {TRUSTED_ROOT}")
    services = _parse(trust.read_signing_config, files[SIGNING_CONFIG],
                      f"{what}: {SIGNING_CONFIG}") if SIGNING_CONFIG in files else None
    log.info("Sigstore trust material from %s (TUF, cached in %s)", url, where)
    return Material(root, files[TRUSTED_ROOT], services, f"TUF {url}")


def _writable(folder: Path) -> Path:
    """The cache folder, made private; a temporary one (no cache) when it cannot be."""
    try:
        for sub in ("metadata", "targets"):
            (folder / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        return folder
    except OSError as e:
        fresh = Path(tempfile.mkdtemp(prefix="csa-tuf-"))
        log.warning("TUF cache %s cannot be used (%s): fetching into %s, uncached", folder,
                    e.strerror or e, fresh)
        for sub in ("metadata", "targets"):
            (fresh / sub).mkdir(mode=0o700)
        return fresh


def _clean(e: BaseException) -> str:
    """An error's text on one line, bounded (it may quote what the repository sent)."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:300]


def _fetcher(registry: RegistryClient, url: str):
    """python-tuf's fetcher on the run's one HTTP client (TLS verified, bounded, retried): a
    TUF repository is read as Fulcio and Rekor are."""
    from tuf.api import exceptions
    from tuf.ngclient import FetcherInterface

    class Fetcher(FetcherInterface):
        def _fetch(self, target: str) -> Iterator[bytes]:
            if not target.startswith(url + "/"):
                raise exceptions.DownloadError(f"{target}: outside the repository")
            try:
                status, _, body = registry.service(
                    "GET", target, what=f"TUF repository {url}", limit=MAX_METADATA)
            except RegistryError as e:
                raise exceptions.DownloadError(str(e)) from e
            if status != 200:
                raise exceptions.DownloadHTTPError(f"{target}: HTTP {status}", status)
            return iter((body,))
    return Fetcher()
