"""Fixtures of the reliability suite (tests/conftest.py's apply too)."""

from __future__ import annotations

import pytest

from rel_helpers import kill_marked, new_token


@pytest.fixture
def token():
    """A token for the jobs' environment (rel_helpers.TOKEN_VAR) to find every process they
    started. Whatever still holds it after the test is killed, so a failing or xfailed case
    leaves nothing running."""
    value = new_token()
    yield value
    kill_marked(value)
