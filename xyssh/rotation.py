"""xyssh rotate: the device replaces its own key, without a lockout.

1. A new ed25519 key is made next to the current one (IDENTITY.new,
   mode 0600; asyncssh makes it).  A run that was cut short reuses it.
2. For each configured server: if the new key already logs in there (an
   earlier run got that far), nothing is sent; otherwise the current key
   logs in and asks the server to put the new public key in its place.
   The server takes the identity from that login, never from the
   request, and keeps the old key working for a grace period.
3. The new key logs in to every server once more (a test push).  Only
   then does it become IDENTITY; the old key is kept as IDENTITY.old.

Until step 3 succeeds everywhere, the device keeps sending with its old
key, so a failure anywhere leaves it working.
"""

import copy
import os
import socket

from . import client
from .client import (CHECK_COMMAND, EXIT_OK, ROTATE_COMMAND, Destination,
                     SendFailure, send_messages)


class RotationError(Exception):
    """Rotation stopped; the device still uses its old key."""

    def __init__(self, exit_status: int, text: str) -> None:
        super().__init__(text)
        self.exit_status = exit_status
        self.text = text


def new_key_path(identity: str) -> str:
    """Return where the key being introduced waits."""
    return identity + '.new'


def make_new_key(identity: str) -> str:
    """Create (or reuse) IDENTITY.new; return its public key line."""
    import asyncssh

    path = new_key_path(identity)

    if os.path.exists(path):
        key = asyncssh.read_private_key(path)
    else:
        key = asyncssh.generate_private_key(
            'ssh-ed25519', comment='%s xyssh' % socket.getfqdn())
        _write_new(path, key.export_private_key(), 0o600)
        _write_new(path + '.pub', key.export_public_key(), 0o644)

    return key.export_public_key().decode('ascii').strip()


def _write_new(path: str, data: bytes, mode: int) -> None:
    """Create PATH with MODE and DATA; never follow or reuse a file."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)

    try:
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _logs_in(destination: Destination, debug) -> 'str | None':
    """Return None if DESTINATION takes its key, else why not."""
    try:
        [answer] = send_messages(destination, [], debug,
                                 command=CHECK_COMMAND)
    except SendFailure as failure:
        return failure.text

    return None if answer.exit_status == EXIT_OK else answer.text


def rotate(servers: 'list[Destination]', debug, say) -> str:
    """Rotate the device key on every server; return the new fingerprint.

    Raises RotationError with what went wrong; the old key then stays.
    """
    identity = servers[0].identity
    public = make_new_key(identity)
    trial = []

    for server in servers:
        candidate = copy.copy(server)
        candidate.identity = new_key_path(identity)
        trial.append(candidate)

        if _logs_in(candidate, debug) is None:
            say('%s already takes the new key' % server.label)
            continue

        try:
            [answer] = send_messages(server, [public.encode() + b'\n'],
                                     debug, command=ROTATE_COMMAND)
        except SendFailure as failure:
            raise RotationError(failure.exit_status, failure.text) \
                from None

        if answer.exit_status != EXIT_OK:
            raise RotationError(answer.exit_status, 'server %s: %s'
                                % (server.label, answer.text))

        say('%s registered the new key' % server.label)

    for candidate in trial:
        problem = _logs_in(candidate, debug)

        if problem is not None:
            raise RotationError(client.EXIT_AUTH, 'the new key does not '
                                'log in to %s yet (%s); the old key stays '
                                'in use' % (candidate.label, problem))

    _switch(identity)
    return public


def _switch(identity: str) -> None:
    """Make IDENTITY.new the identity; keep the old key as IDENTITY.old.

    The identity file is replaced by a rename, so a send running at the
    same moment reads either the old key or the new one.
    """
    for suffix in ('', '.pub'):
        current = identity + suffix
        kept = identity + '.old' + suffix

        if os.path.exists(current):
            if os.path.exists(kept):
                os.unlink(kept)
            os.link(current, kept)

        os.replace(new_key_path(identity) + suffix, current)
