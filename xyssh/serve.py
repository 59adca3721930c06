"""`xyssh serve`: one long-running SSH server doing sshd's and xyssh
receive's job, for sites that cannot change the system sshd.

It shares the registry, the login checks and the message pipeline
(xyssh.intake) with the forced command, so a key and a message are
judged the same way by both front ends.  What sshd does for the forced
command, this module does itself, because asyncssh leaves it to the
application:

* only a registered key in a usable state logs in: pending, active, or
  retiring before its expiry (sshd's expiry-time=); revoked, offered
  and expired keys are refused at authentication;
* the identity is the key whose signature completed authentication,
  never a key that was merely offered first;
* RSA signatures with SHA-1 (ssh-rsa) are refused unless
  ssh_rsa_sha1 = yes, as OpenSSH 8.8 and later refuse them by default;
* no shell, pty, port, agent or X11 forwarding, no subsystem, and no
  exec but the protocol's own words (what restrict does in
  authorized_keys).

A session then speaks the protocol of docs/protocol.rst, as the forced
command does on stdin and stdout.
"""

import asyncio
import math
import os
import signal
import time

import asyncssh

from . import wire
from .admin import address_allowed
from .config import load_config, split_host_port
from .errors import (ConfigError, MalformedMessage, NotPermitted,
                     XysshError)
from .hostscfg import HostIndex, load_hosts
from .intake import (Intake, after_first_delivery, check_key, open_intake,
                     record_check, refuse, rotate_key)
from .log import log_event, setup_logging
from .registry import KeyRecord, read_all_records, read_record, utc_stamp
from .xymond import parse_address, send_to_xymond

# The client's command: none (a shell request) or one of these words.
SEND_COMMANDS = ('', 'xyssh-send')
CHECK_COMMAND = 'xyssh-check'
ROTATE_COMMAND = 'xyssh-rotate'
RENEW_COMMAND = 'xyssh-renew'
# A frame that carries a public key line is far below this many KiB.
KEY_FRAME_KIB = 16
# How long SIGTERM waits for messages in flight before it drops them.
STOP_GRACE = 30.0
# How long it then waits for clients to close their connections.
CLOSE_GRACE = 5.0
# Ciphers serve offers.  chacha20-poly1305 is left out on purpose: the
# client's order wins, OpenSSH and asyncssh put it first, and asyncssh
# builds a new cipher object for every packet with it, about a third of
# serve's CPU; AES-GCM runs on the processor's AES instructions and
# every OpenSSH since 6.2 and every asyncssh speaks it.
ENCRYPTION = ('aes128-gcm@openssh.com', 'aes256-gcm@openssh.com')
# hosts.cfg is looked at for changes at most this often (seconds).
HOSTS_RECHECK = 2.0


class Counters:
    """What the status column reports: counts since the last report."""

    def __init__(self) -> None:
        self.connections = 0
        self.accepted = 0
        self.refused = {}
        self.turned_away = 0

    def refuse(self, reason: str) -> None:
        """Count one refusal for REASON."""
        self.refused[reason] = self.refused.get(reason, 0) + 1


class HostsCache:
    """hosts.cfg, read again when one of its files changes.

    An index that has problems and no hosts at all (a file being
    replaced, a typo in an include) does not replace the last good one:
    that would lock every device out until the admin noticed.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.index = None
        self._stamps = None
        self._checked = -math.inf

    def get(self) -> HostIndex:
        """Return the current index, reading hosts.cfg again if needed."""
        now = time.monotonic()

        if self.index is not None and now - self._checked < HOSTS_RECHECK:
            return self.index

        self._checked = now

        if self.index is not None and \
                _stamps(self.index.sources) == self._stamps:
            return self.index

        index = load_hosts(self.path)

        if index.problems and not index.names and self.index is not None:
            log_event('error', 'hosts.cfg cannot be used (%s); keeping '
                      'the hosts read before' % '; '.join(index.problems))
        else:
            self.index = index

        self._stamps = _stamps(index.sources)
        return self.index


def _stamps(paths: 'list[str]') -> tuple:
    """Return the modification times of PATHS (None where missing)."""
    stamps = []

    for path in paths:
        try:
            stamps.append(os.stat(path).st_mtime_ns)
        except OSError:
            stamps.append(None)

    return tuple(stamps)


class RevocationCache:
    """The revocation list sshd would read (revoked_keys), read again
    when it changes.  One that does not parse leaves the last good one
    in force, and the log says so (sshd would refuse every key)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.revocations = None
        self._stamp = None
        self._checked = -math.inf

    def get(self):
        """Return the current RevocationList, or None when there is none."""
        from .krl import parse_revocation_list

        now = time.monotonic()

        if not self.path or now - self._checked < HOSTS_RECHECK:
            return self.revocations

        self._checked = now
        stamp = _stamps([self.path])

        if stamp == self._stamp:
            return self.revocations

        self._stamp = stamp

        try:
            with open(self.path, 'rb') as handle:
                self.revocations = parse_revocation_list(handle.read())
        except FileNotFoundError:
            log_event('error', 'serve: the revocation list %s is missing; '
                      'run "xyssh keys sync"' % self.path)
        except (OSError, ValueError) as exc:
            log_event('error', 'serve: the revocation list %s cannot be '
                      'read (%s); keeping the one read before'
                      % (self.path, exc))

        return self.revocations


class KeyCache:
    """Key records read fresh at every login, the last good one kept.

    Reading one small file per login picks up keys add, revoke and
    rotate at once, without dropping anyone's connection.  A record that
    cannot be read (a damaged file, a registry that is not mounted)
    leaves the last good copy of that key in force, and the log says so.
    """

    def __init__(self, registry: str) -> None:
        self.registry = registry
        self._good = {}

    def get(self, fingerprint: str) -> 'KeyRecord | None':
        """Return the record for FINGERPRINT, or None if it has none."""
        try:
            if not os.path.isdir(os.path.join(self.registry, 'keys')):
                raise ConfigError('registry %s has no keys directory'
                                  % self.registry)
            record = read_record(self.registry, fingerprint)
        except XysshError as err:
            record = self._good.get(fingerprint)
            log_event('error', 'registry unreadable for fp=%s (%s); %s'
                      % (fingerprint, err.detail, 'using the last good '
                         'record' if record else 'no earlier record'))
            return record

        if record is None:
            self._good.pop(fingerprint, None)
        else:
            self._good[fingerprint] = record

        return record


class Settings:
    """The [server] settings serve reads, checked once per (re)load."""

    def __init__(self, config) -> None:
        server = config.server
        self.config = config
        self.server = server
        self.listen = [split_host_port(item, 1985)
                       for item in server.text('listen').split()]
        self.host_key = server.text('serve_host_key') or \
            os.path.join(server.text('registry'), 'serve_host_key')
        self.max_connections = server.number('max_connections', 1)
        self.max_unauthenticated = \
            server.number('max_unauthenticated_per_address', 1)
        self.login_grace_time = server.number('login_grace_time', 1)
        self.idle_timeout = server.number('idle_timeout', 1)
        self.message_time = server.number('message_time', 1)
        self.ssh_rsa_sha1 = server.flag('ssh_rsa_sha1')
        self.status_column = server.text('status_column')
        self.status_host = server.text('status_host') or \
            os.uname().nodename
        self.status_interval = server.number('status_interval', 1)
        self.status_yellow = server.number('status_refused_yellow', 1)
        self.status_red = server.number('status_refused_red', 1)
        self.status_expiry_days = server.number('status_expiry_days', 0)
        self.xymond = parse_address(server.text('xymond'))
        self.xymond_timeout = server.number('xymond_timeout', 1)
        # Checked here so that a bad value stops a (re)load, not a login.
        server.number('maxmsg_status', 32)
        server.number('maxmsg_client', 32)
        server.number('maxmsg_data', 32)
        server.number('rotation_grace_days', 0)

        if not self.listen:
            raise ConfigError('%s [server] listen is empty' % config.path)


class Service:
    """Everything the connections share: settings, caches, counters."""

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path
        self.settings = Settings(load_config(config_path))
        server = self.settings.server
        setup_logging(server.text('log'), server.text('syslog_facility'))
        self.hosts = HostsCache(server.text('hosts_cfg'))
        self.keys = KeyCache(server.text('registry'))
        self.revocations = RevocationCache(server.text('revoked_keys'))
        self._ca_key = load_ca_key(server)
        self._ca_stamp = _stamps([_ca_public_path(server)])
        self.counters = Counters()
        self.logins = set()
        self.unauthenticated = {}
        self.channels = set()
        self.started = time.time()

    @property
    def ca_key(self):
        """Return the CA's public key, read again when its file changed
        ("xyssh ca init" needs no restart of serve)."""
        path = _ca_public_path(self.settings.server)
        stamp = _stamps([path])

        if stamp != self._ca_stamp:
            self._ca_stamp = stamp

            try:
                self._ca_key = load_ca_key(self.settings.server)
            except XysshError as err:
                log_event('error', 'serve: keeping the CA key read before: '
                          '%s' % err.detail)

        return self._ca_key

    def reload(self) -> None:
        """Read the configuration again (SIGHUP); keep the old on error.

        New settings apply to new connections and channels; the listen
        addresses and the host key stay as they were until a restart.
        """
        try:
            settings = Settings(load_config(self.config_path))
        except XysshError as err:
            log_event('error', 'serve: configuration not reloaded, the '
                      'old one stays in force: %s' % err.detail)
            return

        server = settings.server

        if server.text('hosts_cfg') != self.hosts.path:
            hosts = HostsCache(server.text('hosts_cfg'))

            if hosts.get() is None or not hosts.get().names:
                log_event('error', 'serve: configuration not reloaded, the '
                          'old one stays in force: hosts.cfg %s has no '
                          'hosts' % server.text('hosts_cfg'))
                return

            self.hosts = hosts

        setup_logging(server.text('log'), server.text('syslog_facility'))

        if server.text('registry') != self.keys.registry:
            self.keys = KeyCache(server.text('registry'))

        if server.text('revoked_keys') != self.revocations.path:
            self.revocations = RevocationCache(server.text('revoked_keys'))

        self.settings = settings
        self._ca_stamp = None
        log_event('info', 'serve: configuration reloaded from %s'
                  % self.config_path)


def _ca_public_path(server) -> str:
    """Return the path of the CA's public key."""
    from .ca import ca_key_path
    return ca_key_path(server) + '.pub'


def load_ca_key(server):
    """Return the xyssh CA's public key, or None if there is no CA."""
    from .ca import ca_public_line

    line = ca_public_line(server)

    if line is None:
        return None

    try:
        return asyncssh.import_public_key(line)
    except asyncssh.KeyImportError as exc:
        raise ConfigError('the CA public key cannot be read: %s' % exc) \
            from None


class CertificateTrust:
    """What asyncssh asks, in place of an authorized_keys file, whether
    a certificate's CA is trusted: the xyssh CA, for any principal (the
    principal is checked against the registry, see DeviceLogin).  Plain
    keys are not listed here; asyncssh then asks validate_public_key."""

    def __init__(self, service: 'Service') -> None:
        self.service = service

    def __bool__(self) -> bool:
        """asyncssh consults only a true-valued set of keys."""
        return True

    def validate(self, key, client_host: str, client_addr: str,
                 cert_principals=None, ca: bool = False):
        """Return options for the xyssh CA, None for anything else."""
        ca_key = self.service.ca_key

        if not ca or ca_key is None or \
                key.public_data != ca_key.public_data:
            return None

        # A non-empty principals option makes asyncssh skip comparing
        # the principal with the SSH user name.
        return {'principals': tuple(cert_principals or ('-',))}

    def validate_x509(self, cert, client_host: str, client_addr: str):
        """X.509 certificates are never trusted."""
        return None, None


class DeviceLogin(asyncssh.SSHServer):
    """One incoming connection: limits, authentication, identity."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.connection = None
        self.peer = '-'
        self.authenticated = False
        # The key of the last authentication request that passed our
        # checks.  asyncssh calls validate_public_key for every key
        # offered and again, with its signature, for the one that
        # authenticates, right before success; so once auth_completed
        # runs, this is the key that signed.
        self._candidate = None
        self.record = None
        self.open_channels = 0
        self._idle_timer = None
        # Whether "last seen" was recorded for this login already.
        self.seen = False

    def connection_made(self, conn) -> None:
        """Turn away connections over the global or per-address limit."""
        self.connection = conn
        self.peer = (conn.get_extra_info('peername') or ('-',))[0]
        service = self.service
        settings = service.settings
        waiting = service.unauthenticated.get(self.peer, 0)

        if len(service.logins) >= settings.max_connections or \
                waiting >= settings.max_unauthenticated:
            service.counters.turned_away += 1
            log_event('warning', 'serve: connection from %s turned away: '
                      '%s' % (self.peer, 'max_connections reached'
                              if len(service.logins) >=
                              settings.max_connections else
                              'max_unauthenticated_per_address reached'))
            asyncio.get_event_loop().call_soon(conn.abort)
            return

        service.logins.add(self)
        service.unauthenticated[self.peer] = waiting + 1
        service.counters.connections += 1
        conn.set_extra_info(xyssh_login=self)

        if service.ca_key is not None:
            self._watch_certificates(conn)

    def _watch_certificates(self, conn) -> None:
        """See the certificates offered to CONN before asyncssh checks
        them.

        asyncssh 2.24 checks a certificate's CA, validity and signature,
        but tells the application neither its serial nor its key id, and
        a certificate's force-command would silently win over ours.  So
        the connection's own check is wrapped: each certificate is read
        first (xyssh.certificate) and judged against the registry.
        """
        verify = conn.validate_public_key

        async def validate(username, key_data, msg, signature):
            """Judge a certificate first, then let asyncssh check it."""
            if b'-cert-v01@openssh.com' not in key_data[:64]:
                return await verify(username, key_data, msg, signature)

            record = self._certificate_record(key_data)

            if record is None or \
                    not await verify(username, key_data, msg, signature):
                return False

            self._candidate = record
            return True

        conn.validate_public_key = validate

    def _certificate_record(self, key_data: bytes):
        """Return the KeyRecord a certificate logs in as, or None (and a
        log line) when the registry or its content refuses it."""
        from .ca import read_cert_record
        from .certificate import USER_CERT, parse_certificate
        from .intake import certificate_key, check_certificate

        try:
            certificate = parse_certificate(key_data)
        except ValueError:
            return None

        ca_key = self.service.ca_key
        host = certificate.principals[0] if certificate.principals else '-'

        try:
            if certificate.kind != USER_CERT or ca_key is None or \
                    certificate.ca_blob != ca_key.public_data:
                raise NotPermitted('certificate %d was not signed by this '
                                   'server\'s CA' % certificate.serial)

            if 'force-command' in certificate.options:
                raise NotPermitted('certificate %d carries a force-command; '
                                   'xyssh certificates carry none'
                                   % certificate.serial)
            record = read_cert_record(self.service.settings.server.text(
                'registry'), certificate.serial)
            check_certificate(record, host, certificate.serial,
                              certificate.key_fingerprint)
            revocations = self.service.revocations.get()

            # After the registry, so a certificate xyssh revoked gets the
            # same reason here as from the forced command.
            if revocations is not None and revocations.revokes_certificate(
                    certificate.ca_blob, certificate.serial,
                    certificate.key_id, certificate.key_blob):
                raise NotPermitted('certificate %d is in the revocation '
                                   'list' % certificate.serial)

            if len(certificate.principals) != 1:
                raise NotPermitted('certificate %d names %d principals'
                                   % (certificate.serial,
                                      len(certificate.principals)))
        except XysshError as err:
            refuse(err, certificate.key_fingerprint, self.peer, host)
            return None

        key = certificate_key(record, record.host)
        key.certificate_serial = certificate.serial
        return key

    def connection_lost(self, exc) -> None:
        """Forget the connection and its limits' share."""
        service = self.service

        if self in service.logins:
            service.logins.discard(self)

            if not self.authenticated:
                self._release_startup()

        if self._idle_timer:
            self._idle_timer.cancel()

    def _release_startup(self) -> None:
        """Give back this connection's unauthenticated slot."""
        left = self.service.unauthenticated.get(self.peer, 1) - 1

        if left > 0:
            self.service.unauthenticated[self.peer] = left
        else:
            self.service.unauthenticated.pop(self.peer, None)

    def begin_auth(self, username: str) -> bool:
        """Authentication is always required; with a CA, its certificates
        are trusted (asyncssh wants them set here, for each user)."""
        if self.service.ca_key is not None:
            self.connection.set_authorized_keys(
                CertificateTrust(self.service))

        return True

    def password_auth_supported(self) -> bool:
        """Device keys only."""
        return False

    def kbdint_auth_supported(self) -> bool:
        """Device keys only."""
        return False

    def public_key_auth_supported(self) -> bool:
        """Device keys are the one way in."""
        return True

    def validate_public_key(self, username: str, key) -> bool:
        """Accept a registered key in a usable state, and remember it."""
        fingerprint = key.get_fingerprint('sha256')
        record = self.service.keys.get(fingerprint)

        try:
            check_key(record)

            if not address_allowed(self.peer, record.source):
                raise NotPermitted('this key may only log in from %s'
                                   % record.source)

            revocations = self.service.revocations.get()

            if revocations is not None and \
                    revocations.revokes_key(key.public_data):
                raise NotPermitted('this key is in the revocation list')
        except NotPermitted as err:
            refuse(err, fingerprint, self.peer,
                   record.host if record else None)
            self._candidate = None
            return False

        if not self.service.settings.ssh_rsa_sha1 and \
                key.algorithm == b'ssh-rsa':
            # asyncssh 2.24 verifies every signature algorithm the key
            # type knows, ssh-rsa (SHA-1) included, and has no option to
            # refuse one; the set it checks against is a plain attribute
            # of the key object, which this narrows for this login only.
            key.all_sig_algorithms = set(key.all_sig_algorithms) - \
                {b'ssh-rsa'}

        self._candidate = record
        return True

    def auth_completed(self) -> None:
        """Fix the identity: the key whose signature was just verified."""
        self.authenticated = True
        self.record = self._candidate
        self._release_startup()
        self._touch()

    def channel_opened(self) -> None:
        """Count a channel; an open one keeps the connection alive."""
        self.open_channels += 1
        self._touch()

    def channel_closed(self) -> None:
        """Count a channel out and restart the idle clock."""
        self.open_channels -= 1
        self._touch()

    def _touch(self) -> None:
        """(Re)start the idle timer of a connection with no channel."""
        if self._idle_timer:
            self._idle_timer.cancel()
            self._idle_timer = None

        if self.open_channels == 0 and self.connection is not None:
            self._idle_timer = asyncio.get_event_loop().call_later(
                self.service.settings.idle_timeout, self.connection.close)


class ChannelReader:
    """Read a channel's input in bounded waits, like the forced command:
    each wait at most IDLE seconds, one message at most MESSAGE_TIME."""

    def __init__(self, stream, idle: float, message_time: float) -> None:
        self.stream = stream
        self.idle = idle
        self.message_time = message_time
        self.buffer = b''
        self.eof = False
        self.deadline = 0.0

    def start_message(self) -> None:
        """Start the clock for the next message."""
        self.deadline = time.monotonic() + self.message_time

    async def _fill(self) -> None:
        """Read what arrives next, within the idle and message limits."""
        left = self.deadline - time.monotonic()

        if left <= 0:
            raise MalformedMessage('message not complete after %d seconds; '
                                   'dropped' % self.message_time)

        try:
            chunk = await asyncio.wait_for(self.stream.read(1 << 18),
                                           min(self.idle, left))
        except asyncio.TimeoutError:
            if time.monotonic() >= self.deadline:
                raise MalformedMessage('message not complete after %d '
                                       'seconds; dropped'
                                       % self.message_time) from None
            raise MalformedMessage('no data for %d seconds; message '
                                   'dropped' % self.idle) from None
        except (asyncssh.ConnectionLost, asyncssh.DisconnectError,
                BrokenPipeError):
            # A client that went away mid-message ended its input: what
            # arrived is judged (and refused as cut short) like any end.
            chunk = b''

        if chunk:
            self.buffer += chunk
        else:
            self.eof = True

    async def read_frame(self, limits, first: bool) -> 'bytes | None':
        """Return the next framed message, None at a clean end of input.

        Raises MalformedMessage for a bad header, a frame over LIMITS,
        a cut message or a wrong digest, as the forced command does.
        """
        self.start_message()

        while b'\n' not in self.buffer[:wire.MAX_HEADER] and \
                not self.eof and len(self.buffer) < wire.MAX_HEADER:
            await self._fill()

        if not self.buffer and self.eof:
            if first:
                raise MalformedMessage('no message received')
            return None

        end = self.buffer.find(b'\n', 0, wire.MAX_HEADER)
        header = wire.parse_request_header(self.buffer[:end + 1]) \
            if end >= 0 else None

        if header is None:
            raise MalformedMessage('input is not framed by xyssh; send '
                                   'with xymon-ssh or xyssh send')

        length, digest = header
        limits.check_frame(length)
        self.buffer = self.buffer[end + 1:]

        while len(self.buffer) < length and not self.eof:
            await self._fill()

        data, self.buffer = self.buffer[:length], self.buffer[length:]

        if len(data) < length:
            raise MalformedMessage('message cut short: %d of %d bytes '
                                   'arrived' % (len(data), length))

        if not wire.digest_matches(data, digest):
            raise MalformedMessage('message does not match its SHA-256')

        return data


class Channel:
    """One session channel of an authenticated login."""

    def __init__(self, service: Service, login: DeviceLogin,
                 process) -> None:
        self.service = service
        self.login = login
        self.process = process
        self.settings = service.settings

    def fail(self, err: XysshError) -> int:
        """Tell the client, as the forced command does: an answer line on
        the channel's stdout, one short line on its stderr; count it for
        the status column and return the exit status."""
        self.service.counters.refuse(err.reason)
        self.process.stdout.write(wire.error_answer(err.exit_status,
                                                    err.client_text))
        self.process.stderr.write((err.client_text + '\n').encode(
            'utf-8', 'replace'))
        return err.exit_status

    async def run(self) -> int:
        """Serve the channel; return its exit status."""
        process = self.process
        login = self.login
        record = login.record
        command = process.command

        if record is None:
            # Not reachable through asyncssh's own checks; never guess.
            return self.fail(NotPermitted('this login has no key'))

        if process.subsystem is not None or command is not None and \
                command not in SEND_COMMANDS + (CHECK_COMMAND,
                                                ROTATE_COMMAND,
                                                RENEW_COMMAND):
            err = NotPermitted('unsupported command; send with xymon-ssh')
            refuse(err, record.fingerprint, login.peer, record.host)
            return self.fail(err)

        serial = getattr(record, 'certificate_serial', None)

        try:
            # The registry may have changed since the login: judge the
            # key as it stands now, as the forced command does at each
            # login.
            if serial is None:
                current = check_key(self.service.keys.get(
                    record.fingerprint))
            else:
                current = self._current_certificate(record, serial)

            intake = open_intake(self.settings.server, current,
                                 self.service.hosts.get(), login.peer,
                                 seen=not login.seen)

            login.seen = True
        except XysshError as err:
            refuse(err, record.fingerprint, login.peer, record.host)
            return self.fail(err)

        reader = ChannelReader(process.stdin, self.settings.idle_timeout,
                               self.settings.message_time)

        if command == CHECK_COMMAND:
            record_check(intake)
            process.stdout.write(wire.ok_answer(b''))
            return 0

        if command == ROTATE_COMMAND:
            return await self._key_request(intake, reader, rotate_key)

        if command == RENEW_COMMAND:
            from .intake import renew_certificate
            return await self._key_request(intake, reader,
                                           renew_certificate)

        if intake.key.rotate_requested:
            process.stderr.write(b'xyssh-notice: rotate\n')

        return await self._serve(intake, reader)

    def _current_certificate(self, record: KeyRecord,
                             serial: int) -> KeyRecord:
        """Return RECORD if certificate SERIAL is still good; refuse it
        once revoked or expired."""
        from .ca import read_cert_record
        from .intake import check_certificate

        fresh = read_cert_record(self.settings.server.text('registry'),
                                 serial)
        check_certificate(fresh, record.host, serial, record.fingerprint)
        record.certificate_record = fresh
        return record

    async def _key_request(self, intake: Intake, reader: ChannelReader,
                           action) -> int:
        """Read the one frame of a key request (a public key line), run
        ACTION(config, intake, data) in a worker thread and answer with
        what it returns: rotate_key or renew_certificate, which log
        their own refusals."""
        from .policy import Limits

        try:
            data = await reader.read_frame(
                Limits(KEY_FRAME_KIB, KEY_FRAME_KIB, KEY_FRAME_KIB), True)
        except XysshError as err:
            refuse(err, intake.key.fingerprint, intake.peer,
                   intake.key_host)
            return self.fail(err)

        try:
            reply = await asyncio.get_event_loop().run_in_executor(
                None, action, self.settings.config, intake, data)
        except XysshError as err:
            return self.fail(err)

        self.process.stdout.write(wire.ok_answer(reply or b''))
        return 0

    async def _serve(self, intake: Intake, reader: ChannelReader) -> int:
        """Answer framed messages until EOF; return the exit status."""
        loop = asyncio.get_event_loop()
        status = 0
        first = True
        first_delivered = True

        while True:
            try:
                data = await reader.read_frame(intake.limits, first)
            except XysshError as err:
                refuse(err, intake.key.fingerprint, intake.peer,
                       intake.key_host)
                return self.fail(err)

            if data is None:
                return status

            first = False

            try:
                # A blocking connection to xymond, as in the forced
                # command, in a worker thread so others are not held up.
                reply = await loop.run_in_executor(None, intake.handle,
                                                   data)
            except XysshError as err:
                status = self.fail(err)
                continue

            self.service.counters.accepted += 1

            if first_delivered:
                first_delivered = False
                await loop.run_in_executor(None, after_first_delivery,
                                           self.settings.config, intake)

            self.process.stdout.write(wire.ok_answer(reply))


async def _handle_process(service: Service, process) -> None:
    """Run one session channel and close it with its exit status."""
    login = process.get_extra_info('connection').get_extra_info(
        'xyssh_login')
    task = asyncio.current_task()
    service.channels.add(task)
    login.channel_opened()
    status = 70

    try:
        status = await Channel(service, login, process).run()
    except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged,
            asyncssh.SignalReceived, BrokenPipeError,
            asyncssh.ConnectionLost, asyncssh.DisconnectError):
        status = 74
    except Exception:
        import traceback
        log_event('error', 'serve: channel failed from %s: %s' % (
            login.peer, ' | '.join(traceback.format_exc().strip()
                                   .splitlines())))
        try:
            Channel(service, login, process).fail(XysshError())
        except Exception:
            pass
    finally:
        service.channels.discard(task)
        login.channel_closed()

    try:
        process.exit(status)
    except Exception:
        pass


def load_host_key(path: str):
    """Return serve's host key, creating an ed25519 one on first start."""
    if not os.path.exists(path):
        from .keys import write_atomically

        key = asyncssh.generate_private_key('ssh-ed25519',
                                            comment='xyssh serve')
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700,
                    exist_ok=True)
        write_atomically(path, key.export_private_key(), 0o600)
        write_atomically(path + '.pub', key.export_public_key(), 0o644)
        log_event('info', 'serve: created host key %s (%s)'
                  % (path, key.get_fingerprint('sha256')))

    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise ConfigError('cannot read serve host key %s: %s'
                          % (path, exc)) from None


def status_message(service: Service, now: float) -> bytes:
    """Return the status message for serve's own column."""
    settings = service.settings
    counters = service.counters
    refused = sum(counters.refused.values())
    expiring = _expiring_keys(settings, now)

    if refused >= settings.status_red:
        color = 'red'
    elif refused >= settings.status_yellow or expiring or \
            counters.turned_away:
        color = 'yellow'
    else:
        color = 'green'

    minutes = max(1, math.ceil(settings.status_interval * 2 / 60))
    lines = [
        'status+%dm %s.%s %s %s xyssh serve' % (
            minutes, settings.status_host.replace('.', ','),
            settings.status_column, color, time.strftime(
                '%a %b %d %H:%M:%S %Y', time.localtime(now))),
        '',
        'In the last %d seconds:' % settings.status_interval,
        'Connections: %d (open now: %d, turned away at the limits: %d)'
        % (counters.connections, len(service.logins),
           counters.turned_away),
        'Messages accepted: %d' % counters.accepted,
        'Messages refused: %d (red at %d, yellow at %d)'
        % (refused, settings.status_red, settings.status_yellow),
    ]
    lines += ['  %s: %d' % item for item in sorted(counters.refused.items())]

    if expiring:
        lines += ['', 'Keys and certificates expiring within %d days:'
                  % settings.status_expiry_days]
        lines += ['  %s %s %s' % item for item in expiring]

    return ('\n'.join(lines) + '\n').encode('utf-8', 'replace')


def _expiring_keys(settings: Settings, now: float) -> 'list[tuple]':
    """Return (expiry, host, what) of the keys whose grace period and the
    certificates whose validity end within status_expiry_days."""
    from .ca import read_all_cert_records

    registry = settings.server.text('registry')
    limit = now + settings.status_expiry_days * 86400

    try:
        records = read_all_records(registry)
        certificates = read_all_cert_records(registry)
    except (OSError, XysshError) as exc:
        log_event('error', 'serve: cannot read the registry for the '
                  'status column: %s' % exc)
        return []

    expiring = [(record.expires, record.host, 'key %s' % record.fingerprint)
                for record in records if record.state == 'retiring' and
                utc_stamp(now) < record.expires <= utc_stamp(limit)]
    # Only a host's newest certificate counts: an older one running out
    # after its renewal is no news.
    newest = {}

    for record in certificates:
        if record.state == 'active':
            newest[record.host.lower()] = record

    # A host whose newest certificate ran out cannot renew it: it needs
    # a new enrolment, and this column is where that shows.
    expiring += [(utc_stamp(record.valid_before), record.host,
                  'certificate %d%s' % (record.serial,
                                        ' EXPIRED: enrol the device again'
                                        if record.valid_before <= now
                                        else ''))
                 for record in newest.values()
                 if record.valid_before <= limit]
    return sorted(expiring)


async def _report_status(service: Service) -> None:
    """Send serve's status column to xymond at every interval."""
    loop = asyncio.get_event_loop()

    while True:
        await asyncio.sleep(service.settings.status_interval)
        settings = service.settings

        if not settings.status_column:
            continue

        message = status_message(service, time.time())
        service.counters = Counters()

        try:
            await loop.run_in_executor(None, send_to_xymond,
                                       settings.xymond, message,
                                       settings.xymond_timeout)
        except XysshError:
            log_event('error', 'serve: cannot send the %s status column '
                      'to xymond' % settings.status_column)


async def run(config_path: str, ready=print) -> int:
    """Serve until SIGTERM; return the exit status.

    READY is called with one line once every address is listening: the
    host key fingerprint and the known_hosts line devices need.
    """
    service = Service(config_path)
    settings = service.settings
    key = load_host_key(settings.host_key)
    loop = asyncio.get_event_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, service.reload)
    # Not offered in server-sig-algs either, so clients pick SHA-2.
    algorithms = [name.decode('ascii') for name in asyncssh.public_key.
                  get_default_public_key_algs() if name != b'ssh-rsa']

    async def process(process) -> None:
        """Serve one session channel."""
        await _handle_process(service, process)

    listeners = []

    for host, port in settings.listen:
        try:
            listeners.append(await asyncssh.listen(
                host or None, port,
                server_factory=lambda: DeviceLogin(service),
                server_host_keys=[key], process_factory=process,
                encoding=None, allow_pty=False, x11_forwarding=False,
                agent_forwarding=False, login_timeout=
                settings.login_grace_time, keepalive_interval=0,
                signature_algs=algorithms if not settings.ssh_rsa_sha1
                else (), encryption_algs=ENCRYPTION, line_editor=False))
        except OSError as exc:
            log_event('error', 'serve: cannot listen on %s port %d: %s'
                      % (host, port, exc.strerror))

    if not listeners:
        raise ConfigError('serve cannot listen on any of [server] listen')

    public = key.export_public_key().decode('ascii').split()
    addresses = ' '.join(('[%s]:%d' if ':' in address[0] else '%s:%d')
                         % (address[0], address[1])
                         for listener in listeners
                         for address in listener.get_addresses())
    ready('xyssh serve: listening on %s; host key %s; devices pin it '
          'with the known_hosts line "[SERVER]:PORT %s %s"'
          % (addresses, key.get_fingerprint('sha256'), public[0],
             public[1]))
    log_event('info', 'serve: listening on %s, host key %s'
              % (addresses, key.get_fingerprint('sha256')))
    reporter = asyncio.ensure_future(_report_status(service))

    await stop.wait()

    log_event('info', 'serve: stopping; %d message channels in flight'
              % len(service.channels))

    for listener in listeners:
        listener.close()

    reporter.cancel()

    if service.channels:
        await asyncio.wait(set(service.channels), timeout=STOP_GRACE)

    if service.channels:
        log_event('warning', 'serve: %d message channels still open after '
                  '%d seconds; their messages are dropped, unsent'
                  % (len(service.channels), STOP_GRACE))

    # A client closes its connection once it has its last answer and
    # exit status; closing it first could cut that short.
    deadline = loop.time() + CLOSE_GRACE

    while service.logins and loop.time() < deadline:
        await asyncio.sleep(0.05)

    for login in list(service.logins):
        if login.connection is not None:
            login.connection.close()

    log_event('info', 'serve: stopped')
    return 0


def main(config_path: str) -> int:
    """Run serve from the command line; return the exit status."""
    try:
        return asyncio.run(run(config_path, ready=lambda line: print(
            line, flush=True)))
    except XysshError as err:
        log_event('error', 'serve cannot start: %s' % err.detail)
        raise
