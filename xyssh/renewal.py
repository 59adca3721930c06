"""A device renews its certificate before it expires, without a lockout.

At each run, once the reports are delivered: when the certificate next
to the device key has less than a third of its validity left,

1. a fresh ed25519 key is made (IDENTITY.new; see xyssh.rotation);
2. the current key and certificate log in and ask the server to sign
   the new public key (xyssh-renew); the server signs only for the host
   of the certificate that logged in;
3. the new key and certificate log in once more (a test push);
4. only then do they replace IDENTITY and its certificate, the old pair
   kept as IDENTITY.old and its -cert.pub.

Until step 4 the old pair keeps working, so a failure anywhere leaves
the device as it was, and the next run tries again: the server retires
the old certificate only once a report arrives with the new one.  A run
cut short between the renames of step 4 leaves the new key beside the
old certificate; the next send finds the new certificate and finishes
the switch (xyssh.client.load_certificate).
"""

import copy
import os
import time

from .certificate import parse_certificate_line
from .client import (EXIT_OK, RENEW_COMMAND, Destination, SendFailure,
                     certificate_path, send_messages)
from .rotation import RotationError, _logs_in, make_new_key, new_key_path

# Renew once less than this share of the validity is left.
RENEW_AT = 1 / 3


def renewal_due(destination: Destination,
                now: 'float | None' = None) -> bool:
    """Tell whether the device's certificate should be renewed now."""
    try:
        with open(destination.certificate, encoding='ascii') as handle:
            certificate = parse_certificate_line(handle.read())
    except (OSError, UnicodeDecodeError, ValueError):
        return False

    now = time.time() if now is None else now
    return 0 < certificate.remaining_share(now) < RENEW_AT


def renew(server: Destination, debug) -> str:
    """Renew the certificate at SERVER; return the new certificate line.

    Raises RotationError with what went wrong; the old pair then stays.
    Two runs at once do not both renew: the second one waits for the
    first, then finds nothing due.
    """
    import fcntl

    descriptor = os.open(server.identity + '.lock',
                         os.O_RDWR | os.O_CREAT, 0o600)

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)

        if not renewal_due(server):
            with open(server.certificate, encoding='ascii') as handle:
                return handle.read().strip()

        return _renew_locked(server, debug)
    finally:
        os.close(descriptor)


def _renew_locked(server: Destination, debug) -> str:
    """Renew, holding the device's renewal lock."""
    identity = server.identity
    public = make_new_key(identity)
    candidate = copy.copy(server)
    candidate.identity = new_key_path(identity)
    candidate.configured_certificate = certificate_path(candidate.identity)

    if os.path.exists(candidate.certificate) and \
            _logs_in(candidate, debug) is None:
        # An earlier run got the new certificate but stopped before the
        # switch; the server may have retired the old one already.
        _switch(identity, server.certificate, candidate.certificate)
        with open(server.certificate, encoding='ascii') as handle:
            return handle.read().strip()

    try:
        [answer] = send_messages(server, [public.encode() + b'\n'], debug,
                                 command=RENEW_COMMAND)
    except SendFailure as failure:
        raise RotationError(failure.exit_status, failure.text) from None

    if answer.exit_status != EXIT_OK:
        raise RotationError(answer.exit_status, 'server %s: %s'
                            % (server.label, answer.text))

    line = answer.reply.decode('ascii', 'replace').strip()
    _write_file(candidate.certificate, (line + '\n').encode('ascii'))
    problem = _logs_in(candidate, debug)

    if problem is not None:
        raise RotationError(answer.exit_status or 23, 'the renewed '
                            'certificate does not log in to %s (%s); the '
                            'old one stays in use' % (server.label,
                                                      problem))

    _switch(identity, server.certificate, candidate.certificate)
    return line


def _write_file(path: str, data: bytes) -> None:
    """Write PATH whole: a temporary file renamed into place."""
    temporary = path + '.tmp'

    with open(temporary, 'wb') as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())

    os.replace(temporary, path)


def _switch(identity: str, certificate: str, new_certificate: str) -> None:
    """Make the new key and certificate current; keep the old as .old.

    Each file is replaced by a rename.  A send that starts between the
    two renames finds the new key with the old certificate, fails with a
    clear line and keeps its report for the next run.
    """
    for current, new in ((identity, new_key_path(identity)),
                         (identity + '.pub', new_key_path(identity) +
                          '.pub'),
                         (certificate, new_certificate)):
        kept = current + '.old'

        if os.path.exists(current):
            if os.path.exists(kept):
                os.unlink(kept)
            os.link(current, kept)

        os.replace(new, current)
