"""The delivery transport: aiohttp for URLs, in-process ASGI for local functions.

aiohttp, not httpx: on this machine httpx's AsyncClient is ~10x slower at the concurrency the
dispatcher runs (BASELINES.md), and delivery is the hot path.

This is the boundary of the delivery port (`brokers.dispatch.Transport`): what aiohttp, the OS
or an in-process function raises is translated here, once, by `ERRORS` in `translated()` (as
httpx's `_transports/default.py` does), so the dispatcher, the metrics and the HTTP layer only
ever see `brokers.errors.DeliveryError`s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import aiohttp

from brokers.delivery import Destination
from brokers.errors import DeliveryError, DeliveryTimeout, SubscriberUnreachable
from brokers.transport import Response
from gateway.hosting.python import FunctionHost

ERRORS: Final[tuple[tuple[type[BaseException], type[DeliveryError]], ...]] = (
    (TimeoutError, DeliveryTimeout),  # asyncio's, and aiohttp's ServerTimeoutError family
    (aiohttp.ClientConnectionError, SubscriberUnreachable),  # refused, reset, DNS, disconnected
    (OSError, SubscriberUnreachable),
    (aiohttp.ClientError, DeliveryError),  # a malformed answer, an invalid URL
)
"""Library exception -> cemesh's, first match wins (subclasses before their bases)."""


@contextmanager
def translated(timeout: float) -> Iterator[None]:
    """Re-raise what `ERRORS` names as its DeliveryError, chained (`raise ... from exc`)."""
    try:
        yield
    except DeliveryError:
        raise
    except Exception as exc:
        for library, ours in ERRORS:
            if isinstance(exc, library):
                if ours is DeliveryTimeout:
                    raise DeliveryTimeout(
                        f"no answer within {timeout:g}s", timeout=timeout
                    ) from exc
                raise ours(str(exc) or type(exc).__name__) from exc
        raise


class MeshTransport:
    def __init__(self, functions: FunctionHost | None = None, *, limit: int = 256) -> None:
        self.functions = functions
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self.remote_functions: dict[str, str] = {}

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self,
        destination: Destination,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> Response:
        with translated(timeout):
            return await self._post(destination, headers, body, timeout)

    async def _post(
        self,
        destination: Destination,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeout: float,
    ) -> Response:
        if destination.function is not None:
            url = self.remote_functions.get(destination.function)
            if url is None:
                if self.functions is None:
                    raise SubscriberUnreachable(f"no function host for {destination.function}")
                return await self.functions.call(destination.function, headers, body, timeout)
        else:
            url = destination.uri or ""
        if self._session is None:
            raise SubscriberUnreachable("transport is closed")
        async with self._session.post(
            url,
            data=body,
            headers=list(headers),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            payload = await response.read()
            return Response(
                response.status, {k.lower(): v for k, v in response.headers.items()}, payload
            )
