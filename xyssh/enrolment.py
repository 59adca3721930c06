"""Enrolment on the server: one-time tokens and the enrolment entrance.

"xyssh keys enroll HOST" makes a token of 128 random bits bound to HOST.
The server keeps only its SHA-256, in registry/tokens/, with an expiry;
the token is good for one use.  Its printable form also carries the
fingerprint of the server's SSH host key, so the device can pin the
server on first contact:

    xyssh1:<32 hex digits>:SHA256:<host key fingerprint>

The entrance (with lookup = yes and enrolment = yes): "xyssh keys
lookup" answers for a key sshd does not know with a line whose forced
command is "xyssh enroll-receive --fp <that key>", so an unknown caller
can do nothing but present a token (or offer its key for approval) while
logged in with the key it wants registered, which proves it holds the
private half.  Attempts are limited per source address.
"""

import hashlib
import os
import secrets
import time

from .errors import KeyFileError, MalformedMessage, NotPermitted
from .registry import utc_stamp

TOKEN_PREFIX = 'xyssh1'
RATE_WINDOW = 3600


def _token_path(registry: str, token: str) -> str:
    """Return where the hash of TOKEN is kept."""
    digest = hashlib.sha256(token.encode('ascii')).hexdigest()
    return os.path.join(registry, 'tokens', digest)


def create_token(registry: str, host: str, seconds: int,
                 host_key_fingerprint: str) -> str:
    """Store a new token for HOST, valid SECONDS; return its printable form."""
    from .keys import write_atomically

    token = secrets.token_hex(16)
    directory = os.path.join(registry, 'tokens')
    os.makedirs(directory, mode=0o700, exist_ok=True)
    owner = os.stat(registry)
    write_atomically(_token_path(registry, token),
                     ('host: %s\nexpires: %s\ncreated: %s\n'
                      % (host, utc_stamp(time.time() + seconds),
                         utc_stamp())).encode(), 0o600,
                     (owner.st_uid, owner.st_gid))
    return '%s:%s:%s' % (TOKEN_PREFIX, token, host_key_fingerprint)


def split_token(text: str) -> 'tuple[str, str | None]':
    """Return (token, host key fingerprint or None) from printable TEXT."""
    parts = text.strip().split(':', 2)

    if len(parts) == 3 and parts[0] == TOKEN_PREFIX:
        return parts[1], parts[2]

    return text.strip(), None


def consume_token(registry: str, token: str) -> str:
    """Use TOKEN up and return its host, or raise NotPermitted saying why.

    The token's file is renamed into used/ before anything else, so two
    logins racing with one token cannot both succeed.
    """
    if len(token) != 32 or any(char not in '0123456789abcdef'
                               for char in token):
        raise NotPermitted('enrolment token is malformed')

    path = _token_path(registry, token)
    used = os.path.join(registry, 'tokens', 'used')
    os.makedirs(used, mode=0o700, exist_ok=True)
    spent = os.path.join(used, os.path.basename(path))

    try:
        os.rename(path, spent)
    except FileNotFoundError:
        if os.path.exists(spent):
            raise NotPermitted('enrolment token was already used') \
                from None
        raise NotPermitted('enrolment token is unknown') from None

    with open(spent, encoding='utf-8') as handle:
        values = dict(line.split(': ', 1) for line in
                      handle.read().splitlines() if ': ' in line)

    if values.get('expires', '') <= utc_stamp():
        raise NotPermitted('enrolment token expired at %s'
                           % values.get('expires', '?'))

    return values['host']


def allow_attempt(registry: str, peer: str, limit: int) -> bool:
    """Count an enrolment attempt from PEER; False when over LIMIT an hour.

    One small file of timestamps per address; an approximate count is
    enough to stop a caller from trying tokens at speed.
    """
    directory = os.path.join(registry, 'enrolment-attempts')
    os.makedirs(directory, mode=0o700, exist_ok=True)
    path = os.path.join(directory, ''.join(
        char if char.isalnum() or char in '.:' else '_' for char in peer))
    now = time.time()

    try:
        with open(path, encoding='ascii') as handle:
            stamps = [float(line) for line in handle.read().split()
                      if line.replace('.', '', 1).isdigit()]
    except OSError:
        stamps = []

    recent = [stamp for stamp in stamps if now - stamp < RATE_WINDOW]

    with open(path, 'w', encoding='ascii') as handle:
        handle.write(''.join('%.3f\n' % stamp for stamp in recent + [now]))

    return len(recent) < limit


def parse_request(data: bytes) -> 'tuple[str, str, str]':
    """Split an enrolment request into (kind, token or host, public key).

    Two lines: "token xyssh1:..." or "offer HOST", then the public key.
    """
    try:
        first, key = data.decode('ascii').strip('\n').split('\n')
    except (UnicodeDecodeError, ValueError):
        raise MalformedMessage('enrolment request must be two lines: '
                               '"token TOKEN" or "offer HOST", then the '
                               'public key') from None

    kind, _, value = first.partition(' ')

    if kind not in ('token', 'offer') or not value:
        raise MalformedMessage('enrolment request starts with "token '
                               'TOKEN" or "offer HOST"')

    return kind, value, key


def host_key_fingerprint(path: str) -> str:
    """Return the SHA256 fingerprint of the server host key at PATH."""
    from .registry import fingerprint_of_line

    try:
        with open(path, encoding='ascii') as handle:
            fingerprint = fingerprint_of_line(handle.read())
    except OSError as exc:
        raise KeyFileError('cannot read the server host key %s (host_key '
                           'in [server]): %s' % (path, exc.strerror)) \
            from None

    if fingerprint is None:
        raise KeyFileError('%s is not a public key (host_key in [server])'
                           % path)

    return fingerprint
