"""`tether phone ... --server URL`: sharing, revocation, remote commands, fleets via the cloud."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.markup import escape

from tether.cli import defaults
from tether.cli.output import Table, emit_json, err, hand_over, out, read_link, styled, when
from tether.cli.phone import DirOption, JsonOption, _hex, _open, _time, app
from tether.errors import UsageError
from tether.link.status import Status
from tether.phone import cloud
from tether.phone.wallet import PhoneWallet
from tether.protocol import credentials, vss
from tether.protocol.commands import Command
from tether.protocol.names import parse_rights
from tether.protocol.remote import REMOTE_COMMANDS

ServerOption = typer.Option(
    None,
    "--server",
    envvar="TETHER_SERVER",
    help="The tether server, http://HOST:PORT [default: the config file's `server`].",
    callback=defaults.server,
)
T = TypeVar("T")
fleet_app = typer.Typer(help="(Operator) A fleet of cars: bulk grants for renters, revocation.")
app.add_typer(fleet_app, name="fleet")


def _with_wallet(directory: Path, action: Callable[[PhoneWallet], Coroutine[Any, Any, T]]) -> T:
    """Open the wallet, run one cloud exchange with it, and close it whatever happens."""
    wallet = _open(directory)
    try:
        return asyncio.run(action(wallet))
    finally:
        wallet.close()


def _window(start: str | None, until: str, now: float) -> tuple[int, int]:
    nbf, exp = int(_time(start, now)), int(_time(until, 0))
    if exp <= max(nbf, int(now)):
        raise UsageError("--until must be in the future and after --from")
    return nbf, exp


@app.command()
def invite(
    directory: Path = DirOption,
    server: str = ServerOption,
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which car (your owner key)."),
    label: str = typer.Option("", "--name", help="Who the invitation is for."),
    show_qr: bool = typer.Option(True, "--qr/--no-qr", help="Print the link as a QR code."),
    qr_file: Path | None = typer.Option(
        None, "--qr-file", help="Also write the QR code to this .png or .svg file."
    ),
    as_json: bool = JsonOption,
) -> None:
    """(Owner) A single-use invitation link for a friend, through the server."""
    link = _with_wallet(
        directory, lambda wallet: cloud.invite(wallet.car(vehicle), server, label=label)
    )
    if as_json:
        emit_json({"link": link})
        return
    hand_over(link, what="invitation", qr_file=qr_file, show_qr=show_qr)


@app.command("request-key")
def request_key(
    directory: Path = DirOption,
    link: str = typer.Argument(..., help="The tether://invite/ link the owner sent."),
    label: str = typer.Option("", "--name", help="Your name, as the owner will see it."),
    as_json: bool = JsonOption,
) -> None:
    """(Friend) Answer an invitation: a new key for that car, its request sent to the owner."""
    answer = _with_wallet(
        directory,
        lambda wallet: cloud.request_key(
            wallet, read_link(link), label=label or wallet.name, now=time.time()
        ),
    )
    if as_json:
        emit_json(answer)
    else:
        out.print(
            f"Key request sent for [bold]{escape(str(answer['vehicle_name']))}[/bold] (key id "
            f"{answer['key_id'][:16]}); run `phone fetch --server {answer['server']}` once granted."
        )


@app.command()
def requests(
    directory: Path = DirOption,
    server: str = ServerOption,
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which car (your owner key)."),
    as_json: bool = JsonOption,
) -> None:
    """(Owner) Key requests friends sent through invitations, not granted yet."""
    pending = _with_wallet(
        directory, lambda wallet: cloud.pending_requests(wallet.car(vehicle), server)
    )
    if as_json:
        emit_json({"requests": pending})
        return
    table = Table("key id", "name", "asked", title="Pending key requests")
    for r in pending:
        table.add_row(r["key_id"][:16], r["label"], when(r["created_at"]))
    out.print(table)


@app.command()
def grant(
    directory: Path = DirOption,
    server: str = ServerOption,
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which car (your key)."),
    key: str | None = typer.Option(None, "--key", help="Only this request (key id prefix)."),
    rights: str = typer.Option("unlock,lock", "--rights", help="Comma-separated rights."),
    until: str = typer.Option(..., "--until", help="End of validity, e.g. 2026-12-24T18:00."),
    start: str | None = typer.Option(None, "--from", help="Start of validity (default: now)."),
    as_json: bool = JsonOption,
) -> None:
    """(Owner) Sign grants for pending key requests and put them in the friends' mailboxes."""
    now = time.time()
    nbf, exp = _window(start, until, now)
    issued = _with_wallet(
        directory,
        lambda wallet: cloud.grant_requests(
            wallet,
            wallet.car(vehicle),
            server,
            rights=parse_rights(rights),
            not_before=nbf,
            expires=exp,
            limits=credentials.Limits(),
            now=int(now),
            only=key,
        ),
    )
    rows = [
        {"serial": g.serial.hex(), "to": g.label, "grantee": g.grantee_id.hex()} for g in issued
    ]
    if as_json:
        emit_json({"granted": rows})
    elif not issued:
        out.print("No pending key requests.")
    else:
        for g in issued:
            out.print(
                f"[green]✓[/green] granted {','.join(sorted(g.rights))} to {g.label} "
                f"until {when(g.not_after)} (serial {g.serial.hex()[:16]})"
            )


@app.command()
def fetch(
    directory: Path = DirOption, server: str = ServerOption, as_json: bool = JsonOption
) -> None:
    """(Friend) Collect the grants waiting for your requested keys."""
    accepted = _with_wallet(
        directory, lambda wallet: cloud.fetch_grants(wallet, server, now=time.time())
    )
    if as_json:
        emit_json({"accepted": [{"car": c.name, "rights": sorted(c.rights)} for c in accepted]})
    elif not accepted:
        out.print("Nothing granted yet.")
    for car in accepted if not as_json else []:
        out.print(
            f"[green]✓[/green] a key to [bold]{car.name}[/bold]: {','.join(sorted(car.rights))}, "
            f"valid until {when(car.not_after)}"
        )


@app.command("revoke-remote")
def revoke_remote(
    directory: Path = DirOption,
    server: str = ServerOption,
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which car (your owner key)."),
    key: str | None = typer.Option(None, "--key", help="Key id to revoke (hex prefix)."),
    grant_id: str | None = typer.Option(None, "--grant", help="Grant serial (hex prefix)."),
    as_json: bool = JsonOption,
) -> None:
    """(Owner) Revoke through the server while you are away; the car applies it when it hears."""
    if (key is None) == (grant_id is None):
        raise UsageError("give exactly one of --key or --grant")
    wallet = _open(directory)
    try:
        car = wallet.car(vehicle)
        issued = [g for g in wallet.issued() if g.car == car.name]
        keys: list[bytes] = []
        serials: list[bytes] = []
        if grant_id is not None:
            hits = [g.serial for g in issued if g.serial.hex().startswith(grant_id.lower())]
            serials = hits if len(hits) == 1 else [_hex(grant_id, 16, "--grant")]
        else:
            assert key is not None
            hits = list(
                {g.grantee_id for g in issued if g.grantee_id.hex().startswith(key.lower())}
            )
            keys = hits if len(hits) == 1 else [_hex(key, 16, "--key")]
        status = asyncio.run(
            cloud.revoke(wallet, car, server, keys=keys, serials=serials, now=time.time())
        )
    finally:
        wallet.close()
    if as_json:
        emit_json({"id": status.id, "seq": status.seq, "status": status.status})
    else:
        out.print(
            f"Revocation {status.seq} queued for {car.name}: {status.status} "
            "(see `phone revocations`)"
        )


@app.command()
def revocations(
    directory: Path = DirOption,
    server: str = ServerOption,
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which car (your owner key)."),
    as_json: bool = JsonOption,
) -> None:
    """(Owner) Delivery status of your revocations: 'applied' only with the car's signature."""
    states = _with_wallet(directory, lambda wallet: cloud.revocations(wallet.car(vehicle), server))
    if as_json:
        emit_json(
            {
                "revocations": [
                    {"id": s.id, "seq": s.seq, "status": s.status, "reason": s.reason}
                    for s in states
                ]
            }
        )
        return
    table = Table("sequence", "status", "reason", title="Revocations")
    for s in states:
        colour = {Status.APPLIED: "green", Status.PENDING: "yellow"}.get(s.status, "red")
        table.add_row(str(s.seq), styled(s.status, colour), s.reason)
    out.print(table)


@app.command()
def remote(
    directory: Path = DirOption,
    server: str = ServerOption,
    command: str = typer.Argument(..., help="lock, unlock, trunk, locate, honk or stop."),
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which key."),
    wait: float = typer.Option(15.0, "--wait", help="Seconds to wait for the car's answer."),
    as_json: bool = JsonOption,
) -> None:
    """Send a signed command through the cloud; the car's signed answer is checked here."""
    try:
        which = Command(command)
    except ValueError:
        raise UsageError(f"unknown command {command!r}") from None
    if which not in REMOTE_COMMANDS:
        raise UsageError(
            f"`{which}` needs you at the car; remote commands: "
            f"{', '.join(sorted(c.value for c in REMOTE_COMMANDS))}"
        )
    wallet = _open(directory)
    started = time.perf_counter()
    try:
        car = wallet.car(vehicle)
        result = asyncio.run(cloud.command(wallet, car, server, which, now=time.time(), wait=wait))
    finally:
        wallet.close()
    ms = (time.perf_counter() - started) * 1000
    if as_json:
        emit_json(
            {
                "car": car.name,
                "command": which.value,
                "ok": result.ok,
                "reason": result.reason,
                "message": result.message,
                "state": result.state,
                "ms": round(ms, 1),
            }
        )
    elif result.ok:
        out.print(
            f"[green]✓[/green] {which.value} on {car.name} (remote, signed by the car, {ms:.0f} ms)"
        )
        where = vss.position(result.state)
        if where is not None:
            out.print(f"  the car is at {where}", highlight=False)
    else:
        err.print(
            f"[red]✗[/red] {which.value} on {car.name} refused ({result.reason}): {result.message}"
        )
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def telemetry(
    directory: Path = DirOption,
    server: str = ServerOption,
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which car (your owner key)."),
    as_json: bool = JsonOption,
) -> None:
    """(Owner) The car's latest reported state and its recent history."""
    info = _with_wallet(directory, lambda wallet: cloud.telemetry(wallet.car(vehicle), server))
    if as_json:
        emit_json(info)
        return
    table = Table(
        "signal", "value", title=f"{info['name']} (reported {when(info.get('state_at'))})"
    )
    for name, value in sorted(info.get("state", {}).items()):
        table.add_row(name, str(value))
    out.print(table)


@app.command("homeassistant")
def homeassistant(
    directory: Path = DirOption,
    server: str = ServerOption,
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which car (your owner key)."),
    as_json: bool = JsonOption,
) -> None:
    """(Owner) An MQTT login for Home Assistant that reads your cars' state and nothing else."""
    login = _with_wallet(
        directory, lambda wallet: cloud.home_assistant_login(wallet.car(vehicle), server)
    )
    if as_json:
        emit_json(login)
        return
    out.print("Home Assistant → Settings → MQTT: broker " + escape(str(login["mqtt"])))
    out.print(f"  username {login['username']}")
    out.print(f"  password {escape(str(login['password']))}  (shown once; keep it in HA only)")
    out.print(f"  discovery prefix {login['discovery_prefix']}")


# -- fleets ---------------------------------------------------------------------------------------
@fleet_app.command("create")
def fleet_create(
    directory: Path = DirOption,
    server: str = ServerOption,
    name: str = typer.Option(..., "--name", help="The fleet's name."),
    as_json: bool = JsonOption,
) -> None:
    """Create this wallet's fleet on the server (its id is the fleet key's id)."""
    fleet_id = _with_wallet(directory, lambda wallet: cloud.create_fleet(wallet, server, name=name))
    if as_json:
        emit_json({"fleet_id": fleet_id})
    else:
        out.print(f"Fleet [bold]{escape(name)}[/bold]: {fleet_id}")


@fleet_app.command("add")
def fleet_add(
    directory: Path = DirOption,
    server: str = ServerOption,
    vehicles: list[str] = typer.Option(..., "--vehicle", help="Cars (your owner keys) to add."),
) -> None:
    """Put cars you own into your fleet."""

    async def add(wallet: PhoneWallet) -> None:
        for name in vehicles:
            await cloud.fleet_add(wallet, wallet.car(name), server)

    _with_wallet(directory, add)
    out.print(f"Added {len(vehicles)} car(s) to the fleet.")


@fleet_app.command("accept")
def fleet_accept(
    directory: Path = DirOption,
    server: str = ServerOption,
    vehicle_id: str = typer.Option(..., "--vehicle-id", help="A car offered to your fleet (hex)."),
    as_json: bool = JsonOption,
) -> None:
    """Accept a car that its owner offered to your fleet (`fleet show` lists the offers)."""
    if len(vehicle_id) != 32 or any(c not in "0123456789abcdef" for c in vehicle_id.lower()):
        raise UsageError("--vehicle-id is the car's 32-digit hex id")
    status = _with_wallet(
        directory, lambda wallet: cloud.fleet_accept(wallet, server, vehicle_id.lower())
    )
    if as_json:
        emit_json({"vehicle_id": vehicle_id.lower(), "status": status})
    else:
        out.print(f"Car {vehicle_id.lower()}: {status}")


@fleet_app.command("show")
def fleet_show(
    directory: Path = DirOption, server: str = ServerOption, as_json: bool = JsonOption
) -> None:
    """The fleet's cars: last seen, lock state, pending revocations and key requests."""
    info = _with_wallet(directory, lambda wallet: cloud.fleet_show(wallet, server))
    if as_json:
        emit_json(info)
        return
    table = Table(
        "car",
        "last seen",
        "locked",
        "requests",
        "pending revocations",
        title=f"Fleet {info['name']}",
    )
    for v in info["vehicles"]:
        locked = v["state"].get(vss.DRIVER_DOOR_LOCKED)
        table.add_row(
            v["name"],
            when(v["last_seen"]),
            {True: "yes", False: "no"}.get(locked, "?"),
            str(v["pending_requests"]),
            str(v["pending_revocations"]),
        )
    out.print(table)
    for offer in info.get("offers", []):
        name = escape(str(offer["name"]))
        out.print(
            f"Offered by its owner: {name} ({offer['vehicle_id']}); `fleet accept` to take it"
        )


@fleet_app.command("grant")
def fleet_grant(
    directory: Path = DirOption,
    server: str = ServerOption,
    rights: str = typer.Option("unlock,lock,drive", "--rights", help="Comma-separated rights."),
    until: str = typer.Option(..., "--until", help="End of the rental, e.g. 2026-12-24T18:00."),
    start: str | None = typer.Option(None, "--from", help="Start (default: now)."),
    as_json: bool = JsonOption,
) -> None:
    """Grant every renter's pending request on every car of the fleet, in one signed batch."""
    now = time.time()
    nbf, exp = _window(start, until, now)
    issued = _with_wallet(
        directory,
        lambda wallet: cloud.fleet_grant_pending(
            wallet, server, rights=parse_rights(rights), not_before=nbf, expires=exp, now=int(now)
        ),
    )
    rows: list[dict[str, Any]] = [
        {"car": g.car, "to": g.label, "serial": g.serial.hex()} for g in issued
    ]
    if as_json:
        emit_json({"granted": rows})
    else:
        out.print(f"Granted {len(issued)} key(s) until {when(exp)}.")


@fleet_app.command("revoke")
def fleet_revoke(
    directory: Path = DirOption, server: str = ServerOption, as_json: bool = JsonOption
) -> None:
    """Revoke every grant you issued on the fleet's cars (the end of the rentals)."""
    count = _with_wallet(
        directory, lambda wallet: cloud.fleet_revoke_all(wallet, server, now=time.time())
    )
    if as_json:
        emit_json({"revoked": count})
    else:
        out.print(f"Queued the revocation of {count} grant(s).")


@fleet_app.command("audit")
def fleet_audit(
    directory: Path = DirOption,
    server: str = ServerOption,
    vehicle: str = typer.Option(..., "--vehicle", help="Which car (your owner key)."),
    as_json: bool = JsonOption,
) -> None:
    """A fleet car's audit log, as the car uploaded it."""
    wallet = _open(directory)
    try:
        car = wallet.car(vehicle)
        entries = asyncio.run(cloud.audit(cloud.fleet_key(wallet), car.vehicle_id, server))
    finally:
        wallet.close()
    if as_json:
        emit_json({"entries": entries})
        return
    table = Table("#", "time", "key", "command", "result", "reason", title=f"Audit of {car.name}")
    for e in entries:
        table.add_row(
            str(e["seq"]), when(e["time"]), e["key_id"][:12], e["command"], e["result"], e["reason"]
        )
    out.print(table)
