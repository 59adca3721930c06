"""Run the whole xyssh path on this machine, on loopback, and show it.

    python -m xyssh.demo [--keep]

Starts a private xymond (with its client channel) and a private sshd,
creates a device key, registers it with `xyssh keys add`, runs Debian's
unchanged xymonclient.sh with XYMON set to xymon-ssh, and prints the
columns xymond then shows for this machine.  Everything lives in one
temporary directory and every daemon is stopped by PID at the end.
Needs root (sshd) and Debian's xymon and openssh-server packages.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from .sandbox import Sshd, Xymond, make_keypair

BIN = os.path.dirname(sys.executable)
CLIENT_HOME = '/usr/lib/xymon/client'
WANTED = ('cpu', 'disk', 'memory')


def say(text: str = '') -> None:
    """Print one line of the walkthrough."""
    print(text, flush=True)


def machine_name() -> str:
    """Return this machine's name as the Xymon client reports it."""
    try:
        name = subprocess.run(['hostname', '-f'], capture_output=True,
                              text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        name = ''

    return name or socket.gethostname() or 'demo.example.com'


def run_stock_client(workdir: str, host: str, device_config: str) -> int:
    """Run xymonclient.sh once, as xymonlaunch would, with xyssh's XYMON."""
    xymontmp = os.path.join(workdir, 'client-tmp')
    os.makedirs(xymontmp, exist_ok=True)
    env_file = os.path.join(workdir, 'client.env')
    values = {
        'MACHINE': host.replace('.', ','), 'MACHINEDOTS': host,
        'SERVEROSTYPE': 'linux', 'CONFIGCLASS': 'linux',
        'XYMSRV': '127.0.0.1', 'XYMSERVERS': '',
        'XYMONCLIENTHOME': CLIENT_HOME, 'XYMONHOME': CLIENT_HOME,
        'XYMONTMP': xymontmp,
        'XYMON': os.path.join(BIN, 'xymon-ssh'),
        'XYSSH_CONFIG': device_config,
    }

    with open(env_file, 'w', encoding='utf-8') as handle:
        handle.write('include /etc/xymon/xymonclient.cfg\n')
        handle.writelines('%s="%s"\n' % item for item in values.items())

    environment = dict(os.environ)
    environment.pop('SSH_AUTH_SOCK', None)

    # xymoncmd warns about Debian's /var/run/xymon include files when the
    # xymon-client service never ran; the output goes to a log file.
    with open(os.path.join(workdir, 'client.log'), 'wb') as log:
        process = subprocess.Popen(
            [CLIENT_HOME + '/bin/xymoncmd', '--env=' + env_file,
             CLIENT_HOME + '/bin/xymonclient.sh'], stdin=subprocess.DEVNULL,
            stdout=log, stderr=log, env=environment,
            start_new_session=True)

    try:
        return process.wait(timeout=120)
    finally:
        # xymonclient-linux.sh leaves "vmstat 300 2" running for five
        # minutes; it is in the script's own process group.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


def wait_for_columns(xymond: Xymond, host: str,
                     timeout: float = 30) -> 'list[list[str]]':
    """Return xymond's board for HOST once cpu, disk and memory are in."""
    deadline = time.monotonic() + timeout

    while True:
        rows = xymond.board(host, fields='testname,color,line1')
        names = {row[0] for row in rows}

        if set(WANTED) <= names or time.monotonic() > deadline:
            return sorted(rows)

        time.sleep(0.3)


def main(argv: 'list[str] | None' = None) -> int:
    """Run the demo; return 0 when the report made it into xymond."""
    keep = '--keep' in (sys.argv[1:] if argv is None else argv)
    workdir = tempfile.mkdtemp(prefix='xyssh-demo.')

    try:
        return _run(workdir, machine_name())
    finally:
        if keep:
            say('files kept in %s' % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(workdir: str, host: str) -> int:
    """Do the walkthrough inside WORKDIR for this machine, HOST."""
    hosts_cfg = '127.0.0.1  %s  # noconn\n' % host
    say('xyssh demo: Xymon client report over SSH, all on loopback')
    say('  this machine: %s' % host)
    xymond = Xymond.start(os.path.join(workdir, 'xymond'), hosts_cfg)
    sshd = None

    try:
        say('1. private xymond on 127.0.0.1:%d, hosts.cfg has %s'
            % (xymond.port, host))
        ssh_dir = os.path.join(workdir, 'ssh')
        os.makedirs(ssh_dir, mode=0o700)
        authorized_keys = os.path.join(ssh_dir, 'authorized_keys')
        sshd = Sshd.start(os.path.join(workdir, 'sshd'), authorized_keys)
        say('2. private sshd on 127.0.0.1:%d' % sshd.port)

        private, public = make_keypair(os.path.join(workdir, 'device'),
                                       'id_ed25519', 'demo device')
        known_hosts = os.path.join(workdir, 'device', 'known_hosts')

        with open(known_hosts, 'w', encoding='ascii') as handle:
            handle.write(sshd.known_hosts_line() + '\n')

        config = os.path.join(workdir, 'xyssh.cfg')

        with open(config, 'w', encoding='utf-8') as handle:
            handle.write(
                '[server]\nhosts_cfg = %s\nxymond = 127.0.0.1:%d\n'
                'authorized_keys = %s\nregistry = %s\nrevoked_keys =\nlog = %s\n'
                'command = %s\n\n'
                '[client]\nserver = 127.0.0.1\nport = %d\nuser = root\n'
                'identity = %s\nknown_hosts = %s\nspool = %s\n'
                'start_window = 0\n'
                % (os.path.join(xymond.home, 'etc', 'hosts.cfg'),
                   xymond.port, authorized_keys,
                   os.path.join(workdir, 'registry'),
                   os.path.join(workdir, 'xyssh.log'),
                   os.path.join(BIN, 'xyssh'), sshd.port, private,
                   known_hosts, os.path.join(workdir, 'spool')))

        say('3. device key %s, server host key pinned in %s'
            % (private, known_hosts))
        added = subprocess.run(
            [os.path.join(BIN, 'xyssh'), '--config', config, 'keys', 'add',
             host, str(public)], capture_output=True, text=True,
            timeout=60)
        say('4. xyssh keys add %s %s\n   %s'
            % (host, public, (added.stdout + added.stderr).strip()))

        if added.returncode:
            return 1

        say('5. xymonclient.sh with XYMON=%s'
            % os.path.join(BIN, 'xymon-ssh'))
        status = run_stock_client(workdir, host, config)
        say('   xymonclient.sh exit status %d (its output: %s)'
            % (status, os.path.join(workdir, 'client.log')))
        logfetch = os.path.join(workdir, 'client-tmp',
                                'logfetch.%s.cfg' % host)

        if os.path.exists(logfetch):
            with open(logfetch, encoding='utf-8', errors='replace') as f:
                say('   reply saved as its logfetch config: %r'
                    % f.read()[:200])
        rows = wait_for_columns(xymond, host)
        say('6. columns xymond shows for %s:' % host)

        for row in rows:
            say('   %-10s %-7s %s' % (row[0], row[1],
                                      (row[2] if len(row) > 2 else '')[:50]))

        with open(os.path.join(workdir, 'xyssh.log'),
                  encoding='utf-8') as handle:
            audit = [line.rstrip() for line in handle if ' accepted ' in
                     line or ' rejected ' in line]

        say('7. xyssh audit log:')

        for line in audit:
            say('   ' + line)

        names = {row[0] for row in rows}
        missing = [name for name in WANTED if name not in names]

        if missing:
            say('FAILED: no %s column; see the logs in %s'
                % (', '.join(missing), workdir))
            return 1

        say('OK: the report reached xymond over SSH (use --keep to keep '
            'the files)')
        return 0
    finally:
        if sshd is not None:
            sshd.stop()
        xymond.stop()


if __name__ == '__main__':
    sys.exit(main())
