"""Hand one checked message to xymond the way Xymon's own client does.

This runs in the forced command at every login.  It uses the _socket
extension that socket.py wraps: the wrapper pulls in enum and selectors,
about 7 ms of start-up, for conveniences not needed here.
"""

import _socket

from .errors import UpstreamUnavailable

# xymond accepts at most this much per connection (MAX_XYMON_INBUFSZ).
_MAX_REPLY = 64 * 1024 * 1024


def parse_address(value: str) -> 'tuple[str, int]':
    """Split "IP:PORT" (port 1984 when absent) for the xymond setting."""
    host, _, port = value.rpartition(':')

    if not host:
        return value, 1984

    return host, int(port)


def send_to_xymond(address: 'tuple[str, int]', message: bytes,
                   timeout: float) -> bytes:
    """Send MESSAGE on its own connection and return xymond's reply.

    xymond reads until the sender half-closes, then processes the message
    and answers (or not) before it closes.  The whole message is written
    in one go: xymond drops a connection that is still sending after its
    own timeout, and throws away what it had buffered.
    """
    host, port = address

    try:
        # A str host makes getaddrinfo load the idna codec, and with it
        # the re module: 10 ms at every login.  An ASCII address as bytes
        # resolves the same way without it.
        host = host.encode('ascii')
    except UnicodeEncodeError:
        pass

    try:
        family, kind, protocol, _, target = _socket.getaddrinfo(
            host, port, _socket.AF_UNSPEC, _socket.SOCK_STREAM)[0]
        sock = _socket.socket(family, kind, protocol)
    except OSError:
        raise UpstreamUnavailable() from None

    try:
        sock.settimeout(timeout)
        sock.connect(target)
        sock.sendall(message)
        sock.shutdown(_socket.SHUT_WR)
        return _read_to_eof(sock)
    except OSError:
        raise UpstreamUnavailable() from None
    finally:
        sock.close()


def _read_to_eof(sock) -> bytes:
    """Read what xymond answers until it closes the connection."""
    chunks = []
    size = 0

    while True:
        chunk = sock.recv(65536)

        if not chunk:
            return b''.join(chunks)

        size += len(chunk)

        if size > _MAX_REPLY:
            raise UpstreamUnavailable()

        chunks.append(chunk)
