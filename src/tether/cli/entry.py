"""The `tether` executable: routes `vehicle run` to the lean agent runner, the rest to typer."""

from __future__ import annotations

import sys


def main() -> None:
    argv = sys.argv[1:]
    if argv[:2] == ["vehicle", "run"]:
        # The car agent must start fast (docs/vehicle.md): no typer, no rich, no web stack.
        from tether.vehicle.run import main as run_vehicle

        sys.exit(run_vehicle(argv[2:]))
    from tether.cli.main import main as run_cli

    run_cli()
