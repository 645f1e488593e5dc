"""The delivery transport: aiohttp for URLs, in-process ASGI for local functions.

aiohttp, not httpx: on this machine httpx's AsyncClient is ~10x slower at the concurrency the
dispatcher runs (BASELINES.md), and delivery is the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiohttp

from brokers.delivery import Destination
from brokers.dispatch import Response
from gateway.functions import FunctionHost


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
        if destination.function is not None:
            url = self.remote_functions.get(destination.function)
            if url is None:
                if self.functions is None:
                    raise OSError(f"no function host for {destination.function}")
                return await self.functions.call(destination.function, headers, body, timeout)
        else:
            url = destination.uri or ""
        if self._session is None:
            raise OSError("transport is closed")
        try:
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
        except aiohttp.ClientError as exc:
            raise OSError(str(exc) or type(exc).__name__) from exc
        except TimeoutError:
            raise TimeoutError(f"no answer within {timeout:g}s") from None
