"""xyssh rotate: a device replaces its key, through the real sshd."""

import calendar
import json
import os
import subprocess
import time

from conftest import XYSSH
from xyssh import wire
from xyssh.sandbox import ssh_command

EXIT_AUTH = 23
EXIT_REFUSED = 20
STATUS = 'status web01.example.com.rotate green ok'


def _xyssh(device, *args: str) -> subprocess.CompletedProcess:
    """Run xyssh with DEVICE's configuration."""
    environment = dict(os.environ, XYSSH_CONFIG=str(device.config))
    environment.pop('SSH_AUTH_SOCK', None)
    return subprocess.run([XYSSH, *args], capture_output=True,
                          env=environment, timeout=120, check=False)


def _keys(deployment) -> 'dict[str, dict]':
    """Return keys list --json as {fingerprint: entry}."""
    listing = deployment.xyssh('keys', 'list', '--json')
    assert listing.returncode == 0, listing.stderr
    return {entry['fingerprint']: entry
            for entry in json.loads(listing.stdout)}


def _push_with(device, identity) -> int:
    """Push STATUS with the key at IDENTITY; return ssh's exit status."""
    argv = ssh_command(device.deployment.sshd, identity,
                       device.deployment.known_hosts)
    return subprocess.run(argv + ['xyssh-send'],
                          input=wire.frame(STATUS.encode()),
                          capture_output=True, timeout=60,
                          check=False).returncode


def test_rotate_switches_key_and_old_one_works_through_grace(deployment,
                                                             web01):
    old_fingerprint = web01.fingerprint
    old_private = web01.private.read_bytes()
    started = time.time()

    rotated = _xyssh(web01, 'rotate')
    keys = _keys(deployment)
    new_fingerprint = [fingerprint for fingerprint in keys
                       if fingerprint != old_fingerprint and
                       keys[fingerprint]['host'] == 'web01.example.com'][0]
    sent = web01.send('127.0.0.1', STATUS)
    old_push = _push_with(web01, str(web01.private) + '.old')

    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.decode().splitlines()[-1] == \
        'now using %s (%s); the old key is %s.old' % (
            web01.private, new_fingerprint, web01.private)
    assert web01.private.read_bytes() != old_private
    assert (web01.private.parent / (web01.private.name + '.old')) \
        .read_bytes() == old_private
    assert oct(web01.private.stat().st_mode & 0o777) == oct(0o600)
    assert not (web01.private.parent / (web01.private.name + '.new')) \
        .exists()
    assert keys[new_fingerprint]['state'] == 'active'
    assert keys[old_fingerprint]['state'] == 'retiring'
    expires = calendar.timegm(time.strptime(
        keys[old_fingerprint]['expires'], '%Y-%m-%dT%H:%M:%SZ'))
    assert abs(expires - (started + 7 * 86400)) < 120
    assert sent.returncode == 0, sent.stderr
    assert old_push == 0
    assert deployment.tap.wait_for(2) == [STATUS.encode()] * 2
    text = deployment.authorized_keys.read_text()
    assert 'expiry-time="%sZ"' % time.strftime(
        '%Y%m%d%H%M%S', time.gmtime(expires)) in text
    assert deployment.xyssh('keys', 'check').returncode == 0
    audit = [line for line in deployment.audit_lines() if 'type=rotate'
             in line]
    assert len(audit) == 1 and 'fp=%s' % old_fingerprint in audit[0]


def test_old_key_stops_at_the_end_of_its_grace(make_deployment):
    deployment = make_deployment(rotation_grace_days='0')
    web01 = deployment.add_device('web01.example.com')

    rotated = _xyssh(web01, 'rotate')
    old_push = _push_with(web01, str(web01.private) + '.old')
    new_push = _push_with(web01, str(web01.private))

    assert rotated.returncode == 0, rotated.stderr
    # With no grace at all the old line is not even written: sshd
    # refuses the key before xyssh runs.
    assert old_push == 255
    assert new_push == 0
    deployment.xyssh('keys', 'sync')
    assert 'expiry-time' not in deployment.authorized_keys.read_text()


def test_a_key_can_only_replace_itself(deployment, web01, db01):
    # web01 asks to register db01's key: refused, nothing changes.
    argv = ssh_command(deployment.sshd, web01.private,
                       deployment.known_hosts)
    before = deployment.authorized_keys.read_bytes()

    result = subprocess.run(argv + ['xyssh-rotate'], input=wire.frame(
        db01.public.read_bytes()), capture_output=True, timeout=60,
        check=False)

    assert result.returncode == 65
    assert b'is already registered' in result.stdout
    assert deployment.authorized_keys.read_bytes() == before
    assert {entry['state'] for entry in _keys(deployment).values()} == \
        {'active'}


def test_a_failed_rotation_keeps_the_old_key_in_use(deployment, web01):
    # The server refuses: hosts.cfg would have to be changed first.
    web01.write_config(port='1', timeout='3')

    rotated = _xyssh(web01, 'rotate')
    web01.write_config()
    sent = web01.send('127.0.0.1', STATUS)

    assert rotated.returncode == 5
    assert sent.returncode == 0, sent.stderr
    assert _keys(deployment)[web01.fingerprint]['state'] == 'active'


def test_server_asks_and_the_next_report_rotates_the_key(deployment,
                                                        web01):
    old_private = web01.private.read_bytes()
    asked = deployment.xyssh('keys', 'rotate', 'WEB01.example.com')

    first = web01.send('127.0.0.1', STATUS)
    keys = _keys(deployment)
    second = web01.send('127.0.0.1', STATUS)

    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.decode() == 'rotation requested for ' \
        'web01.example.com %s\n' % web01.fingerprint
    assert first.returncode == 0, first.stderr
    assert first.stdout == b''
    assert b'the server asked for a new device key: now using SHA256:' \
        in first.stderr
    assert web01.private.read_bytes() != old_private
    assert keys[web01.fingerprint]['state'] == 'retiring'
    assert sorted(entry['state'] for entry in keys.values()) == \
        ['active', 'retiring']
    # The new key is not asked again.
    assert second.returncode == 0
    assert second.stderr == b''
    assert deployment.tap.wait_for(2) == [STATUS.encode()] * 2
