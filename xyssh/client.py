"""The sending side: frame messages, push them over SSH, read the answers.

Used by xymon-ssh (the drop-in for Xymon's xymon program) and by
`xyssh send`.  It offers exactly the configured device key: no agent, no
default keys, no ~/.ssh/config, so a key in someone's agent can never
report under another host's name.  The server's host key must be in the
configured known_hosts file; an unknown or changed key is refused and
its fingerprint shown.
"""

import asyncio
import os
import socket

from . import wire
from .config import Section, split_host_port
from .errors import ConfigError

# Exit statuses.  Where Xymon's own xymon program has a status for the
# same failure, xymon-ssh uses it; the rest are xyssh's own.
EXIT_OK = 0
EXIT_USAGE = 1
EXIT_RESOLVE = 2
EXIT_CONNECT = 5
EXIT_TIMEOUT = 7
EXIT_REFUSED = 20
EXIT_XYMOND_DOWN = 21
EXIT_HOST_KEY = 22
EXIT_AUTH = 23
EXIT_DEVICE_KEY = 24
EXIT_SERVER_ERROR = 25
EXIT_CONFIG = 26

# What a server status in an "error" answer means for the sender.
_SERVER_STATUS = {65: EXIT_REFUSED, 77: EXIT_REFUSED,
                  75: EXIT_XYMOND_DOWN}

# The protocol's words for SSH_ORIGINAL_COMMAND: send framed messages;
# only log in and hear "ok" (a new key's test push); replace the key that
# logged in by the public key in the one frame.
SEND_COMMAND = 'xyssh-send'
CHECK_COMMAND = 'xyssh-check'
# A line the server writes on stderr to ask something of the device.
NOTICE = 'xyssh-notice: '
ROTATE_COMMAND = 'xyssh-rotate'
RENEW_COMMAND = 'xyssh-renew'


class SendFailure(Exception):
    """Nothing (more) could be delivered; carries the exit status.

    TRANSIENT says whether trying again at once may help: a dropped
    connection may, a server that answers gibberish will not.
    """

    def __init__(self, exit_status: int, text: str,
                 transient: bool = True) -> None:
        super().__init__(text)
        self.exit_status = exit_status
        self.text = text
        self.transient = transient


class Answer:
    """The server's answer to one message."""

    def __init__(self, exit_status: int, reply: bytes, text: str) -> None:
        self.exit_status = exit_status
        self.reply = reply
        self.text = text
        # What the server asked of the device in this session, from its
        # "xyssh-notice: WORD" lines on stderr (such as "rotate").
        self.notices = frozenset()


class Destination:
    """Where and as whom to connect, from the [client] section."""

    def __init__(self, section: Section, timeout: 'float | None',
                 server: 'str | None' = None) -> None:
        server = server or section.text('server')

        if not server:
            raise ConfigError('%s: [client] server is not set' %
                              section.path)

        self.host, self.port = split_host_port(
            server, section.number('port', 1))
        self.user = section.text('user')
        self.identity = section.text('identity')
        self.configured_certificate = section.text('certificate')
        self.known_hosts = section.text('known_hosts')
        self.timeout = timeout or section.number('timeout', 1)

    @property
    def certificate(self) -> str:
        """Return where the device's certificate is, if it has one."""
        return self.configured_certificate or \
            certificate_path(self.identity)

    @property
    def label(self) -> str:
        """Return the server as people write it: host, or [v6]:port."""
        if ':' in self.host:
            return '[%s]:%d' % (self.host, self.port)
        return '%s:%d' % (self.host, self.port)


def destinations(section: Section,
                 timeout: 'float | None') -> 'list[Destination]':
    """Return every server of [client] server, in the order written.

    Several servers are separated by blanks or commas, as in
    $XYMSERVERS.
    """
    servers = section.text('server').replace(',', ' ').split()

    if not servers:
        raise ConfigError('%s: [client] server is not set' % section.path)

    return [Destination(section, timeout, server) for server in servers]


def _load_device_key(path: str):
    """Load the device key, refusing what OpenSSH's ssh would refuse."""
    import asyncssh

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise SendFailure(EXIT_DEVICE_KEY, 'cannot read device key %s: %s'
                          % (path, exc.strerror)) from None

    if mode & 0o077:
        raise SendFailure(EXIT_DEVICE_KEY, 'device key %s is readable by '
                          'others (mode %04o); run: chmod 600 %s'
                          % (path, mode & 0o777, path))

    try:
        return asyncssh.read_private_key(path)
    except asyncssh.KeyImportError as exc:
        if 'assphrase' in str(exc):
            raise SendFailure(EXIT_DEVICE_KEY, 'device key %s is '
                              'passphrase-protected; xyssh needs a key '
                              'without a passphrase' % path) from None
        raise SendFailure(EXIT_DEVICE_KEY, 'device key %s: %s'
                          % (path, exc)) from None
    except OSError as exc:
        raise SendFailure(EXIT_DEVICE_KEY, 'cannot read device key %s: %s'
                          % (path, exc.strerror)) from None


def certificate_path(identity: str) -> str:
    """Return where OpenSSH looks for the certificate of IDENTITY."""
    return identity + '-cert.pub'


def _read_certificate(path: str):
    """Return (fields, asyncssh certificate) of the certificate at PATH."""
    import asyncssh

    from .certificate import parse_certificate_line

    try:
        with open(path, encoding='ascii') as handle:
            fields = parse_certificate_line(handle.read())
        return fields, asyncssh.read_certificate(path)
    except (OSError, UnicodeDecodeError, ValueError,
            asyncssh.KeyImportError) as exc:
        raise SendFailure(EXIT_DEVICE_KEY, 'device certificate %s: %s'
                          % (path, exc)) from None


def load_certificate(path: str, key, now: 'float | None' = None,
                     pending: 'str | None' = None):
    """Return the device certificate at PATH for KEY, or None if there is
    none.  One that cannot be used yet, or no longer, fails before any
    connection: the server would refuse it with no word of why.

    PENDING is where a renewal puts the new certificate before it is
    renamed to PATH; a run cut short between the renames leaves the new
    key beside the old certificate, and then the switch is finished.
    """
    import time

    if not os.path.exists(path):
        return None

    fields, certificate = _read_certificate(path)

    if fields.key_blob != key.public_data and pending and \
            os.path.exists(pending):
        new_fields, new_certificate = _read_certificate(pending)

        if new_fields.key_blob == key.public_data:
            os.replace(pending, path)
            fields, certificate = new_fields, new_certificate

    if fields.key_blob != key.public_data:
        raise SendFailure(EXIT_DEVICE_KEY, 'device certificate %s is not '
                          'for the device key' % path)

    now = time.time() if now is None else now

    if now < fields.valid_after:
        raise SendFailure(EXIT_DEVICE_KEY, 'device certificate %s is not '
                          'yet valid (local clock %s, valid from %s): '
                          'check this machine\'s clock'
                          % (path, _utc(now), _utc(fields.valid_after)))

    if now >= fields.valid_before:
        from .log import log_event

        text = ('device certificate %s expired at %s and cannot be '
                'renewed; enrol this device again' % (
                    path, _utc(fields.valid_before)))
        log_event('error', 'xymon-ssh: ' + text)
        raise SendFailure(EXIT_DEVICE_KEY, text)

    return certificate


def _utc(seconds: float) -> str:
    """Return SECONDS since the epoch as a UTC stamp."""
    from .registry import utc_stamp
    return utc_stamp(seconds)


def _host_key_checker(known_hosts_path: str):
    """Return a client class that remembers a refused server host key."""
    import asyncssh

    class HostKeyChecker(asyncssh.SSHClient):
        """Record the key a server offered when known_hosts lacks it."""

        offered = None
        expected = ()

        def validate_host_public_key(self, host: str, addr: str,
                                     port: int, key) -> bool:
            """Refuse (known_hosts did not match), noting both keys."""
            HostKeyChecker.offered = key.get_fingerprint('sha256')

            try:
                known = asyncssh.read_known_hosts(known_hosts_path)
                trusted = known.match(host, addr, port)[0]
                HostKeyChecker.expected = tuple(sorted(set(
                    item.get_fingerprint('sha256') for item in trusted)))
            except (OSError, ValueError):
                pass

            return False

    return HostKeyChecker


def _host_key_learner(destination: Destination, debug):
    """Return a handler that adds host keys the server announces.

    OpenSSH's sshd announces all its host keys (hostkeys-00@openssh.com)
    once the connection is verified with a key already trusted; asyncssh
    makes the server prove it holds each new one before calling this.
    Adding them lets a server roll to a new host key without every
    device failing at the switch.  Keys are only ever added here.
    """
    if destination.port == 22:
        pattern = destination.host
    else:
        pattern = '[%s]:%d' % (destination.host, destination.port)

    def learn(added, removed, retained, revoked) -> None:
        """Append the newly proven keys to known_hosts, atomically."""
        if not added:
            return

        from .keys import write_atomically

        path = destination.known_hosts

        try:
            with open(path, 'rb') as handle:
                old = handle.read()
            mode = os.stat(path).st_mode & 0o777
        except OSError:
            return

        if old and not old.endswith(b'\n'):
            old += b'\n'

        lines = b''.join(
            b'%s %s\n' % (pattern.encode(), b' '.join(
                key.export_public_key('openssh').split()[:2]))
            for key in added)
        write_atomically(path, old + lines, mode)

        for key in added:
            debug('learned new host key %s for %s'
                  % (key.get_fingerprint('sha256'), pattern))

    return learn


async def _exchange(destination: Destination, frames: 'list[bytes]',
                    debug, warn, command: str = SEND_COMMAND
                    ) -> 'list[Answer]':
    """Connect, send every frame, return the server's answer to each."""
    import asyncssh

    key = _load_device_key(destination.identity)
    certificate = load_certificate(
        destination.certificate, key,
        pending=certificate_path(destination.identity + '.new'))

    if not os.path.isfile(destination.known_hosts):
        raise SendFailure(EXIT_HOST_KEY, 'known_hosts file %s is missing; '
                          'add the server\'s host key to it'
                          % destination.known_hosts)

    checker = _host_key_checker(destination.known_hosts)

    try:
        connection = await asyncssh.connect(
            destination.host, destination.port, username=destination.user,
            client_keys=[(key, certificate) if certificate else key],
            agent_path=None, known_hosts=
            destination.known_hosts, config=[], client_factory=checker,
            password=None, kbdint_auth=False, gss_auth=False,
            gss_kex=False, preferred_auth='publickey',
            server_host_keys_handler=_host_key_learner(destination, debug),
            connect_timeout=destination.timeout)
    except asyncssh.HostKeyNotVerifiable:
        raise SendFailure(EXIT_HOST_KEY, _host_key_text(
            destination, checker)) from None
    except asyncssh.PermissionDenied:
        if certificate is not None:
            raise SendFailure(EXIT_AUTH, 'server %s refused device '
                              'certificate %s for user %s; is it revoked '
                              'or replaced ("xyssh keys certs" on the '
                              'server)?' % (destination.label,
                                            destination.certificate,
                                            destination.user)) from None
        raise SendFailure(EXIT_AUTH, 'server %s refused device key %s for '
                          'user %s; is it registered with "xyssh keys '
                          'add"?' % (destination.label,
                                     key.get_fingerprint('sha256'),
                                     destination.user)) from None
    except socket.gaierror as exc:
        raise SendFailure(EXIT_RESOLVE, 'cannot resolve %s: %s'
                          % (destination.host, exc.strerror)) from None
    except (OSError, asyncssh.Error) as exc:
        raise SendFailure(EXIT_CONNECT, 'cannot connect to %s: %s'
                          % (destination.label, _reason(exc))) from None

    async with connection:
        process = await connection.create_process(command,
                                                  encoding=None)
        writer = asyncio.ensure_future(_write_frames(process, frames))

        try:
            answers = await _read_answers(process, max(1, len(frames)),
                                          destination, warn)
        except SendFailure as failure:
            # What the server printed is often the only clue, say when
            # its forced command could not start at all.
            said = await _server_stderr(process)
            if said:
                failure.text += '; it said: %s' % said
            raise

        stderr = await process.stderr.read()
        await process.wait_closed()
        writer.cancel()

        if stderr:
            debug('server stderr: %s' % stderr.decode('utf-8', 'replace')
                  .strip())

        # asyncssh gives -1 when the remote command died of a signal.
        if process.exit_status is None or process.exit_status < 0:
            raise SendFailure(EXIT_SERVER_ERROR, 'server %s closed the '
                              'session without an exit status; the last '
                              'message may not have been delivered'
                              % destination.label)

    notices = frozenset(
        line[len(NOTICE):].strip() for line in
        stderr.decode('ascii', 'replace').splitlines()
        if line.startswith(NOTICE))

    for answer in answers:
        answer.notices = notices

    return answers


async def _server_stderr(process) -> str:
    """Return the first line the server wrote on stderr, if any soon."""
    try:
        data = await asyncio.wait_for(process.stderr.read(4096), 2)
    except (asyncio.TimeoutError, OSError, Exception):
        return ''

    return data.decode('utf-8', 'replace').strip().split('\n')[0][:300]


async def _write_frames(process, frames: 'list[bytes]') -> None:
    """Write the frames and EOF; a server that hung up stops the writes."""
    try:
        for data in frames:
            process.stdin.write(data)
            await process.stdin.drain()

        process.stdin.write_eof()
    except (OSError, Exception):
        pass


# How much a service account's shell may print before the forced command
# starts (a ~/.bashrc that echoes, a motd script) and still be skipped.
NOISE_LIMIT = 64 * 1024


async def _read_answers(process, count: int, destination: Destination,
                        warn) -> 'list[Answer]':
    """Read one answer per frame, fewer if the server ended the session.

    Whole lines before the first answer come from the server account's
    shell start-up, not from xyssh: they are skipped with a warning, so
    they can never end up in the reply (and the logfetch configuration).
    """
    answers = []
    noise = b''

    while len(answers) < count:
        line = await process.stdout.readline()
        parsed = wire.parse_answer(line)

        if parsed is None and not answers and line.endswith(b'\n') \
                and len(noise) + len(line) <= NOISE_LIMIT:
            if _glued_answer(line):
                raise SendFailure(EXIT_SERVER_ERROR, 'the shell of %s@%s '
                                  'printed %r with no newline, glued to '
                                  'the answer; the account\'s shell '
                                  'start-up files must print nothing'
                                  % (destination.user, destination.label,
                                     line[:60]), transient=False)
            if not noise:
                warn('the shell of %s@%s printed %r before xyssh '
                     'started; it was skipped, but the account\'s shell '
                     'start-up files (~/.bashrc, ~/.profile) should print '
                     'nothing (see "xyssh keys check" on the server)'
                     % (destination.user, destination.label,
                        line[:60].decode('utf-8', 'replace').rstrip('\n')))
            noise += line
            continue

        if parsed is None:
            if not line and answers and answers[-1].exit_status:
                # The server ended the session after a failure: the
                # messages not yet answered were not delivered.
                break

            if not line:
                raise SendFailure(EXIT_SERVER_ERROR, 'server %s closed the '
                                  'session before answering'
                                  % destination.label)

            raise SendFailure(EXIT_SERVER_ERROR, 'server %s does not speak '
                              'the xyssh protocol (answered %r)'
                              % (destination.label, line[:60]),
                              transient=False)

        status, length, text = parsed

        if status == 0:
            try:
                reply = await process.stdout.readexactly(length)
            except asyncio.IncompleteReadError:
                raise SendFailure(EXIT_SERVER_ERROR, 'server %s cut its '
                                  'reply short' % destination.label) \
                    from None
            answers.append(Answer(EXIT_OK, reply, ''))
        else:
            answers.append(Answer(_SERVER_STATUS.get(status,
                                                     EXIT_SERVER_ERROR),
                                  b'', text))

    return answers


def _glued_answer(line: bytes) -> bool:
    """Tell whether LINE ends in an answer with something in front of it."""
    for word in (b'ok ', b'error '):
        start = line.rfind(word)

        if start > 0 and wire.parse_answer(line[start:]) is not None:
            return True

    return False


def _host_key_text(destination: Destination, checker) -> str:
    """Explain a refused server host key, with both fingerprints."""
    offered = checker.offered or 'unknown'

    if checker.expected:
        return ('host key of %s has CHANGED: known_hosts %s expects %s, '
                'the server offered %s; if the server was reinstalled, '
                'check the new key out of band before replacing it'
                % (destination.label, destination.known_hosts,
                   ', '.join(checker.expected), offered))

    return ('host key of %s is not in %s (the server offered %s); add it '
            'after checking it out of band'
            % (destination.label, destination.known_hosts, offered))


def _reason(exc: BaseException) -> str:
    """Return a short reason from an exception."""
    return getattr(exc, 'strerror', None) or getattr(exc, 'reason', None) \
        or str(exc) or type(exc).__name__


def send_messages(destination: Destination, messages: 'list[bytes]',
                  debug=lambda text: None, warn=lambda text: None,
                  timeout: 'float | None' = None,
                  command: str = SEND_COMMAND) -> 'list[Answer]':
    """Deliver MESSAGES in one SSH session; return an Answer for each.

    Raises SendFailure when nothing could be delivered (cannot connect,
    refused login, timeout); a message the server refused or could not
    forward gets an Answer with a non-zero status instead.
    """
    frames = [wire.frame(message) for message in messages]

    async def run() -> 'list[Answer]':
        return await asyncio.wait_for(_exchange(destination, frames, debug,
                                                warn, command),
                                      timeout or destination.timeout)

    try:
        return asyncio.run(run())
    except asyncio.TimeoutError:
        raise SendFailure(EXIT_TIMEOUT, 'no answer from %s within %d '
                          'seconds' % (destination.label,
                                       destination.timeout)) from None
