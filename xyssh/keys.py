"""Changing keys: public key files, registry writes, authorized_keys.

authorized_keys is derived from the registry (xyssh.registry): xyssh
writes only the lines between its two marker lines and leaves every
other line alone.  Parsing a public key file for "keys add" lets
asyncssh check the key.
"""

import contextlib
import os
import re

from .errors import KeyFileError
from .keyline import authorized_keys_line
from .registry import KeyRecord, fingerprint_of_line, record_path

BEGIN_MARK = '# BEGIN xyssh managed keys: change with "xyssh keys", ' \
             'not by hand'
END_MARK = '# END xyssh managed keys'
TEMPORARY_MARK = '.xyssh-'

# Options on every managed line.  "restrict" alone covers the others on
# OpenSSH 7.2 and later; they are spelt out so that an older sshd, or an
# admin reading the file, sees the same thing.
# Another key inside a comment: "cat a.pub b.pub" where a.pub had no
# final newline puts both on one line, and sshd would see only the first.
_JOINED_KEY = re.compile(r'(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|'
                         r'sk-\S+@openssh\.com)\s+AAAA[A-Za-z0-9+/]')
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

        if text.startswith('\ufeff'):
            text = text[1:]
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


# RSA keys shorter than this are refused (NIST and OpenSSH's ssh-keygen
# default agree on 2048 as the floor; OpenSSH 9.1 refuses below 1024).
MIN_RSA_BITS = 2048


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

    if fields[0] == 'ssh-dss':
        raise KeyFileError('%s: DSA keys are refused by OpenSSH 7.0 and '
                           'later; make an ed25519 key (ssh-keygen -t '
                           'ed25519)' % where)

    if fields[0].endswith('-cert-v01@openssh.com'):
        raise KeyFileError('%s: this is a certificate, not a public key'
                           % where)

    if len(fields) < 2:
        raise KeyFileError('%s: key data missing' % where)

    key = PublicKey(fields[0], fields[1],
                    fields[2].strip() if len(fields) > 2 else '')

    if _JOINED_KEY.search(key.comment):
        raise KeyFileError('%s: two keys on one line (a file without a '
                           'final newline joined by cat?); put each key '
                           'on its own line' % where)

    import asyncssh

    try:
        checked = asyncssh.import_public_key(key.key_type + ' ' + key.data)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise KeyFileError('%s: not a valid public key (%s)'
                           % (where, exc)) from None

    if checked.get_algorithm() != key.key_type:
        raise KeyFileError('%s: key type %s does not match the key data'
                           % (where, key.key_type))

    if key.key_type == 'ssh-rsa' and \
            checked.pyca_key.key_size < MIN_RSA_BITS:
        raise KeyFileError('%s: a %d-bit RSA key is too weak; use %d bits '
                           'or more, or better an ed25519 key (ssh-keygen '
                           '-t ed25519)' % (where, checked.pyca_key.key_size,
                                            MIN_RSA_BITS))

    key.fingerprint = checked.get_fingerprint('sha256')
    return key


def write_record(registry: str, record: KeyRecord) -> None:
    """Write RECORD atomically into the registry."""
    write_registry_file(registry, record_path(registry, record.fingerprint),
                        record.dump())


def write_registry_file(registry: str, path: str, text: str) -> None:
    """Write TEXT atomically to PATH, a file one directory below REGISTRY,
    creating that directory if needed.

    Files and directories take the owner of the registry directory, so
    that an admin working as root still leaves files the service account
    (which runs the forced command) can read.
    """
    os.makedirs(registry, mode=0o700, exist_ok=True)
    owner = os.stat(registry)
    directory = os.path.dirname(path)

    if not os.path.isdir(directory):
        os.mkdir(directory, 0o700)
        os.chown(directory, owner.st_uid, owner.st_gid)

    write_atomically(path, text.encode('utf-8'), 0o600,
                     (owner.st_uid, owner.st_gid))


@contextlib.contextmanager
def registry_lock(registry: str):
    """Hold the registry's lock: one admin command changes keys at a time."""
    import fcntl

    os.makedirs(registry, mode=0o700, exist_ok=True)
    descriptor = os.open(os.path.join(registry, 'lock'),
                         os.O_RDWR | os.O_CREAT, 0o600)

    try:
        owner = os.stat(registry)
        os.fchown(descriptor, owner.st_uid, owner.st_gid)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def write_atomically(path: str, data: bytes, mode: int,
                     owner: 'tuple[int, int] | None' = None) -> None:
    """Replace PATH by DATA: temporary file, fsync, rename, fsync dir.

    A crash at any point leaves either the old file or the new one, never
    a mix, an empty file or a file with the wrong mode or owner.  The
    temporary file gets a fresh random name and is created exclusively,
    so nothing planted in the directory (a symlink, say) is followed.
    """
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(
        prefix='.%s%s' % (os.path.basename(path), TEMPORARY_MARK),
        dir=directory)

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


def remove_stale_temporaries(directory: str) -> None:
    """Remove temporary files a killed writer left in DIRECTORY.

    Call it only under the registry lock: then no other writer of ours
    can be using one of them.
    """
    try:
        names = os.listdir(directory)
    except OSError:
        return

    for name in names:
        if name.startswith('.') and TEMPORARY_MARK in name:
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _fsync_directory(directory: str) -> None:
    """Make a rename in DIRECTORY durable."""
    descriptor = os.open(directory, os.O_RDONLY)

    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def managed_block(records: 'list[KeyRecord]', program: str,
                  config_path: str) -> 'list[str]':
    """Return the managed block's lines, markers included."""
    lines = [BEGIN_MARK]

    for record in sorted(records, key=lambda record: (
            record.host.lower(), record.created, record.fingerprint)):
        if record.usable():
            lines.append(authorized_keys_line(record, program, config_path))

    lines.append(END_MARK)
    return lines


def read_lines(path: str) -> 'list[bytes]':
    """Return the lines of PATH as bytes, split at LF only, as sshd does.

    Lines are kept as bytes so that another admin's line in any encoding,
    or with a CR or form feed inside, is written back exactly.
    """
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except FileNotFoundError:
        return []

    lines = data.split(b'\n')
    return lines[:-1] if lines[-1] == b'' else lines


def split_authorized_keys(lines: 'list[bytes]') -> 'tuple[list, list, list]':
    """Split a file's lines into (before, managed, after) the block."""
    begin, end = BEGIN_MARK.encode(), END_MARK.encode()

    if begin not in lines:
        return lines, [], []

    start = lines.index(begin)

    try:
        stop = lines.index(end, start)
    except ValueError:
        raise KeyFileError('authorized_keys has the begin mark of the '
                           'xyssh block but not its end mark; repair the '
                           'file by hand') from None

    return lines[:start], lines[start + 1:stop], lines[stop + 1:]


def prepare_authorized_keys(path: str, records: 'list[KeyRecord]',
                            program: str, config_path: str) -> bytes:
    """Return the new content of PATH, its managed block rebuilt.

    Raises KeyFileError, before anything is written anywhere, when the
    file cannot be rewritten safely.
    """
    before, _, after = split_authorized_keys(read_lines(path))
    block = [line.encode('utf-8') for line in
             managed_block(records, program, config_path)]
    return b'\n'.join(before + block + after) + b'\n'


def write_authorized_keys(path: str, data: bytes) -> None:
    """Replace PATH by DATA with mode 0600, keeping its owner.

    A new file takes the owner of its directory (the service account's
    ~/.ssh, created 0700 if missing), so sshd's StrictModes accept it,
    whatever the umask of the admin running xyssh.
    """
    directory = os.path.dirname(os.path.abspath(path))

    if not os.path.isdir(directory):
        parent = os.stat(os.path.dirname(directory))
        os.mkdir(directory, 0o700)
        os.chown(directory, parent.st_uid, parent.st_gid)

    try:
        status = os.stat(path)
    except FileNotFoundError:
        status = os.stat(directory)

    write_atomically(path, data, 0o600, (status.st_uid, status.st_gid))


def revocation_list(records: 'list[KeyRecord]',
                    serials: 'list[int]' = (),
                    ca_line: 'str | None' = None) -> bytes:
    """Return an OpenSSH KRL revoking every revoked key in RECORDS and
    the certificates of CA_LINE with SERIALS.

    It is built anew from the registry each time (ssh-keygen -k without
    -u replaces a list, so adding to an old file would be the way to lose
    revocations), then read back with ssh-keygen -Q -l: sshd refuses
    every key when its RevokedKeys file does not parse, so nothing that
    ssh-keygen cannot read may ever be installed.
    """
    import subprocess
    import tempfile

    revoked = [record.key for record in records
               if record.state == 'revoked']

    with tempfile.TemporaryDirectory(prefix='xyssh-krl-') as work:
        spec = os.path.join(work, 'revoked.pub')
        krl = os.path.join(work, 'revoked.krl')

        with open(spec, 'w', encoding='ascii') as handle:
            handle.write(''.join(key + '\n' for key in revoked))
            handle.write(''.join('serial: %d\n' % serial
                                 for serial in serials))

        argv = ['ssh-keygen', '-q', '-k', '-f', krl]

        if ca_line is not None:
            ca_file = os.path.join(work, 'ca.pub')
            with open(ca_file, 'w', encoding='ascii') as handle:
                handle.write(ca_line + '\n')
            argv += ['-s', ca_file]

        try:
            made = subprocess.run(argv + [spec], capture_output=True,
                                  timeout=60)
            read = subprocess.run(['ssh-keygen', '-Q', '-l', '-f', krl],
                                  capture_output=True, timeout=60) \
                if made.returncode == 0 else made
        except (OSError, subprocess.SubprocessError) as exc:
            raise KeyFileError('cannot run ssh-keygen to write the key '
                               'revocation list: %s' % exc) from None

        if made.returncode != 0 or read.returncode != 0:
            said = (made.stderr or read.stderr).decode(
                'utf-8', 'replace').strip()
            raise KeyFileError('ssh-keygen could not build the key '
                               'revocation list: %s' % said[:200])

        with open(krl, 'rb') as handle:
            return handle.read()


def write_revocation_list(path: str, data: bytes) -> None:
    """Replace the RevokedKeys file PATH by DATA, readable by sshd."""
    write_atomically(path, data, 0o644)


