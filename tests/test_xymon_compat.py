"""xymon-ssh takes the argv forms of Xymon's xymon (case C35) over sshd."""

import socket

import pytest

RECIPIENT = '127.0.0.1'
USAGE_START = b'Usage: xymon-ssh '


@pytest.fixture
def pinger(deployment):
    """A second key for web01.example.com, also granted "ping"."""
    return deployment.add_device('web01.example.com', name='pinger',
                                 allow=('ping',))


def test_dash_sends_each_stdin_line_as_its_own_message(deployment, web01):
    lines = [b'status web01,example,com.a green one\n',
             b'status web01,example,com.b green two\n']

    result = web01.send(RECIPIENT, '-', stdin=b''.join(lines))

    assert result.returncode == 0, result.stderr
    assert result.stdout == b''
    assert result.stderr == b''
    assert deployment.tap.wait_for(2) == lines


def test_dash_drops_the_reply_of_a_granted_ping_line(deployment, pinger):
    result = pinger.send(RECIPIENT, '-', stdin=b'ping\n')

    assert result.returncode == 0, result.stderr
    assert deployment.tap.wait_for(1) == [b'ping\n']
    assert result.stdout == b''
    assert result.stderr == b''


def test_dash_keeps_a_carriage_return_inside_its_line(deployment, web01):
    line = b'status web01,example,com.a green one\rtwo\n'

    result = web01.send(RECIPIENT, '-', stdin=line)

    assert deployment.tap.wait_for(1) == [line]
    assert result.returncode == 0, result.stderr


def test_merge_sends_argument_newline_and_stdin_as_one_message(
        deployment, web01):
    result = web01.send('--merge', RECIPIENT,
                        'status web01,example,com.c green first line',
                        stdin=b'line two\nline three\n')

    assert result.returncode == 0, result.stderr
    assert result.stderr == b''
    assert deployment.tap.wait_for(1) == [
        b'status web01,example,com.c green first line\n'
        b'line two\nline three\n']


def test_at_sends_all_of_stdin_byte_for_byte(deployment, web01):
    message = (b'status web01,example,com.at green caf\xc3\xa9 \xe9\r\n'
               b'\tindented\r\n\n  spaced  \nno final newline')

    result = web01.send(RECIPIENT, '@', stdin=message)

    assert result.returncode == 0, result.stderr
    assert result.stderr == b''
    assert deployment.tap.wait_for(1) == [message]


def test_literal_argument_with_newline_is_sent_exactly(deployment, web01):
    result = web01.send(RECIPIENT, 'data web01,example,com.jails\n'
                        'jails : 3')

    assert result.returncode == 0, result.stderr
    assert result.stdout == b''
    assert result.stderr == b''
    assert deployment.tap.wait_for(1) == [
        b'data web01,example,com.jails\njails : 3']


def test_unknown_option_warns_on_stderr_and_message_is_delivered(
        deployment, web01):
    message = 'status web01,example,com.f green unknown option'

    result = web01.send('--bogus', RECIPIENT, message)

    assert result.returncode == 0
    assert result.stderr == b'Unknown option --bogus\n'
    assert result.stdout == b''
    assert deployment.tap.wait_for(1) == [message.encode()]


def test_version_prints_xymon_version_without_any_config(deployment,
                                                         web01, tmp_path):
    missing = tmp_path / 'no-such.cfg'

    result = web01.send('--version', env={'XYSSH_CONFIG': str(missing)})

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b'Xymon version 4.3.30')
    assert result.stdout.count(b'\n') == 1
    assert result.stdout.endswith(b'\n')
    assert result.stderr == b''
    assert deployment.tap.connections == 0


def test_version_without_stock_xymon_binary_still_says_4_3_30(
        web01, tmp_path):
    result = web01.send('--version', env={'XYMONHOME': str(tmp_path)})

    assert result.returncode == 0, result.stderr
    assert result.stdout == b'Xymon version 4.3.30\n'


def test_version_makes_no_connection_to_the_configured_server(web01):
    with socket.create_server(('127.0.0.1', 0)) as listener:
        web01.write_config(port=str(listener.getsockname()[1]))

        result = web01.send('--version')

        listener.setblocking(False)
        # A connection, even one closed since, would wait in the backlog.
        with pytest.raises(BlockingIOError):
            listener.accept()

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b'Xymon version 4.3.30')


def test_missing_message_exits_1_with_usage_and_sends_nothing(
        deployment, web01):
    result = web01.send(RECIPIENT)

    assert result.returncode == 1
    assert result.stderr.startswith(USAGE_START)
    assert result.stdout == b''
    assert deployment.tap.connections == 0


def test_recipient_0000_with_two_xymservers_delivers_once_over_ssh(
        deployment, web01):
    message = 'status web01,example,com.e green fan-out'

    result = web01.send('0.0.0.0', message,
                        env={'XYMSERVERS': '192.0.2.5 192.0.2.6'})

    assert result.returncode == 0, result.stderr
    assert result.stderr == b''
    assert deployment.tap.wait_for(1) == [message.encode()]
    assert deployment.tap.connections == 1


def test_timeout_option_is_accepted_and_message_delivered(deployment,
                                                          web01):
    message = 'status web01,example,com.t green with a timeout'

    result = web01.send('--timeout=5', RECIPIENT, message)

    assert result.returncode == 0, result.stderr
    assert result.stderr == b''
    assert deployment.tap.wait_for(1) == [message.encode()]


def test_status_prints_nothing_on_stdout_as_xymond_sends_no_reply(
        deployment, web01):
    message = 'status web01,example,com.s green quiet'

    result = web01.send(RECIPIENT, message)

    assert result.returncode == 0, result.stderr
    assert deployment.tap.wait_for(1) == [message.encode()]
    assert result.stdout == b''
    assert result.stderr == b''


def test_granted_ping_prints_exactly_xymond_reply(deployment, pinger):
    result = pinger.send(RECIPIENT, 'ping')

    assert result.returncode == 0, result.stderr
    assert result.stderr == b''
    assert deployment.tap.wait_for(1) == [b'ping']
    assert result.stdout.startswith(b'xymond 4.3.30')
    assert result.stdout == deployment.xymond.query('ping')


def test_config_option_is_taken_with_or_without_an_equals_sign(
        deployment, web01, tmp_path):
    moved = tmp_path / 'elsewhere.cfg'
    moved.write_bytes(web01.config.read_bytes())
    # The environment names a configuration that does not exist, so only
    # the option can make the message go through.
    missing = {'XYSSH_CONFIG': str(tmp_path / 'missing.cfg')}
    status = 'status web01.example.com.opt green ok'

    spaced = web01.send('--config', str(moved), '127.0.0.1', status,
                        env=missing)
    joined = web01.send('--config=%s' % moved, '127.0.0.1', status,
                        env=missing)
    bare = web01.send('127.0.0.1', status, '--config', env=missing)

    assert spaced.returncode == 0, spaced.stderr
    assert joined.returncode == 0, joined.stderr
    assert bare.returncode == 1
    assert b'--config needs a PATH' in bare.stderr
    assert deployment.tap.wait_for(2) == [status.encode()] * 2
