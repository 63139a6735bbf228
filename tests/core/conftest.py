"""Fixtures the compiled-core tests share: a certificate set for the TLS servers (made once a
module) and the HTTP/2 test server."""

from __future__ import annotations

import pytest
from script_server import H2Server
from servers import stopped_at_teardown


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    from tls_certs import make_certs  # needs cryptography: the modules that use it skip first

    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def h2_server():
    yield from stopped_at_teardown(H2Server)
