"""`xyssh receive`: the OpenSSH forced command for one device key.

sshd runs it from the key's authorized_keys line as

    xyssh receive --config PATH --fp SHA256:...

The fingerprint in that line is the identity; nothing the client sends
can change it.  The client's own command arrives in SSH_ORIGINAL_COMMAND
and is data only: it may be empty or the single word "xyssh-send".  The
message arrives framed on stdin (see xyssh.wire).  It refuses, before
anything reaches xymond: unknown, revoked or mismatched keys, a key whose
host left hosts.cfg, unframed or cut input, and every message policy
refuses.  stdout carries only protocol answers; stderr gets one short
line per failure for the client; details go to the log.

This runs once per report, so it imports nothing heavy: no click, no
asyncssh, no logging, no re.
"""

import os
import select
import time

from . import wire
from .config import load_config
from .errors import (ConfigError, MalformedMessage, NotPermitted,
                     XysshError)
from .hostscfg import load_hosts
from .intake import (Intake, activate_key, check_key, open_intake,
                     record_check, refuse, rotate_key)
from .registry import fingerprint_of_line, is_fingerprint, read_record
from .log import audit, log_event, setup_logging
from .policy import Limits

ALLOWED_COMMANDS = ('', 'xyssh-send', 'xyssh-check', 'xyssh-rotate')

# A frame carrying a public key line (rotation, enrolment) is far
# smaller than this many KiB.
KEY_LIMITS = Limits(16, 16, 16)
USAGE = 'usage: xyssh receive --config PATH --fp SHA256:FINGERPRINT'


class StdinReader:
    """Read stdin in bounded waits, so a stalled client cannot hang us.

    Each wait is at most IDLE_TIMEOUT seconds, and one message may take
    at most MESSAGE_TIME seconds in all, so a client that sends a byte
    now and then cannot hold a session open either.
    """

    def __init__(self, idle_timeout: float, message_time: float,
                 descriptor: int = 0) -> None:
        self.idle_timeout = idle_timeout
        self.message_time = message_time
        self.descriptor = descriptor
        self.buffer = b''
        self.eof = False
        self.deadline = time.monotonic() + message_time

    def start_message(self) -> None:
        """Start the clock for the next message."""
        self.deadline = time.monotonic() + self.message_time

    def _fill(self) -> None:
        """Read what is available, within the idle and message limits."""
        left = self.deadline - time.monotonic()

        if left <= 0:
            raise MalformedMessage('message not complete after %d '
                                   'seconds; dropped' % self.message_time)

        ready, _, _ = select.select([self.descriptor], [], [],
                                    min(self.idle_timeout, left))

        if not ready:
            if time.monotonic() >= self.deadline:
                raise MalformedMessage('message not complete after %d '
                                       'seconds; dropped'
                                       % self.message_time)
            raise MalformedMessage('no data for %d seconds; message '
                                   'dropped' % self.idle_timeout)

        chunk = os.read(self.descriptor, 1 << 18)

        if chunk:
            self.buffer += chunk
        else:
            self.eof = True

    def read_line(self, limit: int) -> bytes:
        """Return one line with its newline, b'' at EOF, at most LIMIT."""
        while b'\n' not in self.buffer[:limit] and not self.eof and \
                len(self.buffer) < limit:
            self._fill()

        end = self.buffer.find(b'\n', 0, limit)

        if end < 0:
            line, self.buffer = self.buffer[:limit], self.buffer[limit:]
        else:
            line, self.buffer = self.buffer[:end + 1], \
                self.buffer[end + 1:]

        return line

    def read_exactly(self, size: int) -> bytes:
        """Return SIZE bytes, or fewer if the client closed early."""
        parts = [self.buffer[:size]]
        have = len(parts[0])
        self.buffer = self.buffer[size:]

        while have < size and not self.eof:
            self._fill()
            part = self.buffer[:size - have]
            self.buffer = self.buffer[len(part):]
            parts.append(part)
            have += len(part)

        return b''.join(parts)


def _write(descriptor: int, data: bytes) -> None:
    """Write all of DATA to a file descriptor."""
    view = memoryview(data)

    while view:
        view = view[os.write(descriptor, view):]


def _parse_argv(argv: 'list[str]') -> 'tuple[str, str]':
    """Return (config path, fingerprint) from receive's own arguments."""
    config = fingerprint = None
    position = 0

    while position < len(argv):
        word = argv[position]
        name, equals, value = word.partition('=')

        if name in ('--config', '--fp'):
            if not equals:
                position += 1
                value = argv[position] if position < len(argv) else ''

            if name == '--config':
                config = value
            else:
                fingerprint = value
        else:
            raise ConfigError(USAGE)

        position += 1

    if not config or not fingerprint or not is_fingerprint(fingerprint):
        raise ConfigError(USAGE)

    return config, fingerprint


def _check_original_command() -> None:
    """Refuse any client command but none or the one protocol word."""
    command = os.environ.get('SSH_ORIGINAL_COMMAND', '')

    if command not in ALLOWED_COMMANDS:
        raise NotPermitted('unsupported command; send with xymon-ssh')


def _check_auth_info(fingerprint: str, required: bool) -> None:
    """Cross-check the key sshd says logged in, when ExposeAuthInfo is on.

    SSH_USER_AUTH names a file with lines like "publickey ssh-ed25519
    AAAA...".  If sshd set it but it cannot be read, refuse: never guess.
    """
    path = os.environ.get('SSH_USER_AUTH')

    if path is None:
        if required:
            raise NotPermitted('server cannot confirm which key logged in')
        return

    try:
        with open(path, encoding='ascii', errors='replace') as handle:
            lines = handle.read().splitlines()
    except OSError:
        raise NotPermitted('server cannot confirm which key logged in') \
            from None

    used = [fingerprint_of_line(line[len('publickey '):])
            for line in lines if line.startswith('publickey ')]

    if fingerprint not in used:
        raise NotPermitted('the key that logged in is not the key this '
                           'login is configured for')


def main(argv: 'list[str]') -> int:
    """Run the forced command; return the exit status for sshd."""
    peer = (os.environ.get('SSH_CONNECTION') or '-').split()[0]
    fingerprint = '-'
    # Until the configuration names the log, problems go to syslog.
    setup_logging('syslog')

    try:
        config_file, fingerprint = _parse_argv(argv)
        config = load_config(config_file)
        server = config.server
        setup_logging(server.text('log'), server.text('syslog_facility'))
    except XysshError as err:
        log_event('error', 'receive cannot start fp=%s from=%s: %s'
                  % (fingerprint, peer, err.detail))
        _answer_error(err)
        return err.exit_status

    try:
        intake = _open_intake(config, fingerprint, peer)
    except XysshError as err:
        refuse(err, fingerprint, peer)
        _answer_error(err)
        return err.exit_status
    except Exception:
        import traceback
        log_event('error', 'receive failed fp=%s from=%s: %s' % (
            fingerprint, peer, ' | '.join(
                traceback.format_exc().strip().splitlines())))
        err = XysshError()
        _answer_error(err)
        return err.exit_status

    reader = StdinReader(server.number('idle_timeout', 1),
                         server.number('message_time', 1))
    command = os.environ.get('SSH_ORIGINAL_COMMAND', '')

    if command == 'xyssh-check':
        return _check_only(intake)

    if command == 'xyssh-rotate':
        return _rotate(config, intake, reader)

    if intake.key.rotate_requested:
        # Said first, on stderr, where the answers cannot be disturbed.
        _write(2, b'xyssh-notice: rotate\n')

    return _serve(intake, reader, config)


def _check_only(intake: Intake) -> int:
    """Answer "ok" without a message: the key logs in and is usable.

    The device's test push with a new key before it switches over.
    """
    record_check(intake)
    _write(1, wire.ok_answer(b''))
    return 0


def _rotate(config, intake: Intake, reader: StdinReader) -> int:
    """Take the new public key in the one frame on stdin in place of the
    key that logged in (see rotate_key)."""
    try:
        data = _read_frame(reader, KEY_LIMITS, 0)
        rotate_key(config, intake, data or b'')
    except XysshError as err:
        _answer_error(err)
        return err.exit_status

    _write(1, wire.ok_answer(b''))
    return 0


def enrol_main(argv: 'list[str]') -> int:
    """Run the enrolment entrance's forced command; return the status.

    The key that logged in is not registered: it may only present a
    token, or offer itself for an admin's approval.  The public key in
    the request must be the key that logged in.
    """
    peer = (os.environ.get('SSH_CONNECTION') or '-').split()[0]
    fingerprint = '-'
    setup_logging('syslog')

    try:
        config_file, fingerprint = _parse_argv(argv)
        config = load_config(config_file)
        server = config.server
        setup_logging(server.text('log'), server.text('syslog_facility'))
        host, state = _enrol(config, fingerprint, peer)
    except XysshError as err:
        refuse(err, fingerprint, peer)
        _answer_error(err)
        return err.exit_status
    except OSError as exc:
        err = ConfigError('cannot write the registry: %s' % exc.strerror)
        refuse(err, fingerprint, peer)
        _answer_error(err)
        return err.exit_status

    audit('accepted', fp=fingerprint, key=host, **{'from': peer},
          type='enroll', host=host, test=None, bytes=0, reason=None,
          detail='key recorded as %s' % state)
    _write(1, wire.ok_answer(b''))
    return 0


def _enrol(config, fingerprint: str, peer: str) -> 'tuple[str, str]':
    """Check and record one enrolment request; return (host, state)."""
    from .admin import KeyAdmin
    from .enrolment import (allow_attempt, consume_token, parse_request,
                            split_token)

    server = config.server
    registry = server.text('registry')

    if os.environ.get('SSH_ORIGINAL_COMMAND', '') != 'xyssh-enroll':
        raise NotPermitted('this key is not registered; enrol it with '
                           '"xyssh enroll"')

    if not server.flag('enrolment'):
        raise NotPermitted('enrolment is off on this server')

    if read_record(registry, fingerprint) is not None:
        raise NotPermitted('this key is already registered')

    if not allow_attempt(registry, peer,
                         server.number('enrolment_attempts', 1)):
        raise NotPermitted('too many enrolment attempts from %s in the '
                           'last hour' % peer)

    reader = StdinReader(server.number('idle_timeout', 1),
                         server.number('message_time', 1))
    data = _read_frame(reader, KEY_LIMITS, 0)
    kind, value, key = parse_request(data or b'')

    if fingerprint_of_line(key) != fingerprint:
        raise NotPermitted('the public key sent is not the key that '
                           'logged in')

    if kind == 'token':
        host, state = consume_token(registry, split_token(value)[0]), \
            'pending'
    else:
        host, state = value, 'offered'

    KeyAdmin(config).enrol(key.encode('ascii'), host, state)
    return host, state


def _open_intake(config, fingerprint: str, peer: str) -> Intake:
    """Check the login and return the Intake that will take its messages."""
    server = config.server
    _check_original_command()
    _check_auth_info(fingerprint, server.flag('require_auth_info'))
    registry = server.text('registry')

    if not os.path.isdir(os.path.join(registry, 'keys')):
        raise ConfigError('registry %s has no keys directory' % registry)

    record = check_key(read_record(registry, fingerprint))
    return open_intake(server, record, load_hosts(server.text('hosts_cfg')),
                       peer)


def _answer_error(err: XysshError) -> None:
    """Tell the client: a protocol answer on stdout, a line on stderr."""
    try:
        _write(1, wire.error_answer(err.exit_status, err.client_text))
        _write(2, (err.client_text + '\n').encode('utf-8', 'replace'))
    except OSError:
        pass


def _serve(intake: Intake, reader: StdinReader, config=None) -> int:
    """Handle framed messages until EOF; return the exit status.

    A framing failure (bad header, cut short, wrong digest, too large to
    read) ends the session: what follows cannot be trusted to be in
    step.  A refused message only fails itself.
    """
    status = 0
    count = 0

    while True:
        try:
            data = _read_frame(reader, intake.limits, count)
        except XysshError as err:
            refuse(err, intake.key.fingerprint, intake.peer,
                   intake.key_host)
            _answer_error(err)
            return err.exit_status
        except OSError:
            return 74

        if data is None:
            return status

        count += 1

        try:
            answer = wire.ok_answer(intake.handle(data))
        except XysshError as err:
            _answer_error(err)
            status = err.exit_status
            continue

        if intake.key.state == 'pending' and config is not None:
            activate_key(config, intake)

        try:
            _write(1, answer)
        except OSError:
            return 74


def _read_frame(reader: StdinReader, limits: Limits,
                count: int) -> 'bytes | None':
    """Return the next framed message, None at a clean end of input."""
    reader.start_message()
    line = reader.read_line(wire.MAX_HEADER)

    if not line and reader.eof:
        if count == 0:
            raise MalformedMessage('no message received')
        return None

    header = wire.parse_request_header(line)

    if header is None:
        raise MalformedMessage('input is not framed by xyssh; send with '
                               'xymon-ssh or xyssh send')

    length, digest = header

    limits.check_frame(length)

    data = reader.read_exactly(length)

    if len(data) < length:
        raise MalformedMessage('message cut short: %d of %d bytes '
                               'arrived' % (len(data), length))

    if not wire.digest_matches(data, digest):
        raise MalformedMessage('message does not match its SHA-256')

    return data
