"""xyssh enroll: the device's side of enrolment.

With a token, the server's host key is fetched and must have the
fingerprint the token carries; only then is it written to known_hosts,
and every later connection is checked against it as usual.  The device
key (created here if there is none, mode 0600) logs in to the server's
enrolment entrance and sends the token with its public key.
"""

import asyncio
import os
import socket

from .client import (EXIT_CONNECT, EXIT_HOST_KEY, EXIT_OK, Destination,
                     SendFailure, send_messages)

ENROL_COMMAND = 'xyssh-enroll'
# The host key types tried when looking for the one the token names.
HOST_KEY_TYPES = ('ssh-ed25519', 'ecdsa-sha2-nistp256', 'rsa-sha2-512')


class EnrolmentError(Exception):
    """Enrolment failed; nothing was registered."""

    def __init__(self, exit_status: int, text: str) -> None:
        super().__init__(text)
        self.exit_status = exit_status
        self.text = text


def ensure_device_key(identity: str) -> str:
    """Create the device key if missing; return its public key line."""
    import asyncssh

    if os.path.exists(identity):
        key = asyncssh.read_private_key(identity)
        return key.export_public_key().decode('ascii').strip()

    key = asyncssh.generate_private_key(
        'ssh-ed25519', comment='%s xyssh' % socket.getfqdn())
    directory = os.path.dirname(os.path.abspath(identity))
    os.makedirs(directory, mode=0o700, exist_ok=True)

    for path, data, mode in ((identity, key.export_private_key(), 0o600),
                             (identity + '.pub', key.export_public_key(),
                              0o644)):
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                             mode)
        try:
            os.write(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    return key.export_public_key().decode('ascii').strip()


def pin_host_key(destination: Destination, fingerprint: str) -> None:
    """Add the server's host key to known_hosts if it is FINGERPRINT's.

    Raises EnrolmentError, and writes nothing, when the server offers no
    key with that fingerprint: it is not the server that made the token.
    """
    import asyncssh

    async def fetch(algorithm: str):
        return await asyncio.wait_for(asyncssh.get_server_host_key(
            destination.host, destination.port,
            server_host_key_algs=[algorithm]), destination.timeout)

    offered = []

    for algorithm in HOST_KEY_TYPES:
        try:
            key = asyncio.run(fetch(algorithm))
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            if isinstance(exc, (ConnectionRefusedError, socket.gaierror,
                                asyncio.TimeoutError)):
                raise EnrolmentError(EXIT_CONNECT, 'cannot connect to %s: '
                                     '%s' % (destination.label, exc)) \
                    from None
            continue

        if key is None:
            continue

        offered.append(key.get_fingerprint('sha256'))

        if offered[-1] == fingerprint:
            _add_known_host(destination, key)
            return

    raise EnrolmentError(EXIT_HOST_KEY, 'server %s offers host key(s) %s, '
                         'but the token names %s: this is not the server '
                         'that made the token; nothing was sent'
                         % (destination.label, ', '.join(offered) or
                            'none', fingerprint))


def _add_known_host(destination: Destination, key) -> None:
    """Append KEY for DESTINATION to its known_hosts file."""
    from .keys import write_atomically

    pattern = destination.host if destination.port == 22 else \
        '[%s]:%d' % (destination.host, destination.port)
    line = b'%s %s\n' % (pattern.encode(), b' '.join(
        key.export_public_key('openssh').split()[:2]))
    path = destination.known_hosts

    try:
        with open(path, 'rb') as handle:
            old = handle.read()
    except FileNotFoundError:
        old = b''

    if line in old.splitlines(keepends=True):
        return

    if old and not old.endswith(b'\n'):
        old += b'\n'

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomically(path, old + line, 0o644)


def enrol(destination: Destination, token: 'str | None',
          host: 'str | None', debug) -> str:
    """Enrol the device key with TOKEN, or offer it for HOST; say what
    happened."""
    from .enrolment import split_token

    public = ensure_device_key(destination.identity)

    if token:
        secret, fingerprint = split_token(token)

        if fingerprint is None:
            raise EnrolmentError(1, 'this is not an xyssh enrolment token '
                                 '(xyssh1:...); copy the whole line "xyssh '
                                 'keys enroll" printed')

        pin_host_key(destination, fingerprint)
        request = 'token %s\n%s\n' % (secret, public)
    else:
        request = 'offer %s\n%s\n' % (host, public)

    try:
        [answer] = send_messages(destination, [request.encode('ascii')],
                                 debug, command=ENROL_COMMAND)
    except SendFailure as failure:
        raise EnrolmentError(failure.exit_status, failure.text) from None

    if answer.exit_status != EXIT_OK:
        raise EnrolmentError(answer.exit_status, 'server %s: %s'
                             % (destination.label, answer.text))

    if token and answer.reply.startswith(b'ssh-') and \
            b'-cert-v01@openssh.com ' in answer.reply[:64]:
        # The server runs a CA: it answered with a certificate for the
        # key instead of registering the key itself.
        from .keys import write_atomically

        write_atomically(destination.certificate, answer.reply, 0o644)
        return ('enrolled: the server issued a certificate for key %s '
                '(%s)' % (_fingerprint(public), destination.certificate))

    if token:
        return ('enrolled: the server took key %s; it becomes active with '
                'its first report' % _fingerprint(public))

    return ('offered key %s for %s; an admin approves it with "xyssh keys '
            'approve"' % (_fingerprint(public), host))


def _fingerprint(public: str) -> str:
    """Return the fingerprint of a public key line."""
    from .registry import fingerprint_of_line
    return fingerprint_of_line(public)
