"""Changing keys: public key files, registry writes, authorized_keys.

authorized_keys is derived from the registry (xyssh.registry): xyssh
writes only the lines between its two marker lines and leaves every
other line alone.  Parsing a public key file for "keys add" lets
asyncssh check the key.
"""

import contextlib
import os
import re
import shlex
import sys

from .errors import KeyFileError
from .registry import KeyRecord, fingerprint_of_line, record_path

BEGIN_MARK = '# BEGIN xyssh managed keys: change with "xyssh keys", ' \
             'not by hand'
END_MARK = '# END xyssh managed keys'

# Options on every managed line.  "restrict" alone covers the others on
# OpenSSH 7.2 and later; they are spelt out so that an older sshd, or an
# admin reading the file, sees the same thing.
KEY_OPTIONS = ('restrict', 'no-pty', 'no-port-forwarding',
               'no-agent-forwarding', 'no-X11-forwarding', 'no-user-rc')

_KEY_TYPES = re.compile(r'(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|'
                        r'sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com)'
                        r'(-cert-v01@openssh\.com)?\Z')


class PublicKey:
    """One public key from a file: type, base64 blob, comment."""

    def __init__(self, key_type: str, data: str, comment: str) -> None:
        self.key_type = key_type
        self.data = data
        self.comment = comment
        self.fingerprint = fingerprint_of_line(key_type + ' ' + data)

    @property
    def text(self) -> str:
        """Return the key as it stands in a .pub file."""
        if self.comment:
            return '%s %s %s' % (self.key_type, self.data, self.comment)
        return '%s %s' % (self.key_type, self.data)


def parse_public_keys(raw: bytes, source: str) -> 'list[PublicKey]':
    """Parse the public keys in RAW, the bytes of the file SOURCE.

    Accepts LF or CRLF line ends, a missing final newline, several keys
    to a file, blank lines and comment lines.  Refuses anything sshd
    would silently skip or read differently: another encoding, options
    in front of the key, a CR or NUL inside a line, a damaged key.
    """
    if raw.startswith((b'\xff\xfe', b'\xfe\xff')) or b'\x00' in raw:
        raise KeyFileError('%s: unsupported encoding (UTF-16?); save the '
                           'key as plain ASCII text' % source)

    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError:
        raise KeyFileError('%s: unsupported encoding; save the key as '
                           'plain ASCII text' % source) from None

    keys = []

    for number, line in enumerate(text.split('\n'), 1):
        if line.endswith('\r'):
            line = line[:-1]

        if not line.strip() or line.lstrip().startswith('#'):
            continue

        keys.append(_parse_key_line(line, '%s line %d' % (source, number)))

    if not keys:
        raise KeyFileError('%s: no public key found' % source)

    return keys


def _parse_key_line(line: str, where: str) -> PublicKey:
    """Parse and check one "TYPE BASE64 [COMMENT]" line."""
    if '\r' in line or any(ord(char) < 32 and char != '\t'
                           for char in line):
        raise KeyFileError('%s: control character (CR?) inside the line'
                           % where)

    fields = line.split(None, 2)

    if not _KEY_TYPES.match(fields[0]):
        raise KeyFileError('%s: extra fields before the key type %r; give '
                           'a plain public key (options are set by xyssh)'
                           % (where, fields[0][:40]))

    if fields[0].endswith('-cert-v01@openssh.com'):
        raise KeyFileError('%s: this is a certificate, not a public key'
                           % where)

    if len(fields) < 2:
        raise KeyFileError('%s: key data missing' % where)

    key = PublicKey(fields[0], fields[1],
                    fields[2].strip() if len(fields) > 2 else '')

    import asyncssh

    try:
        checked = asyncssh.import_public_key(key.key_type + ' ' + key.data)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise KeyFileError('%s: not a valid public key (%s)'
                           % (where, exc)) from None

    if checked.get_algorithm() != key.key_type:
        raise KeyFileError('%s: key type %s does not match the key data'
                           % (where, key.key_type))

    key.fingerprint = checked.get_fingerprint('sha256')
    return key


def write_record(registry: str, record: KeyRecord) -> None:
    """Write RECORD atomically into the registry.

    The record takes the owner of the registry directory, so that an
    admin working as root still leaves files the service account (which
    runs the forced command) can read.
    """
    os.makedirs(registry, mode=0o700, exist_ok=True)
    owner = os.stat(registry)
    directory = os.path.join(registry, 'keys')

    if not os.path.isdir(directory):
        os.mkdir(directory, 0o700)
        os.chown(directory, owner.st_uid, owner.st_gid)

    write_atomically(record_path(registry, record.fingerprint),
                     record.dump().encode('utf-8'), 0o600,
                     (owner.st_uid, owner.st_gid))


@contextlib.contextmanager
def registry_lock(registry: str):
    """Hold the registry's lock: one admin command changes keys at a time."""
    import fcntl

    os.makedirs(registry, mode=0o700, exist_ok=True)
    descriptor = os.open(os.path.join(registry, 'lock'),
                         os.O_RDWR | os.O_CREAT, 0o600)

    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def write_atomically(path: str, data: bytes, mode: int,
                     owner: 'tuple[int, int] | None' = None) -> None:
    """Replace PATH by DATA: temporary file, fsync, rename, fsync dir.

    A crash at any point leaves either the old file or the new one, never
    a mix, an empty file or a file with the wrong mode or owner.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(directory, '.%s.xyssh-%d' %
                             (os.path.basename(path), os.getpid()))
    descriptor = os.open(temporary,
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)

    try:
        os.fchmod(descriptor, mode)

        if owner is not None:
            os.fchown(descriptor, *owner)

        view = memoryview(data)

        while view:
            view = view[os.write(descriptor, view):]

        os.fsync(descriptor)
    except BaseException:
        os.close(descriptor)
        os.unlink(temporary)
        raise

    os.close(descriptor)
    os.rename(temporary, path)
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make a rename in DIRECTORY durable."""
    descriptor = os.open(directory, os.O_RDONLY)

    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def receive_command(program: str, config_path: str,
                    fingerprint: str) -> str:
    """Return the command= value that runs the forced command for a key.

    sshd hands this string to the account's shell, so each word is
    shell-quoted; inside the option's double quotes, a backslash and a
    double quote are escaped as sshd expects.
    """
    words = [program, 'receive', '--config', config_path,
             '--fp', fingerprint]
    command = ' '.join(shlex.quote(word) for word in words)
    return command.replace('\\', '\\\\').replace('"', '\\"')


def authorized_keys_line(record: KeyRecord, program: str,
                         config_path: str) -> str:
    """Return the managed authorized_keys line for an active key."""
    command = receive_command(program, config_path, record.fingerprint)
    options = ','.join(KEY_OPTIONS) + ',command="%s"' % command
    return '%s %s' % (options, record.key)


def managed_block(records: 'list[KeyRecord]', program: str,
                  config_path: str) -> 'list[str]':
    """Return the managed block's lines, markers included."""
    lines = [BEGIN_MARK]

    for record in records:
        if record.state == 'active':
            lines.append(authorized_keys_line(record, program, config_path))

    lines.append(END_MARK)
    return lines


def split_authorized_keys(text: str) -> 'tuple[list, list, list]':
    """Split a file into (lines before, managed lines, lines after)."""
    lines = text.splitlines()

    if BEGIN_MARK not in lines:
        return lines, [], []

    start = lines.index(BEGIN_MARK)

    try:
        end = lines.index(END_MARK, start)
    except ValueError:
        raise KeyFileError('authorized_keys has the begin mark of the '
                           'xyssh block but not its end mark; repair the '
                           'file by hand') from None

    return lines[:start], lines[start + 1:end], lines[end + 1:]


def write_authorized_keys(path: str, records: 'list[KeyRecord]',
                          program: str, config_path: str) -> None:
    """Rewrite the managed block of PATH, keeping every other line.

    The file keeps its owner; a new file takes the owner of its directory
    (the service account's ~/.ssh), so sshd's StrictModes accept it.
    The mode is always 0600 whatever the umask.
    """
    directory = os.path.dirname(os.path.abspath(path))

    if not os.path.isdir(directory):
        parent = os.stat(os.path.dirname(directory))
        os.mkdir(directory, 0o700)
        os.chown(directory, parent.st_uid, parent.st_gid)

    try:
        with open(path, 'rb') as handle:
            old = handle.read().decode('utf-8')
        status = os.stat(path)
    except FileNotFoundError:
        old = ''
        status = os.stat(directory)

    before, _, after = split_authorized_keys(old)
    lines = before + managed_block(records, program, config_path) + after
    data = ('\n'.join(lines) + '\n').encode('utf-8')
    write_atomically(path, data, 0o600, (status.st_uid, status.st_gid))


def default_program() -> str:
    """Return the absolute path of the xyssh program now running."""
    beside = os.path.join(os.path.dirname(sys.executable), 'xyssh')

    if os.path.isfile(beside):
        return beside

    return os.path.abspath(sys.argv[0])
