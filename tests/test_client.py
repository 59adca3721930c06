"""The sending side's failures, each with its own exit status."""

import os
import socket
import subprocess
import time

from conftest import XYSSH
from xyssh.keys import BEGIN_MARK
from xyssh.sandbox import free_port

STATUS = 'status web01.example.com.cpu green ok'


def test_connection_refused_exits_5_after_retries(deployment, web01):
    web01.write_config(port=str(free_port()), timeout='4')
    started = time.monotonic()

    result = web01.send('--debug', '127.0.0.1', STATUS)

    assert result.returncode == 5
    assert result.stdout == b''
    assert b'cannot connect' in result.stderr
    # Connection refused is worth another try within the timeout.
    assert b'try 1 failed' in result.stderr
    assert time.monotonic() - started < 15


def test_silent_server_times_out_with_7(deployment, web01):
    listener = socket.create_server(('127.0.0.1', 0))
    web01.write_config(port=str(listener.getsockname()[1]))
    started = time.monotonic()

    try:
        result = web01.send('--timeout=2', '127.0.0.1', STATUS)
    finally:
        listener.close()

    assert result.returncode == 7
    assert 2 <= time.monotonic() - started < 15
    assert b'no answer' in result.stderr
    assert result.stdout == b''


def test_missing_client_config_exits_26(deployment, web01, tmp_path):
    result = web01.send('127.0.0.1', STATUS, env={
        'XYSSH_CONFIG': str(tmp_path / 'missing.cfg')})

    assert result.returncode == 26
    assert b'missing.cfg' in result.stderr


def test_session_without_exit_status_counts_as_failure(deployment,
                                                       web01):
    # A forced command that answers "ok" and is then killed: sshd sends
    # an exit signal, not an exit status.
    text = deployment.authorized_keys.read_text()
    start = text.index(BEGIN_MARK)
    line = text[start:].splitlines()[1]
    fake = 'cat >/dev/null; printf \\"ok 0\\\\n\\"; kill -9 $$'
    forged = line.replace(line[line.index('command="') + 9:
                               line.index('" ssh-')], fake)
    deployment.authorized_keys.write_text(text.replace(line, forged))
    web01.write_config(timeout='3')

    result = web01.send('127.0.0.1', STATUS)

    assert result.returncode == 25
    assert b'without an exit status' in result.stderr
    assert deployment.tap.connections == 0


def test_xyssh_send_prints_reply_and_refusal(deployment, web01):
    environment = dict(os.environ, XYSSH_CONFIG=str(web01.config))
    environment.pop('SSH_AUTH_SOCK', None)

    sent = subprocess.run([XYSSH, 'send'], input=STATUS.encode(),
                          capture_output=True, env=environment, timeout=60)
    refused = subprocess.run([XYSSH, 'send'],
                             input=b'drop web01.example.com',
                             capture_output=True, env=environment,
                             timeout=60)

    assert sent.returncode == 0, sent.stderr
    assert sent.stdout == b''
    assert deployment.tap.wait_for(1) == [STATUS.encode()]
    assert refused.returncode == 20
    assert b'not permitted' in refused.stderr


def test_xymond_down_exits_21_and_says_so(make_deployment):
    deployment = make_deployment(xymond='127.0.0.1:%d' % free_port())
    device = deployment.add_device('web01.example.com')

    result = device.send('127.0.0.1', STATUS)

    assert result.returncode == 21
    assert result.stdout == b''
    assert b'xymond unavailable, try again later' in result.stderr
    [line] = deployment.audit_lines()
    assert 'reason=xymond-unavailable' in line


def test_xyssh_send_usage_error_exits_1_and_config_error_26(tmp_path):
    # 2 means "cannot resolve the server's name" to a sender, so click's
    # own status for usage errors must not leak out.
    environment = dict(os.environ, XYSSH_CONFIG=str(tmp_path / 'nope.cfg'))

    usage = subprocess.run([XYSSH, 'send', '--no-such-option'],
                           input=b'', capture_output=True, timeout=60)
    missing = subprocess.run([XYSSH, 'send'], input=STATUS.encode(),
                             capture_output=True, env=environment,
                             timeout=60)

    assert usage.returncode == 1
    assert b"No such option '--no-such-option'" in usage.stderr
    assert missing.returncode == 26
    assert missing.stderr.decode().startswith('xyssh: ')
    assert 'nope.cfg' in missing.stderr.decode()
    assert missing.stdout == b''
