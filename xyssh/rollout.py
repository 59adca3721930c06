"""xyssh rollout: give many devices their keys over the admin's own SSH.

For each device chosen from hosts.cfg, OpenSSH's ssh (with the admin's
own keys, agent and ~/.ssh/config) runs a short POSIX shell script on
the device that, unless it is already so:

  - creates the device key with ssh-keygen (the private key never leaves
    the device),
  - writes the [client] part of xyssh.cfg, the server's host key into
    known_hosts, and XYMON= in xymonclient.d,

then prints the public key, which is registered here for that host.
Every step compares before it writes, so a second run changes nothing;
with --dry-run nothing is written anywhere.  Devices are done in
parallel up to a bound, and one that fails never stops the others.
"""

import concurrent.futures
import subprocess

from .keyline import shell_quote

# What the device script reports, one per line.
CHANGED = 'changed: '
PUBLIC = 'public: '


class Plan:
    """What every device gets: paths on the device and file contents."""

    def __init__(self, server: str, port: int, account: str,
                 known_hosts: str, xymon_ssh: str, root: str = '',
                 owner: str = 'xymon') -> None:
        self.server = server
        self.port = port
        # The account devices log in as on the server.
        self.account = account
        self.known_hosts = known_hosts
        self.xymon_ssh = xymon_ssh
        # A tree to install into instead of / ({host} is replaced), for
        # staging images or checking a rollout on one machine.
        self.root = root
        # The device account that runs the Xymon client and owns the key.
        self.owner = owner
        self.directory = '/etc/xymon/xyssh'
        self.config_path = '/etc/xymon/xyssh.cfg'
        self.xymonclient_d = '/etc/xymon/xymonclient.d'

    def script(self, host: str, dry_run: bool) -> str:
        """Return the shell script that sets up HOST."""
        root = self.root.replace('{host}', host).rstrip('/')
        directory = root + self.directory
        key = directory + '/id_ed25519'
        client_config = ('[client]\nserver = %s\nport = %d\nuser = %s\n'
                         'identity = %s\nknown_hosts = %s/known_hosts\n'
                         % (self.server, self.port, self.account, key,
                            directory))
        files = [
            (root + self.config_path, '0644', client_config),
            (directory + '/known_hosts', '0644', self.known_hosts),
            (root + self.xymonclient_d + '/xyssh.cfg', '0644',
             'XYMON="%s"\n' % self.xymon_ssh),
        ]
        lines = ['set -eu', 'umask 022', 'dry=%d' % dry_run,
                 'user=%s' % shell_quote(self.owner), _FUNCTIONS,
                 'ensure_dir %s' % shell_quote(directory),
                 'ensure_key %s' % shell_quote(key)]

        for number, (path, mode, text) in enumerate(files):
            marker = 'XYSSH_EOF_%d' % number
            lines.append("ensure_file %s %s <<'%s'\n%s%s" % (
                shell_quote(path), mode, marker, text, marker))

        lines.append('[ ! -f %s.pub ] || echo "%s$(cat %s.pub)"'
                     % (shell_quote(key), PUBLIC, shell_quote(key)))
        return '\n'.join(lines) + '\n'


# The device side.  ensure_file reads the wanted content from stdin.
_FUNCTIONS = r'''
say() { echo "changed: $*"; }
owner() { if id "$user" >/dev/null 2>&1; then chown "$user" "$@"; fi; }
ensure_dir() {
    [ -d "$1" ] && return 0
    if [ "$dry" = 1 ]; then say "would create $1"; return 0; fi
    mkdir -p "$1"; chmod 0700 "$1"; owner "$1"; say "created $1"
}
ensure_key() {
    [ -f "$1" ] && return 0
    if [ "$dry" = 1 ]; then say "would create key $1"; return 0; fi
    ssh-keygen -q -t ed25519 -N '' -C "$(hostname) xyssh" -f "$1" </dev/null
    chmod 0600 "$1"; owner "$1" "$1.pub"; say "created key $1"
}
ensure_file() {
    tmp=$(mktemp "${TMPDIR:-/tmp}/xyssh-rollout.XXXXXX")
    cat >"$tmp"
    if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 0; fi
    if [ "$dry" = 1 ]; then rm -f "$tmp"; say "would write $1"; return 0; fi
    mkdir -p "$(dirname "$1")"
    chmod "$2" "$tmp"
    mv "$tmp" "$1.xyssh-new" 2>/dev/null || cp "$tmp" "$1.xyssh-new"
    rm -f "$tmp"; mv "$1.xyssh-new" "$1"; say "wrote $1"
}
'''


class Result:
    """How one device went."""

    def __init__(self, host: str, status: str, detail: str,
                 public: str = '') -> None:
        self.host = host
        self.status = status
        self.detail = detail
        self.public = public


def run_device(host: str, address: str, script: str,
               ssh: 'list[str]', timeout: int) -> Result:
    """Run SCRIPT on the device over SSH; return what it did."""
    argv = ssh + [address, 'sh', '-s']

    try:
        done = subprocess.run(argv, input=script.encode(),
                              capture_output=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return Result(host, 'failed', 'no answer within %d s' % timeout)
    except OSError as exc:
        return Result(host, 'failed', 'cannot run ssh: %s' % exc)

    out = done.stdout.decode('utf-8', 'replace').splitlines()

    if done.returncode != 0:
        error = done.stderr.decode('utf-8', 'replace').strip()
        return Result(host, 'failed', (error.splitlines() or
                                       ['exit %d' % done.returncode])[-1])

    changes = [line[len(CHANGED):] for line in out
               if line.startswith(CHANGED)]
    public = next((line[len(PUBLIC):] for line in out
                   if line.startswith(PUBLIC)), '')
    return Result(host, 'changed' if changes else 'unchanged',
                  '; '.join(changes), public)


def roll_out(devices: 'list[tuple[str, str]]', plan: Plan, ssh: 'list[str]',
             parallel: int, dry_run: bool, timeout: int,
             register, progress) -> 'list[Result]':
    """Set up DEVICES [(host, address)]; REGISTER(result) each key.

    REGISTER runs in this thread, one device at a time, as results come
    in; PROGRESS() is called once per finished device.
    """
    results = []

    with concurrent.futures.ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {pool.submit(run_device, host, address,
                               plan.script(host, dry_run), ssh, timeout):
                   host for host, address in devices}

        for future in concurrent.futures.as_completed(futures):
            result = future.result()

            if result.status != 'failed' and not dry_run:
                register(result)

            results.append(result)
            progress()

    order = [host for host, _ in devices]
    results.sort(key=lambda result: order.index(result.host))
    return results
