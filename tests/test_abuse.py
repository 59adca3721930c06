"""One test per cheating attempt, each through the real sshd.

In every case nothing may reach xymond: the recording relay in front of
it must see no connection at all.
"""

import hashlib
import signal
import subprocess
import time

import pytest

from conftest import DATA, DB01_SECTION, Device, assert_rejected
from xyssh import wire

EXIT_REFUSED = 20
EXIT_AUTH = 23


@pytest.fixture(params=['sshd', 'serve'])
def deployment(request, make_deployment):
    """Each test runs behind sshd + xyssh receive and behind xyssh serve:
    the same keys, the same rules."""
    return make_deployment(front=request.param)


def wait_for_audit(deployment, count: int, timeout: float = 15):
    """Return the audit lines once COUNT are written (bounded wait)."""
    deadline = time.monotonic() + timeout

    while time.monotonic() < deadline:
        lines = deployment.audit_lines()
        if len(lines) >= count:
            return lines
        time.sleep(0.05)

    return deployment.audit_lines()


def test_rejects_status_for_foreign_host(deployment, web01):
    result = web01.send('127.0.0.1',
                        'status db01.example.com.cpu red forged')

    assert result.returncode == EXIT_REFUSED
    assert_rejected(result, deployment, 'db01.example.com', 'not permitted')
    [line] = wait_for_audit(deployment, 1)
    assert ' rejected ' in line
    assert 'fp=%s' % web01.fingerprint in line
    assert 'host=db01.example.com' in line
    assert 'reason=not-permitted' in line
    assert 'from=127.0.0.1' in line


def test_rejects_combo_smuggling_another_host(deployment, web01):
    combo = (b'combo\nstatus web01,example,com.msgs green log excerpt '
             b'follows:\n\nstatus db01,example,com.conn red smuggled\n')

    result = web01.send('127.0.0.1', '@', stdin=combo)

    assert result.returncode == EXIT_REFUSED
    assert_rejected(result, deployment, 'db01.example.com')
    lines = wait_for_audit(deployment, 2)
    assert len(lines) == 2
    assert all(' rejected ' in line for line in lines)


@pytest.mark.parametrize('message', [
    'drop db01.example.com',
    'drop web01.example.com',
    'xymondboard',
    'xymondboard host=db01.example.com',
])
def test_rejects_admin_commands_and_queries(deployment, web01, message):
    result = web01.send('127.0.0.1', message)

    assert result.returncode == EXIT_REFUSED
    assert_rejected(result, deployment, 'not permitted')


@pytest.mark.parametrize('message', [
    b'status web01.example.com.cpu green ok\n'
    b'Status message received from 203.0.113.7\nhidden tail\n',
    b'client web01,example,com.linux linux\n[date]\nnow\n'
    b'[proxy]\nClientIP:203.0.113.8\n',
])
def test_rejects_fake_sender_lines(deployment, web01, message):
    result = web01.send('127.0.0.1', '@', stdin=message)

    assert result.returncode == EXIT_REFUSED
    assert_rejected(result, deployment, 'false sender')


def test_rejects_unknown_key(deployment, web01):
    from conftest import Device

    stranger = Device(deployment, 'web01.example.com', 'stranger')

    result = stranger.send('127.0.0.1', 'status web01.example.com.cpu '
                           'green ok')

    assert result.returncode == EXIT_AUTH
    assert_rejected(result, deployment, 'refused device key')
    assert b'keys add' in result.stderr


def test_rejects_revoked_key(deployment, web01):
    revoked = deployment.xyssh('keys', 'revoke', web01.fingerprint)
    assert revoked.returncode == 0, revoked.stderr
    assert web01.fingerprint not in deployment.authorized_keys.read_text()

    result = web01.send('127.0.0.1', 'status web01.example.com.cpu '
                        'green ok')

    assert result.returncode == EXIT_AUTH
    assert_rejected(result, deployment)


def test_revoked_key_still_in_file_is_refused_by_registry(
        make_deployment):
    # A stale copy of authorized_keys still lets the key log in past
    # sshd; the registry, read at every login, must refuse it anyway.
    deployment = make_deployment()
    web01 = deployment.add_device('web01.example.com')
    stale = deployment.authorized_keys.read_bytes()
    assert deployment.xyssh('keys', 'revoke',
                            web01.fingerprint).returncode == 0
    deployment.authorized_keys.write_bytes(stale)

    result = web01.send('127.0.0.1', 'status web01.example.com.cpu '
                        'green ok')

    assert result.returncode == EXIT_REFUSED
    assert_rejected(result, deployment, 'this key was revoked')
    assert 'reason=not-permitted detail="this key was revoked"' in \
        deployment.audit_lines()[-1]


def test_client_killed_mid_send_forwards_nothing(deployment, web01):
    message = (DATA / 'client-linux.txt').read_bytes()
    framed = wire.frame(message)
    process = subprocess.Popen(
        web01_ssh_argv(web01) + ['xyssh-send'], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    process.stdin.write(framed[:len(framed) // 2])
    process.stdin.flush()
    time.sleep(1)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=10)

    [line] = wait_for_audit(deployment, 1)
    assert 'reason=malformed' in line
    assert 'cut short' in line
    assert deployment.tap.connections == 0


def web01_ssh_argv(device) -> 'list[str]':
    """Return the raw OpenSSH argv for DEVICE, without a command."""
    from xyssh.sandbox import ssh_command

    return ssh_command(device.deployment.server, device.private,
                       device.deployment.known_hosts)


def test_rejects_unframed_input(deployment, web01):
    message = b'status web01.example.com.cpu green plain ssh\n'

    result = web01.ssh(stdin=message)

    assert result.returncode == 65
    assert result.stdout.startswith(b'error 65 ')
    assert b'not framed' in result.stderr
    assert deployment.tap.connections == 0


def test_rejects_frame_with_wrong_digest(deployment, web01):
    message = b'status web01.example.com.cpu green ok\n'
    header = wire.request_header(message)
    tampered = header + message.replace(b'green', b'red  ')

    result = web01.ssh('xyssh-send', stdin=tampered)

    assert result.returncode == 65
    assert b'SHA-256' in result.stderr
    assert deployment.tap.connections == 0


def test_rejects_oversized_message_with_size_and_limit(deployment, web01):
    status = (b'status web01,example,com.big yellow\n' +
              b'x' * (300 * 1024) + b'\n')

    result = web01.send('127.0.0.1', '@', stdin=status)

    assert result.returncode == EXIT_REFUSED
    assert_rejected(result, deployment, str(len(status)), '261120',
                   'MAXMSG_STATUS')


def test_rejects_frame_larger_than_any_limit_before_reading_it(
        deployment, web01):
    header = b'xyssh/1 %d %s\n' % (64 * 1024 * 1024, b'0' * 64)

    result = web01.ssh('xyssh-send', stdin=header)

    assert result.returncode == 65
    assert b'over the largest limit, the limit of 523264 bytes' in result.stderr
    assert deployment.tap.connections == 0


INJECTIONS = [
    'xyssh-send; touch {canary}',
    'xyssh-send $(touch {canary})',
    'xyssh-send `touch {canary}`',
    'xyssh-send\ntouch {canary}',
    'touch {canary}',
    '/bin/sh',
    'xyssh-send xyssh-send',
]


@pytest.mark.parametrize('command', INJECTIONS)
def test_original_command_never_reaches_a_shell(deployment, web01,
                                                 tmp_path, command):
    canary = tmp_path / 'xyssh-canary'
    message = wire.frame(b'status web01.example.com.cpu green ok\n')

    result = web01.ssh(command.format(canary=canary), stdin=message)

    assert result.returncode == 77
    assert b'unsupported command' in result.stderr
    assert not canary.exists()
    assert deployment.tap.connections == 0


def test_allowed_original_command_is_accepted(deployment, web01):
    message = b'status web01.example.com.cpu green ok\n'

    result = web01.ssh('xyssh-send', stdin=wire.frame(message))

    assert result.returncode == 0, result.stderr
    assert result.stdout == b'ok 0\n'
    assert deployment.tap.wait_for(1) == [message]


def test_forced_pty_is_refused_and_no_altered_bytes_come_back(
        deployment, db01):
    # OpenSSH's ssh closes the session itself when a pty it was told to
    # force (-tt) is refused; what matters is that none is ever granted,
    # so no CR is ever added to the reply.
    message = b'client db01,example,com.linux dbservers\n[date]\nnow\n'

    result = db01.ssh('xyssh-send', stdin=wire.frame(message),
                      extra=['-tt'])

    assert b'PTY allocation request failed' in result.stderr
    assert result.stdout == b''


def test_reply_bytes_unchanged_when_ssh_asks_for_a_tty(deployment, db01):
    message = b'client db01,example,com.linux dbservers\n[date]\nnow\n'

    result = db01.ssh('xyssh-send', stdin=wire.frame(message),
                      extra=['-t'])

    assert result.returncode == 0, result.stderr
    expected = wire.ok_answer(DB01_SECTION)
    assert hashlib.sha256(result.stdout).hexdigest() == \
        hashlib.sha256(expected).hexdigest()
    assert b'\r' not in result.stdout


# SSHKEY: pins in hosts.cfg (C19): only pinned fingerprints for the host.

def _pinned_deployment(make_deployment, tmp_path, fingerprints):
    """Return a deployment whose hosts.cfg pins web01 to FINGERPRINTS."""
    hosts_cfg = tmp_path / 'pinned-hosts.cfg'
    hosts_cfg.write_text('192.0.2.1 web01.example.com # %s\n'
                         '192.0.2.2 db01.example.com # noconn\n'
                         % ' '.join('SSHKEY:' + fingerprint
                                    for fingerprint in fingerprints))
    return make_deployment(hosts_cfg=str(hosts_cfg)), hosts_cfg


def test_pinned_key_is_accepted_and_an_unpinned_one_refused(
        make_deployment, tmp_path):
    deployment, hosts_cfg = _pinned_deployment(make_deployment, tmp_path,
                                               [])
    # Registered while the host was not pinned, then hosts.cfg pins the
    # host to the first key only.
    pinned = deployment.add_device('web01.example.com', 'pinned')
    other = deployment.add_device('web01.example.com', 'other')
    hosts_cfg.write_text(hosts_cfg.read_text().replace(
        '# \n', '# SSHKEY:%s\n' % pinned.fingerprint))
    status = 'status web01.example.com.cpu green ok'

    refused = other.send('127.0.0.1', status)
    assert_rejected(refused, deployment, 'hosts.cfg pins '
                    'web01.example.com to other keys')
    accepted = pinned.send('127.0.0.1', status)
    checked = deployment.xyssh('keys', 'check')
    third = Device(deployment, 'web01.example.com', 'third')
    added = deployment.xyssh('keys', 'add', 'web01.example.com',
                             str(third.public))

    assert accepted.returncode == 0, accepted.stderr
    assert refused.returncode == EXIT_REFUSED
    assert deployment.tap.wait_for(1) == [status.encode()]
    assert checked.returncode == 1
    assert 'key %s: hosts.cfg pins web01.example.com to other keys' % \
        other.fingerprint in checked.stdout.decode()
    assert added.returncode == 1
    assert b'add SSHKEY:SHA256:' in added.stderr
