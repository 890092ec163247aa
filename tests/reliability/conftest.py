"""The reliability suite's fixtures and its report.

`scoreboard` collects one `ScenarioResult` per scenario; at the end of the session the table is
printed and, when every scenario in the catalogue ran, written to tests/reliability/RESULTS.md
(a partial run, e.g. with -k, prints its rows but leaves the file as the last full run made it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability import report
from tests.reliability.runner import REDIS_PASSWORD, ScenarioResult
from tests.reliability.scenarios import IDS
from tests.support.redis_server import RedisServer, RedisServerMissing

RESULTS_FILE = Path(__file__).parent / "RESULTS.md"
_SCOREBOARD = pytest.StashKey[list[ScenarioResult]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SCOREBOARD] = []


@pytest.fixture
def scoreboard(request: pytest.FixtureRequest) -> list[ScenarioResult]:
    return request.config.stash[_SCOREBOARD]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """One password-protected redis-server for the suite's strict-store scenarios (keys never collide:
    each is an upload's own request id)."""
    try:
        server = RedisServer(password=REDIS_PASSWORD)
    except RedisServerMissing as missing:
        problem = str(missing)
    else:
        server.start()
        try:
            yield server.url()
        finally:
            server.cleanup()
        return
    pytest.fail(problem, pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    results = config.stash.get(_SCOREBOARD, [])
    if not results:
        return
    order = {scenario_id: i for i, scenario_id in enumerate(IDS)}
    results = sorted(results, key=lambda r: order.get(r.scenario_id, len(order)))
    terminalreporter.section("reliability scenarios")
    terminalreporter.write_line(report.markdown(results))
    for result in results:
        for violation in result.violations[:5]:
            terminalreporter.write_line(f"  {result.scenario_id}: {violation}")
        for note in result.notes:
            terminalreporter.write_line(f"  {result.scenario_id}: note: {note}")
    if {r.scenario_id for r in results} >= set(IDS):
        RESULTS_FILE.write_text(report.document(results), encoding="utf-8")
        terminalreporter.write_line(f"written to {RESULTS_FILE.name}")
    else:
        terminalreporter.write_line(f"partial run: {RESULTS_FILE.name} keeps the last full run's table")
