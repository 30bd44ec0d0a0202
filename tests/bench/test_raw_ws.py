"""bench.raw_ws: the bare WebSocket client the streaming benchmark times messages with."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from bench.raw_ws import RawWebSocket, RawWebSocketError, _masked


def test_masking_matches_the_rfc_example() -> None:
    # RFC 6455, section 5.7: "Hello" masked with 37 fa 21 3d
    mask = bytes.fromhex("37fa213d")
    assert _masked(b"Hello", mask) == bytes.fromhex("7f9f4d5158")
    payload = bytes(range(256)) * 3
    assert _masked(_masked(payload, mask), mask) == payload
    assert _masked(b"", mask) == b""


def _serve(listener: socket.socket, status: bytes, replies: list[bytes]) -> None:
    """Accept one client, answer its handshake with `status`, then unmask each frame it sends
    and answer it with the next of `replies` as an unmasked binary frame."""
    conn, _ = listener.accept()
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(4096)
        conn.sendall(b"HTTP/1.1 " + status + b"\r\n\r\n")
        for reply in replies:
            head = conn.recv(2)
            length = head[1] & 0x7F
            if length == 126:
                length = struct.unpack("!H", conn.recv(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", conn.recv(8))[0]
            mask = conn.recv(4)
            body = b""
            while len(body) < length:
                body += conn.recv(length - len(body))
            assert _masked(body, mask) == reply  # the client sent what it was given
            n = len(reply)
            if n < 126:
                size = bytes([n])
            elif n < 1 << 16:
                size = bytes([126]) + struct.pack("!H", n)
            else:
                size = bytes([127]) + struct.pack("!Q", n)
            conn.sendall(bytes([0x82]) + size + reply)


@pytest.mark.parametrize("size", [5, 300, 70_000])
def test_one_reply_frame_per_message(size: int) -> None:
    messages = [bytes([i % 251]) * size for i in range(3)]
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        server = threading.Thread(
            target=_serve, args=(listener, b"101 Switching Protocols", messages)
        )
        server.start()
        with RawWebSocket("127.0.0.1", port, "/x", {"X-API-Key": "k"}, timeout=10) as client:
            replies = [client.request(message) for message in messages]
        server.join(timeout=10)
    assert replies == messages


def test_a_refused_handshake_raises() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        server = threading.Thread(target=_serve, args=(listener, b"403 Forbidden", []))
        server.start()
        with pytest.raises(RawWebSocketError, match="403"):
            RawWebSocket("127.0.0.1", port, "/x", timeout=10)
        server.join(timeout=10)
