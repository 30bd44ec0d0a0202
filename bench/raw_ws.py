"""A minimal blocking WebSocket client on one socket, for latency benchmarks (RFC 6455).

Why not the `websockets` package's client: as with httpx for HTTP (bench/raw_http.py), a
general client's own work per message would be timed along with the service's. This one does
the opening handshake, then sends each message as one masked binary frame and reads one
unfragmented reply frame: no extensions, no fragmentation, no TLS, no pings. The mask is
random per frame, as the RFC requires of clients.
"""

from __future__ import annotations

import base64
import os
import struct

from bench.raw_http import HEADER_END, SocketClient

BINARY, CLOSE = 0x2, 0x8


class RawWebSocketError(RuntimeError):
    """The handshake was refused, the server closed, or it sent a frame this client does not
    read (fragmented, or a close)."""


class RawWebSocket(SocketClient):
    """One WebSocket connection to `ws://host:port/path`; `headers` go with the handshake."""

    error = RawWebSocketError

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        headers: dict[str, str] | None = None,
        timeout: float = 600.0,
    ) -> None:
        super().__init__(host, port, timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode("latin-1")
        )
        while HEADER_END not in self._buffer:
            self._fill()
        head, self._buffer = self._buffer.split(HEADER_END, 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            self.close()
            raise RawWebSocketError(f"handshake refused: {status.decode('latin-1')}")

    def request(self, payload: bytes) -> bytes:
        """Send `payload` as one binary frame; the payload of the next frame received."""
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | BINARY, 0x80 | n))
        elif n < 1 << 16:
            head = bytes((0x80 | BINARY, 0x80 | 126)) + struct.pack("!H", n)
        else:
            head = bytes((0x80 | BINARY, 0x80 | 127)) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self._sock.sendall(head + mask + _masked(payload, mask))
        return self._read_frame()

    def _read_frame(self) -> bytes:
        while True:
            buffer = self._buffer
            if len(buffer) >= 2:
                first, length, offset = buffer[0], buffer[1] & 0x7F, 2
                if length == 126 and len(buffer) >= 4:
                    length, offset = struct.unpack("!H", buffer[2:4])[0], 4
                elif length == 127 and len(buffer) >= 10:
                    length, offset = struct.unpack("!Q", buffer[2:10])[0], 10
                if (length < 126 or offset > 2) and len(buffer) >= offset + length:
                    if first & 0x0F == CLOSE or not first & 0x80:
                        raise RawWebSocketError(f"unexpected frame (first byte {first:#x})")
                    self._buffer = buffer[offset + length :]
                    return buffer[offset : offset + length]
            self._fill()


def _masked(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, as one big-integer operation (no per-byte Python loop)."""
    n = len(payload)
    if n == 0:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(n, "little")
