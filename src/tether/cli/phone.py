"""`tether phone ...`: the owner's phone: a wallet, pairing, and commands to the car."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import typer
from rich.table import Table

from tether.cli.output import emit_json, out, when
from tether.errors import TetherError
from tether.phone import client
from tether.phone.wallet import PhoneWallet
from tether.protocol.commands import FAST_COMMANDS, Command
from tether.protocol.crypto import SystemEntropy
from tether.protocol.pairing import VehiclePaired
from tether.transport import tcp

app = typer.Typer(help="A phone: its wallet of car keys, pairing, and commands.")

DirOption = typer.Option(..., "--dir", help="The phone's directory.", file_okay=False)
JsonOption = typer.Option(False, "--json", help="Print one JSON document instead of text.")


@app.command()
def init(
    directory: Path = DirOption,
    name: str = typer.Option("My phone", "--name", help="A name the car shows for this phone."),
) -> None:
    """Create a new phone wallet."""
    PhoneWallet.create(directory, name=name).close()
    out.print(f"Created phone [bold]{name}[/bold] in {directory}")


@app.command()
def pair(
    directory: Path = DirOption,
    vehicle: str = typer.Option(..., "--vehicle", help="The car's address, tcp://HOST:PORT."),
    code: str = typer.Option(..., "--code", help="The pairing code the car shows."),
    name: str = typer.Option("", "--name", help="What to call the car (default: its own name)."),
    as_json: bool = JsonOption,
) -> None:
    """Pair with a car as its owner, with the one-time code the car shows."""
    wallet = PhoneWallet.open(directory)
    entropy = SystemEntropy()
    endpoint_key = entropy.new_private_key()  # a fresh key for this car only

    async def go() -> VehiclePaired:
        transport = await tcp.connect(vehicle)
        try:
            return await client.pair(
                transport, code=code, endpoint_key=endpoint_key, name=wallet.name, entropy=entropy
            )
        finally:
            await transport.close()

    paired = asyncio.run(go())
    car = wallet.add_car(
        name=name or paired.vehicle_name,
        vehicle_key=paired.vehicle_key,
        vehicle_name=paired.vehicle_name,
        address=vehicle,
        endpoint_key=endpoint_key,
        role="owner",
        now=time.time(),
    )
    wallet.close()
    if as_json:
        emit_json(
            {"car": car.name, "vehicle_id": car.vehicle_id.hex(), "key_id": car.endpoint_id.hex()}
        )
    else:
        out.print(
            f"Paired with [bold]{car.name}[/bold] (vehicle id {car.vehicle_id.hex()}); "
            f"this phone's key id {car.endpoint_id.hex()}"
        )


@app.command()
def keys(directory: Path = DirOption, as_json: bool = JsonOption) -> None:
    """The cars this phone holds keys for."""
    wallet = PhoneWallet.open(directory)
    cars = wallet.cars()
    wallet.close()
    rows = [
        {
            "car": c.name,
            "vehicle_id": c.vehicle_id.hex(),
            "key_id": c.endpoint_id.hex(),
            "role": c.role,
            "address": c.address,
            "fast_ready": c.persistent_key is not None,
            "transactions": c.ratchet,
            "added_at": c.added_at,
        }
        for c in cars
    ]
    if as_json:
        emit_json({"keys": rows})
        return
    table = Table("car", "vehicle id", "key id", "role", "address", "fast", "added", title="Keys")
    for r in rows:
        table.add_row(
            str(r["car"]),
            str(r["vehicle_id"])[:16],
            str(r["key_id"])[:16],
            str(r["role"]),
            str(r["address"]),
            "yes" if r["fast_ready"] else "no",
            when(r["added_at"]),  # type: ignore[arg-type]
        )
    out.print(table)


def _command(
    command: Command, directory: Path, vehicle: str | None, standard: bool, as_json: bool
) -> None:
    wallet = PhoneWallet.open(directory)
    car = wallet.car(vehicle)
    entropy = SystemEntropy()
    started = time.perf_counter()

    async def go() -> client.Outcome:
        transport = await tcp.connect(car.address)
        try:
            (outcome,) = await client.run_commands(
                transport,
                car,
                [command],
                entropy=entropy,
                # Fast transactions only ever open and close the car (docs/protocol.md §6.4).
                fast=not standard and command in FAST_COMMANDS,
                persist=lambda key: wallet.set_persistent_key(car.name, key),
            )
            return outcome
        finally:
            await transport.close()

    try:
        outcome = asyncio.run(go())
    finally:
        wallet.close()
    ms = (time.perf_counter() - started) * 1000
    result = outcome.result
    if as_json:
        emit_json(
            {
                "car": car.name,
                "command": command.value,
                "ok": result.ok,
                "reason": result.reason,
                "message": result.message,
                "fast": outcome.fast,
                "fell_back": outcome.fell_back,
                "state": result.state,
                "ms": round(ms, 2),
            }
        )
    elif result.ok:
        kind = "fast" if outcome.fast else "standard"
        out.print(f"[green]✓[/green] {command.value} on {car.name}: done ({kind}, {ms:.1f} ms)")
    else:
        out.print(
            f"[red]✗[/red] {command.value} on {car.name} refused ({result.reason}): "
            f"{result.message}"
        )
    if not result.ok:
        raise typer.Exit(1)


def _register(command: Command) -> None:
    def run(
        directory: Path = DirOption,
        vehicle: str | None = typer.Option(
            None, "--vehicle", help="Which car (name in the wallet)."
        ),
        standard: bool = typer.Option(False, "--standard", help="Force a standard transaction."),
        as_json: bool = JsonOption,
    ) -> None:
        _command(command, directory, vehicle, standard, as_json)

    run.__doc__ = f"Send `{command.value}` to the car (fast transaction when possible)."
    app.command(command.value)(run)


for _cmd in (
    Command.UNLOCK,
    Command.LOCK,
    Command.TRUNK,
    Command.START,
    Command.STOP,
    Command.LOCATE,
    Command.HONK,
):
    _register(_cmd)

__all__ = ["TetherError", "app"]
