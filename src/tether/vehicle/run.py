"""`tether vehicle run`: start the agent on a transport and serve until SIGINT/SIGTERM.

Kept free of typer, rich and the web stack so that the car agent starts fast (docs/vehicle.md): the
`tether` entry point hands `vehicle run` straight to :func:`main` here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from tether.errors import TetherError
from tether.vehicle.agent import VehicleAgent
from tether.vehicle.body.base import Body

log = logging.getLogger("tether.vehicle")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tether vehicle run", description="Serve phones for the car in --dir."
    )
    parser.add_argument(
        "--dir", required=True, type=Path, help="the car's directory (vehicle init)"
    )
    parser.add_argument(
        "--listen", default="tcp://127.0.0.1:7300", help="tcp://HOST:PORT (port 0: any free port)"
    )
    parser.add_argument("--body", choices=("virtual", "can"), default="virtual")
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


def make_body(kind: str, directory: Path, mapping: Path | None) -> Body:
    if kind == "can":
        if mapping is None:
            raise TetherError("--body can needs --can-mapping FILE", code="usage_error")
        from tether.vehicle.body.can import CanBody  # python-can and cantools only when asked

        return CanBody.from_mapping(mapping, state_path=directory / "body.json")
    from tether.vehicle.body.virtual import VirtualBody

    return VirtualBody(directory / "body.json")


async def serve(args: argparse.Namespace) -> None:
    from tether.transport import tcp
    from tether.vehicle.keystore import VehicleStore

    store = VehicleStore.open(args.dir)
    body = make_body(args.body, args.dir, args.can_mapping)
    agent = VehicleAgent(store, body)
    listener = await tcp.listen(args.listen, agent.handle)
    screen = await _serve_headunit(agent, args.dir / HEADUNIT_SOCKET)
    link = None
    if args.server:
        from tether.vehicle.cloud_link import CloudLink  # the cloud's libraries only when asked

        link = CloudLink(agent, args.server, address=listener.address, mqtt=args.mqtt)
        await link.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # One line on stdout that scripts and tests wait for.
    print(f"ready {listener.address} vehicle {store.vehicle_id.hex()}", flush=True)
    try:
        await stop.wait()
    finally:
        if link is not None:
            await link.stop()
        screen.close()
        (args.dir / HEADUNIT_SOCKET).unlink(missing_ok=True)
        await listener.close()
        await body.close()
        store.close()
        log.info("stopped")


HEADUNIT_SOCKET = "headunit.sock"


async def _serve_headunit(agent: VehicleAgent, path: Path) -> asyncio.AbstractServer:
    """Stream the head unit's screen to local viewers (`tether vehicle headunit`) as JSON lines.

    A socket, not a file: what the screen shows stays in memory, here and in the viewer.
    """
    import json

    from tether.vehicle.headunit import HeadUnitEvent

    viewers: set[asyncio.StreamWriter] = set()

    def line(event: HeadUnitEvent) -> bytes:
        body: dict[str, object] = {
            "event": event.kind,
            "key_id": event.key_id,
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
            writer.write(line(HeadUnitEvent(kind="shown", key_id=screen.key_id, screen=screen)))
        viewers.add(writer)
        await reader.read()  # until the viewer leaves
        viewers.discard(writer)
        writer.close()

    agent.headunit.listeners.append(broadcast)
    path.unlink(missing_ok=True)
    return await asyncio.start_unix_server(viewer, path=str(path))


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        asyncio.run(serve(args))
    except TetherError as exc:
        if args.debug:
            raise
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2 if exc.code in ("usage_error", "missing") else 1
    except OSError as exc:
        if args.debug:
            raise
        print(f"error: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 2
    return 0
