"""Schemathesis against the server's OpenAPI document, with requests signed by a real owner key.

Every generated request is signed (RFC 9421) by the owner of a registered car and aimed at that
car, so the fuzzing reaches the routes' logic rather than stopping at authentication; the checks:
no server error, and every answer conforms to the documented schema.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.cloud.rig import free_port
from tether.cloud import db
from tether.cloud.api import Hub, create_app
from tether.link.client import signed_headers
from tether.protocol.crypto import PrivateKey, SystemEntropy


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Api:
    """The app served by uvicorn on a loopback port in a thread; a signing client beside it."""

    def __init__(self, tmp: Path) -> None:
        engine = db.make_engine(db.default_url(tmp))
        db.upgrade(engine)
        self.app = create_app(Hub(engine=engine, clock=time.time))
        port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}")
        self.car = SystemEntropy().new_private_key()
        self.owner = SystemEntropy().new_private_key()
        self.vid = self.car.public_key.key_id.hex()
        body = {
            "public_key": _b64(self.car.public_bytes),
            "name": "Fuzzed car",
            "owners": [_b64(self.owner.public_bytes)],
        }
        response = self.send(self.car, "PUT", f"/v1/vehicles/{self.vid}", "", json.dumps(body))
        assert response.status_code == 200, response.text

    def send(self, key: PrivateKey, method: str, path: str, query: str, body: str | None) -> Any:
        content = body.encode() if body is not None else b""
        headers = signed_headers(key, method, path, query, content, now=time.time())
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = path + (f"?{query}" if query else "")
        return self.client.request(method, url, content=content, headers=headers)

    def close(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    running = Api(tmp_path_factory.mktemp("openapi"))
    yield running
    running.close()


# The document is what the app serves at /openapi.json (made without a database).
schema = schemathesis.openapi.from_dict(
    create_app(Hub(engine=db.make_engine("sqlite://"), clock=time.time)).openapi()
)


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_openapi_conformance(case: Any, api: Api) -> None:
    if "vehicle_id" in (case.path_parameters or {}):
        case.path_parameters["vehicle_id"] = api.vid
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    path = case.formatted_path
    query = urlencode(kwargs.get("params") or {}, doseq=True)
    body = json.dumps(kwargs["json"]) if "json" in kwargs else None
    response = api.send(api.owner, case.method, path, query, body)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
