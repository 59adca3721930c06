"""Key registry and authorized_keys, through the real xyssh keys CLI."""

import base64
import hashlib
import json
import os
import pathlib
import pwd
import random
import re
import shlex
import shutil
import subprocess
import tempfile
import time

import asyncssh
import pytest

from conftest import HOSTS_CFG, XYSSH, Device
from xyssh import keys as xkeys
from xyssh.admin import KeyAdmin, probe_shell
from xyssh.keyline import shell_quote
from xyssh.config import load_config
from xyssh.sandbox import make_keypair

OPTIONS = ('restrict,no-pty,no-port-forwarding,no-agent-forwarding,'
           'no-X11-forwarding,no-user-rc')
NOBODY = pwd.getpwnam('nobody')
HOSTS = [line.split()[1] for line in HOSTS_CFG.splitlines() if line]
# tempfile.mkstemp's names: the prefix, then 8 of [a-z0-9_].
TEMP_NAME = re.compile(r'\.authorized_keys\.xyssh-[a-z0-9_]{8}\Z')
CREATED = re.compile(r'[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:'
                     r'[0-9]{2}Z\Z')
WEB01 = 'web01.example.com'
DB01 = 'db01.example.com'
EXIT_AUTH = 23

# Lines of another admin around the block; xyssh must never touch them.
HEADER = (b'# root access for the admin team\n'
          b'from="127.0.0.1" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDVA9iTj'
          b'juMoehPcFr25JoReHPIGPrA0T/6YeWOGhxnN admin@bastion\n'
          b'\n')
TRAILER = (b'\n'
           b'# keep this comment   with its    spaces\t\n'
           b'\n\n')


def keygen_fingerprint(path) -> str:
    """Return the SHA256 fingerprint ssh-keygen -lf prints for PATH."""
    result = subprocess.run(['ssh-keygen', '-lf', str(path)],
                            capture_output=True, text=True, check=True)
    return result.stdout.split()[1]


def fingerprint_of_key(text: str) -> str:
    """Return the SHA256 fingerprint of "TYPE BASE64 [COMMENT]"."""
    digest = hashlib.sha256(base64.b64decode(text.split()[1])).digest()
    return 'SHA256:' + base64.b64encode(digest).decode().rstrip('=')


def registry_states(registry) -> 'dict[str, str]':
    """Return {fingerprint: state} read from the files under keys/."""
    directory = os.path.join(registry, 'keys')
    states = {}
    for name in os.listdir(directory):
        if name.startswith('.'):
            continue
        with open(os.path.join(directory, name), encoding='utf-8') as file:
            fields = dict(line.split(': ', 1) for line in
                          file.read().split('\n') if ': ' in line)
        states[fields['fingerprint']] = fields['state']
    return states


def umask_002() -> None:
    """Set the child's umask to 002 (group-writable by default)."""
    os.umask(0o002)


class Server:
    """The server side without sshd: config, hosts.cfg, registry, file."""

    def __init__(self, root) -> None:
        self.root = root
        self.hosts_cfg = root / 'hosts.cfg'
        self.hosts_cfg.write_text(HOSTS_CFG)
        self.home = root / 'home'
        self.home.mkdir()
        self.ssh_dir = self.home / '.ssh'
        self.ssh_dir.mkdir(mode=0o700)
        self.authorized_keys = self.ssh_dir / 'authorized_keys'
        self.registry = root / 'registry'
        self.registry.mkdir(mode=0o700)
        self.log = root / 'xyssh.log'
        self.keydir = root / 'pubkeys'
        self.config = root / 'xyssh.cfg'
        self.write_config()

    def write_config(self, **overrides: str) -> None:
        """Write the [server] section, with OVERRIDES."""
        values = {'hosts_cfg': str(self.hosts_cfg),
                  'authorized_keys': str(self.authorized_keys),
                  'registry': str(self.registry), 'log': str(self.log),
                  'revoked_keys': str(self.registry / 'revoked_keys'),
                  'command': XYSSH}
        values.update(overrides)
        self.config.write_text('[server]\n' + ''.join(
            '%s = %s\n' % item for item in values.items()))

    def argv(self, *args: str) -> 'list[str]':
        """Return the xyssh command line for ARGS."""
        return [XYSSH, '--config', str(self.config), *args]

    def run(self, *args: str, umask: bool = False,
            cwd=None) -> subprocess.CompletedProcess:
        """Run xyssh ARGS and wait for it."""
        return subprocess.run(self.argv(*args), capture_output=True,
                              timeout=60, check=False, cwd=cwd,
                              preexec_fn=umask_002 if umask else None)

    def ok(self, *args: str) -> str:
        """Run xyssh ARGS, insist on exit 0, return stdout as text."""
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout.decode()

    def new_key(self, name: str, comment: str = ''):
        """Make a key pair with ssh-keygen; return the .pub path."""
        return make_keypair(self.keydir, name, comment or name)[1]

    def register(self, host: str, *pubs) -> 'list[str]':
        """Register PUBS for HOST in-process (fast set-up); return fps."""
        admin = KeyAdmin(load_config(str(self.config)))
        raw = b''.join(pub.read_bytes() for pub in pubs)
        return [record.fingerprint for record in
                admin.add(host, raw, 'set-up')]

    def snapshot(self) -> tuple:
        """Return the hash of authorized_keys and the registry's files."""
        try:
            digest = hashlib.sha256(
                self.authorized_keys.read_bytes()).hexdigest()
        except FileNotFoundError:
            digest = None
        files = []
        for directory, _, names in os.walk(self.registry):
            for name in names:
                path = os.path.join(directory, name)
                with open(path, 'rb') as handle:
                    files.append((os.path.relpath(path, self.registry),
                                  hashlib.sha256(handle.read())
                                  .hexdigest()))
        return digest, sorted(files)

    def lines(self) -> 'list[str]':
        """Return the lines of authorized_keys."""
        text = self.authorized_keys.read_bytes().decode('utf-8', 'replace')
        return text.split('\n')

    def managed(self) -> 'list[str]':
        """Return the lines between the BEGIN and END marks."""
        lines = self.lines()
        start = lines.index(xkeys.BEGIN_MARK)
        return lines[start + 1:lines.index(xkeys.END_MARK, start)]

    def listing(self) -> 'list[dict]':
        """Return `keys list --json`."""
        return json.loads(self.ok('keys', 'list', '--json'))

    def expected_line(self, fingerprint: str, key_text: str,
                      config=None) -> str:
        """Return the managed line the brief specifies for one key."""
        return '%s,command="%s receive --config %s --fp %s" %s' % (
            OPTIONS, XYSSH, config or self.config, fingerprint, key_text)


@pytest.fixture
def server(tmp_path):
    """A fresh server side in tmp_path."""
    return Server(tmp_path)


def pub_text(pub) -> str:
    """Return a .pub file's single key line without its newline."""
    return pub.read_text().strip('\n')


def assert_refused(result, fragment: str) -> None:
    """Exit 1, nothing on stdout, one "xyssh: " line naming FRAGMENT."""
    assert result.returncode == 1, result.stdout
    assert result.stdout == b''
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith('xyssh: '), lines
    assert fragment in lines[0], lines


# keys add: the managed line.

def test_add_writes_one_restricted_forced_command_line_in_block(server):
    pub = server.new_key('k1', 'k1 agent')

    result = server.run('keys', 'add', WEB01, str(pub))

    assert result.returncode == 0, result.stderr
    fingerprint = keygen_fingerprint(pub)
    assert result.stdout.decode() == 'added ssh-ed25519 %s for %s\n' % (
        fingerprint, WEB01)
    assert server.authorized_keys.read_text() == '\n'.join([
        xkeys.BEGIN_MARK, server.expected_line(fingerprint, pub_text(pub)),
        xkeys.END_MARK, ''])


def test_add_with_relative_config_writes_absolute_config_path(server):
    pub = server.new_key('k1')

    result = subprocess.run([XYSSH, '--config', 'xyssh.cfg', 'keys', 'add',
                             WEB01, str(pub)], cwd=server.root,
                            capture_output=True, timeout=60, check=False)

    assert result.returncode == 0, result.stderr
    assert server.managed() == [server.expected_line(
        keygen_fingerprint(pub), pub_text(pub))]


def test_add_quotes_config_path_with_space_so_shell_gets_argv(tmp_path):
    root = tmp_path / 'etc xyssh'
    root.mkdir()
    server = Server(root)
    pub = server.new_key('k1')

    server.ok('keys', 'add', WEB01, str(pub))

    [line] = server.managed()
    command = re.search(r'command="((?:[^"\\]|\\.)*)"', line).group(1)
    assert shlex.split(command) == [XYSSH, 'receive', '--config',
                                    str(server.config), '--fp',
                                    keygen_fingerprint(pub)]
    assert server.run('keys', 'check').returncode == 0


def test_add_records_host_as_hosts_cfg_spells_it(server):
    pub = server.new_key('k1')

    out = server.ok('keys', 'add', 'WEB01.Example.COM', str(pub))

    assert out.endswith(' for web01.example.com\n')
    assert [entry['host'] for entry in server.listing()] == [WEB01]


# Lines around the block.

def test_add_and_revoke_keep_lines_around_block_byte_for_byte(server):
    first = server.new_key('k1')
    second = server.new_key('k2')
    server.authorized_keys.write_bytes(
        HEADER + (xkeys.BEGIN_MARK + '\n' + xkeys.END_MARK + '\n').encode()
        + TRAILER)

    server.ok('keys', 'add', WEB01, str(first))
    server.ok('keys', 'add', DB01, str(second))
    after_add = server.authorized_keys.read_bytes()
    server.ok('keys', 'revoke', keygen_fingerprint(first))
    after_revoke = server.authorized_keys.read_bytes()

    for data, count in ((after_add, 2), (after_revoke, 1)):
        assert data.startswith(HEADER + xkeys.BEGIN_MARK.encode() + b'\n')
        assert data.endswith(b'\n' + xkeys.END_MARK.encode() + b'\n' +
                             TRAILER)
        assert data.count(b'\n') == (HEADER + TRAILER).count(b'\n') + \
            2 + count
    assert pub_text(first).encode() not in after_revoke
    assert pub_text(second).encode() in after_revoke


def test_add_to_file_without_block_keeps_it_and_appends_block(server):
    server.authorized_keys.write_bytes(HEADER)
    pub = server.new_key('k1')

    server.ok('keys', 'add', WEB01, str(pub))

    data = server.authorized_keys.read_bytes()
    assert data.startswith(HEADER + xkeys.BEGIN_MARK.encode() + b'\n')
    assert data.endswith(xkeys.END_MARK.encode() + b'\n')


@pytest.mark.parametrize('line', [
    b'# page one\x0cpage two\n',
    b'# old mac note\rsecond half\n',
    '# note\u2028more\n'.encode(),
], ids=['form-feed', 'lone-cr', 'u2028'])
def test_add_keeps_other_line_with_other_line_break_byte_for_byte(
        server, line):
    server.authorized_keys.write_bytes(HEADER + line)

    server.ok('keys', 'add', WEB01, str(server.new_key('k1')))

    assert server.authorized_keys.read_bytes().startswith(HEADER + line)


# Modes and owners.

def test_add_makes_file_0600_and_keeps_its_owner_under_umask_002(server):
    os.chown(server.ssh_dir, NOBODY.pw_uid, NOBODY.pw_gid)
    server.authorized_keys.write_bytes(HEADER)
    os.chown(server.authorized_keys, NOBODY.pw_uid, NOBODY.pw_gid)
    os.chmod(server.authorized_keys, 0o644)
    pub = server.new_key('k1')

    added = server.run('keys', 'add', WEB01, str(pub), umask=True)
    status = os.stat(server.authorized_keys)
    revoked = server.run('keys', 'revoke', keygen_fingerprint(pub),
                         umask=True)
    later = os.stat(server.authorized_keys)

    assert (added.returncode, revoked.returncode) == (0, 0)
    for result in (status, later):
        assert oct(result.st_mode & 0o7777) == oct(0o600)
        assert (result.st_uid, result.st_gid) == (NOBODY.pw_uid,
                                                  NOBODY.pw_gid)


def test_add_gives_new_file_the_owner_of_its_directory(server):
    os.chown(server.ssh_dir, NOBODY.pw_uid, NOBODY.pw_gid)

    result = server.run('keys', 'add', WEB01, str(server.new_key('k1')),
                        umask=True)

    assert result.returncode == 0, result.stderr
    status = os.stat(server.authorized_keys)
    assert (status.st_uid, status.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert oct(status.st_mode & 0o7777) == oct(0o600)


def test_add_creates_missing_ssh_dir_0700_owned_like_its_parent(server):
    home = server.root / 'service'
    home.mkdir()
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    path = home / '.ssh' / 'authorized_keys'
    server.write_config(authorized_keys=str(path))

    result = server.run('keys', 'add', WEB01, str(server.new_key('k1')),
                        umask=True)

    assert result.returncode == 0, result.stderr
    for item, mode in ((path.parent, 0o700), (path, 0o600)):
        status = os.stat(item)
        assert oct(status.st_mode & 0o7777) == oct(mode)
        assert (status.st_uid, status.st_gid) == (NOBODY.pw_uid,
                                                  NOBODY.pw_gid)


def test_registry_records_take_owner_of_registry_dir_when_run_as_root(
        server):
    os.chown(server.registry, NOBODY.pw_uid, NOBODY.pw_gid)

    result = server.run('keys', 'add', WEB01, str(server.new_key('k1')),
                        umask=True)

    assert result.returncode == 0, result.stderr
    directory = server.registry / 'keys'
    [record] = list(directory.iterdir())
    for item, mode in ((directory, 0o700), (record, 0o600)):
        status = os.stat(item)
        assert oct(status.st_mode & 0o7777) == oct(mode)
        assert (status.st_uid, status.st_gid) == (NOBODY.pw_uid,
                                                  NOBODY.pw_gid)


def test_write_does_not_follow_symlink_planted_at_temp_name(server,
                                                             tmp_path):
    victim = tmp_path / 'victim'
    victim.write_text('precious\n')
    planted = server.ssh_dir / ('.authorized_keys.xyssh-%d' % os.getpid())
    planted.symlink_to(victim)

    xkeys.write_authorized_keys(str(server.authorized_keys), b'new\n')

    assert victim.read_text() == 'precious\n'
    assert not server.authorized_keys.is_symlink()
    assert server.authorized_keys.read_bytes() == b'new\n'


# keys add: refusals, before anything is written.

def _write(server, name: str, data: bytes):
    """Write DATA as key file NAME; return its path."""
    path = server.root / name
    path.write_bytes(data)
    return path


def _fresh(server) -> bytes:
    """Return the line of a new, unregistered key, with its newline."""
    return server.new_key('fresh', 'fresh key').read_bytes()


def _certificate(server):
    """Return a certificate for a new key."""
    ca = make_keypair(server.keydir, 'ca', 'ca')[0]
    pub = server.new_key('certified')
    subprocess.run(['ssh-keygen', '-q', '-s', str(ca), '-I', 'id', '-n',
                    'xymon', str(pub)], check=True, capture_output=True)
    return pub.with_name('certified-cert.pub')


def _utf16(server):
    """Return a key file converted to UTF-16LE with iconv (C16)."""
    pub = server.new_key('k3', 'win01 agent')
    data = subprocess.run(['iconv', '-f', 'UTF-8', '-t', 'UTF-16LE',
                           str(pub)], capture_output=True,
                          check=True).stdout
    return _write(server, 'k3-utf16.pub', data)


def _damaged(server, cut):
    """Return a key file whose base64 CUT damaged."""
    key_type, data, comment = _fresh(server).split(None, 2)
    return _write(server, 'damaged.pub', b' '.join(
        [key_type, cut(data), comment]))


REFUSALS = {
    'duplicate-same-host': (
        lambda s: [WEB01, str(s.known)], 'already registered'),
    'duplicate-other-host': (
        lambda s: [DB01, str(s.known)], 'already registered'),
    'duplicate-within-file': (
        lambda s: [WEB01, str(_write(s, 'two.pub', _fresh(s) * 2))],
        'appears twice'),
    'new-key-beside-registered': (
        lambda s: [WEB01, str(_write(s, 'mix.pub', _fresh(s) +
                                     s.known.read_bytes()))],
        'already registered'),
    'cr-inside-line': (
        lambda s: [WEB01, str(_write(s, 'cr.pub', _fresh(s).replace(
            b' fresh', b'\r fresh')))], 'control character'),
    'nul-bytes': (
        lambda s: [WEB01, str(_write(s, 'nul.pub', _fresh(s) + b'\0\n'))],
        'unsupported encoding'),
    'utf16le-iconv': (
        lambda s: [WEB01, str(_utf16(s))], 'unsupported encoding'),
    'utf16-bom': (
        lambda s: [WEB01, str(_write(s, 'bom16.pub', b'\xff\xfe' +
                                     _fresh(s).decode()
                                     .encode('utf-16-le')))],
        'unsupported encoding'),
    'latin1': (
        lambda s: [WEB01, str(_write(s, 'latin1.pub', _fresh(s).replace(
            b'fresh key', b'J\xfcrgen')))], 'unsupported encoding'),
    'options-prefix': (
        lambda s: [WEB01, str(_write(s, 'opts.pub', b'command="x" ' +
                                     _fresh(s)))], 'extra fields'),
    'damaged-base64': (
        lambda s: [WEB01, str(_damaged(s, lambda data: data[:20] + b'!' +
                                       data[21:]))],
        'not a valid public key'),
    'truncated-base64': (
        lambda s: [WEB01, str(_damaged(s, lambda data: data[:-8]))],
        'not a valid public key'),
    'type-mismatch': (
        lambda s: [WEB01, str(_write(s, 'rsa.pub', _fresh(s).replace(
            b'ssh-ed25519', b'ssh-rsa', 1)))], 'line 1'),
    'certificate': (
        lambda s: [WEB01, str(_certificate(s))], 'certificate'),
    'empty-file': (
        lambda s: [WEB01, str(_write(s, 'empty.pub', b''))],
        'no public key'),
    'comments-only': (
        lambda s: [WEB01, str(_write(s, 'comments.pub', b'# k\n\n'))],
        'no public key'),
    'host-not-in-hosts-cfg': (
        lambda s: ['nohost.example.com', str(s.new_key('k'))],
        'nohost.example.com is not a host'),
    'short-name-of-fqdn-host': (
        lambda s: ['web01', str(s.new_key('k'))], 'web01 is not a host'),
    'allow-extcombo': (
        lambda s: ['--allow', 'extcombo', WEB01, str(s.new_key('k'))],
        "'extcombo' cannot be granted"),
    'allow-nonsense': (
        lambda s: ['--allow', 'nonsense', WEB01, str(s.new_key('k'))],
        "'nonsense' cannot be granted"),
}


@pytest.mark.parametrize('case', sorted(REFUSALS))
def test_add_refuses_bad_input_before_writing_anything(server, case):
    server.known = server.new_key('known', 'known key')
    server.register(WEB01, server.known)
    build, fragment = REFUSALS[case]
    args = build(server)
    before = server.snapshot()

    result = server.run('keys', 'add', *args)

    assert_refused(result, fragment)
    assert server.snapshot() == before


def test_add_keeps_another_admins_latin1_line_byte_for_byte(server):
    other = HEADER + b'# J\xfcrgen (Latin-1)\n'
    server.authorized_keys.write_bytes(other)

    server.ok('keys', 'add', WEB01, str(server.new_key('k1')))

    assert server.authorized_keys.read_bytes().startswith(other)
    assert len(server.managed()) == 1


def test_add_accepts_key_file_with_utf8_byte_order_mark(server):
    pub = server.new_key('k1', 'saved by notepad')
    marked = _write(server, 'bom8.pub', b'\xef\xbb\xbf' + pub.read_bytes())

    server.ok('keys', 'add', WEB01, str(marked))

    assert server.managed() == [server.expected_line(
        keygen_fingerprint(pub), pub_text(pub))]


@pytest.mark.parametrize('content', [
    HEADER + xkeys.BEGIN_MARK.encode() + b'\n',
], ids=['begin-without-end'])
def test_add_refused_for_unusable_file_registers_nothing(server, content):
    server.register(DB01, server.new_key('db'))
    server.authorized_keys.write_bytes(content)
    before = server.snapshot()

    result = server.run('keys', 'add', WEB01, str(server.new_key('k1')))

    assert result.stderr.startswith(b'xyssh: ')
    assert len(result.stderr.splitlines()) == 1
    assert server.snapshot() == before


# keys add: accepted input (C16).

def test_add_accepts_crlf_key_file_and_writes_lf_only(server):
    pub = server.new_key('k1', 'ops team laptop 2024')
    crlf = _write(server, 'k1-crlf.pub', pub.read_bytes().replace(
        b'\n', b'\r\n'))

    server.ok('keys', 'add', WEB01, str(crlf))

    assert server.managed() == [server.expected_line(
        keygen_fingerprint(pub), pub_text(pub))]
    assert b'\r' not in server.authorized_keys.read_bytes()


def test_add_accepts_key_file_without_final_newline(server):
    pub = server.new_key('k2', 'db01 agent')
    bare = _write(server, 'k2-nonl.pub', pub.read_bytes().rstrip(b'\n'))

    out = server.ok('keys', 'add', DB01, str(bare))

    assert out == 'added ssh-ed25519 %s for %s\n' % (
        keygen_fingerprint(pub), DB01)
    assert server.managed() == [server.expected_line(
        keygen_fingerprint(pub), pub_text(pub))]


def test_add_registers_every_key_of_a_multi_key_file(server):
    pubs = [server.new_key('k%d' % number) for number in range(3)]
    data = (b'# three agents\n' + pubs[0].read_bytes() + b'\n' +
            pubs[1].read_bytes().replace(b'\n', b'\r\n') +
            pubs[2].read_bytes().rstrip(b'\n'))

    out = server.ok('keys', 'add', WEB01, str(_write(server, 'all.pub',
                                                      data)))

    fingerprints = [keygen_fingerprint(pub) for pub in pubs]
    assert out.splitlines() == ['added ssh-ed25519 %s for %s' % (
        fingerprint, WEB01) for fingerprint in fingerprints]
    assert sorted(entry['fingerprint'] for entry in server.listing()) == \
        sorted(fingerprints)
    assert sorted(server.managed()) == sorted(
        server.expected_line(fingerprint, pub_text(pub))
        for fingerprint, pub in zip(fingerprints, pubs))


def test_add_keeps_comment_with_spaces_exactly(server):
    pub = server.new_key('k1', 'ops team laptop 2024')

    server.ok('keys', 'add', WEB01, str(pub))

    [line] = server.managed()
    assert line.endswith(' ops team laptop 2024')
    assert [entry['comment'] for entry in server.listing()] == [
        'ops team laptop 2024']


def test_c16_rollout_leaves_ascii_lf_file_one_key_per_line(server):
    first = server.new_key('k1', 'ops team laptop 2024')
    second = server.new_key('k2', 'db01 agent')
    crlf = _write(server, 'k1-crlf.pub',
                  first.read_bytes().replace(b'\n', b'\r\n'))
    bare = _write(server, 'k2-nonl.pub', second.read_bytes().rstrip(b'\n'))

    results = [server.run('keys', 'add', host, str(path)) for host, path in
               ((WEB01, crlf), (DB01, bare), (WEB01, first),
                (DB01, _utf16(server)))]

    assert [result.returncode for result in results] == [0, 0, 1, 1]
    assert b'already registered' in results[2].stderr
    assert b'unsupported encoding' in results[3].stderr
    data = server.authorized_keys.read_bytes()
    assert data.decode('ascii').endswith('\n')
    assert b'\r' not in data
    assert sorted(server.managed()) == sorted(
        server.expected_line(keygen_fingerprint(pub), pub_text(pub))
        for pub in (first, second))


def test_add_refuses_or_registers_both_of_two_keys_joined_on_one_line(
        server):
    first = server.new_key('k1', 'ops team laptop 2024')
    second = server.new_key('k2', 'db01 agent')
    joined = _write(server, 'joined.pub',
                    first.read_bytes().rstrip(b'\n') + second.read_bytes())
    before = server.snapshot()

    result = server.run('keys', 'add', WEB01, str(joined))

    if result.returncode:
        assert server.snapshot() == before
    else:
        assert sorted(entry['fingerprint'] for entry in server.listing()) \
            == sorted(keygen_fingerprint(pub) for pub in (first, second))


def test_add_with_unicode_line_separator_in_comment_keeps_check_clean(
        server):
    key_type, data = pub_text(server.new_key('k1')).split()[:2]
    path = _write(server, 'u2028.pub', ('%s %s ops\u2028team\n' % (
        key_type, data)).encode())

    result = server.run('keys', 'add', WEB01, str(path))

    if result.returncode == 0:
        assert [entry['comment'] for entry in server.listing()] == [
            'ops\u2028team']
        assert server.run('keys', 'check').returncode == 0
    else:
        assert_refused(result, 'line 1')


def test_add_allow_query_is_recorded_and_listed(server):
    server.ok('keys', 'add', '--allow', 'query', WEB01,
              str(server.new_key('k1')))

    [entry] = server.listing()
    assert entry['allow'] == ['status', 'combo', 'client', 'data', 'query']


# keys list and keys revoke.

def test_list_shows_host_fingerprint_type_state_created_comment(server):
    pub = server.new_key('k1', 'ops team laptop 2024')
    server.ok('keys', 'add', WEB01, str(pub))

    header, row = server.ok('keys', 'list').splitlines()

    assert header.split() == ['HOST', 'FINGERPRINT', 'TYPE', 'STATE',
                              'CREATED', 'LAST', 'SEEN', 'EXPIRES',
                              'COMMENT']
    words = row.split()
    assert words[:4] == [WEB01, keygen_fingerprint(pub), 'ssh-ed25519',
                         'active']
    assert CREATED.match(words[4])
    assert words[5:7] == ['never', '-']
    assert row.endswith('  ops team laptop 2024')


def test_list_json_gives_every_field(server):
    pub = server.new_key('k1', 'db01 agent')
    server.ok('keys', 'add', DB01, str(pub))

    [entry] = server.listing()

    assert CREATED.match(entry.pop('created'))
    assert entry == {'host': DB01, 'fingerprint': keygen_fingerprint(pub),
                     'type': 'ssh-ed25519', 'state': 'active',
                     'allow': ['status', 'combo', 'client', 'data'],
                     'comment': 'db01 agent', 'last_seen': None,
                     'expires': None}


def test_revoke_marks_key_revoked_and_removes_its_line(server):
    gone = server.new_key('k1')
    kept = server.new_key('k2')
    server.ok('keys', 'add', WEB01, str(gone))
    server.ok('keys', 'add', DB01, str(kept))
    fingerprint = keygen_fingerprint(gone)

    out = server.ok('keys', 'revoke', fingerprint)

    assert out == 'revoked %s of %s\n' % (fingerprint, WEB01)
    states = {entry['fingerprint']: entry['state']
              for entry in server.listing()}
    assert states == {fingerprint: 'revoked',
                      keygen_fingerprint(kept): 'active'}
    assert server.managed() == [server.expected_line(
        keygen_fingerprint(kept), pub_text(kept))]
    assert server.run('keys', 'check').returncode == 0


@pytest.mark.parametrize('fingerprint, fragment', [
    ('SHA256:' + 'A' * 43, 'no key SHA256:%s in the registry' % ('A' * 43)),
    ('SHA256:abc', 'is not a SHA256:... fingerprint'),
    ('SHA256:' + 'A' * 43 + '=', 'is not a SHA256:... fingerprint'),
    ('MD5:08:4b:b2:f0:cb:10:1c:30:c1:e4:a3:5a:4d:f2:9e:5b',
     'is not a SHA256:... fingerprint'),
    ('../../etc/passwd', 'is not a SHA256:... fingerprint'),
], ids=['unknown', 'short', 'padded', 'md5', 'path'])
def test_revoke_refuses_unknown_or_malformed_fingerprint(server,
                                                         fingerprint,
                                                         fragment):
    server.register(WEB01, server.new_key('k1'))
    before = server.snapshot()

    result = server.run('keys', 'revoke', fingerprint)

    assert_refused(result, fragment)
    assert server.snapshot() == before


# keys check and keys sync.

@pytest.fixture
def checked(server):
    """Two keys registered (in-process) below another admin's lines.

    The file is then: lines 1-3 the header, 4 BEGIN, 5 db01's line,
    6 web01's line, 7 END ("keys add" appends, sync sorts by host: the
    same order either way).
    """
    server.authorized_keys.write_bytes(HEADER)
    server.web = server.new_key('web', 'web01 agent')
    server.db = server.new_key('db', 'db01 agent')
    server.register(DB01, server.db)
    server.register(WEB01, server.web)
    server.web_fp = keygen_fingerprint(server.web)
    return server


def _edit(server, change) -> None:
    """Replace authorized_keys by CHANGE(list of its lines)."""
    lines = server.lines()
    change(lines)
    server.authorized_keys.write_text('\n'.join(lines))


def _revoked_still_in_file(server) -> None:
    """Revoke web01's key, then put the old file back."""
    old = server.authorized_keys.read_bytes()
    server.ok('keys', 'revoke', server.web_fp)
    server.authorized_keys.write_bytes(old)


def _unregistered_line(server, lines) -> None:
    """Add by hand, inside the block, a managed-looking stranger."""
    stranger = server.new_key('stranger')
    lines.insert(6, server.expected_line(keygen_fingerprint(stranger),
                                         pub_text(stranger)))


IN_BLOCK = {
    'command-removed': (
        lambda s: _edit(s, lambda lines: lines.__setitem__(5, re.sub(
            r',command="[^"]*"', '', lines[5]))),
        r'line 6: no command= option'),
    'restrict-removed': (
        lambda s: _edit(s, lambda lines: lines.__setitem__(
            5, lines[5].replace('restrict,', '', 1))),
        r'line 6: no restrict option'),
    'unknown-options': (
        lambda s: _edit(s, lambda lines: lines.__setitem__(
            5, 'from="127.0.0.1",permitopen="127.0.0.1:22",' + lines[5])),
        r'line 6: unexpected options from,permitopen'),
    'unregistered-key-in-block': (
        lambda s: _edit(s, lambda lines: _unregistered_line(s, lines)),
        r'line 7: key SHA256:\S+ is not in the registry'),
    'revoked-key-still-in-file': (
        _revoked_still_in_file,
        r'line 6: key {fp} of web01\.example\.com is revoked but still '
        r'in the file'),
    'registry-key-missing': (
        lambda s: _edit(s, lambda lines: lines.pop(5)),
        r'authorized_keys: key {fp} of web01\.example\.com is missing'),
}


@pytest.mark.parametrize('case', sorted(IN_BLOCK))
def test_check_reports_block_problem_and_sync_repairs_it(checked, case):
    assert checked.run('keys', 'check').stdout == \
        b'authorized_keys matches the registry\n'
    damage, pattern = IN_BLOCK[case]
    damage(checked)

    result = checked.run('keys', 'check')
    checked.ok('keys', 'sync')
    repaired = checked.run('keys', 'check')

    assert result.returncode == 1
    assert re.search(pattern.format(fp=re.escape(checked.web_fp)),
                     result.stdout.decode()), result.stdout
    assert repaired.returncode == 0, repaired.stdout
    assert checked.authorized_keys.read_bytes().startswith(HEADER)


def test_check_reports_duplicate_of_managed_line_outside_block(checked):
    _edit(checked, lambda lines: lines.insert(7, lines[5]))

    result = checked.run('keys', 'check')

    assert result.returncode == 1
    out = result.stdout.decode()
    assert 'line 8: duplicate of line 6 (%s)' % checked.web_fp in out
    assert 'line 8: registered key %s of %s stands outside the managed ' \
        'block' % (checked.web_fp, WEB01) in out


def _move_web_key_outside(server, lines) -> None:
    """Take web01's line out of the block; put its bare key after END."""
    lines.pop(5)
    lines.insert(6, pub_text(server.web))


def test_check_passes_on_clean_setup_made_by_cli(server):
    server.authorized_keys.write_bytes(HEADER)
    server.ok('keys', 'add', DB01, str(server.new_key('db')))
    server.ok('keys', 'add', WEB01, str(server.new_key('web')))

    result = server.run('keys', 'check')

    assert result.returncode == 0
    assert result.stdout == b'authorized_keys matches the registry\n'
    assert len(server.managed()) == 2


def test_check_reports_registered_key_standing_outside_block(checked):
    _edit(checked, lambda lines: _move_web_key_outside(checked, lines))

    result = checked.run('keys', 'check')

    assert result.returncode == 1
    assert 'line 7: registered key %s of %s stands outside the managed ' \
        'block' % (checked.web_fp, WEB01) in result.stdout.decode()


def test_sync_leaves_lines_outside_block_alone_so_check_still_fails(
        checked):
    # By design xyssh never edits outside its block: a registered key
    # standing there (with no forced command) must be removed by hand.
    _edit(checked, lambda lines: lines.append(pub_text(checked.web)))
    outside = checked.authorized_keys.read_bytes().split(
        xkeys.END_MARK.encode())[1]

    checked.ok('keys', 'sync')
    result = checked.run('keys', 'check')

    assert result.returncode == 1
    assert b'stands outside the managed block' in result.stdout
    assert checked.authorized_keys.read_bytes().endswith(outside + b'\n')


def test_check_reports_active_key_whose_host_left_hosts_cfg(checked):
    checked.hosts_cfg.write_text(''.join(
        line + '\n' for line in HOSTS_CFG.splitlines()
        if WEB01 not in line))

    result = checked.run('keys', 'check')
    checked.ok('keys', 'revoke', checked.web_fp)
    after_revoke = checked.run('keys', 'check')

    assert result.returncode == 1
    assert 'key %s: host %s is not in hosts.cfg' % (
        checked.web_fp, WEB01) in result.stdout.decode()
    assert after_revoke.returncode == 0, after_revoke.stdout


def test_check_warns_about_unforced_key_outside_block_but_passes(
        checked):
    # An admin's own key outside the block is legitimate, but a key with
    # no command= there gives a shell: said on stderr, not a failure.
    other = checked.new_key('admin')
    _edit(checked, lambda lines: lines.append(pub_text(other)))

    result = checked.run('keys', 'check')

    assert result.returncode == 0
    assert result.stdout == b'authorized_keys matches the registry\n'
    warnings = [line for line in result.stderr.decode().splitlines()
                if fingerprint_of_key(pub_text(other)) in line]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith('xyssh: warning: ')
    assert warnings[0].endswith('has no command= option: whoever holds '
                                'it gets a shell as this account')


@pytest.fixture
def open_server():
    """A server side in a directory every account can search.

    pytest's own base directory is 0700 root, which would hide every
    file from the service account and make each access check fail.
    """
    root = pathlib.Path(tempfile.mkdtemp(prefix='xyssh-open-'))
    os.chmod(root, 0o755)
    try:
        yield Server(root)
    finally:
        shutil.rmtree(root)


def test_add_warns_when_service_account_cannot_read_config(open_server):
    server = open_server
    server.authorized_keys.write_bytes(HEADER)
    _own_by_nobody(server)
    for path in (server.hosts_cfg, server.registry):
        os.chmod(path, 0o755)
    os.chmod(server.config, 0o600)

    result = server.run('keys', 'add', WEB01, str(server.new_key('k')))

    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().splitlines() == [
        'xyssh: warning: the service account (uid %d, owner of %s) cannot '
        'read %s: %s is mode 0600, owner uid 0'
        % (NOBODY.pw_uid, server.ssh_dir, server.config, server.config)]


def test_add_is_silent_when_service_account_can_use_everything(
        open_server):
    server = open_server
    server.authorized_keys.write_bytes(HEADER)
    _own_by_nobody(server)
    for path in (server.config, server.hosts_cfg, server.registry):
        os.chmod(path, 0o755)

    result = server.run('keys', 'add', WEB01, str(server.new_key('k')))

    assert result.returncode == 0
    assert result.stderr == b''


# C13: the service account's shell, run as sshd runs it.

def test_check_warns_that_a_nologin_account_cannot_run_commands(checked):
    _own_by_nobody(checked)

    result = checked.run('keys', 'check')

    assert result.returncode == 0, result.stdout
    shell_lines = [line for line in result.stderr.decode().splitlines()
                   if 'the shell' in line]
    assert shell_lines == [
        "xyssh: warning: the shell %s of account nobody cannot run "
        "commands (exit status 1: 'This account is currently not "
        "available.'), so sshd cannot start xyssh receive; give it "
        "/bin/sh: usermod -s /bin/sh nobody" % NOBODY.pw_shell]


def test_probe_finds_a_bashrc_that_prints(tmp_path):
    root = pwd.getpwuid(0)
    assert os.path.basename(root.pw_shell) == 'bash', root.pw_shell
    (tmp_path / '.bashrc').write_text('echo hello\n')

    warnings = probe_shell(root, home=str(tmp_path))

    assert warnings == [
        "the shell %s of account root prints 'hello\\n' before every "
        "command sshd runs; it comes ahead of each answer to the devices "
        "(xymon-ssh skips it, with a warning): make %s/.bashrc, .profile "
        "and the like print nothing when not interactive"
        % (root.pw_shell, tmp_path)]


def test_probe_passes_a_quiet_shell(tmp_path):
    (tmp_path / '.bashrc').write_text('quiet=1\n')

    assert probe_shell(pwd.getpwuid(0), home=str(tmp_path)) == []


# C17: concurrent adds and SIGKILL during a write.

def _own_by_nobody(server) -> None:
    """Give ~/.ssh, authorized_keys and the registry to nobody."""
    for path in (server.ssh_dir, server.authorized_keys, server.registry):
        os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)


def _errors(stderr: bytes) -> 'list[str]':
    """Return the stderr lines that are not access warnings."""
    return [line for line in stderr.decode().splitlines()
            if not line.startswith('xyssh: warning: the service account')]


def test_twenty_concurrent_adds_under_umask_002_keep_every_key(server):
    server.authorized_keys.write_bytes(HEADER)
    os.chmod(server.authorized_keys, 0o644)
    _own_by_nobody(server)
    pubs = [server.new_key('k%02d' % number) for number in range(20)]

    processes = [subprocess.Popen(
        server.argv('keys', 'add', HOSTS[number % len(HOSTS)], str(pub)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=umask_002) for number, pub in enumerate(pubs)]
    outcomes = [(_errors(process.communicate(timeout=60)[1]),
                 process.returncode) for process in processes]

    # nobody cannot reach pytest's 0700 tmp directory: each add says so,
    # and says nothing else.
    assert outcomes == [([], 0)] * 20
    data = server.authorized_keys.read_text()
    assert data.startswith(HEADER.decode())
    for pub in pubs:
        assert data.count(pub_text(pub).split()[1]) == 1
    assert len(server.managed()) == 20
    status = os.stat(server.authorized_keys)
    assert oct(status.st_mode & 0o7777) == oct(0o600)
    assert (status.st_uid, status.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
    assert oct(os.stat(server.ssh_dir).st_mode & 0o7777) == oct(0o700)
    assert len(registry_states(server.registry)) == 20
    assert server.run('keys', 'check').returncode == 0


def _key_lines(data: bytes) -> 'list[bytes]':
    """Return the key lines of an authorized_keys file."""
    return [line for line in data.split(b'\n')
            if line.strip() and not line.lstrip().startswith(b'#')]


def _keygen_parses(path, count: int) -> bool:
    """Tell whether ssh-keygen -lf reads exactly COUNT keys from PATH."""
    result = subprocess.run(['ssh-keygen', '-lf', str(path)],
                            capture_output=True, check=False)
    return result.returncode == 0 and \
        len(result.stdout.splitlines()) == count


def _generated_pub(index: int) -> str:
    """Return a new ed25519 public key line (no ssh-keygen: fast)."""
    key = asyncssh.generate_private_key('ssh-ed25519',
                                        comment='bulk%04d' % index)
    return key.export_public_key().decode().strip()


def test_sigkill_during_add_leaves_old_or_new_complete_file(server):
    server.authorized_keys.write_bytes(HEADER)
    _own_by_nobody(server)
    registry = str(server.registry)
    for index in range(2000):
        text = _generated_pub(index)
        xkeys.write_record(registry, xkeys.KeyRecord(
            fingerprint_of_key(text), HOSTS[index % len(HOSTS)],
            text))
    server.ok('keys', 'sync')
    pub = _write(server, 'calibrate.pub', (_generated_pub(0) + '\n')
                 .encode())
    started = time.monotonic()
    server.ok('keys', 'add', WEB01, str(pub))
    duration = time.monotonic() - started
    seed = random.randrange(2 ** 32)
    rng = random.Random(seed)
    outcomes = []

    for attempt in range(20):
        before = server.authorized_keys.read_bytes()
        pub = _write(server, 'new%02d.pub' % attempt,
                     (_generated_pub(attempt) + '\n').encode())
        process = subprocess.Popen(server.argv('keys', 'add', WEB01,
                                               str(pub)),
                                   stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL,
                                   preexec_fn=umask_002)
        time.sleep(rng.uniform(0.3, 1.2) * duration)
        process.kill()
        returncode = process.wait(timeout=30)
        after = server.authorized_keys.read_bytes()
        active = {fingerprint for fingerprint, state in
                  registry_states(registry).items() if state == 'active'}
        where = 'seed %d attempt %d' % (seed, attempt)

        assert _keygen_parses(server.authorized_keys,
                              len(_key_lines(after))), where
        if after != before:
            assert set(before.split(b'\n')) <= set(after.split(b'\n')), \
                where
            assert {fingerprint_of_key(line.rsplit('" ', 1)[1])
                    for line in server.managed()} == active, where
        assert after.startswith(HEADER), where
        status = os.stat(server.authorized_keys)
        assert (status.st_uid, status.st_mode & 0o7777) == (
            NOBODY.pw_uid, 0o600), where
        leftovers = sorted(name for name in os.listdir(server.ssh_dir)
                           if name != 'authorized_keys')
        # sshd reads only authorized_keys: every other name must be an
        # xyssh temporary file, never authorized_keys2 or the like.
        assert all(TEMP_NAME.match(name) for name in leftovers), leftovers
        outcomes.append((returncode, after != before))

    assert any(returncode == -9 for returncode, _ in outcomes), outcomes
    # A kill between the record and the file leaves a key registered but
    # not installed; sync installs it.
    server.ok('keys', 'sync')
    assert server.run('keys', 'check').returncode == 0
    assert len(server.managed()) == len(registry_states(registry))


# With the real sshd.

def _send_status(device) -> int:
    """Send a green status for the device's own host; return the exit."""
    result = device.send('127.0.0.1', 'status %s.keys green ok'
                         % device.host)
    return result.returncode


def test_every_key_added_by_cli_logs_in_and_revoked_key_cannot(
        deployment):
    devices = [deployment.add_device(host) for host in
               (WEB01, DB01, 'win01.example.com', 'host1.example.com')]

    before = [_send_status(device) for device in devices]
    revoked = deployment.xyssh('keys', 'revoke', devices[0].fingerprint)
    after = [_send_status(device) for device in devices[:2]]

    assert before == [0, 0, 0, 0]
    assert revoked.returncode == 0, revoked.stderr
    assert after == [EXIT_AUTH, 0]


def test_c16_keys_crlf_no_newline_and_shared_file_log_in(deployment):
    crlf = Device(deployment, WEB01, 'laptop')
    bare = Device(deployment, DB01, 'dbagent')
    pair = [Device(deployment, 'host1.example.com', name)
            for name in ('agent-a', 'agent-b')]
    files = deployment.root / 'c16'
    files.mkdir()
    (files / 'crlf.pub').write_bytes(b'%s ops team laptop 2024\r\n' % (
        b' '.join(crlf.public.read_bytes().split()[:2])))
    (files / 'nonl.pub').write_bytes(bare.public.read_bytes().rstrip())
    (files / 'pair.pub').write_bytes(b'\n'.join(
        device.public.read_bytes() for device in pair))

    added = [deployment.xyssh('keys', 'add', device.host,
                              str(files / name)).returncode
             for device, name in ((crlf, 'crlf.pub'), (bare, 'nonl.pub'),
                                  (pair[0], 'pair.pub'))]

    assert added == [0, 0, 0]
    assert [_send_status(device) for device in [crlf, bare] + pair] == [
        0, 0, 0, 0]
    data = deployment.authorized_keys.read_bytes()
    assert b'\r' not in data
    assert b' ops team laptop 2024\n' in data


@pytest.mark.parametrize('word', [
    '/opt/xyssh/bin/xyssh', '/etc/xymon/xyssh.cfg', 'SHA256:a+b/c=',
    '/srv/my configs/x.cfg', "it's", '', 'a"b', '$HOME', 'é'])
def test_light_shell_quoting_matches_shlex(word):
    assert shell_quote(word) == shlex.quote(word)
