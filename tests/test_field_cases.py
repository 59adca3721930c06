"""Field cases from public reports (C01-C11, C32, C33), through real sshd.

FWD: the relay in front of xymond received the message byte for byte,
exit 0.  REJ: the relay saw no connection, exit non-zero, stdout empty,
the reason on stderr.
"""

import hashlib
import os
import pwd
import shlex
import subprocess

import pytest

from conftest import DB01_SECTION, assert_rejected

EXIT_REFUSED = 20
EXIT_HOST_KEY = 22
EXIT_DEVICE_KEY = 24


def assert_forwarded(result, deployment, message: bytes) -> None:
    """FWD: exit 0 and xymond got exactly MESSAGE."""
    assert result.returncode == 0, result.stderr
    assert deployment.tap.wait_for(1) == [message]


# C01: BB-era commas and dotted names are the same host.

@pytest.mark.parametrize('message', [
    b'status web01,example,com.cpu green Mon Jan  6 10:00:00 UTC 2025 ok',
    b'status web01.example.com.cpu green Mon Jan  6 10:00:00 UTC 2025 ok',
])
def test_c01_comma_and_dot_names_are_forwarded(deployment, web01,
                                                message):
    result = web01.send('127.0.0.1', '@', stdin=message)

    assert_forwarded(result, deployment, message)


def test_c01_other_domain_is_rejected(deployment, web01):
    result = web01.send('127.0.0.1', 'status web01,example,org.cpu green x')

    assert_rejected(result, deployment, 'web01.example.org')


# C02: case, short names and CLIENT: aliases, as xymond resolves them.

def test_c02_uppercase_name_is_forwarded(deployment, web01):
    message = b'status WEB01,EXAMPLE,COM.cpu green uppercase name'

    assert_forwarded(web01.send('127.0.0.1', '@', stdin=message),
                     deployment, message)


def test_c02_short_name_is_rejected_naming_both(deployment, web01):
    result = web01.send('127.0.0.1', 'status web01.cpu green short name')

    assert_rejected(result, deployment, 'for web01:', 'web01.example.com')


def test_c02_client_alias_is_forwarded(deployment, win01):
    message = b'status WIN01.cpu green reported under the alias'

    assert_forwarded(win01.send('127.0.0.1', '@', stdin=message),
                     deployment, message)


# C04: combos split exactly where xymond splits them.

def test_c04_combo_with_two_hosts_is_rejected_whole(deployment, web01):
    combo = (b'combo\nstatus web01,example,com.cpu green ok\n\n'
             b'status db01,example,com.cpu red forged for another host\n')

    assert_rejected(web01.send('127.0.0.1', '@', stdin=combo), deployment,
                    'db01.example.com')


def test_c04_combo_of_own_statuses_is_forwarded(deployment, web01):
    combo = (b'combo\nstatus web01,example,com.cpu green ok\n\n'
             b'status+60 web01,example,com.disk yellow /var 91%\n')

    assert_forwarded(web01.send('127.0.0.1', '@', stdin=combo),
                     deployment, combo)


def test_c04_plain_status_with_status_in_body_is_forwarded(deployment,
                                                            web01):
    message = (b'status web01,example,com.msgs green quoted text below\n\n'
               b'status db01,example,com.conn red  <- only body text\n')

    assert_forwarded(web01.send('127.0.0.1', '@', stdin=message),
                     deployment, message)


# C05: everything but the four report types is refused.

C05_FORBIDDEN = [
    'drop db01.example.com',
    'rename db01.example.com evil.example.com',
    'disable db01.example.com.* 60 hiding something',
    'enable web01.example.com.cpu',
    'schedule 1767225600 drop db01.example.com',
    'clientlog db01.example.com section=ps',
    'xymondboard host=db01.example.com',
    'extcombo 40 80' + ' ' * 26 + 'drop db01.example.com',
    'config hosts.cfg',
    'query db01,example,com.conn',
    'notify db01.example.com.cpu hello',
]


@pytest.mark.parametrize('message', C05_FORBIDDEN)
def test_c05_forbidden_commands_never_reach_xymond(deployment, web01,
                                                    message):
    result = web01.send('127.0.0.1', message)

    assert_rejected(result, deployment, 'not permitted')


# C07: size limits default to xymond's; nothing is ever cut.

def _client_message(size: int) -> bytes:
    """Build a client message of about SIZE bytes of [ps] lines."""
    line = (b'root  1234  0.0  0.1  12345  6789 ?  Ss  10:00  0:00 '
            b'/usr/sbin/exampled --flag\n')
    body = (line * (size // len(line) + 1))[:size]
    return (b'client web01,example,com.linux\n[date]\nMon Jan  6 '
            b'10:00:00 UTC 2025\n[ps]\n' + body)


def test_c07_500_kib_client_message_arrives_whole(deployment, web01):
    message = _client_message(512000)

    result = web01.send('127.0.0.1', '@', stdin=message, timeout=10)

    assert result.returncode == 0, result.stderr
    [received] = deployment.tap.wait_for(1)
    assert hashlib.sha256(received).digest() == \
        hashlib.sha256(message).digest()


@pytest.mark.parametrize('message, limit', [
    (_client_message(614400), 'MAXMSG_CLIENT 512 KiB'),
    (b'status web01,example,com.big yellow\n' + b'x' * 307200 + b'\n',
     'MAXMSG_STATUS 256 KiB'),
], ids=['client-600k', 'status-300k'])
def test_c07_oversized_messages_are_refused_with_size_and_limit(
        deployment, web01, message, limit):
    result = web01.send('127.0.0.1', '@', stdin=message)

    assert_rejected(result, deployment, '%d bytes' % len(message), limit)


def test_c07_limits_are_configurable(make_deployment):
    deployment = make_deployment(maxmsg_client='1024')
    device = deployment.add_device('web01.example.com')
    message = _client_message(614400)

    result = device.send('127.0.0.1', '@', stdin=message)

    assert result.returncode == 0, result.stderr
    assert deployment.tap.wait_for(1) == [message]


# C08: lifetimes and colors as xymond reads them.

@pytest.mark.parametrize('message', [
    b'status+30 web01,example,com.backup green nightly ok',
    b'status+1h30m/group:dba web01,example,com.db green ok',
    b'status web01,example,com.cpu Green mixed-case color',
    b'status web01,example,com.linux client',
])
def test_c08_valid_lifetimes_and_colors_are_forwarded(deployment, web01,
                                                      message):
    assert_forwarded(web01.send('127.0.0.1', '@', stdin=message),
                     deployment, message)


@pytest.mark.parametrize('message, words', [
    (b'status+2H web01,example,com.backup green meant two hours',
     ('unit must be m/h/d/w',)),
    (b'status web01,example,com.cpu purple clients must not send purple',
     ('purple',)),
    (b'status web01,example,com.cpu blue clients must not send blue',
     ('blue',)),
])
def test_c08_bad_lifetimes_and_reserved_colors_are_rejected(
        deployment, web01, message, words):
    assert_rejected(web01.send('127.0.0.1', '@', stdin=message),
                    deployment, *words)


def test_c08_client_color_still_binds_the_host(deployment, web01):
    result = web01.send('127.0.0.1', 'status db01,example,com.linux client')

    assert_rejected(result, deployment, 'db01.example.com')


# C10: the client-local.cfg reply comes back exactly; errors to stderr.

def test_c10_large_reply_comes_back_byte_for_byte(deployment, db01):
    message = (b'client db01,example,com.linux dbservers\n[date]\n'
               b'Mon Jan  6 10:00:00 UTC 2025\n[uname]\n'
               b'Linux db01 6.1.0 x86_64\n')

    result = db01.send('127.0.0.1', '@', stdin=message)

    assert result.returncode == 0, result.stderr
    assert len(DB01_SECTION) > 40 * 1024
    assert hashlib.sha256(result.stdout).digest() == \
        hashlib.sha256(DB01_SECTION).digest()
    assert result.stderr == b''


def test_c10_collector_message_is_forwarded_unchanged(deployment, db01):
    message = (b'client/extra db01,example,com.linux dbservers\n[extra]\n'
               b'value 42\n')

    result = db01.send('127.0.0.1', '@', stdin=message)

    assert_forwarded(result, deployment, message)


def test_c10_no_reply_means_empty_stdout(deployment):
    device = deployment.add_device('quiet.example.com')
    message = b'client quiet,example,com.plan9 plan9\n[date]\nnow\n'

    result = device.send('127.0.0.1', '@', stdin=message)

    assert result.returncode == 0, result.stderr
    assert result.stdout == b''
    assert deployment.tap.wait_for(1) == [message]


# C13: the service account's shell prints at start-up.  sshd's SetEnv
# points HOME at a directory whose .bashrc prints, so the account's bash
# (Debian's reads ~/.bashrc under sshd) behaves exactly as with a noisy
# ~/.bashrc, without touching this machine's real root account.

def _noisy_deployment(make_deployment, tmp_path, text: str):
    """Return a deployment whose forced commands start after TEXT."""
    shell = pwd.getpwuid(os.getuid()).pw_shell
    assert os.path.basename(shell) == 'bash', \
        'the service account (root) must have bash as its shell, not %s' \
        % shell
    home = tmp_path / 'noisy-home'
    home.mkdir()
    (home / '.bashrc').write_text('printf %s\n' % shlex.quote(text))
    return make_deployment(sshd_config='SetEnv HOME=%s' % home)


def test_c13_shell_noise_never_reaches_stdout(make_deployment, tmp_path):
    deployment = _noisy_deployment(make_deployment, tmp_path,
                                   'hello\\nmotd line two\\n')
    db01 = deployment.add_device('db01.example.com')
    message = b'client db01,example,com.linux dbservers\n[date]\nnow\n'

    result = db01.send('127.0.0.1', '@', stdin=message)

    assert result.returncode == 0, result.stderr
    assert hashlib.sha256(result.stdout).digest() == \
        hashlib.sha256(DB01_SECTION).digest()
    assert deployment.tap.wait_for(1) == [message]
    warnings = result.stderr.decode().splitlines()
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(
        "xymon-ssh: warning: the shell of root@127.0.0.1:%d printed "
        "'hello' before xyssh started" % deployment.sshd.port)


def test_c13_noise_without_newline_fails_with_empty_stdout(
        make_deployment, tmp_path):
    deployment = _noisy_deployment(make_deployment, tmp_path, 'hello')
    db01 = deployment.add_device('db01.example.com')
    message = b'client db01,example,com.linux dbservers\n[date]\nnow\n'

    result = db01.send('127.0.0.1', '@', stdin=message)

    # The bytes cannot be told from a broken answer: nothing is trusted,
    # and the message is kept for a later run.
    assert result.returncode == 25
    assert result.stdout == b''
    kept, failure = result.stderr.decode().splitlines()
    assert kept.startswith('xymon-ssh: warning: kept 1 message(s) in ')
    assert [failure] == [
        "xymon-ssh: the shell of root@127.0.0.1:%d printed b'hellook "
        "%d\\n' with no newline, glued to the answer; the account's "
        "shell start-up files must print nothing"
        % (deployment.sshd.port, len(DB01_SECTION))]


# C11: the message reaches xymond in one quick burst after EOF.

def test_c11_slow_upload_reaches_xymond_in_one_piece(deployment, web01):
    message = b'status web01.example.com.slow green ' + b'y' * 4000 + b'\n'
    from xyssh import wire
    from xyssh.sandbox import ssh_command

    process = subprocess.Popen(
        ssh_command(deployment.sshd, web01.private,
                    deployment.known_hosts) + ['xyssh-send'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    framed = wire.frame(message)

    for start in range(0, len(framed), 512):
        process.stdin.write(framed[start:start + 512])
        process.stdin.flush()
        assert deployment.tap.connections == 0
        import time
        time.sleep(0.1)

    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 0, stderr
    assert stdout == b'ok 0\n'
    assert deployment.tap.wait_for(1) == [message]
    assert deployment.tap.connections == 1


# C32: exactly the configured key is offered, whatever the agent holds.

@pytest.fixture
def agent(tmp_path):
    """A private ssh-agent, stopped by PID."""
    socket_path = tmp_path / 'agent.sock'
    process = subprocess.Popen(['ssh-agent', '-D', '-a', str(socket_path)],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    import time
    deadline = time.monotonic() + 10

    while not socket_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    yield str(socket_path)
    process.terminate()
    process.wait(timeout=10)


def test_c32_agent_keys_are_never_offered(deployment, web01, db01, agent,
                                          tmp_path):
    from xyssh.sandbox import make_keypair

    extra = [make_keypair(tmp_path / 'agent', 'k%d' % number)[0]
             for number in range(6)]
    env = dict(os.environ, SSH_AUTH_SOCK=agent)
    for key in [db01.private] + extra:
        subprocess.run(['ssh-add', '-q', str(key)], env=env, check=True,
                       capture_output=True, timeout=10)
    message = b'status web01.example.com.cpu green via agent shell'

    result = web01.send('127.0.0.1', '@', stdin=message,
                        env={'SSH_AUTH_SOCK': agent})

    assert_forwarded(result, deployment, message)
    [line] = deployment.audit_lines()
    assert 'fp=%s' % web01.fingerprint in line
    assert 'key=web01.example.com' in line


def _kept(device) -> 'list[bytes]':
    """Return the reports DEVICE keeps in its spool for its server."""
    from xyssh.spool import Spool, server_directory

    spool = Spool(server_directory(str(device.spool_base), '127.0.0.1:%d'
                                   % device.deployment.server.port), 1 << 30)
    return [entry.data for entry in spool.entries()]


def test_c32_passphrase_protected_key_fails_before_connecting(
        deployment, web01):
    subprocess.run(['ssh-keygen', '-q', '-p', '-N', 'secret', '-P', '',
                    '-f', str(web01.private)], check=True,
                   capture_output=True, timeout=10)
    connections_before = deployment.sshd.log_text().count(
        'Connection from')

    result = web01.send('127.0.0.1', 'status web01.example.com.cpu green')

    assert result.returncode == EXIT_DEVICE_KEY
    assert b'passphrase-protected' in result.stderr
    assert _kept(web01) == [b'status web01.example.com.cpu green']
    assert deployment.sshd.log_text().count('Connection from') == \
        connections_before
    assert deployment.tap.connections == 0


def test_c32_world_readable_key_is_refused_like_openssh(deployment, web01):
    os.chmod(web01.private, 0o644)

    result = web01.send('127.0.0.1', 'status web01.example.com.cpu green')

    assert result.returncode == EXIT_DEVICE_KEY
    assert b'chmod 600' in result.stderr
    assert deployment.tap.connections == 0


# C33: a changed server host key is refused, showing both fingerprints.

def test_c33_changed_host_key_is_refused_and_known_hosts_untouched(
        deployment, web01, tmp_path):
    from xyssh.sandbox import make_keypair

    _, other = make_keypair(tmp_path, 'old_host_key')
    line = '[127.0.0.1]:%d %s\n' % (
        deployment.sshd.port, ' '.join(other.read_text().split()[:2]))
    deployment.known_hosts.write_text(line)
    before = hashlib.sha256(deployment.known_hosts.read_bytes()).digest()
    expected = subprocess.run(['ssh-keygen', '-lf', str(other)],
                              capture_output=True, text=True,
                              check=True).stdout.split()[1]
    offered = subprocess.run(
        ['ssh-keygen', '-lf', str(deployment.sshd.host_key_path) + '.pub'],
        capture_output=True, text=True, check=True).stdout.split()[1]

    result = web01.send('127.0.0.1', 'status web01.example.com.cpu green')

    assert result.returncode == EXIT_HOST_KEY
    assert _kept(web01) == [b'status web01.example.com.cpu green']
    assert b'CHANGED' in result.stderr
    assert expected.encode() in result.stderr
    assert offered.encode() in result.stderr
    assert hashlib.sha256(
        deployment.known_hosts.read_bytes()).digest() == before
    assert deployment.tap.connections == 0


def test_c33_unknown_host_key_is_refused_showing_its_fingerprint(
        deployment, web01):
    deployment.known_hosts.write_text('')
    offered = subprocess.run(
        ['ssh-keygen', '-lf', str(deployment.sshd.host_key_path) + '.pub'],
        capture_output=True, text=True, check=True).stdout.split()[1]

    result = web01.send('127.0.0.1', 'status web01.example.com.cpu green')

    assert result.returncode == EXIT_HOST_KEY
    assert b'is not in' in result.stderr
    assert offered.encode() in result.stderr
    assert deployment.tap.connections == 0


def test_c33_host_key_rotation_is_learned_then_old_key_can_go(
        make_deployment, tmp_path):
    from xyssh.sandbox import Sshd

    new_key = tmp_path / 'hostkey2'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ecdsa', '-N', '', '-f',
                    str(new_key)], check=True, capture_output=True)
    deployment = make_deployment(sshd_config='HostKey %s\n' % new_key)
    device = deployment.add_device('web01.example.com')
    pattern = '[127.0.0.1]:%d' % deployment.sshd.port
    new_line = '%s %s' % (pattern, ' '.join(
        (tmp_path / 'hostkey2.pub').read_text().split()[:2]))

    first = device.send('127.0.0.1', 'status web01.example.com.cpu green')

    assert first.returncode == 0, first.stderr
    assert new_line in deployment.known_hosts.read_text().splitlines()

    port = deployment.sshd.port
    deployment.sshd.stop()
    deployment.sshd = Sshd.start(tmp_path / 'moved-sshd',
                                 deployment.authorized_keys, port=port,
                                 host_key=new_key)

    second = device.send('127.0.0.1', 'status web01.example.com.cpu green')

    assert second.returncode == 0, second.stderr
    assert deployment.tap.wait_for(2) == [
        b'status web01.example.com.cpu green'] * 2


# C22: IPv6 server addresses; xymond is still reached over IPv4.

def test_c22_ipv6_server_address_with_port_in_brackets(xymond, tmp_path):
    from conftest import Deployment
    from xyssh.sandbox import Sshd

    deployment = Deployment(tmp_path, xymond, {}, '')

    try:
        deployment.sshd.stop()
        deployment.sshd = Sshd.start(tmp_path / 'sshd6',
                                     deployment.authorized_keys,
                                     listen=('::1',))
        deployment.known_hosts.write_text(
            deployment.sshd.known_hosts_line('::1') + '\n')
        device = deployment.add_device('web01.example.com')
        device.write_config(server='[::1]:%d' % deployment.sshd.port,
                            port='22')
        message = b'status web01.example.com.cpu green over IPv6'

        result = device.send('127.0.0.1', '@', stdin=message)

        assert result.returncode == 0, result.stderr
        assert deployment.tap.wait_for(1) == [message]
        assert 'from=::1' in deployment.audit_lines()[0]
    finally:
        deployment.close()
