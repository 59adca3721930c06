"""xyssh rollout against several sshd instances standing in for devices."""

import os
import pathlib
import subprocess

import pytest

from conftest import XYMON_SSH
from xyssh.sandbox import Sshd, free_port, make_keypair

HOSTS = ('page fleet Fleet\n'
         '192.0.2.11 dev1.example.com # xyssh\n'
         '192.0.2.12 dev2.example.com # xyssh\n'
         '192.0.2.13 dev3.example.com # xyssh\n'
         'page other Other\n'
         '192.0.2.14 dev4.example.com # noconn\n')


class Fleet:
    """A server side plus device sshd instances reached with an admin key."""

    def __init__(self, make_deployment, tmp_path) -> None:
        hosts_cfg = tmp_path / 'fleet-hosts.cfg'
        hosts_cfg.write_text(HOSTS)
        host_key = tmp_path / 'deployment0' / 'sshd' / \
            'ssh_host_ed25519_key.pub'
        self.server = make_deployment(hosts_cfg=str(hosts_cfg),
                                      host_key=str(host_key))
        self.root = tmp_path / 'fleet'
        admin, admin_public = make_keypair(tmp_path / 'admin', 'admin',
                                           'admin')
        known = tmp_path / 'known_devices'
        self.ssh_config = tmp_path / 'ssh_config'
        self.devices = {}
        stanzas = []

        # dev3 has no sshd: it stands for a device that is down.
        for name in ('dev1', 'dev2', 'dev4'):
            keys = tmp_path / ('%s-authorized_keys' % name)
            keys.write_text(admin_public.read_text())
            self.devices[name] = Sshd.start(
                tmp_path / ('%s-sshd' % name), keys,
                extra_config='PermitRootLogin prohibit-password\n')

        for name in ('dev1', 'dev2', 'dev3', 'dev4'):
            port = self.devices[name].port if name in self.devices \
                else free_port()
            stanzas.append(
                'Host %s.example.com\n  HostName 127.0.0.1\n  Port %d\n'
                '  IdentityFile %s\n  IdentitiesOnly yes\n'
                '  IdentityAgent none\n  UserKnownHostsFile %s\n'
                '  StrictHostKeyChecking yes\n  ConnectTimeout 5\n'
                % (name, port, admin, known))

        self.ssh_config.write_text(''.join(stanzas))
        known.write_text(''.join(
            sshd.known_hosts_line() + '\n'
            for sshd in self.devices.values()))

    def rollout(self, *args: str) -> subprocess.CompletedProcess:
        """Run xyssh rollout against the fleet."""
        return self.server.xyssh(
            'rollout', '--server', '127.0.0.1:%d' % self.server.sshd.port,
            '--user', 'root', '--ssh-config', str(self.ssh_config),
            '--root', str(self.root / '{host}'), '--xymon-ssh', XYMON_SSH,
            *args)

    def tree(self, host: str):
        """Return the installed tree of HOST."""
        return self.root / ('%s.example.com' % host)

    def close(self) -> None:
        """Stop the device sshd instances."""
        for sshd in self.devices.values():
            sshd.stop()


@pytest.fixture
def fleet(make_deployment, tmp_path):
    """The fleet, stopped afterwards."""
    made = Fleet(make_deployment, tmp_path)
    yield made
    made.close()


def _table(result) -> 'dict[str, tuple[str, str]]':
    """Return {host: (result, detail)} from rollout's table."""
    rows = result.stdout.decode().splitlines()[1:]
    return {row.split()[0]: (row.split()[1], row.split(None, 2)[2])
            for row in rows}


def _files(tree) -> 'dict[str, tuple[int, int, bytes]]':
    """Return {path: (mode, mtime_ns, bytes)} of every file under TREE."""
    return {str(path): (path.stat().st_mode, path.stat().st_mtime_ns,
                        path.read_bytes())
            for path in sorted(tree.rglob('*')) if path.is_file()}


def test_rollout_sets_up_devices_and_a_down_one_stops_nothing(fleet):
    result = fleet.rollout('--tag', 'xyssh')
    table = _table(result)
    tree = fleet.tree('dev1')
    key = tree / 'etc' / 'xymon' / 'xyssh' / 'id_ed25519'
    status = 'status dev1.example.com.rollout green ok'
    sent = subprocess.run(
        [XYMON_SSH, '127.0.0.1', status], capture_output=True, timeout=60,
        env=dict(os.environ, XYSSH_CONFIG=str(
            tree / 'etc' / 'xymon' / 'xyssh.cfg')))

    assert result.returncode == 1
    assert sorted(table) == ['dev1.example.com', 'dev2.example.com',
                             'dev3.example.com']
    for host in ('dev1.example.com', 'dev2.example.com'):
        assert table[host][0] == 'changed'
        assert 'created key' in table[host][1]
        assert 'registered SHA256:' in table[host][1]
    assert table['dev3.example.com'][0] == 'failed'
    assert b'devices' in result.stderr
    assert oct(key.stat().st_mode & 0o777) == oct(0o600)
    assert (tree / 'etc' / 'xymon' / 'xymonclient.d' / 'xyssh.cfg') \
        .read_text() == 'XYMON="%s"\n' % XYMON_SSH
    assert sent.returncode == 0, sent.stderr
    assert fleet.server.tap.wait_for(1) == [status.encode()]


def test_a_second_rollout_changes_nothing(fleet):
    first = fleet.rollout('dev1.example.com', 'dev2.example.com')
    before = {host: _files(fleet.tree(host)) for host in ('dev1', 'dev2')}
    registry = fleet.server.xyssh('keys', 'list', '--json').stdout

    second = fleet.rollout('dev1.example.com', 'dev2.example.com')

    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert {row[0] for row in _table(second).values()} == {'unchanged'}
    assert {host: _files(fleet.tree(host))
            for host in ('dev1', 'dev2')} == before
    assert fleet.server.xyssh('keys', 'list', '--json').stdout == registry


def test_dry_run_says_what_would_change_and_changes_nothing(fleet):
    result = fleet.rollout('--page', 'other', '--dry-run')
    table = _table(result)

    assert result.returncode == 0, result.stdout + result.stderr
    assert list(table) == ['dev4.example.com']
    assert table['dev4.example.com'][0] == 'changed'
    assert 'would create key' in table['dev4.example.com'][1]
    assert 'would write' in table['dev4.example.com'][1]
    assert not fleet.tree('dev4').exists()
    assert fleet.server.xyssh('keys', 'list', '--json').stdout.strip() \
        == b'[]'


def test_tokens_mode_prints_one_token_per_device(fleet):
    # Through scripts/xyssh-rollout, with --config among its arguments.
    script = pathlib.Path(__file__).resolve().parent.parent / 'scripts' / \
        'xyssh-rollout'
    result = subprocess.run(
        [str(script), '--tag', 'xyssh', '--config', str(fleet.server.config),
         '--tokens', '--server', '127.0.0.1:%d' % fleet.server.sshd.port],
        capture_output=True, timeout=60)

    lines = result.stdout.decode().splitlines()
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in lines] == [
        'dev1.example.com', 'dev2.example.com', 'dev3.example.com']
    assert all(line.split()[1].startswith('xyssh1:') for line in lines)
    assert len({line.split()[1] for line in lines}) == 3
