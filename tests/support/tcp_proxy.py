"""A TCP proxy that can cut one process off a server: a network partition, on loopback.

``TcpProxy(upstream_port)`` listens on a free port of 127.0.0.1 and forwards every connection
to the upstream (two threads per connection, one per direction). ``cut()`` ends every
connection it carries and refuses new ones (accepted and closed at once, as a firewall that
rejects would), until ``heal()``. The cluster tests put one in front of the store's PostgreSQL
for each keyturn node, so one node can lose the store while the others keep it.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.ports import free_port

_CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream_port``."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        while True:
            self.port = free_port()
            try:
                self._listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                continue  # taken between the probe and the bind: try another
        self._listener.listen(128)
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def is_cut(self) -> bool:
        return self._cut

    def cut(self) -> None:
        """End every connection and refuse new ones."""
        with self._lock:
            self._cut = True
            carried = list(self._open)
            self._open.clear()
        for sock in carried:
            _close(sock)

    def heal(self) -> None:
        """Carry new connections again."""
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        _close(self._listener)
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._cut:
                    _close(client)
                    _close(upstream)
                    continue
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(_CHUNK)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
