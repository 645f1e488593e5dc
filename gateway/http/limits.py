"""Bounds on a request's head, enforced while it is read: uvicorn's httptools protocol with
a byte limit, a header-count limit and a deadline for the head.

Why in the protocol and not in a middleware: an ASGI middleware sees a request only once its
whole head was buffered and parsed, so a 256 MiB header or 10,000 headers would already have
cost their memory and time, and a client sending one header byte a second (slowloris) would
hold a connection for as long as it likes. Here the count is kept as bytes arrive: memory is
bounded by the limit plus one socket read, and a head that is too large is answered `431` and
one that is too slow `408`, both problem+json, and the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.http.problems import PROBLEM_JSON, HTTPProblem, body_of

log = logging.getLogger(__name__)
MAX_HEAD_BYTES: Final = 64 * 1024
MAX_HEADERS: Final = 200
HEAD_TIMEOUT: Final = 10.0
_REASONS: Final = {408: "Request Timeout", 431: "Request Header Fields Too Large"}


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose request heads are bounded (see the module docstring)."""

    max_head_bytes: int = MAX_HEAD_BYTES
    max_headers: int = MAX_HEADERS
    head_timeout: float = HEAD_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._header_count = 0
        self._in_head = True
        self._tail = b""  # the last bytes read, to see a head end split across reads
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            room = self.max_head_bytes - self._head_bytes
            if len(data) > room and b"\r\n\r\n" not in self._tail + data[: max(room, 0)]:
                # the head does not end within the limit: refuse before the parser buffers it
                self._refuse(
                    431, f"the request head is over {self.max_head_bytes} bytes", "headers"
                )
                return
            self._head_bytes += len(data)
            self._tail = data[-3:]
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        if self._head_bytes > self.max_head_bytes:
            self._refuse(431, f"the request head is over {self.max_head_bytes} bytes", "headers")
        elif self._header_count > self.max_headers:
            self._refuse(431, f"the request has over {self.max_headers} header fields", "headers")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._header_count = 0
        if self._head_timer is None:
            self._arm()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count <= self.max_headers:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._header_count > self.max_headers:
            return  # refused once the parser returns
        self._in_head = False
        self._head_bytes = 0
        self._tail = b""
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        self._refuse(408, f"the request head did not arrive within {self.head_timeout:g}s", "")

    def _refuse(self, status: int, detail: str, field: str) -> None:
        log.info("request refused before routing (%s): %s", status, detail)
        problem = HTTPProblem(status, _REASONS[status], detail, field=field or None)
        body = body_of(problem)
        head = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
            f"content-type: {PROBLEM_JSON}\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode("ascii")
        self._disarm()
        self.transport.write(head + body)
        self.transport.close()


def bounded_protocol(
    max_head_bytes: int = MAX_HEAD_BYTES,
    max_headers: int = MAX_HEADERS,
    head_timeout: float = HEAD_TIMEOUT,
) -> type[BoundedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=` with these limits."""
    limits = {
        "max_head_bytes": max_head_bytes,
        "max_headers": max_headers,
        "head_timeout": head_timeout,
    }
    return type("BoundedHttpTools", (BoundedHttpToolsProtocol,), limits)
