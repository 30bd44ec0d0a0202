"""A bound on the request head (request line and headers) that `urnn serve` reads.

uvicorn's httptools protocol reads a request head of any size, and the parser grows a header
value or URL by concatenation, so the cost is quadratic in its size and paid on the event loop:
one client that sent a 150 MB header, with no API key, held the loop for 26 s (every other
request waited) and took 94 s of the server's time. uvicorn offers no limit for httptools
(h11's `h11_max_incomplete_event_size` is for h11 only), so `BoundedHeadProtocol` counts the
bytes received while a head is being read and answers 431 once they pass MAX_HEAD_BYTES,
closing the connection, before the parser has been fed much more than that.

The count is of whole network reads (asyncio hands over up to 256 KiB at a time), checked
after each is parsed: a read that also carries the head's end and a body is never refused, and
a head is read at most one read past the limit.
"""

from __future__ import annotations

import json
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

# nginx reads heads of up to 4 x 8 KiB by default and Node.js 16 KiB; 64 KiB leaves room for
# long query strings and cookies. uvicorn's own default for h11 is 16 KiB.
MAX_HEAD_BYTES = 64 * 1024

TOO_LARGE_DETAIL = (
    f"request line and headers larger than {MAX_HEAD_BYTES:,} bytes; send shorter headers "
    "(a forecast's data belongs in the body)"
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a 431 for a request head above MAX_HEAD_BYTES."""

    max_head_bytes = MAX_HEAD_BYTES

    def connection_made(self, transport):  # type: ignore[no-untyped-def]
        self._reading_head = True  # a connection starts with a request's head
        self._head_bytes = 0
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > self.max_head_bytes:
            self._refuse_head()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True  # a kept-alive connection's next bytes are a new head
        self._head_bytes = 0

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        logger.warning(
            "%s sent a request head above %d bytes: answered 431", client, self.max_head_bytes
        )
        body = json.dumps({"detail": TOO_LARGE_DETAIL}).encode()
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n"
        )
        self._reading_head = False  # nothing more is parsed or counted on this connection
        self.transport.write(head + body)
        self.transport.close()
