"""C23: revocation through sshd's RevokedKeys, never a locked-out fleet.

sshd refuses every key when its RevokedKeys file is missing, broken or
half-written, so the list xyssh writes must always exist and parse.
"""

import random
import subprocess
import time

import pytest

from xyssh.sandbox import make_keypair

EXIT_AUTH = 23
STATUS = 'status %s.cpu green ok'


@pytest.fixture
def revoking(make_deployment, tmp_path):
    """A deployment whose sshd reads the revocation list xyssh writes."""
    krl = tmp_path / 'deployment0' / 'registry' / 'revoked_keys'
    deployment = make_deployment(sshd_config='RevokedKeys %s\n' % krl)
    assert deployment.revoked_keys == krl
    return deployment


def _query(krl, *publics) -> 'list[str]':
    """Return ssh-keygen -Q's verdict (ok or REVOKED) for each key."""
    result = subprocess.run(['ssh-keygen', '-Q', '-f', str(krl),
                             *map(str, publics)],
                            capture_output=True, check=False)
    return [line.rsplit(': ', 1)[1] for line in
            result.stdout.decode().splitlines()]


def _parses(krl) -> bool:
    """Tell whether ssh-keygen reads KRL as a revocation list."""
    return subprocess.run(['ssh-keygen', '-Q', '-l', '-f', str(krl)],
                          capture_output=True, check=False).returncode == 0


def test_ssh_keygen_without_u_loses_earlier_revocations(tmp_path):
    # The pitfall xyssh avoids by building the whole list every time.
    _, key_b = make_keypair(tmp_path, 'b', 'b')
    _, key_c = make_keypair(tmp_path, 'c', 'c')
    krl = tmp_path / 'krl'

    for public in (key_b, key_c):
        subprocess.run(['ssh-keygen', '-q', '-k', '-f', str(krl),
                        str(public)], check=True)

    assert _query(krl, key_b, key_c) == ['ok', 'REVOKED']


def test_fresh_install_has_an_empty_list_and_keys_log_in(revoking):
    web01 = revoking.add_device('web01.example.com')

    result = web01.send('127.0.0.1', STATUS % 'web01.example.com')

    assert result.returncode == 0, result.stderr
    assert _parses(revoking.revoked_keys)
    assert _query(revoking.revoked_keys, web01.public) == ['ok']
    assert oct(revoking.revoked_keys.stat().st_mode & 0o777) == oct(0o644)


def test_two_revocations_both_hold_and_take_effect_at_once(revoking):
    web01 = revoking.add_device('web01.example.com')
    db01 = revoking.add_device('db01.example.com')
    win01 = revoking.add_device('win01.example.com')
    for device in (db01, win01):
        # A stale authorized_keys must not matter: sshd's list refuses.
        stale = revoking.authorized_keys.read_bytes()
        revoked = revoking.xyssh('keys', 'revoke', device.fingerprint)
        assert revoked.returncode == 0, revoked.stderr
        revoking.authorized_keys.write_bytes(stale)

    verdicts = _query(revoking.revoked_keys, web01.public, db01.public,
                      win01.public)
    results = [device.send('127.0.0.1', STATUS % device.host)
               for device in (web01, db01, win01)]

    assert verdicts == ['ok', 'REVOKED', 'REVOKED']
    assert [result.returncode for result in results] == [0, EXIT_AUTH,
                                                         EXIT_AUTH]
    assert revoking.tap.wait_for(1) == [
        (STATUS % 'web01.example.com').encode()]
    assert 'revoked by file %s' % revoking.revoked_keys in \
        revoking.sshd.log_text()
    stale = revoking.xyssh('keys', 'check')
    assert stale.returncode == 1
    assert b'is revoked but still in the file' in stale.stdout
    assert revoking.xyssh('keys', 'sync').returncode == 0
    assert revoking.xyssh('keys', 'check').returncode == 0


def test_revoke_killed_at_random_never_leaves_a_list_sshd_refuses(
        revoking):
    web01 = revoking.add_device('web01.example.com')
    victims = [revoking.add_device('db01.example.com', 'd%02d' % number)
               for number in range(50)]
    seed = random.randrange(2 ** 32)
    rng = random.Random(seed)
    logged_in = []
    returncodes = []

    for number, victim in enumerate(victims):
        process = subprocess.Popen(
            [*revoking.xyssh_argv(), 'keys', 'revoke', victim.fingerprint],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, 0.2))
        process.kill()
        returncodes.append(process.wait(timeout=30))
        where = 'seed %d kill %d' % (seed, number)

        assert revoking.revoked_keys.is_file(), where
        assert _parses(revoking.revoked_keys), where
        if number % 10 == 9:
            logged_in.append(web01.send(
                '127.0.0.1', STATUS % 'web01.example.com').returncode)

    assert logged_in == [0] * 5
    # Some revokes were cut short, some finished: both were exercised.
    assert -9 in returncodes and 0 in returncodes, returncodes
    synced = revoking.xyssh('keys', 'sync')
    assert synced.returncode == 0, synced.stderr
    assert revoking.xyssh('keys', 'check').returncode == 0
    assert web01.send('127.0.0.1',
                      STATUS % 'web01.example.com').returncode == 0


BREAKAGES = {
    'missing': lambda path: path.unlink(),
    'directory': lambda path: (path.unlink(), path.mkdir()),
    'half-written': lambda path: path.write_bytes(path.read_bytes()[:50]),
    'garbage': lambda path: path.write_text('garbage line\n'),
}


@pytest.mark.parametrize('breakage', sorted(BREAKAGES))
def test_check_names_a_broken_list_and_sync_repairs_it(revoking,
                                                       breakage):
    web01 = revoking.add_device('web01.example.com')
    db01 = revoking.add_device('db01.example.com')
    assert revoking.xyssh('keys', 'revoke', db01.fingerprint).returncode == 0
    BREAKAGES[breakage](revoking.revoked_keys)

    locked_out = web01.send('127.0.0.1', STATUS % 'web01.example.com')
    checked = revoking.xyssh('keys', 'check')
    if revoking.revoked_keys.is_dir():
        revoking.revoked_keys.rmdir()
    synced = revoking.xyssh('keys', 'sync')
    back = web01.send('127.0.0.1', STATUS % 'web01.example.com')

    # This is what sshd does with a broken list: every key is refused.
    assert locked_out.returncode == EXIT_AUTH
    assert checked.returncode == 1
    assert str(revoking.revoked_keys) in checked.stdout.decode()
    assert synced.returncode == 0, synced.stderr
    assert back.returncode == 0, back.stderr
    assert _query(revoking.revoked_keys, db01.public) == ['REVOKED']


def test_doctor_is_keys_check(revoking):
    revoking.add_device('web01.example.com')
    revoking.revoked_keys.unlink()

    doctor = revoking.xyssh('doctor')
    check = revoking.xyssh('keys', 'check')

    assert doctor.returncode == check.returncode == 1
    assert doctor.stdout == check.stdout
    assert str(revoking.revoked_keys).encode() in doctor.stdout
