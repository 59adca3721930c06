"""Look up one key's record: the forced command's view of the registry.

The registry is a directory with one small file per key under keys/,
named after the key's SHA-256 fingerprint, so the forced command finds
its key with one open() however large the fleet.  This module is on the
forced command's start-up path and uses light standard modules only.
"""

import binascii
import hashlib
import os
import time

from .errors import ConfigError, KeyFileError

STATES = ('active', 'pending', 'offered', 'retiring', 'revoked')
DEFAULT_ALLOW = ('status', 'combo', 'client', 'data')

_FIELDS = ('fingerprint', 'host', 'state', 'allow', 'created', 'key')
_BASE64 = frozenset('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
                    '0123456789+/')


def is_fingerprint(value: str) -> bool:
    """Tell whether VALUE is an OpenSSH SHA256 fingerprint.

    That is "SHA256:" and 43 base64 characters without "=" padding, as
    ssh-keygen -l and asyncssh print it; MD5 and hex forms are not.
    """
    return (value.startswith('SHA256:') and len(value) == 50 and
            all(char in _BASE64 for char in value[7:]))


def fingerprint_of_blob(blob: bytes) -> str:
    """Return the SHA256:... fingerprint of a public key's wire blob.

    This is how OpenSSH and asyncssh print fingerprints: the base64 of
    the SHA-256 of the key blob, without "=" padding.
    """
    digest = binascii.b2a_base64(hashlib.sha256(blob).digest(),
                                 newline=False)
    return 'SHA256:' + digest.decode('ascii').rstrip('=')


def fingerprint_of_line(line: str) -> 'str | None':
    """Return the fingerprint of "TYPE BASE64 ..." text, or None."""
    fields = line.split()

    # binascii, not base64 (which imports re), and checked by hand since
    # a2b_base64 would skip characters that are not base64.
    if len(fields) < 2 or len(fields[1]) % 4 or \
            not all(char in _BASE64 or char == '=' for char in fields[1]):
        return None

    try:
        blob = binascii.a2b_base64(fields[1])
    except (binascii.Error, ValueError):
        return None

    return fingerprint_of_blob(blob)


class KeyRecord:
    """What the registry knows about one key."""

    def __init__(self, fingerprint: str, host: str, key: str,
                 state: str = 'active', allow: 'tuple[str, ...]' =
                 DEFAULT_ALLOW, created: str = '', expires: str = '') -> None:
        self.fingerprint = fingerprint
        self.host = host
        self.key = key
        self.state = state
        self.allow = tuple(allow)
        self.created = created or utc_stamp()
        # Only a retiring key has one: when its grace period ends.
        self.expires = expires
        # Set by "xyssh keys rotate HOST": the device is told at its next
        # login to replace this key.
        self.rotate_requested = False
        # Addresses and networks the key may log in from, as in
        # authorized_keys' from= ("192.0.2.0/24,2001:db8::/32"); empty:
        # anywhere.
        self.source = ''

    def usable(self, now: 'str | None' = None) -> bool:
        """Tell whether the key may log in: active, pending (enrolled, not
        yet used), or retiring and not yet past its expiry (NOW and
        expiry are utc_stamp() strings).  An offered key waits for an
        admin's approval."""
        if self.state in ('active', 'pending'):
            return True

        return self.state == 'retiring' and \
            (now or utc_stamp()) < self.expires

    @property
    def key_type(self) -> str:
        """Return the key's type, such as ssh-ed25519."""
        return self.key.split()[0]

    @property
    def comment(self) -> str:
        """Return the key's comment, or an empty string."""
        fields = self.key.split(None, 2)
        return fields[2] if len(fields) > 2 else ''

    def dump(self) -> str:
        """Return the record as the text of its registry file."""
        values = {'fingerprint': self.fingerprint, 'host': self.host,
                  'state': self.state, 'allow': ' '.join(self.allow),
                  'created': self.created, 'key': self.key}
        text = ''.join('%s: %s\n' % (name, values[name])
                       for name in _FIELDS)
        return text + ('expires: %s\n' % self.expires if self.expires
                       else '') + \
            ('rotate: requested\n' if self.rotate_requested else '') + \
            ('from: %s\n' % self.source if self.source else '')


def utc_stamp(seconds: 'float | None' = None) -> str:
    """Return SECONDS (default now) as 2026-01-31T23:59:59Z."""
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(seconds))


def record_path(registry: str, fingerprint: str) -> str:
    """Return the path of a fingerprint's record, with a safe file name."""
    name = fingerprint[7:].replace('/', '_').replace('+', '-')
    return os.path.join(registry, 'keys', name)


def mark_seen(registry: str, fingerprint: str) -> None:
    """Record that FINGERPRINT just logged in: the time of a small file.

    One utime() per login instead of rewriting the key's record, so the
    push is not slowed and a record is never half-written by a login.
    Failing to record it never stands in the way of the report.
    """
    path = os.path.join(registry, 'seen', os.path.basename(
        record_path(registry, fingerprint)))

    try:
        os.utime(path)
    except FileNotFoundError:
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        except OSError:
            pass
    except OSError:
        pass


def last_seen(registry: str, fingerprint: str) -> 'float | None':
    """Return when FINGERPRINT last logged in (epoch), or None."""
    path = os.path.join(registry, 'seen', os.path.basename(
        record_path(registry, fingerprint)))

    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def read_record(registry: str, fingerprint: str) -> 'KeyRecord | None':
    """Return the record for FINGERPRINT, or None if it has none."""
    if not is_fingerprint(fingerprint):
        return None

    path = record_path(registry, fingerprint)

    try:
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError('cannot read registry record %s: %s; the '
                          'registry must be readable by the account sshd '
                          'runs xyssh receive as' % (path, exc.strerror))

    return _parse_record(text, path)


def _parse_record(text: str, path: str) -> KeyRecord:
    """Parse the text of one registry file."""
    values = {}

    # LF only: a comment may hold other line-breaking characters.
    for line in text.split('\n'):
        name, _, value = line.partition(': ')
        values[name] = value

    missing = [name for name in _FIELDS if name not in values]

    if missing or values['state'] not in STATES:
        raise KeyFileError('%s: damaged registry record (%s)'
                           % (path, ', '.join(missing) or 'state'))

    record = KeyRecord(values['fingerprint'], values['host'],
                       values['key'], values['state'],
                       tuple(values['allow'].split()), values['created'],
                       values.get('expires', ''))
    record.rotate_requested = values.get('rotate') == 'requested'
    record.source = values.get('from', '')
    return record


def read_all_records(registry: str) -> 'list[KeyRecord]':
    """Return every record in the registry, sorted by host."""
    directory = os.path.join(registry, 'keys')

    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []

    records = []

    for name in names:
        if name.startswith('.'):
            continue

        path = os.path.join(directory, name)

        with open(path, encoding='utf-8') as handle:
            records.append(_parse_record(handle.read(), path))

    records.sort(key=lambda record: (record.host.lower(), record.created))
    return records


