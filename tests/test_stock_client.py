"""Debian's unchanged xymonclient.sh, with $XYMON set to xymon-ssh."""

import os
import re
import signal
import subprocess
import time

import pytest

from conftest import HOST1_SECTION, XYMON_SSH, Deployment

CLIENT_HOME = '/usr/lib/xymon/client'
XYMONCMD = CLIENT_HOME + '/bin/xymoncmd'
CLIENT_SCRIPT = CLIENT_HOME + '/bin/xymonclient.sh'
STOCK_CFG = '/etc/xymon/xymonclient.cfg'
HOST = 'host1.example.com'
CLIENT_LINE = b'client host1,example,com.linux linux'
RUN_TIMEOUT = 120
KILL_TIMEOUT = 10


def _session_members(sid: int) -> 'dict[int, str]':
    """Return {pid: command name} of live processes in session SID."""
    members = {}

    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry, encoding='latin-1') as stat:
                text = stat.read()
        except OSError:
            continue
        comm = text[text.index('(') + 1:text.rindex(')')]
        fields = text[text.rindex(')') + 2:].split()
        # fields: state, ppid, pgrp, session, ...
        if fields[0] != 'Z' and int(fields[3]) == sid:
            members[int(entry)] = comm

    return members


def _end_session(process: subprocess.Popen) -> None:
    """Kill every process of PROCESS's own session; wait, bounded.

    The script ran as the leader of a new session and process group,
    so its detached `nohup sh -c "vmstat 300 2 ..."` is in that group
    too; only this group is signalled, never anything found by name.
    """
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

    try:
        process.wait(timeout=KILL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass

    deadline = time.monotonic() + KILL_TIMEOUT
    survivors = _session_members(process.pid)

    while survivors and time.monotonic() < deadline:
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
        survivors = _session_members(process.pid)

    assert not survivors, 'left running: %r' % survivors


def _write_env_file(path, device, xymontmp) -> None:
    """Write an ENVFILE as xymonlaunch's [client] task would load it.

    The stock xymonclient.cfg comes first, unchanged; the lines after it
    override what this test needs, as /etc/xymon/xymonclient.d/*.cfg
    does on Debian (it is included last).
    """
    values = {
        'MACHINE': 'host1,example,com',
        'MACHINEDOTS': HOST,
        'SERVEROSTYPE': 'linux',
        'CONFIGCLASS': 'linux',
        'XYMSRV': '127.0.0.1',
        'XYMSERVERS': '',
        'XYMONCLIENTHOME': CLIENT_HOME,
        'XYMONHOME': CLIENT_HOME,
        'XYMONTMP': str(xymontmp),
        'XYMON': XYMON_SSH,
        'XYSSH_CONFIG': str(device.config),
    }
    lines = ['include %s' % STOCK_CFG]

    for name, value in values.items():
        # loadenv() expands $NAME and strips quotes: keep values plain.
        assert not re.search(r'["$\\\n]', value), (name, value)
        lines.append('%s="%s"' % (name, value))

    path.write_text('\n'.join(lines) + '\n')


class StockRun:
    """What one run of the stock client left behind."""

    def __init__(self, deployment, returncode: int, stderr: bytes,
                 xymontmp, started: int) -> None:
        self.deployment = deployment
        self.returncode = returncode
        self.stderr = stderr
        self.xymontmp = xymontmp
        self.started = started


@pytest.fixture(scope='module')
def stock_run(tmp_path_factory, xymond):
    """Run xymonclient.sh once for host1, over its own deployment."""
    root = tmp_path_factory.mktemp('stock-client')
    deployment = Deployment(root, xymond, {}, '')

    try:
        device = deployment.add_device(HOST)
        xymontmp = root / 'xymontmp'
        xymontmp.mkdir()
        env_file = root / 'client.env'
        _write_env_file(env_file, device, xymontmp)
        environment = dict(os.environ)
        environment.pop('SSH_AUTH_SOCK', None)
        started = int(time.time())

        with open(root / 'client.out', 'wb') as out, \
                open(root / 'client.err', 'wb') as err:
            process = subprocess.Popen(
                [XYMONCMD, '--env=%s' % env_file, CLIENT_SCRIPT],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=str(root), env=environment, start_new_session=True)
            try:
                returncode = process.wait(timeout=RUN_TIMEOUT)
            finally:
                _end_session(process)

        yield StockRun(deployment, returncode,
                       (root / 'client.err').read_bytes(), xymontmp,
                       started)
    finally:
        deployment.close()


def _fresh_columns(xymond, host: str, columns: 'set[str]', since: int,
                   timeout: float = 30) -> 'dict[str, int]':
    """Wait (bounded) until COLUMNS of HOST were logged at SINCE or later."""
    deadline = time.monotonic() + timeout

    while True:
        logged = {row[0]: int(row[1]) for row in
                  xymond.board(host, fields='testname,logtime')
                  if len(row) == 2 and row[1].isdigit()}
        fresh = {name: when for name, when in logged.items()
                 if name in columns and when >= since}
        if set(fresh) == columns or time.monotonic() >= deadline:
            return fresh
        time.sleep(0.2)


def test_stock_client_sends_exactly_one_client_message_via_xymon_ssh(
        stock_run):
    messages = stock_run.deployment.tap.wait_for(1)

    assert stock_run.returncode == 0, stock_run.stderr
    assert len(messages) == 1
    assert messages[0].split(b'\n', 1)[0] == CLIENT_LINE
    accepted = [line for line in stock_run.deployment.audit_lines()
                if ' accepted ' in line]
    assert len(accepted) == 1
    assert 'type=client' in accepted[0]


def test_stock_client_message_reaches_xymond_as_the_script_saved_it(
        stock_run):
    saved = (stock_run.xymontmp / ('msg.%s.txt' % HOST)).read_bytes()

    assert stock_run.deployment.tap.wait_for(1) == [saved]


def test_stock_client_reports_xymon_version_as_client_version(stock_run):
    message = stock_run.deployment.tap.wait_for(1)[0]
    lines = message.split(b'\n')

    assert b'[clientversion]' in lines
    after = lines[lines.index(b'[clientversion]') + 1]
    assert after.startswith(b'Xymon version')


def test_xymond_shows_fresh_cpu_disk_memory_after_stock_client_run(
        stock_run):
    wanted = {'cpu', 'disk', 'memory'}
    xymond = stock_run.deployment.xymond

    columns = xymond.wait_for_columns(HOST, wanted)

    assert wanted <= columns
    # host1 may have columns from other tests: they must be this run's.
    fresh = _fresh_columns(xymond, HOST, wanted, stock_run.started)
    assert set(fresh) == wanted


def test_stock_client_saves_xymond_reply_as_logfetch_config(stock_run):
    logfetch = stock_run.xymontmp / ('logfetch.%s.cfg' % HOST)

    assert logfetch.read_bytes() == HOST1_SECTION
    assert not (stock_run.xymontmp / ('logfetch.%s.cfg.tmp' % HOST)) \
        .exists()
