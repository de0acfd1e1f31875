"""`tether phone ...`: a phone: its wallet, pairing, commands, and sharing and revoking keys."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.markup import escape

from tether.cli import defaults
from tether.cli.output import Table, emit_json, err, hand_over, out, read_link, styled, when
from tether.errors import (
    PairingError,
    PassphraseNeeded,
    UsageError,
    WrongPassphrase,
    peer_text,
)
from tether.link import bundles
from tether.phone import consent, flows, sharing
from tether.phone import wallet as wallet_module
from tether.phone.wallet import PASSPHRASE_ENV, CarKey, KeyStatus, PhoneWallet
from tether.protocol import credentials, names, vss
from tether.protocol.commands import FAST_COMMANDS, Command
from tether.protocol.crypto import SystemEntropy
from tether.protocol.names import CATEGORIES, Role
from tether.protocol.pairing import check_code
from tether.transport import registry
from tether.transport.base import Transport

app = typer.Typer(help="A phone: its wallet of car keys, pairing, commands, sharing.")
T = TypeVar("T")

DirOption = typer.Option(
    None,
    "--dir",
    envvar="TETHER_PHONE_DIR",
    help="The phone's directory [default: $XDG_DATA_HOME/tether/phone, or the config file's].",
    file_okay=False,
    callback=defaults.phone_dir,
)
JsonOption = typer.Option(False, "--json", help="Print one JSON document instead of text.")
_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


PASSPHRASE_TRIES = 3


def _passphrase(*, new: bool) -> str | None:
    """From TETHER_PASSPHRASE, else asked for on a terminal, else None (the OS keyring)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        return None
    if new:
        if wallet_module.has_keyring():
            if not typer.confirm("Protect this wallet with a passphrase?", True):
                return None
        else:
            err.print(
                f"No OS keyring here: the wallet needs a passphrase (or set {PASSPHRASE_ENV})."
            )
        return str(typer.prompt("Passphrase", hide_input=True, confirmation_prompt=True))
    return str(typer.prompt("Wallet passphrase", hide_input=True)) or None


def _open(directory: Path) -> PhoneWallet:
    try:
        return PhoneWallet.open(directory, passphrase=os.environ.get(PASSPHRASE_ENV))
    except (PassphraseNeeded, WrongPassphrase):
        if not sys.stdin.isatty():
            raise
    for attempt in range(PASSPHRASE_TRIES):  # a typo is not the end
        try:
            return PhoneWallet.open(directory, passphrase=_passphrase(new=False))
        except WrongPassphrase:
            if attempt == PASSPHRASE_TRIES - 1:
                raise
            err.print("Wrong passphrase; try again.")
    raise AssertionError("unreachable")  # pragma: no cover


def _talk(address: str, action: Callable[[Transport], Awaitable[T]]) -> T:
    async def go() -> T:
        transport = await registry.connect(address)
        try:
            return await action(transport)
        finally:
            await transport.close()

    return asyncio.run(go())


@app.command()
def passphrase(directory: Path = DirOption) -> None:
    """Change the wallet's passphrase (TETHER_PASSPHRASE and TETHER_NEW_PASSPHRASE, or asked)."""
    old = os.environ.get(PASSPHRASE_ENV) or (
        str(typer.prompt("Current passphrase", hide_input=True)) if sys.stdin.isatty() else ""
    )
    new = os.environ.get("TETHER_NEW_PASSPHRASE") or (
        str(typer.prompt("New passphrase", hide_input=True, confirmation_prompt=True))
        if sys.stdin.isatty()
        else ""
    )
    if not old or not new:
        raise UsageError(f"set {PASSPHRASE_ENV} and TETHER_NEW_PASSPHRASE, or run on a terminal")
    wallet = PhoneWallet.open(directory, passphrase=old)
    try:
        wallet.change_passphrase(old, new)
    finally:
        wallet.close()
    out.print(f"Changed the passphrase of the wallet in {directory}.")


@app.command()
def init(
    directory: Path = DirOption,
    name: str = typer.Option("My phone", "--name", help="A name the car shows for this phone."),
) -> None:
    """Create a new phone wallet (keys encrypted at rest: OS keyring or a passphrase)."""
    PhoneWallet.create(directory, name=name, passphrase=_passphrase(new=True)).close()
    out.print(f"Created phone [bold]{escape(name)}[/bold] in {directory}")


@app.command()
def pair(
    directory: Path = DirOption,
    vehicle: str = typer.Option(
        ...,
        "--vehicle",
        help="The car's address: tcp://HOST:PORT, ws://HOST:PORT or ble:<HCI transport>@ADDRESS.",
    ),
    code: str = typer.Option(..., "--code", help="The pairing code the car shows."),
    name: str = typer.Option("", "--name", help="What to call the car (default: its own name)."),
    as_json: bool = JsonOption,
) -> None:
    """Pair with a car as its owner, with the one-time code the car shows."""
    try:
        check_code(code)  # a code of the wrong shape is the user's typo, not the car's refusal
    except PairingError as exc:
        raise UsageError(exc.message) from None
    registry.check(vehicle)
    wallet = _open(directory)
    try:
        car = _talk(
            vehicle,
            lambda t: flows.pair(
                wallet, t, code=code, address=vehicle, entropy=SystemEntropy(), name=name
            ),
        )
    finally:
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


def _window(car: CarKey) -> str:
    if car.not_before is None and car.not_after is None:
        return "always"
    return f"{when(car.not_before)} → {when(car.not_after)}"


def _status(car: CarKey, now: float) -> str:
    if car.status is KeyStatus.REVOKED:
        return "revoked or unknown to the car"
    if car.not_after is not None and now >= car.not_after:
        return "expired"
    if car.not_before is not None and now < car.not_before:
        return "not yet valid"
    return "active" if car.enrolled else "active (first use pending)"


keys_app = typer.Typer(
    help="The keys this phone holds and the grants it issued; `keys remove` forgets one.",
    invoke_without_command=True,
)
app.add_typer(keys_app, name="keys")


@keys_app.command("remove")
def keys_remove(
    directory: Path = DirOption,
    car: str = typer.Option(..., "--car", help="The key's name (from `phone keys`)."),
    as_json: bool = JsonOption,
) -> None:
    """Forget a key on this phone for good (a broken or unwanted one; the car is not told)."""
    wallet = _open(directory)
    try:
        removed = wallet.remove_car(car)
    finally:
        wallet.close()
    if as_json:
        emit_json({"removed": removed.name, "key_id": removed.endpoint_id.hex()})
    else:
        out.print(f"Removed the key {escape(removed.name)} ({removed.endpoint_id.hex()[:16]}).")


@keys_app.callback()
def keys(
    ctx: typer.Context,
    directory: Path = DirOption,
    as_json: bool = JsonOption,
) -> None:
    """The keys this phone holds (rights, window, status) and the grants it issued."""
    if ctx.invoked_subcommand is not None:
        return
    wallet = _open(directory)
    cars, issued = wallet.cars(), wallet.issued()
    wallet.close()
    now = time.time()
    rows = [
        {
            "car": c.name,
            "vehicle_id": c.vehicle_id.hex(),
            "key_id": c.endpoint_id.hex(),
            "role": c.role,
            "rights": sorted(c.rights),
            "not_before": c.not_before,
            "not_after": c.not_after,
            "status": _status(c, now),
            "address": c.address,
            "fast_ready": c.persistent_key is not None,
            "transactions": c.ratchet,
            "added_at": c.added_at,
        }
        for c in cars
    ]
    grants = [
        {
            "serial": g.serial.hex(),
            "car": g.car,
            "grantee": g.grantee_id.hex(),
            "label": g.label,
            "rights": sorted(g.rights),
            "not_before": g.not_before,
            "not_after": g.not_after,
            "revoked": g.revoked_seq is not None,
        }
        for g in issued
    ]
    if as_json:
        emit_json({"keys": rows, "issued": grants})
        return
    table = Table("car", "key id", "role", "rights", "valid", "status", "fast", title="Keys")
    for c, r in zip(cars, rows, strict=True):
        table.add_row(
            c.name,
            str(r["key_id"])[:16],
            c.role,
            ",".join(sorted(c.rights)),
            _window(c),
            str(r["status"]),
            "yes" if c.persistent_key else "no",
        )
    out.print(table)
    if grants:
        shared = Table("serial", "car", "to", "rights", "until", "status", title="Grants issued")
        for g in issued:
            shared.add_row(
                g.serial.hex()[:16],
                g.car,
                g.label or g.grantee_id.hex()[:12],
                ",".join(sorted(g.rights)),
                when(g.not_after),
                styled("revoked", "red") if g.revoked_seq is not None else "active",
            )
        out.print(shared)


def _link_or_file(given: str) -> str | bytes:
    """A pasted tether:// link (line breaks removed), or the bytes of the file it names."""
    if given.strip().startswith("tether://"):
        return read_link(given)
    try:
        return Path(given).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {given}: {exc.strerror}") from None


QrFileOption = typer.Option(
    None, "--qr-file", help="Also write the QR code to this .png or .svg file."
)


@app.command("key-request")
def key_request(
    directory: Path = DirOption,
    out_path: Path | None = typer.Option(None, "--out", help="Also write the request to a file."),
    label: str = typer.Option("", "--name", help="Your name, as the owner will see it."),
    show_qr: bool = typer.Option(True, "--qr/--no-qr", help="Print the request as a QR code."),
    qr_file: Path | None = QrFileOption,
    as_json: bool = JsonOption,
) -> None:
    """(Friend) Make a new key and a request for the car's owner: a link, a QR code, a file."""
    wallet = _open(directory)
    key = SystemEntropy().new_private_key()
    data = bundles.make_request(key.public_key, label or wallet.name)
    if out_path is not None:
        out_path.write_bytes(data)
    wallet.add_request(key, now=time.time())
    wallet.close()
    link = bundles.request_link(data)
    if as_json:
        emit_json({"key_id": key.public_key.key_id.hex(), "link": link, "file": str(out_path)})
        return
    where = f" and written to {out_path}" if out_path is not None else ""
    out.print(f"Key request made (key id {key.public_key.key_id.hex()}){where}.")
    hand_over(link, what="key request", qr_file=qr_file, show_qr=show_qr)


def _time(text: str | None, default: float) -> float:
    if not text:
        return default
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"not a date and time: {text!r} (use e.g. 2026-12-24T18:00)") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def _hours(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        start, end = (int(x) for x in text.split("-"))
    except ValueError:
        raise UsageError(f"hours are START-END, e.g. 07-22, not {text!r}") from None
    if not (0 <= start <= 24 and 0 <= end <= 24 and start != end):
        raise UsageError(f"hours are START-END between 0 and 24, not {text!r}")
    return start, end


def _days(text: str | None) -> frozenset[int] | None:
    if not text:
        return None
    text = text.lower()
    if "-" in text and "," not in text:
        a, _, b = text.partition("-")
        if a in _DAYS and b in _DAYS:
            i, j = _DAYS.index(a), _DAYS.index(b)
            return (
                frozenset(range(i, j + 1)) if i <= j else frozenset([*range(i, 7), *range(j + 1)])
            )
    days = [d.strip() for d in text.split(",")]
    if not all(d in _DAYS for d in days):
        raise UsageError(f"days are like mon-fri or sat,sun, not {text!r}")
    return frozenset(_DAYS.index(d) for d in days)


@app.command()
def share(
    directory: Path = DirOption,
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which car key to share from."),
    request: str = typer.Option(
        ..., "--request", help="The friend's key request: a file, or its tether:// link."
    ),
    rights: str = typer.Option("unlock,lock", "--rights", help="Comma-separated rights."),
    until: str = typer.Option(..., "--until", help="End of validity, e.g. 2026-12-24T18:00."),
    start: str | None = typer.Option(None, "--from", help="Start of validity (default: now)."),
    hours: str | None = typer.Option(None, "--hours", help="Hours of day, e.g. 07-22."),
    days: str | None = typer.Option(None, "--days", help="Days, e.g. mon-fri or sat,sun."),
    out_path: Path = typer.Option(..., "--out", help="Where to write the grant file."),
    show_qr: bool = typer.Option(True, "--qr/--no-qr", help="Print the grant as a QR code."),
    qr_file: Path | None = QrFileOption,
    as_json: bool = JsonOption,
) -> None:
    """Sign a grant for a friend's key (owner, or a key holding `share`)."""
    wallet = _open(directory)
    car = wallet.car(vehicle)
    wanted = names.parse_rights(rights)
    friend = bundles.read_request(_link_or_file(request))
    now = time.time()
    nbf, exp = int(_time(start, now)), int(_time(until, 0))
    if exp <= max(nbf, int(now)):
        raise UsageError("--until must be in the future and after --from")
    bundle, issued = sharing.grant(
        car,
        friend,
        rights=wanted,
        not_before=nbf,
        expires=exp,
        limits=credentials.Limits(hours=_hours(hours), weekdays=_days(days)),
        now=int(now),
    )
    serial, exp = issued.serial, int(issued.not_after)
    out_path.write_bytes(bundle.encode())
    wallet.record_issued(issued)
    wallet.close()
    link = bundle.link()
    if as_json:
        emit_json(
            {
                "serial": serial.hex(),
                "grantee": friend.key.key_id.hex(),
                "link": link,
                "file": str(out_path),
            }
        )
        return
    who = escape(friend.label or "a friend")
    out.print(
        f"Grant {serial.hex()[:16]} for [bold]{who}[/bold]: "
        f"{','.join(sorted(wanted))} on {escape(car.name)} until {when(exp)} → {out_path}"
    )
    hand_over(link, what="grant", qr_file=qr_file, show_qr=show_qr)


@app.command()
def accept(
    directory: Path = DirOption,
    grant: str = typer.Argument(..., help="A grant file, or a tether://grant/ link."),
    name: str = typer.Option("", "--name", help="What to call this key (default: the car's name)."),
    as_json: bool = JsonOption,
) -> None:
    """(Friend) Store a grant you received, for the key you requested."""
    bundle = bundles.read_bundle(_link_or_file(grant))
    wallet = _open(directory)
    try:
        car = sharing.accept(wallet, bundle, name=name, now=time.time())
    finally:
        wallet.close()
    if as_json:
        emit_json({"car": car.name, "rights": sorted(car.rights), "not_after": car.not_after})
    else:
        out.print(
            f"Accepted a key to [bold]{escape(car.name)}[/bold]: {','.join(sorted(car.rights))}, "
            f"valid {when(car.not_before)} → {when(car.not_after)}"
        )


@app.command()
def revoke(
    directory: Path = DirOption,
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which car (your owner key)."),
    key: str | None = typer.Option(None, "--key", help="Key id to revoke (hex prefix)."),
    grant: str | None = typer.Option(None, "--grant", help="Grant serial to revoke (hex prefix)."),
    as_json: bool = JsonOption,
) -> None:
    """(Owner) Revoke a key or a grant (and everything shared from it); the car confirms."""
    if (key is None) == (grant is None):
        raise UsageError("give exactly one of --key or --grant")
    wallet = _open(directory)
    car = wallet.car(vehicle)
    if car.role != Role.OWNER:
        raise UsageError("only an owner key can revoke")
    keys: list[bytes] = []
    serials: list[bytes] = []
    if grant is not None:
        matches = [g.serial for g in wallet.issued() if g.serial.hex().startswith(grant.lower())]
        serials = matches if len(matches) == 1 else [_hex(grant, 16, "--grant")]
    else:
        assert key is not None
        matches = [
            g.grantee_id for g in wallet.issued() if g.grantee_id.hex().startswith(key.lower())
        ]
        keys = matches[:1] if len(set(matches)) == 1 else [_hex(key, 16, "--key")]
    try:
        result = _talk(
            car.address,
            lambda t: flows.revoke(
                wallet, car, t, keys=keys, serials=serials, entropy=SystemEntropy()
            ),
        )
    finally:
        wallet.close()
    if as_json:
        emit_json(
            {"ok": result.ok, "seq": result.seq, "reason": result.reason, "message": result.message}
        )
    elif result.ok:
        out.print(
            f"[green]✓[/green] revoked on {car.name} (sequence {result.seq}): {result.message}"
        )
    else:
        why, said = escape(peer_text(result.reason)), escape(peer_text(result.message))
        err.print(f"[red]✗[/red] the car refused ({why}): {said}")
    if not result.ok:
        raise typer.Exit(1)


def _hex(text: str, size: int, option: str) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise UsageError(f"{option} must be hex") from None
    if len(value) != size:
        raise UsageError(
            f"{option} must be the full {2 * size}-digit id (or a prefix of one you issued)"
        )
    return value


def _command(
    command: Command, directory: Path, vehicle: str | None, standard: bool, as_json: bool
) -> None:
    wallet = _open(directory)
    car = wallet.car(vehicle)
    started = time.perf_counter()
    try:
        outcome = _talk(
            car.address,
            lambda t: flows.command(
                wallet,
                car,
                t,
                command,
                entropy=SystemEntropy(),
                ask=_terminal_asker() if sys.stdin.isatty() else None,
                standard=standard,
            ),
        )
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
        out.print(
            f"[green]✓[/green] {command.value} on {escape(car.name)}: done ({kind}, {ms:.1f} ms)"
        )
        where = vss.position(result.state or {}) if command is Command.LOCATE else None
        if where is not None:
            out.print(f"  the car is at {where}", highlight=False)
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
            None, "--vehicle", help="Which key (name in the wallet)."
        ),
        standard: bool = typer.Option(False, "--standard", help="Force a standard transaction."),
        as_json: bool = JsonOption,
    ) -> None:
        _command(command, directory, vehicle, standard, as_json)

    kind = (
        "a fast transaction when possible"
        if command in FAST_COMMANDS
        else "a standard transaction (fast ones may only lock, unlock or open the trunk)"
    )
    run.__doc__ = f"Send `{command.value}` to the car ({kind})."
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


@app.command()
def drive(
    directory: Path = DirOption,
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which key (name in the wallet)."),
    seconds: float = typer.Option(
        0, "--seconds", min=0, help="Hold the session this long (0: until Ctrl-C)."
    ),
    as_json: bool = JsonOption,
) -> None:
    """Keep a session open, as a phone in the driver's pocket: the car measures where it is
    (passive entry, walk-away lock, the start button) and its screen asks for data by consent."""
    wallet = _open(directory)
    car = wallet.car(vehicle)

    async def until_told() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds or None)

    if not as_json:
        err.print(f"Holding a session with {escape(car.name)}; Ctrl-C ends it.")
    try:
        why = _talk(
            car.address,
            lambda t: flows.hold(
                wallet,
                car,
                t,
                entropy=SystemEntropy(),
                stop=until_told(),
                ask=_terminal_asker() if sys.stdin.isatty() else None,
            ),
        )
    finally:
        wallet.close()
    if as_json:
        emit_json({"car": car.name, "ended": why})
    else:
        out.print(f"Session with {escape(car.name)} ended: {why}.")


# -- the vault and consent ------------------------------------------------------------------------
data_app = typer.Typer(
    help="The phone's data vault: contacts, calendar, favourites, media, profile."
)
consent_app = typer.Typer(help="Which car may read which of your data: allow, ask or deny.")
app.add_typer(data_app, name="data")
app.add_typer(consent_app, name="consent")


@data_app.command("import")
def data_import(
    directory: Path = DirOption,
    files: list[Path] = typer.Argument(..., help="vCard, iCalendar or tether JSON files."),
    as_json: bool = JsonOption,
) -> None:
    """Import files into the vault (the format is told from the content)."""
    from rich.progress import Progress, TaskID

    from tether.phone.vault import Vault

    wallet = _open(directory)
    vault = Vault(wallet)
    now = datetime.datetime.now(datetime.UTC)
    staged = None
    try:
        # Every file is read and checked first; the vault is written once, all or nothing.
        with Progress(transient=True, disable=as_json) as progress:
            for path in files:
                try:
                    text = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise UsageError(f"cannot read {path}: {exc}") from None
                task = progress.add_task(
                    f"Reading {path.name}", total=text.count("BEGIN:VCARD") or None
                )

                def advance(n: int, task: TaskID = task) -> None:
                    progress.update(task, completed=n)

                try:
                    staged = vault.stage(text, now=now, progress=advance, into=staged)
                except UsageError as exc:
                    raise UsageError(f"{path}: {exc.message} (nothing was imported)") from None
        if staged is not None:
            vault.commit(staged)
    finally:
        wallet.close()
    totals = staged.counts if staged is not None else {}
    past = staged.past if staged is not None else 0
    if as_json:
        emit_json({"imported": totals, "past_events_skipped": past})
        return
    gained = {c: n for c, n in totals.items() if n}
    out.print(
        "Imported " + ", ".join(f"{n} {c}" for c, n in gained.items())
        if gained
        else "Nothing new (everything in these files is already in the vault)"
    )
    if past:
        out.print(f"{past} past calendar events were not imported (the car shows what is ahead).")


@data_app.command("show")
def data_show(
    directory: Path = DirOption,
    category: str | None = typer.Argument(
        None, help="contacts, calendar, favourites, media or profile"
    ),
    as_json: bool = JsonOption,
) -> None:
    """Show what the vault holds (on this phone only)."""
    from tether.phone.vault import Vault

    wallet = _open(directory)
    try:
        vault = Vault(wallet)
        chosen = [category] if category else list(CATEGORIES)
        document = {c: vault.get(c) for c in chosen}
    finally:
        wallet.close()
    if as_json:
        emit_json(document)
        return
    for name, value in document.items():
        if isinstance(value, dict):
            table = Table("setting", "value", title=f"{name}")
            for key, setting in sorted(value.items()):
                table.add_row(str(key), _cell(setting))
            out.print(table if value else f"{name}: -")
            continue
        table = Table(title=f"{name} ({len(value)})")
        columns = [c for c in _COLUMN_ORDER if any(c in i for i in value[:200])]
        columns += sorted({k for item in value[:200] for k in item} - set(columns))
        for column in columns:
            table.add_column(column)
        for item in value[:200]:
            table.add_row(*(_cell(item.get(c, "")) for c in columns))
        out.print(table)
        if len(value) > 200:
            out.print(f"... and {len(value) - 200} more (--json shows all)")


_COLUMN_ORDER = ("name", "title", "start", "end", "location", "phones", "emails")


def _cell(value: object) -> str:
    """A value as a person reads it: lists joined, maps as key=value, never a Python repr."""
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


@consent_app.command("show")
def consent_show(directory: Path = DirOption, as_json: bool = JsonOption) -> None:
    """The rule for every car and category, and what this phone disclosed to which car."""
    from tether.phone import consent

    wallet = _open(directory)
    try:
        rules = {
            car.name: {c: consent.decision(wallet, car, c) for c in CATEGORIES}
            for car in wallet.cars()
        }
        log = wallet.disclosures()
    finally:
        wallet.close()
    if as_json:
        emit_json(
            {
                "rules": rules,
                "disclosures": [
                    {"time": t, "car": car, "category": c, "items": n, "purpose": p, "decision": d}
                    for t, car, c, n, p, d in log
                ],
            }
        )
        return
    table = Table("car", *CATEGORIES, title="Consent")
    for car, row in rules.items():
        table.add_row(car, *(row[c] for c in CATEGORIES))
    out.print(table)
    if log:
        history = Table("time", "car", "category", "items", "decision", title="Disclosures")
        for t, car, c, n, _, d in log[-50:]:
            history.add_row(when(t), car, c, str(n), d)
        out.print(history)


@consent_app.command("set")
def consent_set(
    directory: Path = DirOption,
    vehicle: str | None = typer.Option(None, "--vehicle", help="Which key (name in the wallet)."),
    category: str = typer.Option("all", "--category", help="A category, or all."),
    decision: str = typer.Option(..., "--decision", help="allow, ask or deny."),
) -> None:
    """Set what a car may read."""
    from tether.phone import consent

    wallet = _open(directory)
    try:
        car = wallet.car(vehicle)
        consent.set_decision(wallet, car, category, decision)
    finally:
        wallet.close()
    out.print(f"{escape(car.name)}: {category} → {decision}")


def _terminal_asker() -> consent.Asker:
    """Ask on the terminal: the questions of one request become one y/N question."""
    import asyncio

    waiting: list[str] = []
    answer: asyncio.Future[bool] | None = None

    async def ask(car: CarKey, category: str, purpose: str) -> bool:
        nonlocal answer
        waiting.append(category)
        if answer is not None:  # a question is being gathered: join it
            return await asyncio.shield(answer)  # one joiner giving up cancels nobody else
        mine: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        answer = mine
        allowed = False
        try:
            await asyncio.sleep(0)  # the request's other questions join this one
            categories, waiting[:], answer = list(waiting), [], None
            allowed = await asyncio.to_thread(_ask_terminal, car, categories, purpose)
        finally:
            if answer is mine:  # cut short before the question was even put
                waiting.clear()
                answer = None
            mine.set_result(allowed)  # also when cut short: the others hear "no"
        return allowed

    return ask


def _ask_terminal(car: CarKey, categories: list[str], purpose: str) -> bool:
    import select

    from tether.phone.consent import ASK_TIMEOUT

    what = (
        ", ".join(categories[:-1]) + " and " + categories[-1] if categories[1:] else categories[0]
    )
    err.print(
        f"[bold]{car.name}[/bold] asks for your [bold]{what}[/bold]: {purpose}. "
        f"Share? [y/N] (no answer in {ASK_TIMEOUT:.0f} s means no) ",
        end="",
    )
    ready, _, _ = select.select([sys.stdin], [], [], ASK_TIMEOUT)
    return bool(ready) and sys.stdin.readline().strip().lower() in ("y", "yes")
