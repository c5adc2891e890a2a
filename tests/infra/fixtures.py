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
