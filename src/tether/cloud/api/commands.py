"""Routes for remote commands: relay a phone-signed envelope, long-poll its signed result."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import sqlalchemy as sa
from anyio import to_thread
from fastapi import APIRouter, HTTPException, Path, Query, Response

from tether.cloud import db
from tether.cloud.api.access import (
    HEX32,
    MAX_WAIT,
    Caller,
    Hub,
    HubDep,
    SignedBy,
    VehicleId,
    require,
    unb64,
    vehicle_key,
)
from tether.cloud.api.bodies import (
    CommandIn,
)
from tether.errors import RemoteError
from tether.link.b64 import b64
from tether.link.status import Status
from tether.protocol import remote

router = APIRouter(prefix="/v1")


@router.post("/vehicles/{vehicle_id}/commands", tags=["commands"], status_code=202)
async def post_command(
    vehicle_id: VehicleId,
    body: CommandIn,
    caller: SignedBy,
    hub: HubDep,
    *,
    response: Response,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0.0,
) -> dict[str, Any]:
    """(Owner, friend) Relay a phone-signed command envelope to the car.

    With ``wait``, the answer also waits up to that many seconds for the car's signed result (one
    round trip instead of a POST and a long-poll): 200 with the result, or 202 while pending.
    """
    vid = bytes.fromhex(vehicle_id)
    raw = unb64(body.envelope, "envelope")

    def store() -> tuple[remote.Envelope, bool]:
        now = hub.clock()
        with hub.engine.begin() as conn:
            require(conn, vid, caller, now, "owner", "friend")
            vehicle_key(conn, vid)
            try:
                envelope = remote.parse_envelope(raw)
            except RemoteError as exc:
                raise HTTPException(400, f"command refused ({exc.code}): {exc.message}") from None
            if envelope.vehicle_id != vid or envelope.key_id != caller.key_id:
                raise HTTPException(400, "the envelope is not for this car or not signed by you")
            if envelope.expires <= now:
                raise HTTPException(400, "the envelope has expired")
            command = {
                "digest": envelope.digest,
                "vehicle_id": vid,
                "key_id": caller.key_id,
                "command": envelope.command.value,
                "envelope": raw,
                "expires_at": float(envelope.expires),
                "created_at": now,
                "status": Status.PENDING,
            }
            # Sent before (a retry, or a race with another server): its answer, not a second run.
            return envelope, db.insert_new(conn, db.commands, command)

    envelope, new = await to_thread.run_sync(store)
    with _listening(hub, envelope.digest) as event:  # before the car can possibly answer
        if new:
            hub.publish(vid, {"t": "command", "raw": raw})
        answer = await _answer(hub, envelope.digest, caller, wait, event)
    if answer["status"] == Status.DONE:
        response.status_code = 200
    return answer


@router.get("/commands/{command_id}", tags=["commands"])
async def get_command(
    command_id: Annotated[str, Path(pattern=HEX32)],
    caller: SignedBy,
    hub: HubDep,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = 0.0,
) -> dict[str, Any]:
    """(The phone that sent it) The command's status and the car's signed result; long-polls."""
    digest = bytes.fromhex(command_id)
    with _listening(hub, digest) as event:  # before the first read: a result in between wakes it
        return await _answer(hub, digest, caller, wait, event)


@contextlib.contextmanager
def _listening(hub: Hub, digest: bytes) -> Iterator[asyncio.Event]:
    """An event the uplink sets when the result for ``digest`` is stored (one per request)."""
    hub.loop = asyncio.get_running_loop()
    event = asyncio.Event()
    waiting = hub.results.setdefault(digest, [])
    waiting.append(event)
    try:
        yield event
    finally:
        waiting.remove(event)
        if not waiting:
            hub.results.pop(digest, None)
            hub.delivered.pop(digest, None)


async def _answer(
    hub: Hub, digest: bytes, caller: Caller, wait: float, event: asyncio.Event
) -> dict[str, Any]:
    """The command's status and result, waiting up to ``wait`` seconds for the car's answer."""

    def read() -> Any:
        with hub.engine.begin() as conn:
            return conn.execute(
                sa.select(db.commands.c.key_id, db.commands.c.status, db.commands.c.result).where(
                    db.commands.c.digest == digest
                )
            ).first()

    row = await to_thread.run_sync(read)
    if row is None or bytes(row.key_id) != caller.key_id:
        raise HTTPException(404, "no such command of yours")
    deadline = hub.clock() + wait
    while row.status == Status.PENDING and hub.clock() < deadline:
        with contextlib.suppress(TimeoutError):
            # Woken by this process's uplink or another instance's notification; the re-read
            # is only a safety net, frequent when no notification can come.
            every = 5.0 if hub.listening else 0.5
            await asyncio.wait_for(event.wait(), timeout=min(every, deadline - hub.clock()))
        event.clear()
        result = hub.delivered.get(digest)
        if result is not None:  # stored and verified by this process's uplink: no re-read
            return {"id": digest.hex(), "status": Status.DONE, "result": b64(result)}
        row = await to_thread.run_sync(read)
    return {
        "id": digest.hex(),
        "status": row.status,
        "result": b64(bytes(row.result)) if row.result is not None else None,
    }
