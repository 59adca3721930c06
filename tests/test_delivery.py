"""Delivery on bad days, through the real sshd and xymond: the spool.

The relay in front of xymond (the tap) records what xymond was given; a
report counts as delivered only when it is there.
"""

import os
import subprocess
import time

import pytest

from conftest import HOSTS_CFG, XYSSH
from xyssh.keys import BEGIN_MARK
from xyssh.sandbox import Sshd, Xymond, free_port
from xyssh.spool import Spool, server_directory

EXIT_XYMOND_DOWN = 21
EXIT_CONNECT = 5
EXIT_SERVER_ERROR = 25


def _spool(device) -> Spool:
    """Return DEVICE's spool for its server, as xymon-ssh opens it."""
    return Spool(server_directory(str(device.spool_base),
                                  '127.0.0.1:%d' % device.deployment
                                  .sshd.port), 10240 * 1024)


def _kept(device) -> 'list[bytes]':
    """Return the reports in DEVICE's spool, oldest first."""
    return [entry.data for entry in _spool(device).entries()]


def _xyssh(device, *args: str) -> subprocess.CompletedProcess:
    """Run the xyssh command with DEVICE's configuration."""
    environment = dict(os.environ, XYSSH_CONFIG=str(device.config))
    environment.pop('SSH_AUTH_SOCK', None)
    return subprocess.run([XYSSH, *args], capture_output=True,
                          env=environment, timeout=120, check=False)


def _set_xymond(deployment, address: str) -> None:
    """Point the server's xyssh.cfg at another xymond address."""
    lines = [('xymond = %s' % address) if line.startswith('xymond =')
             else line for line in deployment.config.read_text()
             .splitlines()]
    deployment.config.write_text('\n'.join(lines) + '\n')


def test_xymond_stopped_keeps_report_and_next_run_delivers_it(
        make_deployment, tmp_path):
    own = Xymond.start(tmp_path / 'own-xymond', HOSTS_CFG)
    deployment = make_deployment(xymond='127.0.0.1:%d' % own.port)
    web01 = deployment.add_device('web01.example.com')
    first = b'status web01.example.com.spoolx red xymond was down\n'
    second = b'status web01.example.com.spooly green xymond is back\n'
    own.stop()

    try:
        down = web01.send('127.0.0.1', '@', stdin=first)
        kept = _kept(web01)
        own = Xymond.start(tmp_path / 'own-xymond', HOSTS_CFG,
                           port=own.port)
        back = web01.send('127.0.0.1', '@', stdin=second)
        own.wait_for_columns('web01.example.com', {'spoolx', 'spooly'})
        board = own.board('web01.example.com',
                          fields='testname,color,line1')
    finally:
        own.stop()

    assert down.returncode == EXIT_XYMOND_DOWN
    assert down.stdout == b''
    assert b'xymond unavailable' in down.stderr
    assert b'kept 1 message(s) in ' in down.stderr
    assert kept == [first]
    assert back.returncode == 0, back.stderr
    assert _kept(web01) == []
    assert ['spoolx', 'red', 'red xymond was down'] in board
    assert ['spooly', 'green', 'green xymond is back'] in board


def _restart_sshd(deployment) -> None:
    """Start the deployment's sshd again: same port, same host key."""
    stopped = deployment.sshd
    deployment.sshd = Sshd.start(
        stopped.workdir.parent / 'sshd-again', deployment.authorized_keys,
        port=stopped.port, host_key=stopped.host_key_path)


def test_sshd_down_for_several_runs_then_only_newest_fresh_reports_go(
        deployment, web01):
    web01.write_config(timeout='2')
    deployment.sshd.stop()
    runs = [b'status web01.example.com.outage green run 1\n',
            b'status+10 web01.example.com.short yellow run 2\n',
            b'status web01.example.com.outage yellow run 3\n',
            b'combo\nstatus web01.example.com.outage red run 4\n\n'
            b'status web01.example.com.other green run 4\n']
    results = [web01.send('127.0.0.1', '@', stdin=run) for run in runs]
    # A report kept by a run 40 minutes ago has outlived its lifetime.
    _spool(web01).add(b'status web01.example.com.stale red old\n',
                      time.time() - 40 * 60)
    kept = _kept(web01)
    _restart_sshd(deployment)
    # Short waits made the runs against the stopped sshd quick; the
    # flush gets the usual time, which a loaded machine may need.
    web01.write_config(timeout='30')

    flushed = _xyssh(web01, 'flush')

    assert [result.returncode for result in results] == [EXIT_CONNECT] * 4
    assert all(result.stdout == b'' for result in results)
    assert kept == [b'status+10 web01.example.com.short yellow run 2\n',
                    b'status web01.example.com.outage red run 4',
                    b'status web01.example.com.other green run 4\n']
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout == b'sent 3 kept report(s) to 127.0.0.1:%d; ' \
        b'0 still kept\n' % deployment.sshd.port
    assert sorted(deployment.tap.wait_for(3)) == sorted(kept)
    time.sleep(0.5)
    assert deployment.tap.connections == 3


def test_server_killed_mid_transfer_forwards_nothing_then_delivers(
        deployment, web01):
    text = deployment.authorized_keys.read_text()
    line = text[text.index(BEGIN_MARK):].splitlines()[1]
    killer = 'head -c 100 >/dev/null; kill -9 $$'
    deployment.authorized_keys.write_text(text.replace(
        line, line.replace(line[line.index('command="') + 9:
                                line.index('" ssh-')], killer)))
    web01.write_config(timeout='3')
    message = b'status web01.example.com.midway green ' + b'm' * 5000 + b'\n'

    cut = web01.send('127.0.0.1', '@', stdin=message)
    connections_while_cut = deployment.tap.connections
    deployment.xyssh('keys', 'sync')
    web01.write_config(timeout='30')
    flushed = _xyssh(web01, 'flush')

    assert cut.returncode == EXIT_SERVER_ERROR
    assert cut.stdout == b''
    assert connections_while_cut == 0
    assert flushed.returncode == 0, flushed.stderr
    assert deployment.tap.wait_for(1) == [message]
    assert _kept(web01) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs, unmounted afterwards."""
    mount_point = tmp_path / 'small-disk'
    mount_point.mkdir()
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k',
                             'tmpfs', str(mount_point)],
                            capture_output=True, check=False)
    assert result.returncode == 0, \
        'cannot mount a tmpfs (the test needs root): %s' % result.stderr
    try:
        yield mount_point
    finally:
        subprocess.run(['umount', str(mount_point)], check=False)


def _kept_then_disk_full(make_deployment, small_disk, old: bytes):
    """Return a device whose spool on SMALL_DISK holds OLD, disk full.

    Its server's xymond is down, so every report it sends is kept.
    """
    deployment = make_deployment(xymond='127.0.0.1:%d' % free_port())
    device = deployment.add_device('web01.example.com')
    device.spool_base = small_disk
    device.write_config()
    device.send('127.0.0.1', '@', stdin=old)
    status = os.statvfs(small_disk)
    with open(os.path.join(small_disk, 'filler'), 'wb') as file:
        file.write(b'f' * (status.f_bavail * status.f_frsize))
    return device


def test_full_disk_gives_a_clear_error_and_keeps_the_spool_whole(
        make_deployment, small_disk):
    old = b'status web01.example.com.diskfull green old\n'
    web01 = _kept_then_disk_full(make_deployment, small_disk, old)
    big = b'status web01.example.com.diskfull2 green ' + b'b' * 8000 + b'\n'

    result = web01.send('127.0.0.1', '@', stdin=big)
    status = _xyssh(web01, 'status')

    assert result.returncode == EXIT_XYMOND_DOWN
    assert b'message not kept: cannot write ' in result.stderr
    assert b'No space left on device' in result.stderr
    # Dropping the old report would not have made room for the big one,
    # so it stays as it was.
    assert _kept(web01) == [old]
    assert b'dropped' not in result.stderr
    spool_dir = _spool(web01).directory
    assert [name for name in os.listdir(spool_dir)
            if name.startswith('.tmp-')] == []
    assert status.returncode == 0
    assert b'kept reports 1 ' in status.stdout


def test_full_disk_makes_room_by_dropping_the_oldest(make_deployment,
                                                     small_disk):
    old = b'status web01.example.com.roomold green old\n'
    web01 = _kept_then_disk_full(make_deployment, small_disk, old)
    new = b'status web01.example.com.roomnew green new\n'

    result = web01.send('127.0.0.1', '@', stdin=new)

    assert result.returncode == EXIT_XYMOND_DOWN
    assert b'dropped the oldest kept report: status ' \
        b'web01.example.com.roomold' in result.stderr
    assert _kept(web01) == [new]


def test_status_shows_depth_oldest_last_success_and_error(
        deployment, web01):
    web01.send('127.0.0.1', 'status web01.example.com.stat green ok')
    _set_xymond(deployment, '127.0.0.1:%d' % free_port())
    web01.send('127.0.0.1', 'status web01.example.com.stat red down')

    result = _xyssh(web01, 'status')

    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode().splitlines()
    assert lines[0] == 'server 127.0.0.1:%d' % deployment.sshd.port
    assert lines[1] == 'spool %s' % _spool(web01).directory
    assert lines[2].startswith('kept reports 1 (')
    assert lines[3].startswith('oldest 20')
    assert lines[4].startswith('last success 20')
    assert lines[5].startswith('last error 20')
    assert lines[6] == \
        'last error text xyssh: xymond unavailable, try again later'


# Several servers, as xymon does it: 0.0.0.0 sends to each, a list of
# names is a failover list.

def _two_servers(make_deployment):
    """Return two deployments and a web01 device registered on both."""
    first = make_deployment()
    second = make_deployment()
    device = first.add_device('web01.example.com')
    added = second.xyssh('keys', 'add', 'web01.example.com',
                         str(device.public))
    assert added.returncode == 0, added.stderr
    with open(first.known_hosts, 'a') as known_hosts:
        known_hosts.write(second.sshd.known_hosts_line() + '\n')
    device.write_config(server='127.0.0.1:%d, 127.0.0.1:%d' % (
        first.sshd.port, second.sshd.port), timeout='3')
    return first, second, device


def _group_spool(device, *deployments) -> Spool:
    """Return DEVICE's spool for the servers of DEPLOYMENTS together."""
    label = ' '.join('127.0.0.1:%d' % deployment.sshd.port
                     for deployment in deployments)
    return Spool(server_directory(str(device.spool_base), label), 1 << 30)


def test_every_server_gets_the_message_and_keeps_its_own_spool(
        make_deployment):
    first, second, web01 = _two_servers(make_deployment)
    one = b'status web01.example.com.both green one\n'
    two = b'status web01.example.com.both2 green two\n'
    three = b'status web01.example.com.both3 green three\n'

    both = web01.send('0.0.0.0', '@', stdin=one)
    first_got_one = first.tap.wait_for(1)
    second.sshd.stop()
    half = web01.send('0.0.0.0', '@', stdin=two)
    kept_for_second = [entry.data for entry in
                       _group_spool(web01, second).entries()]
    _restart_sshd(second)
    again = web01.send('0.0.0.0', '@', stdin=three)

    assert both.returncode == 0, both.stderr
    assert first_got_one == [one]
    assert half.returncode == EXIT_CONNECT
    assert kept_for_second == [two]
    assert again.returncode == 0, again.stderr
    assert first.tap.wait_for(3) == [one, two, three]
    assert second.tap.wait_for(3) == [one, three, two]
    assert _group_spool(web01, first).entries() == []
    assert _group_spool(web01, second).entries() == []


def test_a_list_of_servers_fails_over_in_order(make_deployment):
    first, second, web01 = _two_servers(make_deployment)
    message = b'status web01.example.com.failover green ok\n'

    normal = web01.send('xymon1 xymon2', '@', stdin=message)
    normal_first = first.tap.wait_for(1)
    first.sshd.stop()
    over = web01.send('--debug', 'xymon1 xymon2', '@', stdin=message)

    assert normal.returncode == 0, normal.stderr
    assert normal_first == [message]
    assert over.returncode == 0, over.stderr
    assert second.tap.wait_for(1) == [message]
    assert first.tap.connections == 1
    assert b'127.0.0.1:%d failed' % first.sshd.port in over.stderr
    assert _group_spool(web01, first, second).entries() == []


def test_newer_report_supersedes_the_kept_one_unsent(deployment, web01):
    _set_xymond(deployment, '127.0.0.1:%d' % free_port())
    older = b'status web01.example.com.super red older\n'
    newer = b'status web01.example.com.super green newer\n'
    web01.send('127.0.0.1', '@', stdin=older)
    _set_xymond(deployment, deployment.tap.address)

    result = web01.send('127.0.0.1', '@', stdin=newer)

    assert result.returncode == 0, result.stderr
    assert deployment.tap.wait_for(2, timeout=2) == [newer]
    assert _kept(web01) == []
