"""A recording relay in front of the real xymond.

The server side is configured to reach xymond through this relay, so a
test can assert exactly which bytes reached xymond (and that refused
messages reached it not at all) while the real xymond still processes
every message it is given.
"""

import socket
import threading
import time


class RecordingTap:
    """Accept on 127.0.0.1, record each message, pass it on to xymond."""

    def __init__(self, upstream: 'tuple[str, int]') -> None:
        self.upstream = upstream
        self.messages = []
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(('127.0.0.1', 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._running = True
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        """Return the "IP:PORT" to put in the xymond setting."""
        return '127.0.0.1:%d' % self.port

    def reset(self) -> None:
        """Forget what was recorded so far."""
        with self._lock:
            self.messages = []
            self.connections = 0

    def wait_for(self, count: int, timeout: float = 10) -> 'list[bytes]':
        """Wait (bounded) until COUNT messages arrived; return them all."""
        deadline = time.monotonic() + timeout

        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)

        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        """Stop accepting and wait for the relay thread."""
        self._running = False
        self._thread.join(timeout=5)
        self._listener.close()

    def _serve(self) -> None:
        """Accept connections until closed; one thread per connection."""
        while self._running:
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return

            with self._lock:
                self.connections += 1

            threading.Thread(target=self._relay, args=(client,),
                             daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        """Read one message to EOF, record it, relay xymond's reply."""
        client.settimeout(30)

        with client:
            chunks = []

            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)

            message = b''.join(chunks)

            with self._lock:
                self.messages.append(message)

            with socket.create_connection(self.upstream, timeout=30) as up:
                up.sendall(message)
                up.shutdown(socket.SHUT_WR)
                while True:
                    chunk = up.recv(65536)
                    if not chunk:
                        break
                    client.sendall(chunk)
