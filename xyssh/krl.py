"""Read an OpenSSH key revocation list (KRL), for xyssh serve.

sshd enforces its RevokedKeys file itself; asyncssh has no such check,
so xyssh serve reads the same file and refuses what it revokes: keys
listed whole or by SHA-1 or SHA-256 hash, and certificates by serial,
serial range, serial bitmap or key id under their CA (an empty CA key
meaning any CA).  The layout is OpenSSH's PROTOCOL.krl; signatures in a
KRL are not checked (sshd does not check them either).
"""

import hashlib

from .certificate import WireReader

MAGIC = b'SSHKRL\n\0'

_CERTIFICATES = 1
_EXPLICIT_KEY = 2
_SHA1 = 3
_SIGNATURE = 4
_SHA256 = 5

_SERIAL_LIST = 0x20
_SERIAL_RANGE = 0x21
_SERIAL_BITMAP = 0x22
_KEY_ID = 0x23


class _CaRevocations:
    """What one CA's section revokes."""

    def __init__(self) -> None:
        self.serials = set()
        self.ranges = []
        self.bitmaps = []
        self.key_ids = set()

    def revokes(self, serial: int, key_id: str) -> bool:
        """Tell whether a certificate with SERIAL and KEY_ID is revoked."""
        if serial in self.serials or key_id in self.key_ids:
            return True

        if any(low <= serial <= high for low, high in self.ranges):
            return True

        return any(offset <= serial and (bitmap >> (serial - offset)) & 1
                   for offset, bitmap in self.bitmaps)


class RevocationList:
    """The contents of one KRL."""

    def __init__(self) -> None:
        self.keys = set()
        self.sha1 = set()
        self.sha256 = set()
        # CA key blob (b'' for any CA) -> _CaRevocations
        self.authorities = {}

    def revokes_key(self, blob: bytes) -> bool:
        """Tell whether the plain key with wire blob BLOB is revoked."""
        return blob in self.keys or \
            hashlib.sha1(blob).digest() in self.sha1 or \
            hashlib.sha256(blob).digest() in self.sha256

    def revokes_certificate(self, ca_blob: bytes, serial: int,
                            key_id: str, key_blob: bytes) -> bool:
        """Tell whether a certificate is revoked, itself or by its key."""
        if self.revokes_key(key_blob):
            return True

        return any(entry.revokes(serial, key_id)
                   for ca, entry in self.authorities.items()
                   if ca in (ca_blob, b''))


def parse_revocation_list(data: bytes) -> RevocationList:
    """Return what the KRL DATA revokes; ValueError if it does not parse
    (sshd then refuses every key, so the caller must say so)."""
    reader = WireReader(data)

    if reader.take(len(MAGIC)) != MAGIC:
        raise ValueError('not an OpenSSH key revocation list')

    if reader.uint32() != 1:
        raise ValueError('unknown revocation list format version')

    reader.uint64()  # krl_version
    reader.uint64()  # generated_date
    reader.uint64()  # flags
    reader.string()  # reserved
    reader.string()  # comment
    revocations = RevocationList()

    while not reader.done():
        kind = reader.byte()
        section = WireReader(reader.string())

        if kind == _CERTIFICATES:
            _certificates(section, revocations)
        elif kind in (_EXPLICIT_KEY, _SHA1, _SHA256):
            target = {_EXPLICIT_KEY: revocations.keys, _SHA1:
                      revocations.sha1, _SHA256: revocations.sha256}[kind]
            while not section.done():
                target.add(section.string())
        elif kind == _SIGNATURE:
            break
        # Other sections are extensions; like sshd, pass over them.

    return revocations


def _certificates(section: WireReader, revocations: RevocationList) -> None:
    """Read one certificates section into REVOCATIONS."""
    ca_blob = section.string()
    section.string()  # reserved
    entry = revocations.authorities.setdefault(ca_blob, _CaRevocations())

    while not section.done():
        kind = section.byte()
        part = WireReader(section.string())

        if kind == _SERIAL_LIST:
            while not part.done():
                entry.serials.add(part.uint64())
        elif kind == _SERIAL_RANGE:
            entry.ranges.append((part.uint64(), part.uint64()))
        elif kind == _SERIAL_BITMAP:
            offset = part.uint64()
            entry.bitmaps.append((offset, int.from_bytes(part.string(),
                                                         'big')))
        elif kind == _KEY_ID:
            while not part.done():
                entry.key_ids.add(part.string().decode('utf-8',
                                                       'replace'))
