"""Capture and resend HTTP requests byte for byte: a recording TCP proxy in front of a server,
and a sender of one raw request. Replay tests send what an official SDK sent, unchanged."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from typing import Any


class RecordingProxy:
    """Forward TCP connections to ``port`` and keep every byte each client sent."""

    def __init__(self, port: int) -> None:
        self._target = ("127.0.0.1", port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        #: Bytes sent by each client connection, in order of arrival.
        self.sent: list[bytearray] = []
        self._sockets: list[socket.socket] = [self._listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self._listener.accept()
                upstream = socket.create_connection(self._target)
                self._sockets += [client, upstream]
                record = bytearray()
                self.sent.append(record)
                for args in ((client, upstream, record), (upstream, client, None)):
                    threading.Thread(target=self._pump, args=args, daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if record is not None:
                    record += chunk
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for sock in self._sockets:
            # shutdown wakes the threads blocked in recv; close alone would not.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def send_raw(endpoint: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    """Send ``raw`` (one whole HTTP request) on a new connection; the status and JSON body."""
    host, port = endpoint.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def captured(proxy: RecordingProxy) -> bytes:
    """The one request the proxy saw (each SDK client below makes one call through it)."""
    [raw] = proxy.sent
    assert raw.startswith(b"POST /")
    return bytes(raw)
