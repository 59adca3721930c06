"""The KRL reader xyssh serve uses, against lists ssh-keygen writes."""

import subprocess

import pytest

from xyssh.certificate import parse_certificate_line
from xyssh.krl import parse_revocation_list
from xyssh.registry import fingerprint_of_line


def _keygen(*args: str) -> None:
    """Run ssh-keygen quietly; fail the test if it fails."""
    subprocess.run(['ssh-keygen', '-q', *args], check=True,
                   capture_output=True)


@pytest.fixture
def material(tmp_path):
    """A CA, two plain keys, and certificates with serials 1..60."""
    _keygen('-t', 'ed25519', '-N', '', '-f', str(tmp_path / 'ca'))
    for name in ('a', 'b', 'c'):
        _keygen('-t', 'ed25519', '-N', '', '-f', str(tmp_path / name))
    return tmp_path


def _certificate(material, serial: int, key_id: str = 'web01'):
    """Sign key c with SERIAL; return the certificate's fields."""
    _keygen('-s', str(material / 'ca'), '-I', key_id, '-n', 'web01', '-z',
            str(serial), str(material / 'c.pub'))
    return parse_certificate_line((material / 'c-cert.pub').read_text())


def _blob(material, name: str) -> bytes:
    """Return the wire blob of public key NAME."""
    import binascii
    return binascii.a2b_base64((material / (name + '.pub')).read_text()
                               .split()[1])


def test_serials_ranges_bitmaps_ids_and_keys_are_all_read(material):
    spec = material / 'spec'
    # Every fourth serial of 20..60 makes ssh-keygen choose a bitmap.
    hashed = fingerprint_of_line((material / 'b.pub').read_text())
    spec.write_text('serial: 5\nserial: 10-12\n' +
                    ''.join('serial: %d\n' % number
                            for number in range(20, 61, 4)) +
                    'serial: 1000\nserial: 5000-5100\nid: gone\n' +
                    'hash: %s\n' % hashed +
                    (material / 'a.pub').read_text())
    _keygen('-k', '-f', str(material / 'krl'), '-s',
            str(material / 'ca.pub'), str(spec))
    krl = parse_revocation_list((material / 'krl').read_bytes())
    dump = subprocess.run(['ssh-keygen', '-Q', '-l', '-f',
                           str(material / 'krl')], capture_output=True,
                          text=True, check=True).stdout

    expected = {5, 10, 11, 12} | set(range(20, 61, 4))
    got = set()
    for serial in range(1, 62):
        certificate = _certificate(material, serial)
        if krl.revokes_certificate(certificate.ca_blob, serial, 'web01',
                                   certificate.key_blob):
            got.add(serial)
    by_id = _certificate(material, 99, 'gone')
    far = {serial: krl.revokes_certificate(by_id.ca_blob, serial, 'web01',
                                           by_id.key_blob)
           for serial in (999, 1000, 4999, 5000, 5050, 5100, 5101)}

    [authority] = krl.authorities.values()
    # Each encoding ssh-keygen chose was read: a list, a range, a bitmap.
    assert authority.serials and authority.ranges and authority.bitmaps
    assert dump.count('serial: ') >= len(expected) - 3
    assert got == expected
    assert far == {999: False, 1000: True, 4999: False, 5000: True,
                   5050: True, 5100: True, 5101: False}
    assert krl.revokes_certificate(by_id.ca_blob, 99, 'gone',
                                   by_id.key_blob)
    assert krl.revokes_key(_blob(material, 'a'))
    assert krl.revokes_key(_blob(material, 'b'))
    assert not krl.revokes_key(_blob(material, 'c'))


def test_an_empty_list_revokes_nothing_and_garbage_does_not_parse(
        material):
    _keygen('-k', '-f', str(material / 'krl'), '/dev/null')

    krl = parse_revocation_list((material / 'krl').read_bytes())

    assert not krl.revokes_key(_blob(material, 'a'))
    with pytest.raises(ValueError):
        parse_revocation_list(b'SSHKRL\n\0\0\0')
    with pytest.raises(ValueError):
        parse_revocation_list(b'ssh-ed25519 AAAA\n')
