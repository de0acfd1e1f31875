"""Suite-wide hooks: print the measured ranging rates at the end of the run."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.vehicle.test_ranging import RATES

    if RATES:
        terminalreporter.section("secure ranging: measured rates")
        for name, value in RATES.items():
            terminalreporter.write_line(f"{name}: {value}")
