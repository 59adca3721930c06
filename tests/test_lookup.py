"""xyssh keys lookup as sshd's AuthorizedKeysCommand (C29, C30)."""

import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile

import pytest

from conftest import XYSSH
from xyssh.admin import unsafe_command_path
from xyssh.keyline import shell_quote
from xyssh.sandbox import ssh_command

NOBODY = pwd.getpwnam('nobody')
EXIT_AUTH = 23
STATUS = 'status %s.cpu green ok'


def test_devices_log_in_through_lookup_and_revoked_keys_do_not(
        make_lookup_deployment):
    deployment = make_lookup_deployment()
    web01 = deployment.add_device('web01.example.com')
    db01 = deployment.add_device('db01.example.com')
    revoked = deployment.xyssh('keys', 'revoke', db01.fingerprint)
    assert revoked.returncode == 0, revoked.stderr
    # authorized_keys is not read at all in this mode.
    deployment.authorized_keys.write_text('')

    results = [web01.send('127.0.0.1', STATUS % 'web01.example.com')
               for _ in range(20)]
    refused = db01.send('127.0.0.1', STATUS % 'db01.example.com')

    assert [result.returncode for result in results] == [0] * 20
    assert refused.returncode == EXIT_AUTH
    assert len(deployment.tap.wait_for(20)) == 20
    assert 'Unsafe AuthorizedKeysCommand' not in deployment.sshd.log_text()


# The venv's interpreter may live where nobody cannot go (a pyenv build
# under /root), so nobody runs the package from the checkout with the
# system's Python 3: the lookup path needs the standard library only.
SOURCE = str(pathlib.Path(__file__).resolve().parent.parent)
SYSTEM_PYTHON = '/usr/bin/python3'


def _run_as_nobody(*args: str) -> subprocess.CompletedProcess:
    """Run xyssh keys lookup the way sshd does: env -i, nobody, from /."""
    assert os.access(SYSTEM_PYTHON, os.X_OK), 'Debian\'s python3 is missing'
    return subprocess.run(
        ['env', '-i', 'HOME=/nonexistent', 'USER=nobody', 'LOGNAME=nobody',
         'PATH=/usr/local/bin:/usr/bin:/bin:/usr/games',
         'PYTHONPATH=%s' % SOURCE, SYSTEM_PYTHON, '-c',
         'import sys; from xyssh.entry import main; sys.exit(main())',
         *args],
        capture_output=True, cwd='/', user=NOBODY.pw_uid,
        group=NOBODY.pw_gid, extra_groups=[], timeout=30, check=False)


@pytest.fixture
def open_deployment(make_deployment):
    """A deployment in a directory nobody can read (pytest's is 0700)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix='xyssh-lookup-'))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root)


def test_as_nobody_under_env_i_one_line_for_a_key_nothing_for_others(
        deployment, web01, open_deployment):
    # Copy the server side somewhere nobody can read it, as a site
    # whose AuthorizedKeysCommandUser is the service account would.
    config = open_deployment / 'xyssh.cfg'
    registry = open_deployment / 'registry'
    shutil.copytree(deployment.root / 'registry', registry)
    text = deployment.config.read_text().replace(
        str(deployment.root / 'registry'), str(registry))
    config.write_text(text)
    for path in [registry, *registry.rglob('*')]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    os.chmod(config, 0o644)
    unknown = 'SHA256:' + 'A' * 43

    found = _run_as_nobody('--config', str(config), 'keys', 'lookup',
                           'root', web01.fingerprint)
    missing = _run_as_nobody('--config', str(config), 'keys', 'lookup',
                             'root', unknown)
    os.chmod(registry / 'keys', 0o700)
    unreadable = _run_as_nobody('--config', str(config), 'keys', 'lookup',
                                'root', web01.fingerprint)

    assert found.returncode == 0, found.stderr
    [line] = found.stdout.decode().splitlines()
    assert line.startswith('restrict,no-pty,')
    assert 'receive --config %s --fp %s' % (shell_quote(str(config)),
                                            web01.fingerprint) in line
    assert line.endswith(web01.public.read_text().strip())
    assert (missing.returncode, missing.stdout) == (0, b'')
    assert unreadable.returncode == 1
    assert unreadable.stdout == b''
    assert b'cannot read registry record' in unreadable.stderr


# C29: the program's path as sshd checks it.

@pytest.fixture
def layouts(tmp_path):
    """Return program paths that sshd would refuse, by layout."""
    home = tmp_path / 'home-xyssh' / '.venv' / 'bin'
    home.mkdir(parents=True)
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    os.chmod(home, 0o755)
    in_home = home / 'xyssh'
    shutil.copyfile(XYSSH, in_home)
    owned = tmp_path / 'opt' / 'bin' / 'xyssh'
    owned.parent.mkdir(parents=True)
    shutil.copyfile(XYSSH, owned)
    os.chown(owned, NOBODY.pw_uid, NOBODY.pw_gid)
    in_tmp = pathlib.Path('/tmp') / ('xyssh-akc-%d' % os.getpid())
    shutil.copyfile(XYSSH, in_tmp)
    link = pathlib.Path(os.path.dirname(os.path.realpath(XYSSH))) / \
        ('.xyssh-link-%d' % os.getpid())
    os.symlink(in_home, link)
    try:
        yield {'B': (in_home, str(home)), 'C': (owned, str(owned)),
               'D': (in_tmp, '/tmp'), 'E': (link, str(home))}
    finally:
        link.unlink()
        in_tmp.unlink()


@pytest.mark.parametrize('layout', 'BCDE')
def test_unsafe_layouts_are_named(layouts, layout):
    path, culprit = layouts[layout]

    said = unsafe_command_path(str(path))

    assert said is not None
    assert culprit in said


def test_a_root_owned_install_is_safe_and_keys_check_passes(
        make_deployment, root_owned_xyssh):
    deployment = make_deployment(lookup='yes', command=root_owned_xyssh)
    deployment.add_device('web01.example.com')

    checked = deployment.xyssh('keys', 'check')

    assert unsafe_command_path(root_owned_xyssh) is None
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_keys_check_names_an_unsafe_program_in_lookup_mode(
        make_deployment, layouts):
    program, culprit = layouts['B']
    deployment = make_deployment(lookup='yes', command=str(program))
    deployment.add_device('web01.example.com')

    checked = deployment.xyssh('keys', 'check')

    assert checked.returncode == 1
    assert 'AuthorizedKeysCommand %s: directory %s' % (program, culprit) \
        in checked.stdout.decode()


def test_unknown_keys_offered_first_do_not_spoil_the_login(
        make_lookup_deployment, tmp_path):
    # C30 scenario 4: sshd runs the command once per offered key and once
    # more for the signature; two unknown keys first change nothing.
    from xyssh.sandbox import make_keypair

    deployment = make_lookup_deployment()
    web01 = deployment.add_device('web01.example.com')
    strangers = [make_keypair(tmp_path, name)[0]
                 for name in ('stranger1', 'stranger2')]
    extra = [word for key in strangers + [web01.private]
             for word in ('-i', str(key))] + ['-v']
    from xyssh import wire

    result = subprocess.run(
        ssh_command(deployment.server, strangers[0], deployment.known_hosts,
                    extra=extra) + ['xyssh-send'],
        input=wire.frame(b'status web01.example.com.akc green ok\n'),
        capture_output=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert result.stdout == b'ok 0\n'
    assert result.stderr.count(b'Offering public key') == 3
    assert deployment.tap.wait_for(1) == [
        b'status web01.example.com.akc green ok\n']
