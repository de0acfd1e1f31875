"""`tether server`: run the cloud (API, MQTT relay, embedded broker unless --mqtt) until Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Any

import typer

from tether.cli.output import out


def server(
    directory: Path = typer.Option(
        Path("tether-server"), "--dir", help="Where the server keeps its data."
    ),
    listen: str = typer.Option("http://127.0.0.1:8000", "--listen", help="http://HOST:PORT"),
    database: str | None = typer.Option(
        None,
        "--db",
        envvar="TETHER_DB",
        help="A database URL (default: SQLite in --dir); "
        "e.g. postgresql://user@127.0.0.1:5432/tether",
    ),
    mqtt: str | None = typer.Option(
        None,
        "--mqtt",
        envvar="TETHER_MQTT",
        help="A broker, mqtt://HOST:PORT (MQTT 5); default: an embedded broker on 127.0.0.1:1884",
    ),
    mqtt_port: int = typer.Option(
        1884, "--embedded-mqtt-port", help="Port of the embedded broker."
    ),
    mqtt_secrets: Path | None = typer.Option(
        None,
        "--mqtt-secrets",
        envvar="TETHER_MQTT_SECRETS",
        help="With --mqtt: the secrets file `tether mosquitto-setup` wrote (logins per car).",
    ),
    workers: int = typer.Option(
        1,
        "--workers",
        help="Server processes on the one port (N > 1 needs --db postgresql://... and --mqtt).",
    ),
    telemetry_days: float = typer.Option(
        400.0, "--telemetry-days", help="Days of telemetry kept (0: all); older months dropped."
    ),
    reuse_port: bool = typer.Option(False, "--reuse-port", hidden=True),
) -> None:
    """Run the tether server: relays and stores, and holds no key that can open a car."""
    from tether.cloud import workers as supervisor
    from tether.cloud.server import Server, ServerSettings

    logging.getLogger("tether").setLevel(logging.INFO)
    supervisor.check(workers, database, mqtt)
    if workers > 1:
        listen = supervisor.pin_port(listen)
        argv = ["server", "--dir", str(directory), "--listen", listen, "--reuse-port"]
        argv += [
            "--db",
            str(database),
            "--mqtt",
            str(mqtt),
            "--telemetry-days",
            str(telemetry_days),
        ]
        if mqtt_secrets is not None:
            argv += ["--mqtt-secrets", str(mqtt_secrets)]
        _supervise(supervisor.Supervisor(workers, argv, str(database)), listen, str(mqtt))
        return

    async def go() -> None:
        srv = Server(
            ServerSettings(
                directory=directory,
                listen=listen,
                database=database,
                mqtt=mqtt,
                embedded_mqtt_port=mqtt_port,
                mqtt_secrets=mqtt_secrets,
                reuse_port=reuse_port,
                telemetry_days=telemetry_days,
            )
        )
        await srv.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print(f"ready {srv.url} mqtt {srv.mqtt_url}", flush=True)
        out.print(
            f"tether server on [bold]{srv.url}[/bold] (OpenAPI: {srv.url}/openapi.json), "
            f"broker {srv.mqtt_url}",
            highlight=False,
        )
        try:
            await stop.wait()
        finally:
            await srv.stop()

    asyncio.run(go())


def _supervise(workers: Any, listen: str, mqtt: str) -> None:
    """Run ``workers`` (a Supervisor) until Ctrl-C or SIGTERM; say ready once all of them are."""

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        running = asyncio.create_task(workers.run(stop))
        ready = asyncio.create_task(workers.ready.wait())
        await asyncio.wait({running, ready}, return_when=asyncio.FIRST_COMPLETED)
        if ready.done():
            print(f"ready {listen} mqtt {mqtt}", flush=True)
            out.print(f"tether server: {workers.count} workers on [bold]{listen}[/bold]")
        await running

    asyncio.run(go())


def mosquitto_setup(
    directory: Path = typer.Option(..., "--dir", help="Where to write the broker's files."),
    port: int = typer.Option(1883, "--port", help="The port Mosquitto listens on (127.0.0.1)."),
) -> None:
    """Configure a Mosquitto for tether: no anonymous clients, a login per car and per Home
    Assistant credential (dynamic-security plugin), managed by `tether server --mqtt-secrets`."""
    from tether.cloud import mosquitto

    files = mosquitto.setup(directory, port=port)
    out.print(
        f"Wrote {files['config']}, {files['dynamic_security']} and {files['secrets']} (0600)."
    )
    out.print(f"Start the broker:  mosquitto -c {files['config']}")
    out.print(
        f"Start the server:  tether server --mqtt mqtt://127.0.0.1:{port} "
        f"--mqtt-secrets {files['secrets']}"
    )
