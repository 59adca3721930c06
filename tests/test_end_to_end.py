"""The stock client's real message, over SSH, into the real xymond."""

import calendar
import json
import time

import pytest

from conftest import DATA, HOST1_SECTION


@pytest.fixture(params=['sshd', 'serve'])
def deployment(request, make_deployment):
    """Each test runs behind sshd + xyssh receive and behind xyssh serve:
    the same keys, the same rules."""
    return make_deployment(front=request.param)


def test_real_client_message_reaches_xymond_and_reply_comes_back(
        deployment):
    device = deployment.add_device('host1.example.com')
    message = (DATA / 'client-linux.txt').read_bytes()

    result = device.send('127.0.0.1', '@', stdin=message)

    assert result.returncode == 0, result.stderr
    assert result.stdout == HOST1_SECTION
    assert result.stderr == b''
    assert deployment.tap.wait_for(1) == [message]
    columns = deployment.xymond.wait_for_columns(
        'host1.example.com', {'cpu', 'disk', 'memory'})
    assert {'cpu', 'disk', 'memory'} <= columns


def test_keys_list_shows_when_each_key_last_logged_in(deployment, web01,
                                                      db01):
    before = time.time()
    sent = web01.send('127.0.0.1', 'status web01.example.com.seen green ok')
    listing = deployment.xyssh('keys', 'list', '--json')

    assert sent.returncode == 0, sent.stderr
    entries = {entry['host']: entry for entry in json.loads(listing.stdout)}
    seen = calendar.timegm(time.strptime(
        entries['web01.example.com']['last_seen'], '%Y-%m-%dT%H:%M:%SZ'))
    assert before - 1 <= seen <= time.time() + 1
    assert entries['db01.example.com']['last_seen'] is None
