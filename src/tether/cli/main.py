"""The typer application behind `tether`: global options and error handling for every subcommand."""

from __future__ import annotations

import json
import logging
import sys

import typer
from rich.console import Console
from rich.markup import escape

from tether import __version__
from tether.errors import (
    LocalCode,
    StorageError,
    TetherError,
    TransportError,
    UsageError,
    peer_text,
)

app = typer.Typer(
    name="tether",
    help="The phone is the key to the car and the vault of its driver's data.",
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
)
err = Console(stderr=True)
_state = {"debug": False}

#: Exit codes shared by every command (docs/vehicle.md, "Exit codes").
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERNAL = 0, 1, 2, 3, 4


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(f"tether {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(EXIT_USAGE)
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.command()
def demo(
    port: int | None = typer.Option(
        None,
        "--port",
        help="The console's port (0: any free one). Default: 8080; any free one with --script.",
        show_default=False,
    ),
    browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the console."),
    script: bool = typer.Option(
        False, "--script", help="Play the whole story unattended; exit 0 only if all behaved."
    ),
) -> None:
    """A server, a virtual car, two phones and a live web console; click through the story."""
    from tether.cli.demo import run_demo

    # Played unattended, nobody needs a known address: a busy 8080 must not fail the story.
    chosen = port if port is not None else (0 if script else 8080)
    ok = run_demo(port=chosen, browser=browser, script=script)
    raise typer.Exit(EXIT_OK if ok else EXIT_REFUSED)


def _register_subcommands() -> None:
    from tether.cli import cloud, phone, server, vehicle

    del cloud  # registers its commands on the phone app
    app.add_typer(vehicle.app, name="vehicle")
    app.add_typer(phone.app, name="phone")
    app.command("server")(server.server)
    app.command("mosquitto-setup")(server.mosquitto_setup)


def main() -> None:
    """Run the CLI; user errors print one line, tracebacks only with --debug."""
    argv = sys.argv[1:]
    _register_subcommands()
    _state["debug"] = "--debug" in argv
    try:
        app()  # typer/click handle usage errors themselves (exit code 2)
    except KeyboardInterrupt:
        err.print("[red]Aborted.[/red]")
        sys.exit(EXIT_USAGE)
    except Exception as exc:  # the one place a user-facing error is turned into an exit code
        if _state["debug"]:
            raise
        code, said, status, may_have_run = _classify(exc)
        if "--json" in argv:  # a script gets one JSON document, whatever went wrong
            print(
                json.dumps(
                    {
                        "ok": False,
                        "error": {"code": code, "message": said, "exit": status},
                        "may_have_run": may_have_run,
                    },
                    sort_keys=True,
                )
            )
        err.print(_sentence(exc, code, said, may_have_run))
        sys.exit(status)


def _classify(exc: Exception) -> tuple[str, str, int, bool]:
    """(code, sentence, exit code, may the command have run) for any error."""
    said = peer_text(getattr(exc, "message", ""), 600)
    if isinstance(exc, UsageError) or (
        isinstance(exc, StorageError) and exc.code is LocalCode.MISSING
    ):
        return (
            LocalCode.USAGE_ERROR if isinstance(exc, UsageError) else exc.code,
            said,
            EXIT_USAGE,
            False,
        )
    if isinstance(exc, TransportError):
        return exc.code, said, EXIT_UNREACHABLE, exc.may_have_succeeded
    if isinstance(exc, TetherError):
        return exc.code, said, EXIT_REFUSED, False
    return "internal_error", peer_text(repr(exc), 600), EXIT_INTERNAL, False


def _sentence(exc: Exception, code: str, said: str, may_have_run: bool) -> str:
    said = escape(said)
    if isinstance(exc, UsageError) or code == LocalCode.MISSING:
        return f"[red]error:[/red] {said}"
    if isinstance(exc, TransportError):
        who = "server" if code.startswith("cloud") else "car"
        hint = " (the command may have run)" if may_have_run else ""
        return f"[red]{who} unreachable ({code}):[/red] {said}{hint}"
    if isinstance(exc, TetherError):
        return f"[red]error ({code}):[/red] {said}"
    return f"[red]internal error:[/red] {said} (run with --debug for the traceback)"
