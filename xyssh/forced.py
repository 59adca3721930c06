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
from .intake import (Intake, after_first_delivery, certificate_key,
                     check_certificate, check_key, open_intake,
                     record_check, refuse, renew_certificate, rotate_key)
from .registry import fingerprint_of_line, is_fingerprint, read_record
from .log import audit, log_event, setup_logging
from .policy import Limits

ALLOWED_COMMANDS = ('', 'xyssh-send', 'xyssh-check', 'xyssh-rotate',
                    'xyssh-renew')

# A frame carrying a public key line (rotation, enrolment) is far
# smaller than this many KiB.
KEY_LIMITS = Limits(16, 16, 16)
USAGE = ('usage: xyssh receive --config PATH --fp SHA256:FINGERPRINT '
         '| --cert-host HOST')


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


def _parse_argv(argv: 'list[str]') -> 'tuple[str, str, str | None]':
    """Return (config path, fingerprint, certificate host) from receive's
    own arguments: a key's line names its fingerprint, a certificate's
    principals line its host."""
    values = {'--config': None, '--fp': None, '--cert-host': None}
    position = 0

    while position < len(argv):
        word = argv[position]
        name, equals, value = word.partition('=')

        if name not in values:
            raise ConfigError(USAGE)

        if not equals:
            position += 1
            value = argv[position] if position < len(argv) else ''

        values[name] = value
        position += 1

    config, fingerprint, host = values['--config'], values['--fp'], \
        values['--cert-host']

    if not config or (fingerprint is None) == (host is None) or \
            fingerprint is not None and not is_fingerprint(fingerprint) \
            or host is not None and not host:
        raise ConfigError(USAGE)

    return config, fingerprint or '-', host


def _check_original_command() -> None:
    """Refuse any client command but none or the one protocol word."""
    command = os.environ.get('SSH_ORIGINAL_COMMAND', '')

    if command not in ALLOWED_COMMANDS:
        raise NotPermitted('unsupported command; send with xymon-ssh')


def _auth_info(required: bool) -> 'list[str] | None':
    """Return the "publickey TYPE BASE64" lines sshd's ExposeAuthInfo
    wrote (SSH_USER_AUTH), None when sshd does not say.  If it says but
    the file cannot be read, refuse: never guess."""
    path = os.environ.get('SSH_USER_AUTH')

    if path is None:
        if required:
            raise NotPermitted('server cannot confirm which key logged in')
        return None

    try:
        with open(path, encoding='ascii', errors='replace') as handle:
            return [line[len('publickey '):] for line in
                    handle.read().splitlines()
                    if line.startswith('publickey ')]
    except OSError:
        raise NotPermitted('server cannot confirm which key logged in') \
            from None


def _check_auth_info(fingerprint: str, required: bool) -> None:
    """Cross-check the key sshd says logged in, when ExposeAuthInfo is on."""
    used = _auth_info(required)

    if used is not None and fingerprint not in \
            [fingerprint_of_line(line) for line in used]:
        raise NotPermitted('the key that logged in is not the key this '
                           'login is configured for')


def main(argv: 'list[str]') -> int:
    """Run the forced command; return the exit status for sshd."""
    peer = (os.environ.get('SSH_CONNECTION') or '-').split()[0]
    fingerprint = '-'
    # Until the configuration names the log, problems go to syslog.
    setup_logging('syslog')

    try:
        config_file, fingerprint, cert_host = _parse_argv(argv)
        config = load_config(config_file)
        server = config.server
        setup_logging(server.text('log'), server.text('syslog_facility'))
    except XysshError as err:
        log_event('error', 'receive cannot start fp=%s from=%s: %s'
                  % (fingerprint, peer, err.detail))
        _answer_error(err)
        return err.exit_status

    try:
        if cert_host is None:
            intake = _open_intake(config, fingerprint, peer)
        else:
            intake = _open_cert_intake(config, cert_host, peer)
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

    if command == 'xyssh-renew':
        return _renew(config, intake, reader)

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


def _renew(config, intake: Intake, reader: StdinReader) -> int:
    """Sign the new public key in the one frame on stdin for the host of
    the certificate that logged in; answer with the certificate."""
    try:
        data = _read_frame(reader, KEY_LIMITS, 0)
    except XysshError as err:
        refuse(err, intake.key.fingerprint, intake.peer, intake.key_host)
        _answer_error(err)
        return err.exit_status

    try:
        certificate = renew_certificate(config, intake, data or b'')
    except XysshError as err:
        _answer_error(err)
        return err.exit_status

    _write(1, wire.ok_answer(certificate))
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
        config_file, fingerprint, _ = _parse_argv(argv)
        config = load_config(config_file)
        server = config.server
        setup_logging(server.text('log'), server.text('syslog_facility'))
        host, state, reply = _enrol(config, fingerprint, peer)
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
          detail='key recorded as %s' % state if not reply else
          'certificate issued')
    _write(1, wire.ok_answer(reply))
    return 0


def _enrol(config, fingerprint: str,
           peer: str) -> 'tuple[str, str, bytes]':
    """Check and record one enrolment request; return (host, state, the
    reply: a certificate line when the server runs a CA, else empty)."""
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

    from .ca import Authority, ca_public_line

    if kind == 'token' and ca_public_line(server) is not None:
        # With a CA, the token earns a certificate, not a key line.
        line, _ = Authority(config).sign(host, key.encode('ascii'),
                                         'the enrolment request')
        return host, 'certified', line.encode('ascii') + b'\n'

    KeyAdmin(config).enrol(key.encode('ascii'), host, state)
    return host, state, b''


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


def _open_cert_intake(config, host: str, peer: str) -> Intake:
    """Check a certificate login of HOST (named by the principals line
    sshd matched) and return the Intake for its messages.

    sshd checked the CA's signature, the validity and the revocation
    list.  This reads the certificate sshd accepted (ExposeAuthInfo) and
    requires the registry to know its serial as HOST's, for that key,
    neither revoked, replaced nor expired.
    """
    from .ca import read_cert_record

    server = config.server
    _check_original_command()
    # Without the certificate sshd accepted, its serial is unknown: a
    # superseded or never-issued certificate could not be told apart,
    # so certificate logins always need ExposeAuthInfo.
    certificate = _authenticated_certificate(True)

    if host not in certificate.principals:
        raise NotPermitted('the certificate that logged in is not for %s'
                           % host)

    record = read_cert_record(server.text('registry'), certificate.serial)
    check_certificate(record, host, certificate.serial,
                      certificate.key_fingerprint)

    return open_intake(server, certificate_key(record, record.host),
                       load_hosts(server.text('hosts_cfg')), peer)


def _authenticated_certificate(required: bool):
    """Return the certificate sshd says logged in (ExposeAuthInfo), or
    None when sshd does not say; refuse when it must and does not."""
    from .certificate import parse_certificate_line

    used = _auth_info(required)

    if used is None:
        return None

    for line in used:
        # ssh-ed25519-cert-v01@openssh.com AAAA...
        if '-cert-' in line.split()[0]:
            try:
                return parse_certificate_line(line)
            except ValueError:
                break

    raise NotPermitted('the login was not made with a certificate')


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
    delivered = False

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

        if not delivered and config is not None:
            after_first_delivery(config, intake)

        delivered = True

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
