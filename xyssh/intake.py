"""The one path a message takes on the server: parse, decide, forward, log.

Both front ends, the OpenSSH forced command and the embedded server,
hand each complete, framed message to Intake.handle().
"""

from .errors import ConfigError, NotPermitted, XysshError
from .hostscfg import HostIndex
from .registry import KeyRecord, mark_seen, utc_stamp
from .log import audit, log_event
from .message import parse_message
from .policy import Limits, check_message
from .xymond import parse_address, send_to_xymond


class Intake:
    """Checks messages for one authenticated key and forwards them."""

    def __init__(self, key: KeyRecord, key_host: str, hosts: HostIndex,
                 limits: Limits, xymond: 'tuple[str, int]',
                 xymond_timeout: float, peer: str) -> None:
        self.key = key
        self.key_host = key_host
        self.hosts = hosts
        self.limits = limits
        self.xymond = xymond
        self.xymond_timeout = xymond_timeout
        self.peer = peer

    def handle(self, data: bytes) -> bytes:
        """Forward DATA if this key may send it; return xymond's reply.

        Raises an XysshError, after logging it, when the message is
        refused or xymond does not take it; nothing reaches xymond then.
        """
        message = None

        try:
            message = parse_message(data)
            check_message(message, data, self.key_host, self.key.allow,
                          self.hosts, self.limits)
            reply = send_to_xymond(self.xymond, data, self.xymond_timeout)
        except XysshError as err:
            self._record('rejected', message, len(data), err)
            raise

        self._record('accepted', message, len(data), None)
        return reply

    def _record(self, verb: str, message, size: int,
                err: 'XysshError | None') -> None:
        """Write one audit line per part of MESSAGE (one if unparsed)."""
        reason = err.reason if err else None
        detail = err.detail if err else None
        parts = message.reports if message and message.reports else [None]

        for report in parts:
            audit(verb, fp=self.key.fingerprint, key=self.key_host,
                  **{'from': self.peer},
                  type=message.command if message else None,
                  host=report.host if report else None,
                  test=report.test if report else None,
                  bytes=report.size if report else size,
                  reason=reason, detail=detail)


def refuse(err: XysshError, fingerprint: str, peer: str,
           key_host: 'str | None' = None) -> None:
    """Log a refusal that happened before any message was read."""
    audit('rejected', fp=fingerprint, key=key_host, **{'from': peer},
          type=None, host=None, test=None, bytes=0, reason=err.reason,
          detail=err.detail)


def check_key(record: 'KeyRecord | None') -> KeyRecord:
    """Return RECORD if its key may log in; refuse it otherwise."""
    if record is None:
        raise NotPermitted('this key is not registered')

    if not record.usable():
        # The log line says so: a revoked key still trying is news.
        raise NotPermitted('this key was revoked' if record.state ==
                           'revoked' else 'this key was rotated and its '
                           'grace period ended at %s' % record.expires)

    return record


def open_intake(server, record: KeyRecord, hosts: HostIndex,
                peer: str, seen: bool = True) -> Intake:
    """Return the Intake for a login with RECORD's key, which check_key
    passed; refuse a key whose host left hosts.cfg or is pinned to other
    keys.  SERVER is the [server] section of the configuration.  SEEN
    records the login for "keys list" (once per login is enough)."""
    if seen:
        mark_seen(server.text('registry'), record.fingerprint)

    if hosts.problems and not hosts.names:
        raise ConfigError('; '.join(hosts.problems))

    key_host = hosts.canonical(record.host)

    if key_host is None:
        raise NotPermitted('host %s of this key is not in hosts.cfg'
                           % record.host)

    pins = hosts.pinned(key_host)

    if pins is not None and record.fingerprint not in pins:
        raise NotPermitted('hosts.cfg pins %s to other keys (SSHKEY: '
                           'tags)' % key_host)

    return Intake(record, key_host, hosts, server_limits(server),
                  parse_address(server.text('xymond')),
                  server.number('xymond_timeout', 1), peer)


def server_limits(server) -> Limits:
    """Return the size limits the [server] section sets."""
    return Limits(server.number('maxmsg_status', 32),
                  server.number('maxmsg_client', 32),
                  server.number('maxmsg_data', 32))


def record_check(intake: Intake) -> None:
    """Log the answer to xyssh-check: the key logs in and may send."""
    audit('accepted', fp=intake.key.fingerprint, key=intake.key_host,
          **{'from': intake.peer}, type='check', host=None, test=None,
          bytes=0, reason=None, detail=None)


def rotate_key(config, intake: Intake, data: bytes) -> None:
    """Register the public key line DATA in place of the key that logged
    in, and log it.  The identity is the login's, never the request's:
    a key can only ever replace itself.  Raises XysshError, logged."""
    from .admin import KeyAdmin

    fingerprint = intake.key.fingerprint

    try:
        old, new = KeyAdmin(config).rotate(
            fingerprint, data,
            config.server.number('rotation_grace_days', 0) * 86400)
    except OSError as exc:
        err = ConfigError('cannot write the registry or authorized_keys: '
                          '%s' % exc.strerror)
        refuse(err, fingerprint, intake.peer, intake.key_host)
        raise err from None
    except XysshError as err:
        refuse(err, fingerprint, intake.peer, intake.key_host)
        raise

    audit('accepted', fp=fingerprint, key=intake.key_host,
          **{'from': intake.peer}, type='rotate', host=None, test=None,
          bytes=len(data), reason=None,
          detail='new key %s; this one retires at %s'
          % (new.fingerprint, old.expires))


def after_first_delivery(config, intake: Intake) -> None:
    """What a session's first delivered report proves: an enrolled key
    is held by its device (it becomes active), and a renewed certificate
    is in use, so the one it was renewed from is retired.  A test push
    (xyssh-check) proves neither: the device switches only after it."""
    from .ca import retire_renewed

    record = getattr(intake.key, 'certificate_record', None)

    if record is not None:
        try:
            retire_renewed(config, record)
        except (XysshError, OSError) as exc:
            log_event('error', 'cannot retire the certificate renewed by '
                      '%d: %s' % (record.serial, exc))
    elif intake.key.state == 'pending':
        activate_key(config, intake)


def activate_key(config, intake: Intake) -> None:
    """Make an enrolled (pending) key active after its first delivered
    report: proof that the device holds the private key."""
    from .admin import KeyAdmin

    try:
        KeyAdmin(config).activate(intake.key.fingerprint)
    except (XysshError, OSError) as exc:
        log_event('error', 'cannot activate key fp=%s: %s'
                  % (intake.key.fingerprint, exc))
        return

    intake.key.state = 'active'


def renew_certificate(config, intake: Intake, data: bytes) -> bytes:
    """Sign the public key line DATA for the host of the certificate that
    logged in; return the new certificate line.  The host is the
    login's, never the request's, and only a certificate with less than
    a third of its validity left may be renewed, so a copied certificate
    cannot mint itself successors at will.  Raises XysshError, logged."""
    from .ca import Authority

    record = getattr(intake.key, 'certificate_record', None)

    try:
        if record is None:
            raise NotPermitted('only a certificate login can renew its '
                               'certificate')

        if not record.renewable():
            raise NotPermitted('certificate %d is not due for renewal '
                               'before %s' % (record.serial, utc_stamp(
                                   record.valid_before - (
                                       record.valid_before -
                                       record.valid_after) // 3)))

        line, issued = Authority(config).sign(
            intake.key_host, data, 'the renewal request',
            renewed_from=record.serial)
    except OSError as exc:
        err = ConfigError('cannot write the certificate registry: %s'
                          % exc.strerror)
        refuse(err, intake.key.fingerprint, intake.peer, intake.key_host)
        raise err from None
    except XysshError as err:
        refuse(err, intake.key.fingerprint, intake.peer, intake.key_host)
        raise

    audit('accepted', fp=intake.key.fingerprint, key=intake.key_host,
          **{'from': intake.peer}, type='renew', host=intake.key_host,
          test=None, bytes=len(data), reason=None,
          detail='certificate %d issued, valid until %s'
          % (issued.serial, utc_stamp(issued.valid_before)))
    return line.encode('ascii') + b'\n'


def certificate_key(record, host: str) -> KeyRecord:
    """Return the KeyRecord a certificate login of HOST is judged as:
    the certified key, with the default grants, and the certificate's
    record beside it."""
    from .registry import fingerprint_of_line

    key = KeyRecord(fingerprint_of_line(record.key) or '-', host,
                    record.key, 'active', created=record.created)
    key.certificate_record = record
    return key


def check_certificate(record, host: str, serial: int,
                      key_fingerprint: 'str | None' = None) -> None:
    """Refuse a certificate login unless the registry issued SERIAL for
    HOST (and for the key KEY_FINGERPRINT, when it is known), and it is
    neither revoked, replaced by its renewal, nor expired."""
    from .registry import fingerprint_of_line

    if record is None:
        raise NotPermitted('certificate %d was not issued by this server'
                           % serial)

    if record.host.lower() != host.lower():
        raise NotPermitted('certificate %d is for %s' % (serial,
                                                         record.host))

    if key_fingerprint is not None and \
            fingerprint_of_line(record.key) != key_fingerprint:
        raise NotPermitted('certificate %d was issued for another key'
                           % serial)

    if record.state == 'revoked':
        raise NotPermitted('certificate %d was revoked' % serial)

    if record.state == 'superseded':
        raise NotPermitted('certificate %d was replaced by its renewal'
                           % serial)

    if not record.usable():
        raise NotPermitted('certificate %d has expired' % serial)
