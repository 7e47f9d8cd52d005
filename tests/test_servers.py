"""The server fixtures' rule: a developer without PostgreSQL/Redis installed gets a skip that says how to
get them; CI (CI=true) gets a failure, so the deployment tests can never be skipped there silently."""
from __future__ import annotations

import pytest

from tests.servers import missing


def test_missing_servers_skip_for_developers_and_fail_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install postgresql redis-server"):
        missing("Redis")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="never skips"):
        missing("Redis")
