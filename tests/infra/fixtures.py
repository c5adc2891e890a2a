"""pytest fixtures for the messaging tests (registered with ``pytest_plugins``). All lazy: nothing
starts until a test asks for it."""

from __future__ import annotations

import pytest

from infra.tls import Tls, make_tls


@pytest.fixture(scope="session")
def tls_material(tmp_path_factory) -> Tls:
    """A CA, a broker certificate for localhost, client certificates, and a rogue CA."""
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory, tls_material):
    """A private RabbitMQ node (plain ``amqp_url`` and client-certificate TLS ``amqps_url``),
    shared by the session. A test may ``restart()`` it: the URLs stay the same."""
    from infra.rabbitmq import RabbitNode  # proton is imported only when a test needs a broker

    node = RabbitNode(tmp_path_factory.mktemp("rabbitmq"), tls_material)
    node.start()
    try:
        yield node
    finally:
        node.stop()


class SmallFs:
    """A tmpfs mounted at ``path`` (``size`` bytes): ``fill()`` takes all of it (a full disk),
    ``read_only()`` remounts it read-only."""

    def __init__(self, path, size: int):
        import subprocess

        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                  str(path)], capture_output=True, text=True)
        if mounted.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")

    def fill(self) -> None:
        """Write a file until the file system says it is full (ENOSPC)."""
        import errno

        with open(self.path / ".filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise

    def read_only(self) -> None:
        import subprocess

        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def unmount(self) -> None:
        import subprocess

        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def small_fs(tmp_path):
    """``small_fs(size)``: a SmallFs under tmp_path, unmounted after the test."""
    made: list[SmallFs] = []

    def make(size: int = 1 << 20) -> SmallFs:
        fs = SmallFs(tmp_path / f"fs{len(made)}", size)
        made.append(fs)
        return fs
    yield make
    for fs in made:
        fs.unmount()
