"""Suite-wide hooks: no hypothesis deadlines, and print the measured ranging rates at the end."""

from __future__ import annotations

import pytest
from hypothesis import settings

# A cold first example (imports, bytecode) on a loaded 2-core CI box is not a bug; the property is.
settings.register_profile("tether", deadline=None)
settings.load_profile("tether")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.vehicle.test_ranging import RATES

    if RATES:
        terminalreporter.section("secure ranging: measured rates")
        for name, value in RATES.items():
            terminalreporter.write_line(f"{name}: {value}")
