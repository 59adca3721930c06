"""Enrolment without a shared secret, through the real sshd (lookup mode)."""

import json
import os
import subprocess
import time

import pytest

from conftest import XYSSH, Device

STATUS = 'status web01.example.com.enrol green ok'
EXIT_REFUSED = 20
EXIT_HOST_KEY = 22
EXIT_AUTH = 23


@pytest.fixture
def entrance(make_lookup_deployment, tmp_path):
    """A server with the enrolment entrance open."""
    host_key = tmp_path / 'deployment0' / 'sshd' / \
        'ssh_host_ed25519_key.pub'
    deployment = make_lookup_deployment(enrolment='yes',
                                        host_key=str(host_key))
    assert deployment.sshd.host_key_path.with_suffix('.pub') == host_key
    return deployment


def _fresh_device(deployment, name: str, tmp_path) -> Device:
    """A device with no key and no known_hosts yet."""
    device = Device(deployment, 'web01.example.com', name)
    device.private.unlink()
    device.public.unlink()
    device.write_config(known_hosts=str(tmp_path / ('%s.known' % name)))
    return device


def _xyssh(device, *args: str) -> subprocess.CompletedProcess:
    """Run xyssh with DEVICE's configuration."""
    environment = dict(os.environ, XYSSH_CONFIG=str(device.config))
    environment.pop('SSH_AUTH_SOCK', None)
    return subprocess.run([XYSSH, *args], capture_output=True,
                          env=environment, timeout=120, check=False)


def _token(deployment, *options: str) -> str:
    """Return a new token for web01."""
    made = deployment.xyssh('keys', 'enroll', *options, 'web01.example.com')
    assert made.returncode == 0, made.stderr
    return made.stdout.decode().strip()


def _states(deployment) -> 'dict[str, str]':
    """Return {fingerprint: state} from keys list --json."""
    listing = deployment.xyssh('keys', 'list', '--json')
    return {entry['fingerprint']: entry['state']
            for entry in json.loads(listing.stdout)}


def test_token_pins_the_server_and_first_report_activates_the_key(
        entrance, tmp_path):
    token = _token(entrance)
    device = _fresh_device(entrance, 'fresh', tmp_path)

    enrolled = _xyssh(device, 'enroll', token)
    pending = _states(entrance)
    sent = device.send('127.0.0.1', STATUS)

    assert token.startswith('xyssh1:')
    assert token.endswith(':' + subprocess.run(
        ['ssh-keygen', '-lf', str(entrance.sshd.host_key_path)],
        capture_output=True, text=True).stdout.split()[1])
    assert enrolled.returncode == 0, enrolled.stderr
    assert b'enrolled: the server took key SHA256:' in enrolled.stdout
    assert oct(device.private.stat().st_mode & 0o777) == oct(0o600)
    assert (tmp_path / 'fresh.known').read_text() == \
        entrance.sshd.known_hosts_line() + '\n'
    assert list(pending.values()) == ['pending']
    assert sent.returncode == 0, sent.stderr
    assert entrance.tap.wait_for(1) == [STATUS.encode()]
    assert list(_states(entrance).values()) == ['active']
    [audit] = [line for line in entrance.audit_lines()
               if 'type=enroll' in line]
    assert ' accepted ' in audit
    assert 'host=web01.example.com' in audit
    assert audit.endswith('detail="key recorded as pending"')


def test_used_expired_and_unknown_tokens_are_refused_and_logged(
        entrance, tmp_path):
    token = _token(entrance)
    assert _xyssh(_fresh_device(entrance, 'first', tmp_path), 'enroll',
                  token).returncode == 0
    short = _token(entrance, '--expires', '1s')
    time.sleep(1.5)
    prefix, _, fingerprint = token.split(':', 2)
    unknown = '%s:%s:%s' % (prefix, '0' * 32, fingerprint)

    results = {name: _xyssh(_fresh_device(entrance, name, tmp_path),
                            'enroll', value)
               for name, value in (('used', token), ('expired', short),
                                   ('unknown', unknown))}

    for name, words in (('used', b'already used'), ('expired', b'expired'),
                        ('unknown', b'is unknown')):
        assert results[name].returncode == EXIT_REFUSED, name
        assert words in results[name].stderr, results[name].stderr
    rejected = [line for line in entrance.audit_lines()
                if ' rejected ' in line and 'enrolment token' in line]
    assert len(rejected) == 3
    assert len(_states(entrance)) == 1


def test_a_token_naming_another_host_key_sends_nothing(entrance,
                                                       tmp_path):
    token = _token(entrance)
    forged = token.rsplit(':', 1)[0] + ':' + 'A' * 43
    device = _fresh_device(entrance, 'fooled', tmp_path)

    refused = _xyssh(device, 'enroll', forged)

    assert refused.returncode == EXIT_HOST_KEY
    assert b'this is not the server that made the token' in refused.stderr
    assert not (tmp_path / 'fooled.known').exists()
    assert _states(entrance) == {}
    # The token itself was never presented, so it still works.
    assert _xyssh(device, 'enroll', token).returncode == 0


def test_an_unknown_key_can_only_enrol(entrance, tmp_path):
    device = _fresh_device(entrance, 'stranger', tmp_path)
    device.write_config()
    assert _xyssh(device, 'enroll', '--host', 'web01.example.com') \
        .returncode == 0
    other = Device(entrance, 'db01.example.com', 'other')

    sent = other.send('127.0.0.1', 'status db01.example.com.cpu red x')
    offered = device.send('127.0.0.1', STATUS)

    assert sent.returncode == EXIT_REFUSED
    assert b'this key is not registered; enrol it' in sent.stderr
    # An offered key waits for approval: sshd is not even told of it.
    assert offered.returncode == EXIT_AUTH
    assert entrance.tap.connections == 0


def test_an_offered_key_is_approved_or_rejected(entrance, tmp_path):
    approved = _fresh_device(entrance, 'approved', tmp_path)
    rejected = _fresh_device(entrance, 'rejected', tmp_path)
    for device in (approved, rejected):
        device.write_config()
        offered = _xyssh(device, 'enroll', '--host', 'web01.example.com')
        assert offered.returncode == 0, offered.stderr
    listing = entrance.xyssh('keys', 'pending').stdout.decode()
    fingerprints = {line.split()[0] for line in listing.splitlines()}
    states = _states(entrance)
    keep = subprocess.run(['ssh-keygen', '-lf', str(approved.public)],
                          capture_output=True, text=True).stdout.split()[1]
    drop = (fingerprints - {keep}).pop()

    approving = entrance.xyssh('keys', 'approve', keep)
    rejecting = entrance.xyssh('keys', 'reject', drop)
    sent = approved.send('127.0.0.1', STATUS)
    refused = rejected.send('127.0.0.1', STATUS)

    assert set(states.values()) == {'offered'} and len(states) == 2
    assert approving.returncode == 0, approving.stderr
    assert rejecting.returncode == 0, rejecting.stderr
    assert sent.returncode == 0, sent.stderr
    assert refused.returncode == EXIT_REFUSED
    assert _states(entrance) == {keep: 'active'}


def test_enrolment_attempts_are_limited_per_address(
        make_lookup_deployment, tmp_path):
    deployment = make_lookup_deployment(enrolment='yes',
                                        enrolment_attempts='2')
    device = Device(deployment, 'web01.example.com', 'eager')
    argv = ['--host', 'nosuchhost.example.com']

    attempts = [_xyssh(device, 'enroll', *argv) for _ in range(3)]

    assert [attempt.returncode for attempt in attempts[:2]] == [20, 20]
    assert b'nosuchhost.example.com is not a host' in attempts[0].stderr
    assert attempts[2].returncode == EXIT_REFUSED
    assert b'too many enrolment attempts from 127.0.0.1' in \
        attempts[2].stderr


def test_server_option_wins_over_the_configuration(entrance, tmp_path):
    token = _token(entrance)
    device = _fresh_device(entrance, 'elsewhere', tmp_path)
    device.write_config(port='1', known_hosts=str(tmp_path / 'e.known'))

    enrolled = _xyssh(device, 'enroll', '--server',
                      '127.0.0.1:%d' % entrance.sshd.port, token)

    assert enrolled.returncode == 0, enrolled.stderr
    assert list(_states(entrance).values()) == ['pending']
