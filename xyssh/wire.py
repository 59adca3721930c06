"""The framing xyssh uses on an SSH channel; see docs/protocol.rst.

A request is a header line, then exactly LENGTH message bytes:

    xyssh/1 LENGTH SHA256HEX\\n

Every request gets one answer line, followed by LENGTH reply bytes when
the answer is "ok":

    ok LENGTH\\n
    error STATUS TEXT\\n

The header lets the server tell a whole message from a cut one before
anything reaches xymond.  Standard library only: the forced command
imports this at every login.
"""

import hashlib

MAGIC = b'xyssh/1'
MAX_HEADER = 200

_DIGITS = frozenset(b'0123456789')
_HEX = frozenset(b'0123456789abcdef')


def request_header(message: bytes) -> bytes:
    """Return the header line that announces MESSAGE."""
    digest = hashlib.sha256(message).hexdigest().encode('ascii')
    return b'%s %d %s\n' % (MAGIC, len(message), digest)


def frame(message: bytes) -> bytes:
    """Return MESSAGE with its header, ready to write to the channel."""
    return request_header(message) + message


def _number(text: bytes, longest: int) -> 'int | None':
    """Return TEXT as a number of 1 to LONGEST ASCII digits, or None."""
    if 0 < len(text) <= longest and all(byte in _DIGITS for byte in text):
        return int(text)
    return None


def parse_request_header(line: bytes) -> 'tuple[int, str] | None':
    """Return (length, sha256 hex) from a header line, or None if bad."""
    if not line.endswith(b'\n') or b'\n' in line[:-1]:
        return None

    fields = line[:-1].split(b' ')

    if len(fields) != 3 or fields[0] != MAGIC:
        return None

    length = _number(fields[1], 12)
    digest = fields[2]

    if length is None or len(digest) != 64 or \
            not all(byte in _HEX for byte in digest):
        return None

    return length, digest.decode('ascii')


def digest_matches(message: bytes, digest: str) -> bool:
    """Tell whether MESSAGE has the SHA-256 the header announced."""
    return hashlib.sha256(message).hexdigest() == digest


def ok_answer(reply: bytes) -> bytes:
    """Return the answer for a message xymond took, with its reply."""
    return b'ok %d\n' % len(reply) + reply


def error_answer(status: int, text: str) -> bytes:
    """Return the answer for a refused or failed message."""
    text = text.replace('\n', ' ').replace('\r', ' ')
    return b'error %d %s\n' % (status, text.encode('utf-8', 'replace'))


def parse_answer(line: bytes) -> 'tuple[int, int | None, str] | None':
    """Parse an answer line into (status, reply length, text), or None.

    Status 0 means ok, with the length of the reply that follows; an
    error answer always has a status from 1 to 999.
    """
    if not line.endswith(b'\n') or b'\n' in line[:-1]:
        return None

    fields = line[:-1].split(b' ', 2)

    if len(fields) == 2 and fields[0] == b'ok':
        length = _number(fields[1], 12)
        return None if length is None else (0, length, '')

    if len(fields) == 3 and fields[0] == b'error':
        status = _number(fields[1], 3)

        if status and fields[1][:1] != b'0':
            return status, None, fields[2].decode('utf-8', 'replace')

    return None
