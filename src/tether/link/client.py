"""A signed HTTP client for the server, used by phones (per-car endpoint keys), cars and fleets."""

from __future__ import annotations

import functools
import json
import secrets
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from tether.errors import CloudError, LocalCode, TransportError
from tether.link import httpsig
from tether.protocol.crypto import Signer


def signed_headers(
    key: Signer, method: str, path: str, query: str, body: bytes, *, now: float
) -> dict[str, str]:
    """The RFC 9421 headers for one request, with a fresh random nonce."""
    return httpsig.sign_request(
        key,
        method=method,
        path=path,
        query=query,
        body=body,
        created=int(now),
        nonce=secrets.token_urlsafe(18),
    )


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context per process: building one (loading the CA store) costs tens of ms."""
    return ssl.create_default_context()


_STATUS_CODES = {
    401: LocalCode.UNAUTHENTICATED,
    403: LocalCode.FORBIDDEN,
    404: LocalCode.NOT_FOUND,
}


class CloudClient:
    """Every request signed by ``key`` (RFC 9421); errors become CloudError or TransportError."""

    def __init__(
        self,
        base_url: str,
        key: Signer,
        *,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CloudError(f"a server is http(s)://HOST:PORT, not {base_url!r}", status=0)
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.clock = clock
        self._http = http or httpx.AsyncClient(timeout=timeout, verify=_tls())
        self._own = http is None

    async def close(self) -> None:
        if self._own:
            await self._http.aclose()

    async def __aenter__(self) -> CloudClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def sign(self, method: str, path: str, query: str, body: bytes) -> dict[str, str]:
        return signed_headers(self.key, method, path, query, body, now=self.clock())

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        signed: bool = True,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """One request; the decoded JSON answer, or a typed error with the server's sentence."""
        path = urlsplit(self.base_url).path + path
        query = urlencode(params or {})
        content = json.dumps(body).encode() if body is not None else b""
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if signed:
            headers.update(self.sign(method, path, query, content))
        origin = self.base_url[: len(self.base_url) - len(urlsplit(self.base_url).path)]
        url = origin + path + (f"?{query}" if query else "")
        try:
            response = await self._http.request(
                method,
                url,
                content=content,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TimeoutException as exc:
            raise TransportError(
                f"the server at {self.base_url} did not answer in time",
                code=LocalCode.CLOUD_TIMEOUT,
                may_have_succeeded=method != "GET",
            ) from exc
        except httpx.HTTPError as exc:
            raise TransportError(
                f"cannot reach the server at {self.base_url}: {exc}",
                code=LocalCode.CLOUD_UNREACHABLE,
            ) from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {"detail": response.text[:200]}
        if response.status_code >= 400:
            detail = answer.get("detail") if isinstance(answer, dict) else None
            if not isinstance(detail, str):
                detail = json.dumps(detail)[:300]
            raise CloudError(
                f"the server refused ({response.status_code}): {detail}",
                status=response.status_code,
                code=_STATUS_CODES.get(response.status_code, LocalCode.CLOUD_REFUSED),
            )
        return answer if isinstance(answer, dict) else {"value": answer}
