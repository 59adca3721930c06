"""The forced command run directly, the way sshd runs it."""

import os
import subprocess
import time

import pytest

from conftest import HOSTS_CFG, XYSSH
from xyssh.sandbox import free_port, make_keypair
from tap import RecordingTap
from xyssh import wire
from xyssh.keys import parse_public_keys, write_record
from xyssh.registry import KeyRecord


class ForcedEnv:
    """A config, registry and key, and a way to run `xyssh receive`."""

    def __init__(self, root, xymond_address: str, **server: str) -> None:
        self.root = root
        (root / 'hosts.cfg').write_text(HOSTS_CFG)
        values = {'hosts_cfg': str(root / 'hosts.cfg'),
                  'xymond': xymond_address,
                  'authorized_keys': str(root / 'authorized_keys'),
                  'registry': str(root / 'registry'),
                  'log': str(root / 'xyssh.log')}
        values.update(server)
        self.config = root / 'xyssh.cfg'
        self.config.write_text('[server]\n' + ''.join(
            '%s = %s\n' % item for item in values.items()))
        _, public = make_keypair(root, 'key_a')
        self.public_line = public.read_text().strip()
        [key] = parse_public_keys(public.read_bytes(), str(public))
        self.fingerprint = key.fingerprint
        write_record(str(root / 'registry'), KeyRecord(
            key.fingerprint, 'web01.example.com', key.text))

    def auth_info(self, line: str) -> str:
        """Write an ExposeAuthInfo file holding LINE; return its path."""
        path = self.root / 'auth-info'
        path.write_text(line + '\n')
        return str(path)

    def run(self, stdin: bytes = b'', fingerprint: str = None,
            **environment: str) -> subprocess.CompletedProcess:
        """Run the forced command with sshd's environment."""
        env = {'PATH': '/usr/bin:/bin',
               'SSH_CONNECTION': '192.0.2.7 40000 127.0.0.1 22'}
        env.update(environment)
        return subprocess.run(
            [XYSSH, 'receive', '--config', str(self.config), '--fp',
             fingerprint or self.fingerprint], input=stdin,
            capture_output=True, env=env, timeout=60, check=False)

    def log_text(self) -> str:
        """Return the audit log."""
        return (self.root / 'xyssh.log').read_text()


@pytest.fixture
def tap(xymond):
    """A recording relay in front of the session's xymond."""
    relay = RecordingTap(('127.0.0.1', xymond.port))
    yield relay
    relay.close()


@pytest.fixture
def forced(tmp_path, tap):
    """A forced-command set-up for web01.example.com."""
    return ForcedEnv(tmp_path, tap.address)


STATUS = b'status web01.example.com.cpu green ok\n'


def test_forwards_a_framed_status_and_answers_ok(forced, tap):
    result = forced.run(wire.frame(STATUS))

    assert result.returncode == 0, result.stderr
    assert result.stdout == b'ok 0\n'
    assert result.stderr == b''
    assert tap.wait_for(1) == [STATUS]
    assert 'accepted fp=%s' % forced.fingerprint in forced.log_text()
    assert 'from=192.0.2.7' in forced.log_text()


def test_answers_each_of_several_frames_in_turn(forced, tap):
    second = b'status web01.example.com.disk yellow full\n'
    foreign = b'status db01.example.com.disk red forged\n'

    result = forced.run(wire.frame(STATUS) + wire.frame(foreign) +
                        wire.frame(second))

    answers = result.stdout.split(b'\n')
    assert answers[0] == b'ok 0'
    assert answers[1].startswith(b'error 77 ')
    assert answers[2] == b'ok 0'
    assert result.returncode == 77
    assert tap.wait_for(2) == [STATUS, second]


def test_refuses_when_auth_info_names_another_key(forced, tap, tmp_path):
    _, other = make_keypair(tmp_path, 'key_b')
    path = forced.auth_info('publickey ' + other.read_text().strip())

    result = forced.run(wire.frame(STATUS), SSH_USER_AUTH=path)

    assert result.returncode == 77
    assert b'not the key' in result.stderr
    assert tap.connections == 0


def test_accepts_when_auth_info_names_the_configured_key(forced, tap):
    path = forced.auth_info('publickey ' + forced.public_line)

    result = forced.run(wire.frame(STATUS), SSH_USER_AUTH=path)

    assert result.returncode == 0, result.stderr
    assert tap.wait_for(1) == [STATUS]


def test_refuses_when_auth_info_file_is_missing(forced, tap):
    result = forced.run(wire.frame(STATUS),
                        SSH_USER_AUTH=str(forced.root / 'gone'))

    assert result.returncode == 77
    assert b'cannot confirm which key' in result.stderr
    assert tap.connections == 0


def test_refuses_without_auth_info_when_required(tmp_path, tap):
    forced = ForcedEnv(tmp_path, tap.address, require_auth_info='yes')

    result = forced.run(wire.frame(STATUS))

    assert result.returncode == 77
    assert tap.connections == 0


def test_refuses_fingerprint_not_in_registry(forced, tap):
    unknown = 'SHA256:' + 'A' * 43

    result = forced.run(wire.frame(STATUS), fingerprint=unknown)

    assert result.returncode == 77
    assert b'not registered' in result.stderr
    assert result.stdout.startswith(b'error 77 ')
    assert tap.connections == 0


def test_refuses_key_whose_host_left_hosts_cfg(forced, tap):
    hosts = forced.root / 'hosts.cfg'
    hosts.write_text(HOSTS_CFG.replace('web01.example.com', 'web02.x'))

    result = forced.run(wire.frame(STATUS))

    assert result.returncode == 77
    assert b'not in hosts.cfg' in result.stderr
    assert tap.connections == 0


def test_bad_arguments_are_a_configuration_error(forced):
    result = forced.run(wire.frame(STATUS), fingerprint='MD5:00:11')

    assert result.returncode == 78
    assert result.stderr == (b'xyssh: server configuration error; see the '
                             b'server log\n')
    assert result.stdout.startswith(b'error 78 ')


def test_missing_registry_is_a_configuration_error(forced, tap):
    import shutil

    shutil.rmtree(forced.root / 'registry')

    result = forced.run(wire.frame(STATUS))

    assert result.returncode == 78
    assert tap.connections == 0
    assert 'reason=config' in forced.log_text()


def test_missing_hosts_cfg_is_a_configuration_error(forced, tap):
    (forced.root / 'hosts.cfg').unlink()

    result = forced.run(wire.frame(STATUS))

    assert result.returncode == 78
    assert b'not in hosts.cfg' not in result.stderr
    assert 'cannot read hosts.cfg' in forced.log_text()


def test_unwritable_log_file_falls_back_and_still_delivers(tmp_path,
                                                           tap):
    forced = ForcedEnv(tmp_path, tap.address,
                       log=str(tmp_path / 'no-such-dir' / 'x.log'))

    result = forced.run(wire.frame(STATUS))

    assert result.returncode == 0, result.stderr
    assert tap.wait_for(1) == [STATUS]


def test_trickling_client_is_dropped_after_message_time(tmp_path, tap):
    forced = ForcedEnv(tmp_path, tap.address, idle_timeout='5',
                       message_time='2')
    framed = wire.frame(STATUS)
    process = subprocess.Popen(
        [XYSSH, 'receive', '--config', str(forced.config), '--fp',
         forced.fingerprint], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = time.monotonic()

    for position in range(12):
        if process.poll() is not None:
            break
        try:
            process.stdin.write(framed[position:position + 1])
            process.stdin.flush()
        except BrokenPipeError:
            break
        time.sleep(0.5)

    process.wait(timeout=20)
    stderr = process.stderr.read()
    process.stdin.close()

    assert process.returncode == 65
    assert time.monotonic() - started < 10
    assert b'not complete after 2 seconds' in stderr
    assert tap.connections == 0


def test_missing_config_is_reported_without_internals(tmp_path):
    result = subprocess.run(
        [XYSSH, 'receive', '--config', str(tmp_path / 'none.cfg'),
         '--fp', 'SHA256:' + 'A' * 43], input=wire.frame(STATUS),
        capture_output=True, timeout=30, check=False)

    assert result.returncode == 78
    assert result.stderr.startswith(b'xyssh: server configuration error')


def test_xymond_down_answers_unavailable_and_exits_75(tmp_path):
    forced = ForcedEnv(tmp_path, '127.0.0.1:%d' % free_port())

    result = forced.run(wire.frame(STATUS))

    assert result.returncode == 75
    assert result.stdout.startswith(b'error 75 ')
    assert b'xymond unavailable' in result.stderr
    assert 'reason=xymond-unavailable' in forced.log_text()


def test_stalled_client_is_dropped_after_idle_timeout(tmp_path, tap):
    forced = ForcedEnv(tmp_path, tap.address, idle_timeout='2')
    framed = wire.frame(STATUS)
    process = subprocess.Popen(
        [XYSSH, 'receive', '--config', str(forced.config), '--fp',
         forced.fingerprint], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = time.monotonic()

    process.stdin.write(framed[:20])
    process.stdin.flush()
    process.wait(timeout=20)
    stderr = process.stderr.read()
    process.stdin.close()

    assert process.returncode == 65
    assert 2 <= time.monotonic() - started < 15
    assert b'no data for 2 seconds' in stderr
    assert tap.connections == 0


def test_empty_input_is_refused(forced, tap):
    result = forced.run(b'')

    assert result.returncode == 65
    assert b'no message received' in result.stderr
    assert tap.connections == 0


def test_start_up_does_not_import_heavy_modules(forced):
    # -S: no site-packages, so what site itself imports does not hide
    # what the forced command imports; it needs the standard library only.
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    probe = ('import sys\n'
             'sys.path.insert(0, %r)\n'
             'from xyssh import forced\n'
             'status = forced.main(["--config", %r, "--fp", %r])\n'
             'heavy = [m for m in ("asyncssh", "click", "logging", '
             '"cryptography", "asyncio", "re", "configparser", "base64") '
             'if m in sys.modules]\n'
             'sys.stderr.write("STATUS=%%d HEAVY=%%s\\n" %% (status, heavy))\n'
             % (top, str(forced.config), forced.fingerprint))

    # Compiled as an install would leave it: compiling source at import
    # time pulls in tokenize and re by itself.
    subprocess.run(['python3', '-m', 'compileall', '-q', top + '/xyssh'],
                   check=True, timeout=60)

    result = subprocess.run(['python3', '-S', '-c', probe],
                            input=wire.frame(STATUS),
                            capture_output=True, timeout=30, check=False,
                            env=dict(os.environ, SSH_CONNECTION='-'))

    assert b'STATUS=0 HEAVY=[]' in result.stderr, result.stderr


def test_xymond_that_never_answers_times_out_with_75(tmp_path):
    import socket

    listener = socket.create_server(('127.0.0.1', 0))
    forced = ForcedEnv(tmp_path, '127.0.0.1:%d'
                       % listener.getsockname()[1], xymond_timeout='1')
    started = time.monotonic()

    try:
        result = forced.run(wire.frame(STATUS))
    finally:
        listener.close()

    assert result.returncode == 75
    assert time.monotonic() - started < 15
    assert result.stdout.startswith(b'error 75 ')
