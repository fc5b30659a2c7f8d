"""Fixtures of the local-mode tests (helpers live in local_helpers.py so test files can import them)."""

from __future__ import annotations

import pytest
from local_helpers import _client_fixture, _start_router_fixture, _upstreams_fixture

upstreams = pytest.fixture(_upstreams_fixture, name="upstreams")
start_router = pytest.fixture(_start_router_fixture, name="start_router")
client = pytest.fixture(_client_fixture, name="client")
