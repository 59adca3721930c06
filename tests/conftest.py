"""Fixtures: a real xymond, real sshd deployments, devices with keys.

xymond is started once per test session (it takes a second or two);
each test gets its own sshd, registry, authorized_keys and recording
relay in front of xymond, so tests cannot see each other's keys or
messages.  A missing xymon or openssh-server package makes these
fixtures raise: the tests fail, they never skip.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from xyssh.sandbox import Sshd, Xymond, free_port, make_keypair, \
    ssh_command
from serving import ServeProcess
from tap import RecordingTap

DATA = pathlib.Path(__file__).parent / 'data'
BIN = pathlib.Path(sys.executable).parent
XYSSH = str(BIN / 'xyssh')
XYMON_SSH = str(BIN / 'xymon-ssh')

# The shared field-case fixture plus the host of the real client message.
HOSTS_CFG = """\
127.0.0.1   xymon-sandbox.example.com   # bbd noconn
192.0.2.10  web01.example.com   #
192.0.2.11  db01.example.com    # CLASS:dbservers
192.0.2.12  win01.example.com   # CLIENT:WIN01
192.0.2.20  host1.example.com   # noconn
192.0.2.30  quiet.example.com   # noconn
"""

# host1's own section is what xymond must send back to host1's client.
HOST1_SECTION = b'log:/var/log/host1-app.log:10240\nignore DEBUG\n'
# db01's section is padded to 40 KiB: a large reply must come back whole.
DB01_SECTION = (b'log:/var/log/messages:10240\nignore MARK\n'
                b'file:/etc/passwd\nclientversion:4.3.30\n' +
                b''.join(b'ignore padding-line-%05d\n' % number
                         for number in range(1600)))
CLIENT_LOCAL_CFG = ('[host1.example.com]\n' + HOST1_SECTION.decode() +
                    '\n[db01.example.com]\n' + DB01_SECTION.decode() +
                    '\n[linux]\nlog:/var/log/messages:10240\n'
                    'ignore MARK\n')


def pytest_configure(config) -> None:
    """Make sure the installed programs are the ones under test."""
    for program in (XYSSH, XYMON_SSH):
        if not os.path.exists(program):
            raise pytest.UsageError('%s is missing: install xyssh first '
                                    '(pip install -e .[test])' % program)


@pytest.fixture(scope='session')
def xymond(tmp_path_factory):
    """A private xymond with its client channel, for the whole session."""
    daemon = Xymond.start(tmp_path_factory.mktemp('xymond'), HOSTS_CFG,
                          CLIENT_LOCAL_CFG)
    yield daemon
    daemon.stop()


class Device:
    """A monitored machine: its key pair and its client configuration."""

    def __init__(self, deployment: 'Deployment', host: str,
                 name: str) -> None:
        self.deployment = deployment
        self.host = host
        self.name = name
        self.private, self.public = make_keypair(
            deployment.root / 'devices', name, '%s agent' % name)
        self.config = deployment.root / 'devices' / ('%s.cfg' % name)
        self.spool_base = deployment.root / 'devices' / ('%s-spool' % name)
        self.write_config()
        self.fingerprint = None

    def write_config(self, **overrides: str) -> None:
        """Write the device's [client] section, with OVERRIDES."""
        values = {
            'server': '127.0.0.1', 'port': str(self.deployment.server.port),
            'user': 'root', 'identity': str(self.private),
            'known_hosts': str(self.deployment.known_hosts),
            'timeout': '30',
            'spool': str(self.spool_base),
            'start_window': '0',
        }
        values.update(overrides)
        self.config.write_text('[client]\n' + ''.join(
            '%s = %s\n' % item for item in values.items()))

    def send(self, *args: str, stdin: bytes = b'', env: dict = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
        """Run xymon-ssh ARGS as this device."""
        environment = dict(os.environ, XYSSH_CONFIG=str(self.config))
        environment.pop('SSH_AUTH_SOCK', None)
        environment.update(env or {})
        return subprocess.run([XYMON_SSH, *args], input=stdin,
                              capture_output=True, env=environment,
                              timeout=timeout, check=False)

    def ssh(self, *command: str, stdin: bytes = b'', extra=(),
            timeout: float = 60) -> subprocess.CompletedProcess:
        """Run OpenSSH's ssh with this device's key, as a raw client."""
        argv = ssh_command(self.deployment.server, self.private,
                           self.deployment.known_hosts, extra=extra)
        return subprocess.run(argv + list(command), input=stdin,
                              capture_output=True, timeout=timeout,
                              check=False)


class Deployment:
    """A server side: config, registry, authorized_keys, relay, and the
    SSH front end devices reach: a private sshd running xyssh receive
    (FRONT "sshd") or xyssh serve (FRONT "serve")."""

    def __init__(self, root: pathlib.Path, xymond: Xymond,
                 server_options: dict, sshd_config: str,
                 front: str = 'sshd') -> None:
        self.root = root
        self.xymond = xymond
        self.front = front
        self.tap = RecordingTap(('127.0.0.1', xymond.port))
        self.hosts_cfg = xymond.home / 'etc' / 'hosts.cfg'
        self.authorized_keys = root / 'ssh' / 'authorized_keys'
        self.authorized_keys.parent.mkdir(mode=0o700)
        self.log = root / 'xyssh.log'
        self.config = root / 'xyssh.cfg'
        self.revoked_keys = root / 'registry' / 'revoked_keys'
        values = {
            'hosts_cfg': str(self.hosts_cfg),
            'xymond': self.tap.address,
            'authorized_keys': str(self.authorized_keys),
            'registry': str(root / 'registry'),
            'revoked_keys': str(self.revoked_keys),
            'log': str(self.log),
            'command': XYSSH,
        }

        if front == 'serve':
            port = free_port()
            values.update(listen='127.0.0.1:%d [::1]:%d' % (port, port),
                          serve_host_key=str(root / 'serve_host_key'),
                          status_column='')

        values.update(server_options)
        self.config.write_text('[server]\n' + ''.join(
            '%s = %s\n' % item for item in values.items()))

        if front == 'serve':
            # serve needs a registry to start; keys sync makes it.
            synced = self.xyssh('keys', 'sync')
            assert synced.returncode == 0, synced.stderr
            self.server = ServeProcess.start(XYSSH, self.config,
                                             root / 'serve_host_key', port)
            self.sshd = None
        else:
            self.server = self.sshd = Sshd.start(
                root / 'sshd', self.authorized_keys,
                extra_config=sshd_config)

        self.known_hosts = root / 'known_hosts'
        self.known_hosts.write_text(self.server.known_hosts_line() + '\n')

    def xyssh_argv(self) -> 'list[str]':
        """Return the start of an xyssh command line for this deployment."""
        return [XYSSH, '--config', str(self.config)]

    def xyssh(self, *args: str, stdin: bytes = b'',
              env: dict = None) -> subprocess.CompletedProcess:
        """Run the xyssh admin command against this deployment."""
        environment = dict(os.environ)
        environment.update(env or {})
        return subprocess.run([*self.xyssh_argv(), *args],
                              input=stdin, capture_output=True,
                              env=environment, timeout=60, check=False)

    def add_device(self, host: str, name: str = None,
                   allow: 'tuple[str, ...]' = ()) -> Device:
        """Create a device key and register it for HOST."""
        device = Device(self, host, name or host.split('.')[0])
        options = [word for item in allow for word in ('--allow', item)]
        result = self.xyssh('keys', 'add', *options, host,
                            str(device.public))
        assert result.returncode == 0, result.stderr
        device.fingerprint = result.stdout.split()[2].decode()
        return device

    def audit_lines(self) -> 'list[str]':
        """Return the audit lines written so far."""
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines()
                if ' accepted ' in line or ' rejected ' in line]

    def close(self) -> None:
        """Stop the SSH front end and the relay."""
        self.server.stop()
        self.tap.close()


@pytest.fixture
def make_deployment(tmp_path, xymond):
    """Return a factory for deployments with extra server options."""
    made = []

    def make(sshd_config: str = '', front: str = 'sshd',
             **server_options: str) -> Deployment:
        root = tmp_path / ('deployment%d' % len(made))
        root.mkdir()
        deployment = Deployment(root, xymond, server_options, sshd_config,
                                front)
        made.append(deployment)
        return deployment

    yield make

    for deployment in made:
        deployment.close()


@pytest.fixture(scope='session')
def root_owned_xyssh():
    """The xyssh program in a directory sshd accepts for an
    AuthorizedKeysCommand: root-owned and unwritable by others up to /.

    A checkout under /tmp (1777) or a home directory fails that test, so
    the program is copied into a private directory under /run, the way an
    administrator installs it under /opt.  The copy keeps its #! line, so
    it runs the same interpreter and package as XYSSH.
    """
    from xyssh.admin import unsafe_command_path

    directory = tempfile.mkdtemp(prefix='xyssh-tests-', dir='/run')
    os.chmod(directory, 0o755)
    program = os.path.join(directory, 'xyssh')
    shutil.copyfile(XYSSH, program)
    os.chmod(program, 0o755)
    unsafe = unsafe_command_path(program)
    if unsafe is not None:
        shutil.rmtree(directory)
        raise RuntimeError('no place for a root-owned xyssh: %s' % unsafe)
    yield program
    shutil.rmtree(directory)


@pytest.fixture
def make_lookup_deployment(make_deployment, tmp_path, root_owned_xyssh):
    """Return a factory for deployments whose sshd asks "xyssh keys
    lookup" for every key (authorized_keys is not read at all)."""
    made = []

    def make(sshd_extra: str = '', **server_options: str) -> Deployment:
        # sshd_config must name xyssh.cfg before the deployment writes
        # it: a fixed path, linked to the real file afterwards.
        config = tmp_path / ('lookup%d.cfg' % len(made))
        deployment = make_deployment(
            sshd_config='AuthorizedKeysFile none\n'
            'AuthorizedKeysCommand %s --config %s keys lookup %%u %%f %%t '
            '%%k\nAuthorizedKeysCommandUser root\nLoginGraceTime 10\n'
            % (root_owned_xyssh, config) + sshd_extra, lookup='yes',
            **server_options)
        os.symlink(deployment.config, config)
        made.append(deployment)
        return deployment

    return make


@pytest.fixture
def deployment(make_deployment):
    """A deployment with default server settings."""
    return make_deployment()


@pytest.fixture
def web01(deployment):
    """Device KEY_A, registered for web01.example.com."""
    return deployment.add_device('web01.example.com')


@pytest.fixture
def db01(deployment):
    """Device KEY_B, registered for db01.example.com."""
    return deployment.add_device('db01.example.com')


@pytest.fixture
def win01(deployment):
    """Device KEY_C, registered for win01.example.com (CLIENT:WIN01)."""
    return deployment.add_device('win01.example.com')


def wait_until(predicate, timeout: float = 20):
    """Poll PREDICATE (bounded); return its last value."""
    import time

    deadline = time.monotonic() + timeout
    value = predicate()

    while not value and time.monotonic() < deadline:
        time.sleep(0.05)
        value = predicate()

    return value


def assert_rejected(result, deployment, *words: str) -> None:
    """REJ: non-zero, stdout empty, each of WORDS on stderr, nothing sent."""
    assert result.returncode != 0
    assert result.stdout == b''
    for word in words:
        assert word.encode() in result.stderr, result.stderr
    assert deployment.tap.connections == 0
