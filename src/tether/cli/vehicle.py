"""`tether vehicle ...`: create a car, show pairing codes, inspect state, keys and the audit log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from tether.cli import defaults
from tether.cli.output import Table, emit_json, err, out, styled, when
from tether.errors import UsageError, peer_text
from tether.protocol import vss
from tether.protocol.crypto import SystemEntropy
from tether.vehicle.headunit import profile_signals
from tether.vehicle.keystore import VehicleStore
from tether.vehicle.simulation import Attack, Place

app = typer.Typer(help="The car: identity, pairing codes, the agent, state and audit log.")

DirOption = typer.Option(
    None,
    "--dir",
    envvar="TETHER_CAR_DIR",
    help="The car's directory [default: $XDG_DATA_HOME/tether/car, or the config file's].",
    file_okay=False,
    callback=defaults.car_dir,
)
JsonOption = typer.Option(False, "--json", help="Print one JSON document instead of a table.")


@app.command()
def init(
    directory: Path = DirOption,
    name: str = typer.Option("My car", "--name", help="A name for the car."),
    pkcs11_module: Path | None = typer.Option(
        None,
        "--pkcs11-module",
        help="Keep the identity key in a PKCS#11 token: its module (.so); PIN in TETHER_HSM_PIN.",
    ),
    pkcs11_token: str = typer.Option("", "--pkcs11-token", help="The token's label."),
    pkcs11_label: str = typer.Option(
        "tether-car", "--pkcs11-label", help="The label of the key made in the token."
    ),
) -> None:
    """Create a new car identity (long-term key, empty key store, audit log)."""
    from tether.vehicle.hsm import TokenKey

    token = None
    if pkcs11_module is not None:
        if not pkcs11_token:
            raise UsageError("--pkcs11-module needs --pkcs11-token LABEL")
        token = TokenKey(module=str(pkcs11_module), token=pkcs11_token, label=pkcs11_label)
    store = VehicleStore.create(
        directory, name=name, entropy=SystemEntropy(), now=time.time(), token=token
    )
    where = f", key in the token {escape(pkcs11_token)!r}" if token else ""
    out.print(
        f"Created car [bold]{escape(name)}[/bold], vehicle id {store.vehicle_id.hex()}{where}"
    )
    store.close()


@app.command("pairing-code")
def pairing_code(directory: Path = DirOption, as_json: bool = JsonOption) -> None:
    """Show a fresh one-time pairing code (valid 10 minutes, single use)."""
    store = VehicleStore.open(directory)
    now = time.time()
    code = store.new_pairing_code(now=now)
    state = store.pairing_code()
    assert state is not None
    store.close()
    if as_json:
        emit_json({"code": code, "expires_at": state.expires_at})
    else:
        out.print(
            f"Pairing code: [bold cyan]{code}[/bold cyan] (valid until {when(state.expires_at)})"
        )


@app.command()
def revoke(
    directory: Path = DirOption,
    key: str = typer.Option(..., "--key", help="The key id to revoke (hex, from `status`)."),
    as_json: bool = JsonOption,
) -> None:
    """Revoke a key locally, for good (for when no owner phone is at hand)."""
    store = VehicleStore.open(directory)
    try:
        matches = [e for e in store.endpoints() if e.endpoint_id.hex().startswith(key.lower())]
        if len(matches) != 1:
            raise UsageError(f"{len(matches)} keys match {key!r}; give more of the key id")
        (endpoint,) = matches
        if endpoint.revoked:
            raise UsageError(f"key {endpoint.endpoint_id.hex()} is already revoked")
        seq = store.revocation_seq() + 1
        store.revoke(endpoint.endpoint_id, seq=seq, now=time.time(), by="local admin")
    finally:
        store.close()
    if as_json:
        emit_json({"revoked": endpoint.endpoint_id.hex(), "seq": seq})
    else:
        out.print(
            f"Revoked key {endpoint.endpoint_id.hex()} ({escape(endpoint.name)}), sequence {seq}"
        )


KeyOption = typer.Option("", "--key", help="Only the phone of this key (id or prefix; all: empty).")
headunit_app = typer.Typer(
    help="The car's screen: watch it, or have it ask the driver's phone for something.",
    invoke_without_command=True,
)
app.add_typer(headunit_app, name="headunit")


@headunit_app.callback()
def headunit(
    ctx: typer.Context,
    directory: Path = DirOption,
    seconds: float = typer.Option(0, "--seconds", help="Stop after this long (0: until Ctrl-C)."),
    as_json: bool = JsonOption,
) -> None:
    """Watch the car's screen: each driver's data as it arrives, and the moment it is forgotten."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from tether.vehicle.run import HEADUNIT_SOCKET

    path = directory / HEADUNIT_SOCKET

    async def watch() -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            raise UsageError(f"no running car agent in {directory} (start `vehicle run`)") from None
        try:
            async with asyncio.timeout(seconds or None):
                while line := await reader.readline():
                    event = json.loads(line)
                    if as_json:
                        print(json.dumps(event), flush=True)
                    elif event["event"] == "shown":
                        out.print(f"[green]screen[/green] {_screen_line(event)}")
                    else:
                        why = escape(peer_text(event.get("reason", ""), 120))
                        who = escape(_driver(event))
                        out.print(f"[yellow]forgotten[/yellow] {who}: {why}")
        except TimeoutError:
            pass
        finally:
            writer.close()

    asyncio.run(watch())


def _ask_screen(
    directory: Path, category: str, query: dict[str, object], key: str, as_json: bool
) -> None:
    """Have the head unit ask the driver's phone, and show what it granted."""
    answer = _control(directory, {"op": "ask", "category": category, "query": query, "key": key})
    if as_json:
        emit_json(answer)
        return
    who = escape(_driver(answer))
    granted = answer.get("granted", {})
    if category not in granted:
        out.print(f"[yellow]{who}[/yellow]: {category} not shared with this car")
        raise typer.Exit(1)
    records = granted[category]
    if category == "profile":
        out.print(f"{who}: {escape(_profile(records))}")
        return
    out.print(f"{who}: {len(records)} {category}")
    for record in records[:50]:
        fields = (
            [record.get("name", ""), *record.get("phones", [])[:1]]
            if category == "contacts"
            else [record.get("title") or record.get("name", ""), record.get("start", "")]
        )
        out.print("  " + escape(" · ".join(peer_text(f, 60) for f in fields if f)))


@headunit_app.command("search")
def headunit_search(
    text: str = typer.Argument(..., help="The start of a contact's name."),
    directory: Path = DirOption,
    key: str = KeyOption,
    as_json: bool = JsonOption,
) -> None:
    """Search the driver's contacts, as the car's phone screen does (the phone decides)."""
    _ask_screen(directory, "contacts", {"prefix": text, "limit": 20}, key, as_json)


def _register_ask(category: str, what: str) -> None:
    def ask(directory: Path = DirOption, key: str = KeyOption, as_json: bool = JsonOption) -> None:
        _ask_screen(directory, category, {}, key, as_json)

    ask.__doc__ = f"Ask the driver's phone for {what} (the phone decides by consent)."
    headunit_app.command(category)(ask)


for _category, _what in (
    ("favourites", "their favourite places"),
    ("media", "their media"),
    ("calendar", "today's agenda"),
    ("profile", "their seat and climate"),
):
    _register_ask(_category, _what)


def _control(directory: Path, request: dict[str, object]) -> dict[str, Any]:
    """One request to the running agent's control socket, and its answer."""
    import asyncio

    from tether.vehicle.run import CONTROL_SOCKET

    async def ask() -> dict[str, Any]:
        try:
            reader, writer = await asyncio.open_unix_connection(str(directory / CONTROL_SOCKET))
        except OSError:
            raise UsageError(f"no running car agent in {directory} (start `vehicle run`)") from None
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            answer: dict[str, Any] = json.loads(await asyncio.wait_for(reader.readline(), 10))
            return answer
        finally:
            writer.close()

    answer = asyncio.run(ask())
    if "error" in answer:
        raise UsageError(str(answer["error"]))
    return answer


@app.command()
def service(
    directory: Path = DirOption,
    install: bool = typer.Option(False, "--install", help="Write the unit (needs root)."),
    unit_dir: Path = typer.Option(
        Path("/etc/systemd/system"), "--unit-dir", help="Where --install writes the unit."
    ),
    user: str = typer.Option("", "--user", help="The account the agent runs as (default: you)."),
    hci_socket: bool = typer.Option(
        False, "--hci-socket", help="Allow a Linux HCI socket (ble:hci-socket:N) to the agent."
    ),
) -> None:
    """Print (or --install) the hardened systemd unit that runs this car's agent."""
    from tether.vehicle import service as unit_file

    if not (directory / "vehicle.db").exists():
        raise UsageError(f"no car in {directory}; create it first (tether vehicle init)")
    text = unit_file.unit(directory, user=user, hci_socket=hci_socket)
    if not install:
        print(text, end="")
        return
    try:
        path = unit_file.install(text, unit_dir)
    except OSError as exc:
        raise UsageError(f"cannot write the unit into {unit_dir}: {exc} (run as root?)") from None
    out.print(
        f"wrote {escape(str(path))}; now: systemctl daemon-reload && systemctl enable --now"
        f" {unit_file.UNIT_NAME}"
    )


@app.command()
def button(directory: Path = DirOption, as_json: bool = JsonOption) -> None:
    """Press the start button: the car starts for a phone measured in the cabin that may drive."""
    answer = _control(directory, {"op": "button"})
    if as_json:
        emit_json(answer)
    elif answer["ok"]:
        out.print("[green]✓[/green] started: a phone that may drive is in the cabin")
    else:
        out.print(f"[red]✗[/red] not started ({escape(str(answer['reason']))})")
    if not answer["ok"]:
        raise typer.Exit(1)


sim_app = typer.Typer(help="The ranging simulation of a car run with --ranger sim.")
app.add_typer(sim_app, name="sim")


@sim_app.command("walk")
def sim_walk(
    directory: Path = DirOption,
    to: Place = typer.Option(..., "--to", help="Where the phone goes."),
    key: str = KeyOption,
    as_json: bool = JsonOption,
) -> None:
    """Move the simulated phones: to a door, into the cabin, or away (30 m)."""
    answer = _control(directory, {"op": "walk", "to": to.value, "key": key})
    if as_json:
        emit_json(answer)
    else:
        out.print(f"phones moved to {to.value}: {answer['phones']}")


@sim_app.command("attack")
def sim_attack(
    directory: Path = DirOption,
    kind: Attack = typer.Option(..., "--kind", help="relay, early, or none to stop."),
    key: str = KeyOption,
    as_json: bool = JsonOption,
) -> None:
    """Put an attacker between the car and the phones: a relay, or early answers."""
    answer = _control(directory, {"op": "attack", "kind": kind.value, "key": key})
    if as_json:
        emit_json(answer)
    else:
        out.print(f"attack {kind.value} on {answer['phones']} phone(s)")


def _driver(event: dict[str, Any]) -> str:
    """Who drives, by the name the car keeps for the key (the key id's start if none)."""
    name = peer_text(event.get("driver") or "", 64)
    return name or f"key {peer_text(event.get('key_id', ''), 12)}"


def _profile(profile: object) -> str:
    """The seat and climate a profile asks for, as the screen shows them."""
    if not isinstance(profile, dict):
        return "no profile"
    short = {
        vss.SEAT_POSITION: "seat",
        vss.SEAT_HEIGHT: "height",
        vss.SEAT_BACKREST: "backrest",
        vss.CABIN_TEMPERATURE: "°C",
    }
    shown = [f"{short[name]} {value}" for name, value in profile_signals(profile).items()]
    return ", ".join(shown) or "no seat or climate"


def _screen_line(event: dict[str, Any]) -> str:
    """One line of what the screen shows; every text in it came from a phone: made inert."""
    data = event.get("data", {}) if isinstance(event.get("data"), dict) else {}
    names = ", ".join(peer_text(c.get("name", ""), 40) for c in data.get("contacts", [])[:5])
    agenda = ", ".join(peer_text(e.get("title", ""), 40) for e in data.get("calendar", [])[:3])
    denied = ", ".join(peer_text(d, 20) for d in event.get("denied", [])) or "nothing"
    return escape(
        f"{_driver(event)}: contacts {names or '-'}; agenda {agenda or '-'};"
        f" {_profile(data.get('profile'))}; denied {denied}"
    )


@app.command()
def settings(
    directory: Path = DirOption,
    ranging_for_app: str | None = typer.Option(
        None,
        "--ranging-for-app",
        help="on: app commands over BLE need the phone measured at the car.",
    ),
    max_depth: int | None = typer.Option(
        None, "--max-delegation-depth", help="Longest grant chain accepted (default 2)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Show or change the owner's settings (read by `vehicle run` when it starts)."""
    store = VehicleStore.open(directory)
    try:
        if ranging_for_app is not None:
            if ranging_for_app not in ("on", "off"):
                raise UsageError("--ranging-for-app is on or off")
            store.set_setting("ranging_for_app", ranging_for_app, now=time.time())
        if max_depth is not None:
            store.set_max_depth(max_depth, now=time.time())
        current: dict[str, object] = {
            "ranging_for_app": store.setting("ranging_for_app", "off"),
            "max_delegation_depth": store.max_depth,
        }
    finally:
        store.close()
    if as_json:
        emit_json(current)
    else:
        for name, value in current.items():
            out.print(f"{escape(str(name))}: {escape(str(value))}")


@app.command()
def run() -> None:
    """Serve phones (see `tether vehicle run --help`)."""
    raise UsageError("internal: `vehicle run` is dispatched before typer")  # pragma: no cover


def _state(directory: Path) -> dict[str, object]:
    path = directory / "body.json"
    if not path.exists():
        from tether.vehicle.body.base import DEFAULT_STATE

        return dict(DEFAULT_STATE)
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


@app.command()
def status(directory: Path = DirOption, as_json: bool = JsonOption) -> None:
    """The car's state (VSS signals) and its enrolled keys."""
    store = VehicleStore.open(directory)
    state = _state(directory)
    keys = [
        {
            "key_id": e.endpoint_id.hex(),
            "name": e.name,
            "role": e.role,
            "rights": sorted(e.rights),
            "not_before": e.not_before,
            "not_after": e.not_after,
            "revoked": e.revoked,
            "transactions": e.ratchet,
            "last_used": e.last_used or None,
        }
        for e in store.endpoints()
    ]
    document = {
        "vehicle_id": store.vehicle_id.hex(),
        "name": store.name,
        "state": state,
        "keys": keys,
        "revocation_seq": store.revocation_seq(),
    }
    store.close()
    if as_json:
        emit_json(document)
        return
    out.print(f"[bold]{escape(str(document['name']))}[/bold]  vehicle id {document['vehicle_id']}")
    signals = Table("signal", "value", title="State (COVESA VSS)")
    for name, value in sorted(state.items()):
        signals.add_row(name, str(value))
    out.print(signals)
    table = Table("key id", "name", "role", "rights", "valid", "status", "last used", title="Keys")
    for key in keys:
        valid = f"{when(key['not_before'])} → {when(key['not_after'])}"  # type: ignore[arg-type]
        table.add_row(
            str(key["key_id"])[:16],
            str(key["name"]),
            str(key["role"]),
            ",".join(key["rights"]),  # type: ignore[arg-type]
            valid if key["not_before"] or key["not_after"] else "always",
            styled("revoked", "red") if key["revoked"] else styled("active", "green"),
            when(key["last_used"]),  # type: ignore[arg-type]
        )
    out.print(table)


@app.command()
def audit(
    directory: Path = DirOption,
    verify: bool = typer.Option(False, "--verify", help="Check the hash chain end to end."),
    limit: int = typer.Option(50, "--limit", min=0, help="Show the last N entries (0: all)."),
    as_json: bool = JsonOption,
) -> None:
    """The audit log; --verify detects any edit, deletion or reordering and says where."""
    store = VehicleStore.open(directory)
    shown = store.audit_entries(last=limit) if limit > 0 else store.audit_entries()
    problems = store.verify_audit() if verify else []
    store.close()
    if as_json:
        document: dict[str, object] = {
            "entries": [
                {
                    "seq": e.seq,
                    "time": e.time,
                    "key_id": e.key_id,
                    "command": e.command,
                    "result": e.result,
                    "reason": e.reason,
                    "detail": e.detail,
                }
                for e in shown
            ]
        }
        if verify:
            document["verified"] = not problems
            document["problems"] = [{"seq": p.seq, "problem": p.what} for p in problems]
        emit_json(document)
    else:
        table = Table(
            "#", "time", "key id", "command", "result", "reason", "detail", title="Audit log"
        )
        for e in shown:
            color = {"ok": "green", "denied": "yellow"}.get(e.result, "red")
            table.add_row(
                str(e.seq),
                when(e.time),
                e.key_id[:16],
                e.command,
                styled(e.result, color),
                e.reason,
                e.detail,
            )
        out.print(table)
        if verify and not problems:
            # Intact means numbered 1..N without a gap: the newest entry's number is the count.
            total = shown[-1].seq if shown else 0
            out.print(f"[green]Audit log intact[/green]: {total} entries, chain verified.")
        for problem in problems:
            err.print(f"[red]Audit log broken at entry {problem.seq}[/red]: {problem.what}")
    if problems:
        raise typer.Exit(1)
