"""A TCP proxy on loopback between the app and PostgreSQL that can cut connections mid-request.

    with CuttingProxy(5432) as proxy:
        url = proxy.url_for(db_url)          # the same database, through the proxy (no TLS)
        proxy.cut_when(b"INSERT INTO enrollment")

The first client packet containing the pattern is not forwarded: both sides of that
connection are closed instead, as when a network link or a PostgreSQL backend dies in the
middle of a transaction. `cuts` counts them. Everything else is forwarded unchanged.
"""

from __future__ import annotations

import socket
import threading


class CuttingProxy:
    def __init__(self, target_port: int = 5432, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pattern: bytes | None = None
        self.cuts = 0
        self.connections = 0
        self.open: set[socket.socket] = set()
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def url_for(self, url: str) -> str:
        """`url` (postgresql+psycopg://user@127.0.0.1:5432/db) through the proxy, TLS off so the
        proxy sees the statements."""
        head, database = url.rsplit("/", 1)
        user = head.split("//", 1)[1].split("@", 1)[0]
        return f"{head.split('//', 1)[0]}//{user}@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def cut_when(self, pattern: bytes | None) -> None:
        """Cut the next connection that sends `pattern` (None: stop cutting)."""
        with self.lock:
            self.pattern = pattern

    def __enter__(self) -> CuttingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.running = False
        _close(self.listener)  # shutdown() wakes the blocked accept()
        with self.lock:
            sockets = list(self.open)
        for sock in sockets:
            _close(sock)
        self.thread.join(timeout=5)

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self.lock:
                self.connections += 1
                self.open |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if from_client:
                    with self.lock:
                        cut = self.pattern is not None and self.pattern in data
                        if cut:
                            self.pattern = None
                            self.cuts += 1
                    if cut:
                        break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
                with self.lock:
                    self.open.discard(sock)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
