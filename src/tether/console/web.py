"""The console's routes on the server's ASGI app: the page, its state, its actions, a WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from tether.console.world import DemoWorld, Step

STATIC = Path(__file__).parent / "static"


def mount(app: FastAPI, world: DemoWorld) -> None:
    """Add the console to ``app`` (kept out of the API's OpenAPI document)."""
    sockets: set[WebSocket] = set()
    pending: dict[str, asyncio.Task[None]] = {}
    sending: set[asyncio.Task[None]] = set()

    async def send_all(message: dict[str, Any]) -> None:
        text = json.dumps(message, default=str)
        for ws in list(sockets):
            try:
                await ws.send_text(text)
            except Exception:  # a closed browser tab
                sockets.discard(ws)

    async def push_state() -> None:
        await asyncio.sleep(0.05)  # coalesce bursts of events into one picture
        pending.pop("state", None)
        await send_all({"type": "state", "state": world.snapshot()})

    def on_world(kind: str, payload: Any) -> None:
        loop = asyncio.get_running_loop()
        if kind == "step" and isinstance(payload, Step):
            task = loop.create_task(send_all({"type": "step", "step": payload.to_json()}))
            sending.add(task)
            task.add_done_callback(sending.discard)
        elif "state" not in pending:
            pending["state"] = loop.create_task(push_state())

    world.listeners.append(on_world)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")

    @app.get("/", include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/console/state", include_in_schema=False)
    async def state() -> JSONResponse:
        return JSONResponse(json.loads(json.dumps(world.snapshot(), default=str)))

    @app.post("/console/act", include_in_schema=False)
    async def act(request: Request) -> JSONResponse:
        body = await request.json()
        if not isinstance(body, dict) or not isinstance(body.get("action"), str):
            return JSONResponse({"detail": "send {action, phone, args}"}, status_code=400)
        args = body.get("args") or {}
        if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
            return JSONResponse({"detail": "args are text"}, status_code=400)
        step = await world.act(body["action"], str(body.get("phone", "owner")), **args)
        return JSONResponse(step.to_json())

    @app.websocket("/console/ws")
    async def live(ws: WebSocket) -> None:
        await ws.accept()
        sockets.add(ws)
        await ws.send_text(json.dumps({"type": "state", "state": world.snapshot()}, default=str))
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await ws.receive_text()  # the page only listens; this notices it leaving
        sockets.discard(ws)
