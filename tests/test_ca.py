"""Devices on certificates from the xyssh CA, against sshd
(TrustedUserCAKeys and the principals file xyssh writes) and against
xyssh serve, which trusts the CA itself.  Field cases C24, C26, C27."""

import json
import pathlib
import os
import subprocess
import time

import pytest

from conftest import Device, wait_until
from xyssh import wire
from xyssh.ca import CertRecord, _write_record, key_id_for
from xyssh.certificate import parse_certificate_line
from xyssh.renewal import RENEW_AT, renewal_due

STATUS = 'status web01.example.com.cpu green ok'
EXIT_REFUSED = 20
EXIT_AUTH = 23
EXIT_DEVICE_KEY = 24


def _sshd_trusting_the_ca(root) -> str:
    """Return the sshd_config lines for a deployment at ROOT."""
    ca = root / 'registry' / 'ca'
    return ('TrustedUserCAKeys %s/ca_key.pub\n'
            'AuthorizedPrincipalsFile %s/principals\n'
            'RevokedKeys %s/registry/revoked_keys\n' % (ca, ca, root))


@pytest.fixture(params=['sshd', 'serve'])
def ca_deployment(request, make_deployment, tmp_path):
    """A deployment whose devices log in with certificates only."""
    # make_deployment puts its first deployment in deployment0.
    deployment = make_deployment(
        sshd_config=_sshd_trusting_the_ca(tmp_path / 'deployment0'),
        front=request.param, **({'ca_validity': '1h'}))
    made = deployment.xyssh('ca', 'init')
    assert made.returncode == 0, made.stderr
    if request.param == 'serve':
        # serve reads the CA key at start; it was made just now.
        deployment.server.stop()
        deployment.server.run()
    return deployment


def _certified(deployment, host: str, name: str, *options: str) -> Device:
    """A device whose key has a certificate for HOST, and no plain key
    registered anywhere."""
    device = Device(deployment, host, name)
    signed = deployment.xyssh('keys', 'sign', *options, '-o',
                              str(device.private) + '-cert.pub', host,
                              str(device.public))
    assert signed.returncode == 0, signed.stderr
    device.certificate = _read_certificate(device)
    return device


def _read_certificate(device):
    """Return the fields of DEVICE's certificate as it is on disk."""
    with open(str(device.private) + '-cert.pub') as handle:
        return parse_certificate_line(handle.read())


def test_a_fresh_certificate_reports_for_its_host_only(ca_deployment):
    web01 = _certified(ca_deployment, 'web01.example.com', 'web01')

    own = web01.send('127.0.0.1', STATUS)
    foreign = web01.send('127.0.0.1', 'status db01.example.com.cpu red x')

    assert own.returncode == 0, own.stderr
    assert foreign.returncode == EXIT_REFUSED
    assert b'db01.example.com' in foreign.stderr
    assert ca_deployment.tap.wait_for(1) == [STATUS.encode()]
    assert ca_deployment.tap.connections == 1
    accepted = [line for line in ca_deployment.audit_lines()
                if ' accepted ' in line]
    assert len(accepted) == 1
    assert 'key=web01.example.com' in accepted[0]
    assert 'fp=%s' % web01.certificate.key_fingerprint in accepted[0]


def test_certificates_carry_what_the_ca_promises(ca_deployment):
    # C24: serials never 0 and increasing; C26: valid 5 minutes early.
    before = time.time()
    devices = [_certified(ca_deployment, 'web01.example.com',
                          'web%d' % number) for number in range(3)]
    serials = [device.certificate.serial for device in devices]
    certificate = devices[0].certificate

    assert serials == sorted(serials) and len(set(serials)) == 3
    assert min(serials) >= 1
    assert certificate.principals == ('web01.example.com',)
    assert certificate.key_id == key_id_for('web01.example.com',
                                            serials[0])
    assert certificate.options == {}
    assert before - 301 <= certificate.valid_after <= before - 299
    assert 3599 <= certificate.valid_before - before <= 3610


def test_a_certificate_for_another_principal_cannot_report_here(
        ca_deployment):
    db01 = _certified(ca_deployment, 'db01.example.com', 'db01')

    result = db01.send('127.0.0.1', STATUS)

    assert result.returncode == EXIT_REFUSED
    assert b'web01.example.com' in result.stderr
    assert ca_deployment.tap.connections == 0


def _ssh_with_certificate(deployment, device, certificate, *command,
                          stdin=b''):
    """Run OpenSSH's ssh as DEVICE offering CERTIFICATE."""
    return device.ssh(*command, stdin=stdin, extra=[
        '-o', 'CertificateFile=%s' % certificate])


def test_an_expired_certificate_is_refused(ca_deployment, tmp_path):
    device = Device(ca_deployment, 'web01.example.com', 'old')
    registry = ca_deployment.root / 'registry'
    serial = 900
    # Issued by the same CA, recorded like any other, but long past.
    subprocess.run(['ssh-keygen', '-q', '-s', str(registry / 'ca' /
                                                 'ca_key'),
                    '-I', key_id_for('web01.example.com', serial), '-n',
                    'web01.example.com', '-z', str(serial), '-V',
                    '20200101:20200102', '-O', 'clear', str(device.public)],
                   check=True, capture_output=True)
    certificate = str(device.private) + '-cert.pub'
    _write_record(str(registry), CertRecord(
        serial, 'web01.example.com', device.public.read_text().strip(),
        1577836800, 1577923200))

    local = device.send('127.0.0.1', STATUS)
    remote = _ssh_with_certificate(ca_deployment, device, certificate,
                                   'xyssh-send',
                                   stdin=wire.frame(STATUS.encode()))

    assert local.returncode == EXIT_DEVICE_KEY
    assert b'expired at 2020-01-02' in local.stderr
    assert b'enrol this device again' in local.stderr
    assert remote.returncode == 255
    assert ca_deployment.tap.connections == 0


def test_a_revoked_serial_is_refused_and_a_new_certificate_works(
        ca_deployment):
    first = _certified(ca_deployment, 'web01.example.com', 'first')
    second = _certified(ca_deployment, 'web01.example.com', 'second')
    serial = first.certificate.serial

    revoked = ca_deployment.xyssh('keys', 'revoke', '--serial', str(serial))
    refused = first.send('127.0.0.1', STATUS)
    accepted = second.send('127.0.0.1', STATUS)
    listing = subprocess.run(['ssh-keygen', '-Q', '-l', '-f',
                              str(ca_deployment.revoked_keys)],
                             capture_output=True, text=True, check=True)

    assert revoked.returncode == 0, revoked.stderr
    assert refused.returncode == EXIT_AUTH, refused.stderr
    assert accepted.returncode == 0, accepted.stderr
    # C24: a serial entry under the CA, never an id: entry.
    assert 'serial: %d' % serial in listing.stdout
    assert 'id:' not in listing.stdout
    assert ca_deployment.tap.wait_for(1) == [STATUS.encode()]
    if ca_deployment.front == 'serve':
        # sshd refuses it through RevokedKeys before xyssh runs; serve
        # says why in the same words as the forced command would.
        assert 'detail="certificate %d was revoked"' % serial in \
            ca_deployment.log.read_text()


def test_a_certificate_with_a_force_command_is_refused(ca_deployment):
    # C27: only the server decides the command; a certificate that
    # carries one is refused, whatever the command says.
    device = Device(ca_deployment, 'web01.example.com', 'forced')
    registry = ca_deployment.root / 'registry'
    serial = 901
    now = int(time.time())
    subprocess.run(['ssh-keygen', '-q', '-s', str(registry / 'ca' /
                                                 'ca_key'),
                    '-I', key_id_for('web01.example.com', serial), '-n',
                    'web01.example.com', '-z', str(serial), '-V',
                    '-5m:+1h', '-O', 'clear', '-O',
                    'force-command=/bin/true', str(device.public)],
                   check=True, capture_output=True)
    _write_record(str(registry), CertRecord(
        serial, 'web01.example.com', device.public.read_text().strip(),
        now - 300, now + 3600))
    ca_deployment.xyssh('keys', 'sync')

    result = device.send('127.0.0.1', STATUS)

    assert result.returncode == EXIT_AUTH, result.stderr
    assert ca_deployment.tap.connections == 0


def test_renewal_replaces_key_and_certificate_without_a_failed_push(
        make_deployment, tmp_path):
    for front in ('sshd', 'serve'):
        root = tmp_path / ('deployment%d' % (0 if front == 'sshd' else 1))
        deployment = make_deployment(sshd_config=_sshd_trusting_the_ca(
            root), front=front)
        assert deployment.xyssh('ca', 'init').returncode == 0
        if front == 'serve':
            deployment.server.stop()
            deployment.server.run()
        fresh = _certified(deployment, 'web01.example.com', 'fresh',
                           '--validity', '1h')
        # 30 s after 5 minutes of slack: less than a third is left.
        due = _certified(deployment, 'web01.example.com', 'due',
                         '--validity', '30s')
        old_key = due.private.read_bytes()
        old_serial = due.certificate.serial

        kept = fresh.send('127.0.0.1', STATUS)
        renewed = due.send('127.0.0.1', STATUS, stdin=b'')
        new = _read_certificate(due)
        again = due.send('127.0.0.1', STATUS)

        assert kept.returncode == 0, kept.stderr
        assert _read_certificate(fresh).serial == fresh.certificate.serial
        assert renewed.returncode == 0, renewed.stderr
        assert renewed.stderr == b''
        assert new.serial > old_serial
        assert new.principals == ('web01.example.com',)
        assert due.private.read_bytes() != old_key
        assert (due.private.parent / (due.private.name + '.old')) \
            .read_bytes() == old_key
        assert oct(due.private.stat().st_mode & 0o777) == oct(0o600)
        assert again.returncode == 0, again.stderr
        assert len(deployment.tap.wait_for(3)) == 3
        assert any(' accepted ' in line and 'type=renew' in line
                   for line in deployment.audit_lines())

        # The certificate it renewed is retired: a copy of the old pair
        # no longer logs in.  Revoking it revokes its renewal with it.
        old_pair = due.ssh('xyssh-check', extra=[
            '-i', str(due.private) + '.old', '-o', 'CertificateFile=%s'
            % (str(due.private) + '-cert.pub.old'), '-o',
            'IdentitiesOnly=yes'])
        revoked = deployment.xyssh('keys', 'revoke', '--serial',
                                   str(old_serial))
        after_revoke = due.send('127.0.0.1', STATUS)

        assert b'ok 0' not in old_pair.stdout
        assert revoked.returncode == 0, revoked.stderr
        assert b'revoked certificate %d' % new.serial in revoked.stdout
        assert after_revoke.returncode == EXIT_AUTH


def test_renewal_is_due_with_a_third_of_the_validity_left(tmp_path):
    class Destination:
        certificate = str(tmp_path / 'cert')

    key = tmp_path / 'key'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f',
                    str(key)], check=True)
    subprocess.run(['ssh-keygen', '-q', '-s', str(key), '-I', 'x', '-n',
                    'web01', '-V', '20260101000000:20260131000000',
                    str(key) + '.pub'], check=True, capture_output=True)
    os.rename(str(key) + '-cert.pub', Destination.certificate)
    certificate = parse_certificate_line(open(Destination.certificate)
                                         .read())
    span = certificate.valid_before - certificate.valid_after
    two_thirds = certificate.valid_after + span * (1 - RENEW_AT)

    assert not renewal_due(Destination, two_thirds - 60)
    assert renewal_due(Destination, two_thirds + 60)
    assert not renewal_due(Destination, certificate.valid_before + 1)


def test_a_passphrase_protected_ca_signs_with_the_configured_file(
        make_deployment, tmp_path):
    secret = tmp_path / 'ca-passphrase'
    secret.write_text('correct horse\n')
    os.chmod(secret, 0o600)
    deployment = make_deployment(
        sshd_config=_sshd_trusting_the_ca(tmp_path / 'deployment0'),
        ca_passphrase_file=str(secret))
    key = deployment.root / 'registry' / 'ca' / 'ca_key'

    made = deployment.xyssh('ca', 'init', '--passphrase-file', str(secret))
    web01 = _certified(deployment, 'web01.example.com', 'web01')
    unlocked = subprocess.run(['ssh-keygen', '-y', '-P', '', '-f',
                               str(key)], capture_output=True)
    sent = web01.send('127.0.0.1', STATUS)

    assert made.returncode == 0, made.stderr
    assert b'TrustedUserCAKeys' in made.stderr
    assert oct(key.stat().st_mode & 0o777) == oct(0o600)
    assert unlocked.returncode != 0
    assert sent.returncode == 0, sent.stderr


def test_source_address_limits_where_a_certificate_works(ca_deployment):
    elsewhere = _certified(ca_deployment, 'web01.example.com', 'far',
                           '--source-address', '192.0.2.0/24')
    here = _certified(ca_deployment, 'web01.example.com', 'near',
                      '--source-address', '127.0.0.1/32,::1/128')

    refused = elsewhere.send('127.0.0.1', STATUS)
    accepted = here.send('127.0.0.1', STATUS)

    assert elsewhere.certificate.options == {
        'source-address': '192.0.2.0/24'}
    assert refused.returncode == EXIT_AUTH
    assert accepted.returncode == 0, accepted.stderr
    assert ca_deployment.tap.wait_for(1) == [STATUS.encode()]


def test_a_certificate_not_yet_valid_here_fails_before_connecting(
        ca_deployment):
    # C26: the device's clock is behind the CA's: say so, keep the report.
    device = Device(ca_deployment, 'web01.example.com', 'early')
    subprocess.run(['ssh-keygen', '-q', '-s', str(
        ca_deployment.root / 'registry' / 'ca' / 'ca_key'), '-I', 'early',
        '-n', 'web01.example.com', '-z', '902', '-V', '+1h:+2h', '-O',
        'clear', str(device.public)], check=True, capture_output=True)

    result = device.send('127.0.0.1', STATUS)

    assert result.returncode == EXIT_DEVICE_KEY
    assert b'not yet valid (local clock' in result.stderr
    assert ca_deployment.tap.connections == 0
    from test_field_cases import _kept
    assert _kept(device) == [STATUS.encode()]


def test_certificates_survive_an_upgrade_that_moves_the_program(
        make_deployment, tmp_path, root_owned_xyssh):
    # C27: the command lives only in the principals file; moving the
    # program and running keys sync leaves every certificate working.
    deployment = make_deployment(
        sshd_config=_sshd_trusting_the_ca(tmp_path / 'deployment0'))
    assert deployment.xyssh('ca', 'init').returncode == 0
    web01 = _certified(deployment, 'web01.example.com', 'web01')
    principals = deployment.root / 'registry' / 'ca' / 'principals'
    before = web01.send('127.0.0.1', STATUS)

    deployment.config.write_text(deployment.config.read_text().replace(
        'command = ', 'command = %s\n# was: ' % root_owned_xyssh))
    synced = deployment.xyssh('keys', 'sync')
    after = web01.send('127.0.0.1', STATUS)

    assert before.returncode == 0, before.stderr
    assert synced.returncode == 0, synced.stderr
    assert root_owned_xyssh in principals.read_text()
    assert after.returncode == 0, after.stderr
    assert len(deployment.tap.wait_for(2)) == 2


def test_serve_lists_certificates_about_to_expire_in_its_column(
        make_deployment, tmp_path):
    # Its own column name: xymond is shared by the whole test session.
    deployment = make_deployment(front='serve', status_column='xysshca',
                                 status_host='xymon-sandbox.example.com',
                                 status_interval='2',
                                 status_expiry_days='1')
    assert deployment.xyssh('ca', 'init').returncode == 0
    deployment.server.stop()
    deployment.server.run()
    web01 = _certified(deployment, 'web01.example.com', 'web01',
                       '--validity', '12h')
    # db01's only certificate ran out: it shows as expired.
    _write_record(str(deployment.root / 'registry'), CertRecord(
        950, 'db01.example.com', web01.public.read_text().strip(),
        1577836800, 1577923200))
    status = subprocess.run(
        [*deployment.xyssh_argv()[:1], 'status'], capture_output=True,
        env=dict(os.environ, XYSSH_CONFIG=str(web01.config)), timeout=60)

    def row():
        rows = deployment.xymond.board('xymon-sandbox.example.com',
                                       'testname,color,msg')
        found = [line for line in rows if line[0] == 'xysshca']
        return found[0] if found and 'certificate %d' % web01.certificate \
            .serial in found[0][2] else None

    found = wait_until(row)

    assert found, deployment.xymond.board('xymon-sandbox.example.com')
    assert found[1] == 'yellow'
    assert 'web01.example.com' in found[2]
    assert 'db01.example.com certificate 950 EXPIRED' in found[2]
    assert b'certificate %d for web01.example.com valid until' % \
        web01.certificate.serial in status.stdout


def test_an_enrolment_token_earns_a_certificate(make_lookup_deployment,
                                                tmp_path):
    from test_enrolment import _fresh_device, _xyssh

    root = tmp_path / 'deployment0'
    deployment = make_lookup_deployment(
        sshd_extra=_sshd_trusting_the_ca(root), enrolment='yes',
        host_key=str(root / 'sshd' / 'ssh_host_ed25519_key.pub'))
    assert deployment.xyssh('ca', 'init').returncode == 0
    token = deployment.xyssh('keys', 'enroll', 'web01.example.com')
    device = _fresh_device(deployment, 'fresh', tmp_path)

    enrolled = _xyssh(device, 'enroll', token.stdout.decode().strip())
    sent = device.send('127.0.0.1', STATUS)
    certificates = deployment.xyssh('keys', 'certs', '--json')
    keys = deployment.xyssh('keys', 'list', '--json')

    assert enrolled.returncode == 0, enrolled.stderr
    assert b'issued a certificate' in enrolled.stdout
    assert _read_certificate(device).principals == ('web01.example.com',)
    assert sent.returncode == 0, sent.stderr
    assert deployment.tap.wait_for(1) == [STATUS.encode()]
    assert [entry['host'] for entry in json.loads(certificates.stdout)] \
        == ['web01.example.com']
    assert json.loads(keys.stdout) == []


def test_keys_check_names_a_principals_file_out_of_step(make_deployment,
                                                        tmp_path):
    deployment = make_deployment(
        sshd_config=_sshd_trusting_the_ca(tmp_path / 'deployment0'))
    assert deployment.xyssh('ca', 'init').returncode == 0
    _certified(deployment, 'web01.example.com', 'web01')
    principals = deployment.root / 'registry' / 'ca' / 'principals'

    clean = deployment.xyssh('keys', 'check')
    principals.write_text('web01.example.com\n')
    stale = deployment.xyssh('keys', 'check')
    synced = deployment.xyssh('keys', 'sync')
    again = deployment.xyssh('keys', 'check')

    assert clean.returncode == 0, clean.stdout
    assert stale.returncode == 1
    assert b'principals file differs' in stale.stdout
    assert synced.returncode == 0, synced.stderr
    assert again.returncode == 0, again.stdout



def test_a_certificate_renews_only_when_due_and_keys_stay_with_one_host(
        ca_deployment):
    fresh = _certified(ca_deployment, 'web01.example.com', 'fresh')
    plain = ca_deployment.add_device('db01.example.com', name='plain')
    ca_public = ca_deployment.root / 'registry' / 'ca' / 'ca_key.pub'
    new_key = fresh.private.parent / 'another'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f',
                    str(new_key)], check=True)

    with open(str(new_key) + '.pub', 'rb') as handle:
        early = fresh.ssh('xyssh-renew', stdin=wire.frame(handle.read()))
    other_host = ca_deployment.xyssh('keys', 'sign', 'web01.example.com',
                                     str(plain.public))
    own_key = ca_deployment.xyssh('keys', 'sign', 'web01.example.com',
                                  str(ca_public))
    certified_elsewhere = ca_deployment.xyssh(
        'keys', 'sign', 'db01.example.com', str(fresh.public))

    assert early.returncode == 77, early.stderr
    assert b'not due for renewal' in early.stderr
    assert other_host.returncode == 1
    assert b'registered for db01.example.com already' in other_host.stderr
    assert own_key.returncode == 1
    assert b"the CA's own key" in own_key.stderr
    assert certified_elsewhere.returncode == 1
    assert b'holds certificate' in certified_elsewhere.stderr


def test_revoking_a_host_revokes_every_certificate_it_holds(ca_deployment):
    devices = [_certified(ca_deployment, 'web01.example.com', name)
               for name in ('one', 'two')]
    db01 = _certified(ca_deployment, 'db01.example.com', 'db01')

    revoked = ca_deployment.xyssh('keys', 'revoke', '--host',
                                  'web01.example.com')
    results = [device.send('127.0.0.1', STATUS) for device in devices]
    listing = ca_deployment.xyssh('keys', 'certs')
    other = db01.send('127.0.0.1', 'status db01.example.com.cpu green ok')

    assert revoked.returncode == 0, revoked.stderr
    assert [result.returncode for result in results] == [EXIT_AUTH] * 2
    assert b'refused device certificate' in results[0].stderr
    assert listing.stdout.decode().splitlines()[0].split()[:2] == \
        ['serial', 'state']
    assert listing.stdout.count(b' revoked ') == 2
    assert devices[0].certificate.key_fingerprint.encode() in \
        listing.stdout
    assert other.returncode == 0, other.stderr


def test_weak_rsa_keys_are_refused(ca_deployment, tmp_path):
    weak = tmp_path / 'weak'
    subprocess.run(['ssh-keygen', '-q', '-t', 'rsa', '-b', '1024', '-N', '',
                    '-f', str(weak)], check=True)

    added = ca_deployment.xyssh('keys', 'add', 'web01.example.com',
                                str(weak) + '.pub')
    signed = ca_deployment.xyssh('keys', 'sign', 'web01.example.com',
                                 str(weak) + '.pub')

    for result in (added, signed):
        assert result.returncode == 1
        assert b'1024-bit RSA key is too weak' in result.stderr


def _renewing_device(make_deployment, tmp_path, sshd_extra: str = '',
                     **options: str):
    """An sshd deployment with a CA and a device whose certificate is due
    for renewal at once."""
    deployment = make_deployment(
        sshd_config=sshd_extra + _sshd_trusting_the_ca(
            tmp_path / 'deployment0'), **options)
    assert deployment.xyssh('ca', 'init').returncode == 0
    device = _certified(deployment, 'web01.example.com', 'due',
                        '--validity', '30s')
    return deployment, device


def test_a_renewal_cut_short_before_the_switch_heals_itself(
        make_deployment, tmp_path):
    import sys

    deployment, due = _renewing_device(make_deployment, tmp_path)
    first = due.certificate.serial
    # The run dies after the new pair's test push, before the switch.
    script = ('import os, sys; import xyssh.renewal as renewal; '
              'renewal._switch = lambda *args: os._exit(9); '
              'from xyssh.xymoncli import main; '
              'sys.exit(main(["127.0.0.1", %r]))' % STATUS)
    cut = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         env=dict(os.environ, XYSSH_CONFIG=str(due.config)),
                         timeout=60)

    after = due.send('127.0.0.1', STATUS)
    again = due.send('127.0.0.1', STATUS)

    assert cut.returncode == 9, cut.stderr
    assert after.returncode == 0, after.stderr
    assert again.returncode == 0, again.stderr
    assert _read_certificate(due).serial > first
    assert len(deployment.tap.wait_for(3)) == 3


def test_a_switch_cut_between_its_renames_is_finished_by_the_next_send(
        make_deployment, tmp_path):
    deployment, due = _renewing_device(make_deployment, tmp_path)
    assert due.send('127.0.0.1', STATUS).returncode == 0
    current = pathlib.Path(str(due.private) + '-cert.pub')
    pending = pathlib.Path(str(due.private) + '.new-cert.pub')
    # The new key is in place, its certificate still waits to be renamed.
    os.replace(current, pending)
    os.link(str(current) + '.old', current)

    result = due.send('127.0.0.1', STATUS)

    assert result.returncode == 0, result.stderr
    assert not pending.exists()
    assert _read_certificate(due).key_blob != parse_certificate_line(
        open(str(current) + '.old').read()).key_blob


def test_a_second_renewal_supersedes_the_first_and_revoked_ones_renew_not(
        make_deployment, tmp_path):
    from xyssh.ca import Authority, read_cert_record
    from xyssh.config import load_config
    from xyssh.errors import NotPermitted

    deployment, due = _renewing_device(make_deployment, tmp_path)
    parent = due.certificate.serial
    keys = []
    for name in ('copy1', 'copy2'):
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f',
                        str(tmp_path / name)], check=True)
        keys.append((tmp_path / (name + '.pub')).read_bytes())

    answers = [due.ssh('xyssh-renew', stdin=wire.frame(key)) for key in keys]
    first, second = [parse_certificate_line(answer.stdout.split(b'\n')[1]
                                            .decode()).serial
                     for answer in answers]
    registry = str(deployment.root / 'registry')
    assert deployment.xyssh('keys', 'revoke', '--serial',
                            str(second)).returncode == 0
    authority = Authority(load_config(str(deployment.config)))

    assert [answer.returncode for answer in answers] == [0, 0]
    assert read_cert_record(registry, first).state == 'superseded'
    assert read_cert_record(registry, first).renewed_from == parent
    assert read_cert_record(registry, second).renewed_from == parent
    listing = json.loads(deployment.xyssh('keys', 'certs', '--json').stdout)
    assert {entry['serial']: entry['renewed_from'] for entry in listing} \
        == {parent: None, first: parent, second: parent}
    assert 'may have been copied' in deployment.log.read_text()
    with pytest.raises(NotPermitted):
        authority.sign('web01.example.com', keys[0], 'test',
                       renewed_from=second)


def test_certificate_logins_need_sshd_to_say_which_certificate(
        make_deployment, tmp_path):
    deployment, due = _renewing_device(make_deployment, tmp_path,
                                       'ExposeAuthInfo no\n')

    result = due.send('127.0.0.1', STATUS)

    assert result.returncode == EXIT_REFUSED
    assert b'server cannot confirm which key logged in' in result.stderr
    assert deployment.tap.connections == 0


def test_a_host_name_sshd_would_split_cannot_be_a_principal(
        make_deployment, tmp_path):
    hosts = tmp_path / 'hosts.cfg'
    hosts.write_text('192.0.2.40 a.example.com,b.example.com # noconn\n')
    deployment = make_deployment(hosts_cfg=str(hosts))
    assert deployment.xyssh('ca', 'init').returncode == 0
    device = Device(deployment, 'a.example.com,b.example.com', 'split')

    signed = deployment.xyssh('keys', 'sign', 'a.example.com,b.example.com',
                              str(device.public))

    assert signed.returncode == 1
    assert b'cannot be a certificate principal' in signed.stderr
