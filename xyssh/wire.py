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
import re

MAGIC = b'xyssh/1'
MAX_HEADER = 200

_REQUEST = re.compile(rb'xyssh/1 (\d{1,12}) ([0-9a-f]{64})\n\Z')
_ANSWER = re.compile(rb'(?:ok (\d{1,12})|error ([1-9]\d{0,2}) ([^\n]*))\n\Z')


def request_header(message: bytes) -> bytes:
    """Return the header line that announces MESSAGE."""
    digest = hashlib.sha256(message).hexdigest().encode('ascii')
    return b'%s %d %s\n' % (MAGIC, len(message), digest)


def frame(message: bytes) -> bytes:
    """Return MESSAGE with its header, ready to write to the channel."""
    return request_header(message) + message


def parse_request_header(line: bytes) -> 'tuple[int, str] | None':
    """Return (length, sha256 hex) from a header line, or None if bad."""
    match = _REQUEST.match(line)

    if not match:
        return None

    return int(match.group(1)), match.group(2).decode('ascii')


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

    Status 0 means ok, with the length of the reply that follows.
    """
    match = _ANSWER.match(line)

    if not match:
        return None

    if match.group(1) is not None:
        return 0, int(match.group(1)), ''

    return (int(match.group(2)), None,
            match.group(3).decode('utf-8', 'replace'))
