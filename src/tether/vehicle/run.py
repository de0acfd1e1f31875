"""`tether vehicle run`: start the agent on a transport and serve until SIGINT/SIGTERM.

Kept free of typer, rich and the web stack so that the car agent starts fast (docs/vehicle.md): the
`tether` entry point hands `vehicle run` straight to :func:`main` here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tether.errors import LocalCode, TetherError
from tether.vehicle.agent import VehicleAgent
from tether.vehicle.body.base import Body

if TYPE_CHECKING:
    from tether.transport.base import Listener
    from tether.vehicle.ranging import Rangers

log = logging.getLogger("tether.vehicle")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tether vehicle run",
        description="Serve phones for the car in --dir.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="the car's directory (vehicle init); default: $TETHER_CAR_DIR, the config file's"
        " car_dir, or $XDG_DATA_HOME/tether/car",
    )
    parser.add_argument(
        "--listen",
        action="append",
        default=None,
        help="where phones reach the car, repeatable: tcp://HOST:PORT, ws://HOST:PORT (port 0:"
        " any free port) or ble:<HCI transport> (usb:0, hci-socket:0, serial:/dev/ttyACM0,"
        " tcp-client:HOST:PORT); default tcp://127.0.0.1:7300",
    )
    parser.add_argument(
        "--body", choices=("virtual", "can"), default=None, help="default: car.toml's, or virtual"
    )
    parser.add_argument(
        "--ranger",
        choices=("none", "sim"),
        default=None,
        help="the ranging radios: sim is the physics simulation (place phones with `tether"
        " vehicle sim walk`); none turns hands-free off (it fails closed)",
    )
    parser.add_argument("--can-mapping", type=Path, help="mapping file for --body can")
    parser.add_argument(
        "--server",
        help="a tether server, http://HOST:PORT: remote commands, revocations, telemetry",
    )
    parser.add_argument(
        "--mqtt", help="the broker, mqtt://HOST:PORT (default: the one the server names)"
    )
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    return parser


def make_rangers(kind: str) -> Rangers | None:
    """The car's ranging radios by name; None (hands-free off) unless asked for."""
    if kind == "sim":
        from tether.vehicle.simulation import SimulatedRangers

        return SimulatedRangers()
    return None


async def open_listeners(urls: list[str], agent: VehicleAgent) -> list[Listener]:
    """Every ``--listen``, or none: a failure closes the ones already open."""
    from tether.transport import registry

    listeners: list[Listener] = []
    try:
        for url in urls:
            vehicle_id = agent.store.vehicle_id
            listeners.append(await registry.listen(url, agent.handle, vehicle_id=vehicle_id))
    except BaseException:
        for opened in listeners:
            await opened.close()
        raise
    return listeners


def make_body(kind: str, directory: Path, mapping: Path | None) -> Body:
    if kind == "can":
        if mapping is None:
            raise TetherError("--body can needs --can-mapping FILE", code=LocalCode.USAGE_ERROR)
        from tether.vehicle.body.can import CanBody  # python-can and cantools only when asked

        return CanBody.from_mapping(mapping, state_path=directory / "body.json")
    from tether.vehicle.body.virtual import VirtualBody

    return VirtualBody(directory / "body.json")


async def serve(args: argparse.Namespace) -> None:
    from tether.transport import registry
    from tether.vehicle.keystore import VehicleStore

    for url in args.listen:
        registry.check(url, listening=True)  # every address, before anything is opened
    lock = hold_lock(args.dir)
    store = VehicleStore.open(args.dir)
    opener = getattr(store.identity, "open", None)
    if opener is not None:
        opener()  # a key in a PKCS#11 token: no PIN, no car (said now, not at the first phone)
    body = make_body(args.body, args.dir, args.can_mapping)
    agent = VehicleAgent(store, body, rangers=make_rangers(args.ranger))
    listeners = await open_listeners(args.listen, agent)
    listener = listeners[0]
    screen, viewers = await _serve_headunit(agent, args.dir / HEADUNIT_SOCKET)
    control = await _serve_control(agent, args.dir / CONTROL_SOCKET)
    watcher = asyncio.create_task(agent.watch())
    link = None
    if args.server:
        from tether.vehicle.cloud_link import CloudLink  # the cloud's libraries only when asked

        link = CloudLink(agent, args.server, address=listener.address, mqtt=args.mqtt)
        await link.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # One line on stdout that scripts and tests wait for: every address, then the vehicle id.
    addresses = " ".join(opened.address for opened in listeners)
    print(f"ready {addresses} vehicle {store.vehicle_id.hex()}", flush=True)
    try:
        await stop.wait()
    finally:
        # A clean stop, whoever is attached: no new phones, then the cloud, the open sessions,
        # the screen's viewers, the body and the store, in that order.
        for opened in listeners:
            await opened.close()
        if link is not None:
            await link.stop()
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await agent.stop()
        screen.close()
        control.close()
        (args.dir / CONTROL_SOCKET).unlink(missing_ok=True)
        for writer in list(viewers):
            writer.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(screen.wait_closed(), 2.0)
        (args.dir / HEADUNIT_SOCKET).unlink(missing_ok=True)
        await body.close()
        store.close()
        lock.close()
        log.info("stopped")


LOCK_FILE = "agent.lock"


def hold_lock(directory: Path) -> IO[str]:
    """Hold the car directory's lock for as long as this agent runs: one agent per car.

    An advisory ``flock`` that the kernel releases when the process ends, however it ends, so a
    ``kill -9`` never leaves a stale lock behind.
    """
    import fcntl
    import os

    if not (directory / "vehicle.db").exists():
        raise TetherError(
            f"no store at {directory}; create it first (tether vehicle init)",
            code=LocalCode.MISSING,
        )
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    handle = os.fdopen(fd, "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        other = handle.read().strip() or "another process"
        handle.close()
        raise TetherError(
            f"another agent ({other}) is already serving the car in {directory}; stop it first",
            code=LocalCode.USAGE_ERROR,
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


HEADUNIT_SOCKET = "headunit.sock"
CONTROL_SOCKET = "control.sock"
#: What the head unit may ask on demand (docs/protocol.md §8.2), and the purpose it shows.
ASKABLE = {
    "contacts": "Show your contacts",
    "favourites": "Show your favourite places",
    "media": "Show your media",
    "calendar": "Show today's agenda",
    "profile": "Set your seat and climate",
}


async def _ask(agent: VehicleAgent, request: dict[str, object]) -> dict[str, object]:
    """`vehicle headunit search|favourites|...`: ask the driver's phone, answer what it granted."""
    import time

    from tether.protocol.session import DataItem
    from tether.vehicle.agent import today

    category = str(request.get("category", ""))
    if category not in ASKABLE:
        return {"ok": False, "error": f"the head unit asks for one of {', '.join(ASKABLE)}"}
    query = request.get("query") if isinstance(request.get("query"), dict) else {}
    assert isinstance(query, dict)
    if category == "calendar":
        query = today(time.time())
    try:
        key_id, data = await agent.ask_driver(
            [DataItem(category=category, query=query)],
            purpose=ASKABLE[category],
            key_prefix=str(request.get("key", "")),
        )
    except TetherError as exc:
        return {"ok": False, "error": exc.message}
    endpoint = agent.store.endpoint(key_id)
    return {
        "ok": True,
        "key_id": key_id.hex(),
        "driver": endpoint.name if endpoint is not None else "",
        "granted": data.granted,
        "denied": list(data.denied),
    }


async def _serve_control(agent: VehicleAgent, path: Path) -> asyncio.AbstractServer:
    """The car's own controls for its own user: the start button, and the simulation's phones.

    One JSON request per line, one JSON answer per line, on a socket only the car's user may open
    (`tether vehicle button`, `tether vehicle sim walk|attack`).
    """
    import json

    from tether.vehicle.simulation import Attack, Place, SimulatedRangers

    async def answer(request: object) -> dict[str, object]:
        if not isinstance(request, dict):
            return {"ok": False, "error": "a request is a JSON object"}
        op = request.get("op")
        if op == "ask":
            return await _ask(agent, request)
        if op == "button":
            reason = await agent.press_start_button()
            return {"ok": reason is None, "reason": reason.value if reason else ""}
        sim = agent.rangers
        if op in ("walk", "attack") and not isinstance(sim, SimulatedRangers):
            return {"ok": False, "error": "the car runs without --ranger sim"}
        assert isinstance(sim, SimulatedRangers)
        key = str(request.get("key", ""))
        try:
            if op == "walk":
                return {"ok": True, "phones": sim.walk(Place(str(request.get("to"))), key)}
            if op == "attack":
                return {"ok": True, "phones": sim.attack(Attack(str(request.get("kind"))), key)}
        except ValueError:
            return {"ok": False, "error": "no such place or attack"}
        return {"ok": False, "error": "unknown request"}

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                except ValueError:
                    request = None
                writer.write(json.dumps(await answer(request)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(client, path=str(path))
    path.chmod(0o600)
    return server


async def _serve_headunit(
    agent: VehicleAgent, path: Path
) -> tuple[asyncio.AbstractServer, set[asyncio.StreamWriter]]:
    """Stream the head unit's screen to local viewers (`tether vehicle headunit`) as JSON lines.

    A socket, not a file: what the screen shows stays in memory, here and in the viewer.
    """
    import json

    from tether.vehicle.headunit import HeadUnitEvent, ScreenEventKind

    viewers: set[asyncio.StreamWriter] = set()

    def driver(key_id: str) -> str:
        """The name the car's store keeps for the key (what pairing or the grant called it)."""
        try:
            endpoint = agent.store.endpoint(bytes.fromhex(key_id))
        except ValueError:
            endpoint = None
        return endpoint.name if endpoint is not None else ""

    def line(event: HeadUnitEvent) -> bytes:
        body: dict[str, object] = {
            "event": event.kind,
            "key_id": event.key_id,
            "driver": driver(event.key_id),
            "reason": event.reason,
        }
        if event.screen is not None:
            body["data"] = event.screen.data
            body["denied"] = list(event.screen.denied)
        return json.dumps(body).encode() + b"\n"

    def broadcast(event: HeadUnitEvent) -> None:
        for writer in list(viewers):
            if writer.is_closing():
                viewers.discard(writer)
            else:
                writer.write(line(event))

    async def viewer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for screen in agent.headunit.screens().values():
            writer.write(
                line(HeadUnitEvent(kind=ScreenEventKind.SHOWN, key_id=screen.key_id, screen=screen))
            )
        viewers.add(writer)
        try:
            await reader.read()  # until the viewer leaves, or the agent stops
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            viewers.discard(writer)
            writer.close()

    agent.headunit.listeners.append(broadcast)
    path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(viewer, path=str(path))
    path.chmod(0o600)  # what the screen shows is the driver's: only the car's own user reads it
    return server, viewers


def apply_config(args: argparse.Namespace) -> None:
    """Flags first, then ``DIR/car.toml``, then the built-in defaults."""
    from tether.vehicle.config import load

    config = load(args.dir)
    args.listen = args.listen or list(config.listen or ("tcp://127.0.0.1:7300",))
    args.body = args.body or config.body or "virtual"
    args.can_mapping = args.can_mapping or config.can_mapping
    args.server = args.server or config.server
    args.mqtt = args.mqtt or config.mqtt
    args.ranger = args.ranger or config.ranger or "none"


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.dir is None:  # the same default as every other `tether vehicle` command
        import os

        from tether.cli.defaults import data_dir  # no typer or rich: only os, tomllib, pathlib

        args.dir = (
            Path(os.environ["TETHER_CAR_DIR"])
            if os.environ.get("TETHER_CAR_DIR")
            else (data_dir("car"))
        )
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.debug:  # one line per HTTP request (every inbox poll) is noise, not news
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        apply_config(args)
        asyncio.run(serve(args))
    except TetherError as exc:
        if args.debug:
            raise
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2 if exc.code in (LocalCode.USAGE_ERROR, LocalCode.MISSING) else 1
    except OSError as exc:
        if args.debug:
            raise
        print(f"error: cannot listen on {', '.join(args.listen)}: {exc}", file=sys.stderr)
        return 2
    return 0
