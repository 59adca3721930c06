"""Read the fields of an OpenSSH user certificate, with light modules.

The forced command reads the certificate sshd accepted (from
ExposeAuthInfo) to cross-check its serial and principal, and a device
reads its own certificate to know when to renew; both run often, so
this uses struct only.  It reads, it never verifies: sshd, asyncssh and
ssh-keygen check signatures (see PROTOCOL.certkeys in OpenSSH for the
layout).
"""

import binascii
import struct

from .registry import fingerprint_of_blob

# Certified key type -> how many public key fields follow the nonce.
_KEY_FIELDS = {
    'ssh-ed25519-cert-v01@openssh.com': 1,
    'ssh-rsa-cert-v01@openssh.com': 2,
    'ecdsa-sha2-nistp256-cert-v01@openssh.com': 2,
    'ecdsa-sha2-nistp384-cert-v01@openssh.com': 2,
    'ecdsa-sha2-nistp521-cert-v01@openssh.com': 2,
}
USER_CERT = 1


class Certificate:
    """What one OpenSSH certificate says about itself."""

    def __init__(self, cert_type: str, key_blob: bytes, serial: int,
                 kind: int, key_id: str, principals: 'tuple[str, ...]',
                 valid_after: int, valid_before: int,
                 options: 'dict[str, str]', ca_blob: bytes) -> None:
        self.cert_type = cert_type
        self.key_blob = key_blob
        self.serial = serial
        self.kind = kind
        self.key_id = key_id
        self.principals = principals
        self.valid_after = valid_after
        self.valid_before = valid_before
        self.options = options
        self.ca_blob = ca_blob

    @property
    def key_fingerprint(self) -> str:
        """Return the SHA256 fingerprint of the certified key."""
        return fingerprint_of_blob(self.key_blob)

    @property
    def ca_fingerprint(self) -> str:
        """Return the SHA256 fingerprint of the CA that signed it."""
        return fingerprint_of_blob(self.ca_blob)

    def remaining_share(self, now: float) -> float:
        """Return the part of its validity left at NOW (0 when over)."""
        span = self.valid_before - self.valid_after

        if span <= 0 or now >= self.valid_before:
            return 0.0

        return min(1.0, (self.valid_before - now) / span)


class WireReader:
    """SSH wire-format fields read one after another from a blob."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def done(self) -> bool:
        """Tell whether everything was read."""
        return self.offset >= len(self.data)

    def take(self, size: int) -> bytes:
        """Return the next SIZE bytes; ValueError past the end."""
        end = self.offset + size

        if end > len(self.data):
            raise ValueError('data ends early')

        chunk = self.data[self.offset:end]
        self.offset = end
        return chunk

    def byte(self) -> int:
        """Return the next byte."""
        return self.take(1)[0]

    def uint32(self) -> int:
        """Return the next 32-bit number."""
        return struct.unpack('>I', self.take(4))[0]

    def uint64(self) -> int:
        """Return the next 64-bit number."""
        return struct.unpack('>Q', self.take(8))[0]

    def string(self) -> bytes:
        """Return the next length-prefixed string."""
        return self.take(self.uint32())


def _string(value: bytes) -> bytes:
    """Encode VALUE as an SSH string."""
    return struct.pack('>I', len(value)) + value


def parse_certificate(blob: bytes) -> Certificate:
    """Return the fields of the certificate BLOB; ValueError if it is
    not an OpenSSH certificate of a known key type."""
    reader = WireReader(blob)
    cert_type = reader.string().decode('ascii', 'replace')
    fields = _KEY_FIELDS.get(cert_type)

    if fields is None:
        raise ValueError('not an OpenSSH certificate: %s' % cert_type[:40])

    reader.string()  # nonce
    key_fields = [reader.string() for _ in range(fields)]
    plain_type = cert_type.replace('-cert-v01@openssh.com', '').encode()
    key_blob = _string(plain_type) + b''.join(_string(field)
                                              for field in key_fields)
    serial = reader.uint64()
    kind = reader.uint32()
    key_id = reader.string().decode('utf-8', 'replace')
    principals = _strings(reader.string())
    valid_after = reader.uint64()
    valid_before = reader.uint64()
    options = _options(reader.string())
    reader.string()  # extensions
    reader.string()  # reserved
    ca_blob = reader.string()
    reader.string()  # signature

    return Certificate(cert_type, key_blob, serial, kind, key_id,
                       tuple(name.decode('utf-8', 'replace')
                             for name in principals),
                       valid_after, valid_before, options, ca_blob)


def _strings(data: bytes) -> 'list[bytes]':
    """Return the strings packed one after another in DATA."""
    reader = WireReader(data)
    values = []

    while not reader.done():
        values.append(reader.string())

    return values


def _options(data: bytes) -> 'dict[str, str]':
    """Return the critical options: name -> value ('' for flags)."""
    packed = _strings(data)
    options = {}

    for name, value in zip(packed[0::2], packed[1::2]):
        inner = _strings(value) if value else []
        options[name.decode('utf-8', 'replace')] = \
            inner[0].decode('utf-8', 'replace') if inner else ''

    return options


def parse_certificate_line(line: str) -> Certificate:
    """Return the certificate of a "TYPE BASE64 [comment]" line."""
    fields = line.split()

    if len(fields) < 2:
        raise ValueError('not a certificate line')

    try:
        blob = binascii.a2b_base64(fields[1])
    except (binascii.Error, ValueError):
        raise ValueError('certificate is not base64') from None

    return parse_certificate(blob)
