"""The xyssh certificate authority: OpenSSH user certificates for devices.

ssh-keygen makes the CA key and signs; xyssh decides what goes into a
certificate and remembers what it issued:

* principal: the device's hosts.cfg name; key id "xyssh:HOST:SERIAL";
* serial: strictly increasing from 1 (never 0: a serial-0 certificate
  cannot be revoked by serial);
* valid from 5 minutes before issue, so a server whose clock is a little
  behind still takes a fresh certificate, for ca_validity after issue;
* no extensions (no pty, no forwarding), optionally source-address;
* no force-command.  The command lives on the server alone, in the line
  of sshd's AuthorizedPrincipalsFile that xyssh writes for each host
  (and xyssh serve runs its own): a command signed into certificates
  would lock out every device holding one as soon as an upgrade moved
  the program, and asyncssh would silently prefer it to the server's.

The registry keeps one small file per certificate under certs/, named by
serial, which the forced command reads at each certificate login.
"""

import os
import time

from .certificate import parse_certificate_line
from .errors import ConfigError, KeyFileError, NotPermitted
from .keyline import KEY_OPTIONS, shell_quote
from .registry import utc_stamp

CLOCK_SLACK = 300
# Characters a principal cannot hold: ssh-keygen -n splits at commas,
# and sshd's principal lists and patterns give the others meanings.
PRINCIPAL_UNSAFE = ', \t*?!"'
_FIELDS = ('serial', 'host', 'key_id', 'state', 'valid_after',
           'valid_before', 'created', 'key')
# superseded: a renewal of it has logged in, so it is not needed any more.
STATES = ('active', 'superseded', 'revoked')
# A certificate may be renewed once less than this share of its
# validity is left (the device asks from then on, see xyssh.renewal).
RENEWABLE_SHARE = 1 / 3


class CertRecord:
    """What the registry knows about one issued certificate."""

    def __init__(self, serial: int, host: str, key: str, valid_after: int,
                 valid_before: int, state: str = 'active',
                 created: str = '', key_id: str = '',
                 renewed_from: int = 0) -> None:
        self.serial = serial
        self.host = host
        self.key = key
        self.valid_after = valid_after
        self.valid_before = valid_before
        self.state = state
        self.created = created or utc_stamp()
        self.key_id = key_id or key_id_for(host, serial)
        # The serial of the certificate whose login asked for this one.
        self.renewed_from = renewed_from

    def renewable(self, now: 'float | None' = None) -> bool:
        """Tell whether a login with it may ask for its renewal now."""
        now = time.time() if now is None else now
        return self.usable(now) and self.valid_before - now < \
            (self.valid_before - self.valid_after) * RENEWABLE_SHARE

    def usable(self, now: 'float | None' = None) -> bool:
        """Tell whether the certificate is neither revoked nor expired."""
        now = time.time() if now is None else now
        return self.state == 'active' and \
            self.valid_after <= now < self.valid_before

    def dump(self) -> str:
        """Return the record as the text of its registry file."""
        values = {'serial': self.serial, 'host': self.host,
                  'key_id': self.key_id, 'state': self.state,
                  'valid_after': self.valid_after,
                  'valid_before': self.valid_before,
                  'created': self.created, 'key': self.key}
        return ''.join('%s: %s\n' % (name, values[name])
                       for name in _FIELDS) + \
            ('renewed_from: %d\n' % self.renewed_from
             if self.renewed_from else '')


DURATION_UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}


def duration_seconds(text: str) -> 'int | None':
    """Return the seconds of "90s", "30m", "24h", "30d" (or plain
    seconds), None if TEXT is not such a duration."""
    text = text.strip()
    number, unit = (text[:-1], text[-1]) if text[-1:] in DURATION_UNITS \
        else (text, 's')

    if not number.isdigit() or int(number) < 1:
        return None

    return int(number) * DURATION_UNITS[unit]


def key_id_for(host: str, serial: int) -> str:
    """Return the key id a certificate for HOST with SERIAL carries."""
    return 'xyssh:%s:%d' % (host, serial)


def cert_record_path(registry: str, serial: int) -> str:
    """Return the path of the record of certificate SERIAL."""
    return os.path.join(registry, 'certs', '%d' % serial)


def read_cert_record(registry: str, serial: int) -> 'CertRecord | None':
    """Return the record of certificate SERIAL, or None if it has none."""
    path = cert_record_path(registry, serial)

    try:
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError('cannot read certificate record %s: %s'
                          % (path, exc.strerror))

    return _parse_record(text, path)


def _parse_record(text: str, path: str) -> CertRecord:
    """Parse the text of one certificate record."""
    values = {}

    for line in text.split('\n'):
        name, _, value = line.partition(': ')
        values[name] = value

    try:
        record = CertRecord(int(values['serial']), values['host'],
                            values['key'], int(values['valid_after']),
                            int(values['valid_before']), values['state'],
                            values['created'], values['key_id'],
                            int(values.get('renewed_from') or 0))
    except (KeyError, ValueError):
        raise KeyFileError('%s: damaged certificate record' % path) \
            from None

    if record.state not in STATES:
        raise KeyFileError('%s: damaged certificate record (state)' % path)

    return record


def read_all_cert_records(registry: str) -> 'list[CertRecord]':
    """Return every certificate record, by serial."""
    directory = os.path.join(registry, 'certs')

    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []

    records = []

    for name in names:
        if name.isdigit():
            with open(os.path.join(directory, name),
                      encoding='utf-8') as handle:
                records.append(_parse_record(handle.read(),
                                             os.path.join(directory, name)))

    return sorted(records, key=lambda record: record.serial)


def ca_key_path(server) -> str:
    """Return where the CA's private key is (its public half: .pub)."""
    return server.text('ca_key') or \
        os.path.join(server.text('registry'), 'ca', 'ca_key')


def principals_path(server) -> str:
    """Return the file xyssh writes for sshd's AuthorizedPrincipalsFile."""
    return server.text('principals_file') or \
        os.path.join(server.text('registry'), 'ca', 'principals')


def ca_public_line(server) -> 'str | None':
    """Return the CA's public key line, or None if there is no CA."""
    try:
        with open(ca_key_path(server) + '.pub', encoding='ascii') as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError('cannot read the CA public key %s.pub: %s'
                          % (ca_key_path(server), exc))


def cert_command(program: str, config_path: str, host: str) -> str:
    """Return the forced command for certificate logins of HOST."""
    words = [program, 'receive', '--config', config_path,
             '--cert-host', host]
    return ' '.join(shell_quote(word) for word in words).replace(
        '"', '\\"')


def principals_text(records: 'list[CertRecord]', program: str,
                    config_path: str, now: 'float | None' = None) -> bytes:
    """Return the AuthorizedPrincipalsFile lines: one per host that holds
    a usable certificate, with restrict and the forced command."""
    hosts = sorted({record.host for record in records
                    if record.usable(now)}, key=str.lower)
    options = ','.join(KEY_OPTIONS)
    return ''.join('%s,command="%s" %s\n' % (
        options, cert_command(program, config_path, host), host)
        for host in hosts).encode('utf-8')


class Authority:
    """CA operations for one server configuration."""

    def __init__(self, config) -> None:
        from .admin import KeyAdmin

        self.config = config
        self.server = config.server
        self.registry = self.server.text('registry')
        self.key_path = ca_key_path(self.server)
        self.admin = KeyAdmin(config)

    def init(self, passphrase_file: 'str | None' = None) -> str:
        """Create the CA key (mode 0600); return its public key line."""
        import subprocess

        if os.path.exists(self.key_path):
            raise KeyFileError('%s exists already: one CA per server; '
                               'remove it only if no certificate it '
                               'signed is still in use' % self.key_path)

        passphrase = _read_passphrase(passphrase_file) \
            if passphrase_file else ''
        directory = os.path.dirname(os.path.abspath(self.key_path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        made = subprocess.run(
            ['ssh-keygen', '-q', '-t', 'ed25519', '-N', passphrase, '-C',
             'xyssh CA', '-f', self.key_path], capture_output=True,
            timeout=60, stdin=subprocess.DEVNULL)

        if made.returncode != 0:
            raise KeyFileError('ssh-keygen could not make the CA key: %s'
                               % made.stderr.decode('utf-8', 'replace')
                               .strip()[:200])

        os.chmod(self.key_path, 0o600)
        self.sync()
        return ca_public_line(self.server)

    def sign(self, host: str, raw: bytes, source: str,
             validity: 'int | None' = None,
             source_address: 'str | None' = None,
             renewed_from: int = 0) -> 'tuple[str, CertRecord]':
        """Sign the one public key in RAW for HOST; return the
        certificate line and its record.  A key that is registered or
        certified for another host, or the CA's own key, is refused:
        one key, one host."""
        from .keys import parse_public_keys, registry_lock

        if ca_public_line(self.server) is None:
            raise ConfigError('there is no CA yet; run "xyssh ca init"')

        canonical, _ = self.admin._canonical_host(host)
        keys = parse_public_keys(raw, source)

        if len(keys) != 1:
            raise KeyFileError('%s: one public key to sign, not %d'
                               % (source, len(keys)))

        seconds = validity if validity is not None else \
            duration_seconds(self.server.text('ca_validity'))

        if seconds is None:
            raise ConfigError('%s [server] ca_validity = %r: use a number '
                              'with s, m, h or d, such as 30d'
                              % (self.config.path,
                                 self.server.text('ca_validity')))

        if any(char in canonical for char in PRINCIPAL_UNSAFE):
            raise KeyFileError('%r cannot be a certificate principal: '
                               'ssh-keygen and sshd read commas, blanks and '
                               'wildcards in it as several names' % canonical)

        with registry_lock(self.registry):
            self._check_key_is_free(keys[0], canonical)
            siblings = self._check_parent(renewed_from) if renewed_from \
                else []
            serial = self._next_serial()
            now = int(time.time())
            line = self._sign(canonical, serial, keys[0].text, now,
                              seconds, source_address)
            issued = parse_certificate_line(line)
            record = CertRecord(serial, canonical, keys[0].text,
                                issued.valid_after, issued.valid_before,
                                renewed_from=renewed_from)
            _write_record(self.registry, record)

            for sibling in siblings:
                # One renewal per certificate stays usable: a second one
                # replaces the first, so a copied certificate cannot
                # breed a line of its own beside the device's.
                sibling.state = 'superseded'
                _write_record(self.registry, sibling)

            if siblings:
                self.admin.sync_locked()

            self._write_principals()

        from .log import log_event

        for sibling in siblings:
            log_event('warning', 'certificate superseded serial=%d host=%s: '
                      'certificate %d was renewed again (serial %d); if the '
                      'device did not renew twice, its certificate may have '
                      'been copied' % (sibling.serial, sibling.host,
                                       renewed_from, serial))

        log_event('info', 'certificate issued serial=%d host=%s key=%s '
                  'valid_before=%s' % (serial, canonical,
                                       keys[0].fingerprint,
                                       utc_stamp(record.valid_before)))
        return line, record

    def _check_parent(self, serial: int) -> 'list[CertRecord]':
        """Refuse a renewal of SERIAL unless it is still usable, as read
        now under the lock (it may have been revoked since its login);
        return the earlier renewals of it that are still usable."""
        parent = read_cert_record(self.registry, serial)

        if parent is None or not parent.usable():
            raise NotPermitted('certificate %d cannot be renewed: it is %s'
                               % (serial, parent.state if parent and
                                  parent.state != 'active' else
                                  'expired or unknown'))

        return [record for record in read_all_cert_records(self.registry)
                if record.renewed_from == serial and record.usable()]

    def _check_key_is_free(self, key, host: str) -> None:
        """Refuse KEY when it belongs to another host, or is the CA's."""
        from .registry import fingerprint_of_line, read_record

        if key.fingerprint == fingerprint_of_line(
                ca_public_line(self.server) or ''):
            raise KeyFileError('that is the CA\'s own key; sign a device '
                               'key')

        registered = read_record(self.registry, key.fingerprint)

        if registered is not None and registered.state != 'revoked' and \
                registered.host.lower() != host.lower():
            raise KeyFileError('key %s is registered for %s already; one '
                               'key serves one host'
                               % (key.fingerprint, registered.host))

        for record in read_all_cert_records(self.registry):
            if record.usable() and record.host.lower() != host.lower() \
                    and fingerprint_of_line(record.key) == key.fingerprint:
                raise KeyFileError('key %s holds certificate %d for %s '
                                   'already; one key serves one host'
                                   % (key.fingerprint, record.serial,
                                      record.host))

    def _next_serial(self) -> int:
        """Return the next serial (from 1 up), kept in ca/serial."""
        from .keys import write_atomically

        path = os.path.join(os.path.dirname(self.key_path), 'serial')

        try:
            with open(path, encoding='ascii') as handle:
                last = int(handle.read().strip() or 0)
        except FileNotFoundError:
            last = 0
        except ValueError:
            raise KeyFileError('%s is damaged; put the highest serial '
                               'issued in it (see "xyssh keys certs")'
                               % path) from None

        issued = [record.serial for record in
                  read_all_cert_records(self.registry)]
        serial = max([last] + issued) + 1
        write_atomically(path, b'%d\n' % serial, 0o600)
        return serial

    def _sign(self, host: str, serial: int, public: str, now: int,
              seconds: int, source_address: 'str | None') -> str:
        """Run ssh-keygen -s; return the certificate line."""
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory(prefix='xyssh-sign-') as work:
            key_file = os.path.join(work, 'device.pub')

            with open(key_file, 'w', encoding='ascii') as handle:
                handle.write(public + '\n')

            argv = ['ssh-keygen', '-q', '-s', self.key_path, '-I',
                    key_id_for(host, serial), '-n', host, '-z', str(serial),
                    '-V', '-%ds:+%ds' % (CLOCK_SLACK, seconds), '-O',
                    'clear']

            if source_address:
                argv += ['-O', 'source-address=%s' % source_address]

            environment = dict(os.environ)
            passphrase_file = self.server.text('ca_passphrase_file')

            if passphrase_file:
                # ssh-keygen asks for a CA passphrase only through a tty
                # or SSH_ASKPASS; this one reads the configured file.
                helper = os.path.join(work, 'askpass')
                with open(helper, 'w', encoding='ascii') as handle:
                    handle.write('#!/bin/sh\nexec cat %s\n'
                                 % shell_quote(passphrase_file))
                os.chmod(helper, 0o700)
                environment.update(SSH_ASKPASS=helper,
                                   SSH_ASKPASS_REQUIRE='force')

            made = subprocess.run(argv + [key_file], capture_output=True,
                                  timeout=60, env=environment,
                                  stdin=subprocess.DEVNULL)

            if made.returncode != 0:
                raise KeyFileError('ssh-keygen could not sign: %s' % made
                                   .stderr.decode('utf-8', 'replace')
                                   .strip()[:200])

            with open(os.path.join(work, 'device-cert.pub'),
                      encoding='ascii') as handle:
                return handle.read().strip()

    def revoke(self, serial: 'int | None' = None,
               key_id: 'str | None' = None,
               host: 'str | None' = None) -> 'list[CertRecord]':
        """Revoke certificate SERIAL, every one with KEY_ID, or every
        one of HOST, with the renewals made from them: whoever copied a
        device's certificate may have renewed it.  The revocation list
        gets their serials (never an id: entry, which would also refuse
        every later certificate of that host)."""
        from .keys import registry_lock

        with registry_lock(self.registry):
            every = read_all_cert_records(self.registry)
            chosen = {record.serial for record in every
                      if record.serial == serial or
                      (key_id is not None and record.key_id == key_id) or
                      (host is not None and
                       record.host.lower() == host.lower())}

            if not chosen:
                raise KeyFileError('no certificate %s in the registry' % (
                    'with key id %s' % key_id if key_id is not None else
                    'of %s' % host if host is not None else
                    'with serial %s' % serial))

            # Renewals come later than what they renew: one pass in
            # serial order finds the whole line of descent.
            for record in every:
                if record.renewed_from in chosen:
                    chosen.add(record.serial)

            records = [record for record in every
                       if record.serial in chosen and
                       record.state != 'revoked']

            for record in records:
                record.state = 'revoked'
                _write_record(self.registry, record)

            self.admin.sync_locked()
            self._write_principals()

        from .log import log_event
        for record in records:
            log_event('info', 'certificate revoked serial=%d host=%s'
                      % (record.serial, record.host))

        return records

    def sync(self) -> None:
        """Rewrite the principals file and the revocation list."""
        from .keys import registry_lock

        with registry_lock(self.registry):
            self.admin.sync_locked()
            self._write_principals()

    def _write_principals(self) -> None:
        """Write sshd's AuthorizedPrincipalsFile from the records."""
        from .keys import write_atomically

        path = principals_path(self.server)
        owner = os.stat(self.registry)
        write_atomically(path, principals_text(
            read_all_cert_records(self.registry), self.admin.program,
            self.config.path), 0o644, (owner.st_uid, owner.st_gid))


def retire_renewed(config, record: CertRecord) -> None:
    """Supersede the certificate RECORD was renewed from, now that RECORD
    has logged in (the device has switched to it): the old one goes into
    the revocation list, so a copy of it cannot log in any more."""
    if not record.renewed_from:
        return

    from .keys import registry_lock
    from .log import log_event

    authority = Authority(config)

    with registry_lock(authority.registry):
        old = read_cert_record(authority.registry, record.renewed_from)

        if old is None or old.state != 'active':
            return

        old.state = 'superseded'
        _write_record(authority.registry, old)
        authority.admin.sync_locked()
        authority._write_principals()

    log_event('info', 'certificate superseded serial=%d host=%s by=%d'
              % (old.serial, old.host, record.serial))


def revoked_serials(registry: str) -> 'list[int]':
    """Return the serials of every revoked or superseded certificate."""
    return [record.serial for record in read_all_cert_records(registry)
            if record.state in ('revoked', 'superseded')]


def _write_record(registry: str, record: CertRecord) -> None:
    """Write RECORD atomically, owned like the registry directory."""
    from .keys import write_registry_file

    write_registry_file(registry, cert_record_path(registry, record.serial),
                        record.dump())


def _read_passphrase(path: str) -> str:
    """Return the first line of the passphrase file PATH."""
    try:
        with open(path, encoding='utf-8') as handle:
            return handle.readline().rstrip('\n')
    except OSError as exc:
        raise ConfigError('cannot read passphrase file %s: %s'
                          % (path, exc.strerror)) from None
