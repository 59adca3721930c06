"""xyssh serve on its own: what it must do where sshd is not there to.

The shared end-to-end and refusal tests run against serve too (see
test_end_to_end.py and test_abuse.py); these cover what only the
embedded server has: its host key, authentication and identity, the
channel requests it refuses, limits, signals and its status column.
"""

import asyncio
import os
import pathlib
import signal
import socket
import subprocess
import time

import asyncssh
import pytest

from conftest import DATA, Device, wait_until
from xyssh import wire
from xyssh.sandbox import ssh_command

STATUS = 'status web01.example.com.cpu green ok'


@pytest.fixture
def serve(make_deployment):
    """A deployment behind xyssh serve."""
    return make_deployment(front='serve')


def _make_serve(make_deployment, **options: str):
    """Return a serve deployment with OPTIONS in [server]."""
    return make_deployment(front='serve', **options)


def _raw_ssh(deployment, identities, *command: str, stdin: bytes = b'',
             extra=(), env=None) -> subprocess.CompletedProcess:
    """Run OpenSSH's ssh with IDENTITIES, in that order, and COMMAND."""
    argv = ssh_command(deployment.server, identities[0],
                       deployment.known_hosts, user='xymon',
                       extra=[word for identity in identities[1:]
                              for word in ('-i', str(identity))] +
                       list(extra))
    return subprocess.run(argv + list(command), input=stdin,
                          capture_output=True, timeout=60, check=False,
                          env=env)


async def _connect(deployment, device, **options):
    """Open an asyncssh connection as DEVICE to DEPLOYMENT's serve."""
    return await asyncio.wait_for(asyncssh.connect(
        '127.0.0.1', deployment.server.port, username='xymon',
        client_keys=[asyncssh.read_private_key(str(device.private))],
        known_hosts=str(deployment.known_hosts), agent_path=None,
        config=[], **options), 20)


async def _push(connection, message: bytes) -> 'tuple[bytes, int]':
    """Send MESSAGE on a new channel of CONNECTION; return the answer
    line and the channel's exit status."""
    process = await connection.create_process('xyssh-send',
                                              encoding=None)

    try:
        process.stdin.write(wire.frame(message))
        process.stdin.write_eof()
    except BrokenPipeError:
        pass  # refused before reading: the answer says why

    answer = await asyncio.wait_for(process.stdout.read(), 20)
    await asyncio.wait_for(process.wait_closed(), 20)
    return answer, process.exit_status


def test_first_start_creates_the_host_key_and_prints_its_fingerprint(
        serve):
    key = serve.server.host_key_path
    fingerprint = subprocess.run(['ssh-keygen', '-lf', str(key)],
                                 capture_output=True, text=True,
                                 check=True).stdout.split()[1]
    first = serve.server.output()

    serve.server.stop()
    serve.server.run()

    assert oct(key.stat().st_mode & 0o777) == oct(0o600)
    assert ('host key %s' % fingerprint).encode() in first
    assert serve.server.output().count(fingerprint.encode()) == 2
    assert serve.server.output().count(b'created host key') == 0
    assert 'created host key %s (%s)' % (key, fingerprint) in \
        serve.log.read_text()


def test_the_identity_is_the_key_that_signed_not_one_offered_first(
        serve, tmp_path):
    web01 = serve.add_device('web01.example.com')
    # db01's key is offered first, but its private half is locked with a
    # passphrase ssh cannot ask for: the server accepts the offer, the
    # client cannot sign, and goes on with web01's key.
    locked = tmp_path / 'locked'
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', 'secret',
                    '-C', 'locked', '-f', str(locked)], check=True)
    added = serve.xyssh('keys', 'add', 'db01.example.com',
                        str(locked) + '.pub')
    assert added.returncode == 0, added.stderr
    foreign = b'status db01.example.com.cpu red forged\n'

    own = _raw_ssh(serve, [locked, web01.private], 'xyssh-send',
                   stdin=wire.frame(STATUS.encode()), extra=['-v'])
    other = _raw_ssh(serve, [locked, web01.private], 'xyssh-send',
                     stdin=wire.frame(foreign))

    assert b'Server accepts key: %s' % str(locked).encode() in own.stderr
    assert own.returncode == 0, own.stderr
    assert own.stdout == b'ok 0\n'
    assert other.returncode == 77
    assert serve.tap.wait_for(1) == [STATUS.encode()]
    lines = serve.audit_lines()
    assert len(lines) == 2
    assert all('fp=%s key=web01.example.com' % web01.fingerprint in line
               for line in lines)
    assert 'reason=not-permitted' in lines[1]


@pytest.mark.asyncio
async def test_forwarding_ptys_subsystems_and_other_commands_are_refused(
        serve, tmp_path):
    web01 = serve.add_device('web01.example.com')
    canary = tmp_path / 'canary'

    async with await _connect(serve, web01) as connection:
        with pytest.raises(asyncssh.ChannelOpenError):
            await connection.open_connection('127.0.0.1', serve.tap.port)
        with pytest.raises(asyncssh.ChannelListenError):
            await connection.forward_remote_port('127.0.0.1', 0,
                                                 '127.0.0.1', 22)
        with pytest.raises(asyncssh.ChannelOpenError):
            await connection.create_process('xyssh-send',
                                            term_type='xterm')
        with pytest.raises(asyncssh.ChannelOpenError):
            await connection.create_process(subsystem='sftp')
        shell = await connection.run('touch %s' % canary, encoding=None,
                                     timeout=20)
        answer, status = await _push(connection, STATUS.encode())

    x11 = _raw_ssh(serve, [web01.private], 'xyssh-check', extra=['-X'],
                   env=dict(os.environ, DISPLAY='127.0.0.1:99'))

    assert shell.exit_status == 77
    assert shell.stdout.startswith(b'error 77 ')
    assert not canary.exists()
    assert (answer, status) == (b'ok 0\n', 0)
    assert b'X11 forwarding request failed' in x11.stderr
    assert x11.stdout == b'ok 0\n'
    assert serve.tap.wait_for(1) == [STATUS.encode()]
    assert serve.tap.connections == 1


def _rsa_device(deployment, tmp_path) -> pathlib.Path:
    """Register an RSA key for web01; return its private key path."""
    key = tmp_path / 'rsa'
    subprocess.run(['ssh-keygen', '-q', '-t', 'rsa', '-b', '2048', '-N',
                    '', '-f', str(key)], check=True)
    added = deployment.xyssh('keys', 'add', 'web01.example.com',
                             str(key) + '.pub')
    assert added.returncode == 0, added.stderr
    return key


@pytest.mark.parametrize('setting, sha1_status', [('no', 255),
                                                  ('yes', 0)])
def test_rsa_sha1_signatures_are_refused_unless_enabled(
        make_deployment, tmp_path, setting, sha1_status):
    deployment = _make_serve(make_deployment, ssh_rsa_sha1=setting)
    key = _rsa_device(deployment, tmp_path)

    sha1 = _raw_ssh(deployment, [key], 'xyssh-check', extra=[
        '-o', 'PubkeyAcceptedAlgorithms=ssh-rsa'])
    sha2 = _raw_ssh(deployment, [key], 'xyssh-check', extra=[
        '-o', 'PubkeyAcceptedAlgorithms=rsa-sha2-256'])

    assert sha1.returncode == sha1_status, sha1.stderr
    assert sha2.returncode == 0, sha2.stderr
    assert sha2.stdout == b'ok 0\n'


@pytest.mark.asyncio
async def test_registry_changes_apply_without_dropping_connections(serve):
    web01 = serve.add_device('web01.example.com')

    async with await _connect(serve, web01) as connection:
        before = await _push(connection, STATUS.encode())
        assert serve.xyssh('keys', 'revoke',
                           web01.fingerprint).returncode == 0
        after = await _push(connection, STATUS.encode())
        db01 = serve.add_device('db01.example.com')
        async with await _connect(serve, db01) as newcomer:
            new = await _push(newcomer, b'status db01.example.com.cpu '
                              b'green ok\n')

    assert before == (b'ok 0\n', 0)
    assert after[1] == 77
    assert b'this key was revoked' in after[0]
    assert new == (b'ok 0\n', 0)
    assert len(serve.tap.wait_for(2)) == 2


@pytest.mark.asyncio
async def test_a_damaged_record_leaves_the_last_good_one_in_force(serve):
    web01 = serve.add_device('web01.example.com')

    async with await _connect(serve, web01) as connection:
        first = await _push(connection, STATUS.encode())
        record = next((serve.root / 'registry' / 'keys').iterdir())
        record.write_text('garbage\n')
        second = await _push(connection, STATUS.encode())

    assert first == second == (b'ok 0\n', 0)
    assert 'using the last good record' in serve.log.read_text()
    assert len(serve.tap.wait_for(2)) == 2


def _banner_then_closed(sock: socket.socket, timeout: float) -> bool:
    """Tell whether the server closed SOCK within TIMEOUT seconds."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except socket.timeout:
        return False
    except OSError:
        return True
    return True


def test_unauthenticated_connections_per_address_are_capped(
        make_deployment):
    deployment = _make_serve(make_deployment,
                             max_unauthenticated_per_address='3',
                             login_grace_time='5')
    web01 = deployment.add_device('web01.example.com')
    flood = [socket.create_connection(('127.0.0.1',
                                       deployment.server.port), 5)
             for _ in range(8)]

    try:
        closed_at_once = [_banner_then_closed(sock, 0.3) for sock in flood]
        # From another loopback address, a device still gets through.
        other = _raw_ssh(deployment, [web01.private], 'xyssh-send',
                         stdin=wire.frame(STATUS.encode()),
                         extra=['-b', '127.0.0.2'])
        closed_later = [_banner_then_closed(sock, 6) for sock in flood]
    finally:
        for sock in flood:
            sock.close()

    assert closed_at_once.count(True) == 5
    assert other.returncode == 0, other.stderr
    assert all(closed_later)
    assert 'max_unauthenticated_per_address reached' in \
        deployment.log.read_text()


def _rss_kib(pid: int) -> int:
    """Return the resident memory of process PID in KiB."""
    for line in pathlib.Path('/proc/%d/status' % pid).read_text() \
            .splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1])
    raise AssertionError('no VmRSS for %d' % pid)


def test_memory_stays_bounded_under_a_connection_flood(make_deployment):
    deployment = _make_serve(make_deployment, max_connections='50',
                             max_unauthenticated_per_address='1000')
    web01 = deployment.add_device('web01.example.com')
    before = _rss_kib(deployment.server.pid)
    flood = []

    try:
        for _ in range(400):
            sock = socket.create_connection(
                ('127.0.0.1', deployment.server.port), 5)
            sock.sendall(b'SSH-2.0-flood\r\n' + b'\0' * 30000)
            flood.append(sock)
        during = _rss_kib(deployment.server.pid)
        open_now = [sock for sock in flood
                    if not _banner_then_closed(sock, 0.01)]
    finally:
        for sock in flood:
            sock.close()

    after = wait_until(lambda: web01.send('127.0.0.1', STATUS)
                       .returncode == 0)

    assert len(open_now) <= 50
    assert during - before < 64 * 1024, (before, during)
    assert after


def test_sigterm_finishes_the_message_in_flight_then_exits(serve):
    web01 = serve.add_device('host1.example.com')
    message = (DATA / 'client-linux.txt').read_bytes()
    framed = wire.frame(message)
    argv = ssh_command(serve.server, web01.private, serve.known_hosts,
                       user='xymon') + ['xyssh-send']
    sender = subprocess.Popen(argv, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    sender.stdin.write(framed[:1000])
    sender.stdin.flush()
    # Time to log in and open the channel; the message is still cut.
    time.sleep(2)

    serve.server.signal(signal.SIGTERM)
    time.sleep(1)
    refused = socket.socket()
    refused.settimeout(5)
    late = refused.connect_ex(('127.0.0.1', serve.server.port))
    refused.close()
    out, err = sender.communicate(framed[1000:], timeout=30)

    assert late != 0
    assert sender.returncode == 0, err
    assert out.startswith(b'ok ')
    assert serve.tap.wait_for(1) == [message]
    assert serve.server.wait() == 0
    assert 'serve: stopping; 1 message channels in flight' in \
        serve.log.read_text()


def _log_has(deployment, text: str):
    """Return the first log line with TEXT, or None."""
    if not deployment.log.exists():
        return None
    return next((line for line in deployment.log.read_text().splitlines()
                 if text in line), None)


def test_sighup_reloads_the_configuration_and_keeps_it_when_broken(serve):
    web01 = serve.add_device('web01.example.com')
    large = 'status web01.example.com.big green ' + 'x' * 40000
    original = serve.config.read_text()

    serve.config.write_text(original + 'maxmsg_status = 32\n')
    serve.server.signal(signal.SIGHUP)
    assert wait_until(lambda: _log_has(serve, 'configuration reloaded'))
    smaller = web01.send('127.0.0.1', large)
    serve.config.write_text(original + 'no_such_setting = 1\n')
    serve.server.signal(signal.SIGHUP)
    assert wait_until(lambda: _log_has(serve, 'not reloaded'))
    still = web01.send('127.0.0.1', large)

    assert smaller.returncode == 20
    assert b'message too large' in smaller.stderr
    assert still.returncode == 20
    assert "unknown key 'no_such_setting'" in _log_has(serve,
                                                       'not reloaded')
    assert serve.tap.connections == 0


def test_serve_reports_its_own_status_column_to_xymond(make_deployment):
    deployment = _make_serve(make_deployment, status_column='xyssh',
                             status_host='xymon-sandbox.example.com',
                             status_interval='2',
                             status_refused_yellow='1')
    web01 = deployment.add_device('web01.example.com')
    refused = web01.send('127.0.0.1', 'status db01.example.com.cpu red x')
    xymond = deployment.xymond

    def column():
        rows = xymond.board('xymon-sandbox.example.com',
                            'testname,color,msg')
        return next((row for row in rows if row[0] == 'xyssh'), None)

    row = wait_until(lambda: (column() or [None, None])[1] == 'yellow'
                     and column(), timeout=20)

    assert refused.returncode == 20
    assert row, xymond.board('xymon-sandbox.example.com')
    assert row[1] == 'yellow'
    text = row[2].replace('\\n', '\n')
    assert 'Messages refused: 1' in text
    assert 'not-permitted: 1' in text


XYMONLAUNCH = '/usr/lib/xymon/server/bin/xymonlaunch'
TOP = pathlib.Path(__file__).parent.parent


def test_the_sample_xymonlaunch_task_runs_serve_and_stops_it(serve,
                                                             tmp_path):
    from conftest import XYSSH

    web01 = serve.add_device('web01.example.com')
    serve.server.stop()
    env = tmp_path / 'xymonserver.cfg'
    env.write_text('XYMONSERVERLOGS=%s\n' % tmp_path)
    # The shipped entry with this machine's paths; this launcher runs no
    # xymond task, so the entry's NEEDS line has nothing to wait for.
    task = (TOP / 'conf' / 'tasks.d' / 'xyssh.cfg').read_text()
    task = task.replace('/usr/local/bin/xyssh', XYSSH).replace(
        '/etc/xymon/xyssh.cfg', str(serve.config)).replace(
        '/usr/lib/xymon/server/etc/xymonserver.cfg', str(env))
    tasks = tmp_path / 'tasks.cfg'
    tasks.write_text('\n'.join(line for line in task.splitlines()
                               if 'NEEDS' not in line) + '\n')
    launcher = subprocess.Popen(
        [XYMONLAUNCH, '--config=%s' % tasks, '--no-daemon',
         '--log=%s' % (tmp_path / 'xymonlaunch.log')],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        started = wait_until(lambda: (tmp_path / 'xyssh.log').exists()
                             and b'listening on' in
                             (tmp_path / 'xyssh.log').read_bytes())
        sent = web01.send('127.0.0.1', STATUS)
    finally:
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(20)

    stopped = wait_until(lambda: _log_has(serve, 'serve: stopped'))
    probe = socket.socket()
    late = probe.connect_ex(('127.0.0.1', serve.server.port))
    probe.close()

    assert started
    assert sent.returncode == 0, sent.stderr
    assert serve.tap.wait_for(1) == [STATUS.encode()]
    assert stopped
    assert late != 0


@pytest.mark.parametrize('setting, sshd_line, warned', [
    ('no', '', False),
    ('yes', '', True),
    ('yes', 'PubkeyAcceptedAlgorithms +ssh-rsa\n', False),
    ('no', 'PubkeyAcceptedAlgorithms +ssh-rsa\n', True),
])
def test_keys_check_compares_sshd_with_ssh_rsa_sha1(make_deployment,
                                                    setting, sshd_line,
                                                    warned):
    deployment = make_deployment(sshd_config=sshd_line,
                                 ssh_rsa_sha1=setting)
    config = deployment.config.read_text()
    deployment.config.write_text(config + 'sshd_config = %s\n'
                                 % deployment.sshd.config_path)
    assert deployment.xyssh('keys', 'sync').returncode == 0

    checked = deployment.xyssh('keys', 'check')

    assert checked.returncode == 0, checked.stdout
    assert (b'ssh-rsa' in checked.stderr) == warned, checked.stderr


def test_serve_takes_reports_over_ipv6_too(serve):
    web01 = serve.add_device('web01.example.com')
    known = serve.root / 'known_hosts6'
    known.write_text(serve.server.known_hosts_line('::1') + '\n')
    web01.write_config(server='[::1]:%d' % serve.server.port,
                       known_hosts=str(known))

    sent = web01.send('::1', STATUS)

    assert sent.returncode == 0, sent.stderr
    assert serve.tap.wait_for(1) == [STATUS.encode()]
    assert 'from=::1 ' in serve.audit_lines()[0]


def test_serve_refuses_what_the_revocation_list_revokes(serve, tmp_path):
    # Revoked outside xyssh, straight into the file sshd's RevokedKeys
    # reads: serve honours the list itself, not only the registry.
    web01 = serve.add_device('web01.example.com')
    db01 = serve.add_device('db01.example.com')
    before = web01.send('127.0.0.1', STATUS)

    subprocess.run(['ssh-keygen', '-q', '-k', '-u', '-f',
                    str(serve.revoked_keys), str(web01.public)],
                   check=True, capture_output=True)
    time.sleep(2.5)  # serve looks at the file every 2 seconds
    after = web01.send('127.0.0.1', STATUS)
    other = db01.send('127.0.0.1', 'status db01.example.com.cpu green ok')

    assert before.returncode == 0, before.stderr
    assert after.returncode == 23
    assert other.returncode == 0, other.stderr
    assert 'detail="this key is in the revocation list"' in \
        serve.log.read_text()


@pytest.mark.parametrize('front', ['sshd', 'serve'])
def test_a_key_bound_to_addresses_logs_in_from_those_only(make_deployment,
                                                          front):
    # C22: from="2001:db8::/32" is honoured, by sshd and serve alike.
    deployment = make_deployment(sshd_config='ListenAddress ::1\n',
                                 front=front)
    devices = {}

    for name, networks in (('six', '::1/128'), ('doc', '2001:db8::/32'),
                           ('four', '127.0.0.0/8,2001:db8::/32')):
        device = Device(deployment, 'web01.example.com', name)
        added = deployment.xyssh('keys', 'add', '--from', networks,
                                 'web01.example.com', str(device.public))
        assert added.returncode == 0, added.stderr
        known = deployment.root / 'known6'
        known.write_text(deployment.server.known_hosts_line('::1') + '\n' +
                         deployment.server.known_hosts_line() + '\n')
        devices[name] = device

    def send(device, address: str):
        device.write_config(server='%s:%d' % (
            '[%s]' % address if ':' in address else address,
            deployment.server.port), known_hosts=str(known))
        return device.send(address, STATUS).returncode

    bad = deployment.xyssh('keys', 'add', '--from', 'example.com',
                           'web01.example.com', str(devices['six'].public))

    assert send(devices['six'], '::1') == 0
    assert send(devices['six'], '127.0.0.1') == 23
    assert send(devices['doc'], '::1') == 23
    assert send(devices['four'], '127.0.0.1') == 0
    assert bad.returncode == 1
    assert b"'example.com' is not an address or network" in bad.stderr
    if front == 'sshd':
        assert 'from="::1"' in deployment.authorized_keys.read_text()
