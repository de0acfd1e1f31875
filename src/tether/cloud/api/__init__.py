"""The server's HTTP API (FastAPI, OpenAPI): every route signed, every caller checked.

Callers are keys, not accounts: a car signs with its identity key, a phone with its endpoint key
for that car, a fleet operator with its fleet key (RFC 9421, :mod:`tether.link.httpsig`).
Who may act on a car is what the car itself declared (its owners) plus the grantees of grants its
owners signed; a revocation the server relays also closes the server's doors to the revoked keys.
The server verifies every signed object it stores but can make none of them (docs/cloud.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tether.cloud.api import cars, commands, fleets, home, sharing
from tether.cloud.api.access import PROBLEMS, Hub
from tether.cloud.api.limits import BodyLimit, validation_problem
from tether.cloud.api.objects import accept_uplink, accept_uplinks
from tether.errors import SignatureRefused

__all__ = ["Hub", "accept_uplink", "accept_uplinks", "create_app"]


def create_app(hub: Hub, *, lifespan: Any = None) -> FastAPI:
    """The ASGI app over ``hub``."""
    app = FastAPI(
        title="tether cloud",
        version="1",
        description=(
            "Relays and stores for phones and cars; holds no key that can open a car. Every "
            "route except /v1/health and invitation lookup needs an RFC 9421 signature by a "
            "device key (docs/cloud.md)."
        ),
        lifespan=lifespan,
        # Swagger UI and ReDoc load from a CDN, so they are blank offline and reach outside:
        # the document itself is served (/openapi.json); open it in any OpenAPI viewer.
        docs_url=None,
        redoc_url=None,
    )
    app.state.hub = hub
    for module in (cars, sharing, commands, fleets, home):
        app.include_router(module.router, responses=PROBLEMS)

    from tether.webphone import web  # the web phone's files at /phone/

    web.mount(app)
    app.add_middleware(BodyLimit)
    app.add_exception_handler(RequestValidationError, validation_problem)

    @app.exception_handler(SignatureRefused)
    async def refused(_: Request, exc: SignatureRefused) -> JSONResponse:
        return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=401)

    return app
