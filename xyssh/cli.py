"""The xyssh command: key administration and sending, built with click.

`xyssh receive` (the forced command) never comes through here: the
entry point hands it to xyssh.forced before click is imported.
"""

import json
import sys
import time

import click

from . import __version__
from .config import config_path, load_config
from .errors import XysshError
from .log import setup_logging


class CommandError(click.ClickException):
    """A user error: one line on stderr and exit status 1."""

    def format_message(self) -> str:
        """Return the message without click's "Error: " prefix."""
        return self.message

    def show(self, file=None) -> None:
        """Print "xyssh: MESSAGE" on stderr."""
        click.echo('xyssh: %s' % self.message, err=True)


class State:
    """What every subcommand shares: the config path, loaded on demand."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._config = None

    @property
    def config(self):
        """Return the loaded configuration, or fail with a clear line."""
        if self._config is None:
            try:
                self._config = load_config(self.path)
            except XysshError as err:
                raise CommandError(err.detail) from None
        return self._config

    def admin(self):
        """Return a KeyAdmin, with the server's log set up."""
        from .admin import KeyAdmin

        server = self.config.server
        setup_logging(server.text('log'), server.text('syslog_facility'))
        return KeyAdmin(self.config)


@click.group(context_settings={'help_option_names': ['-h', '--help']})
@click.option('--config', 'config', metavar='PATH',
              help='xyssh.cfg to use (default: $XYSSH_CONFIG, then '
                   '/etc/xymon/xyssh.cfg).')
@click.version_option(__version__, prog_name='xyssh')
@click.pass_context
def cli(ctx: click.Context, config: 'str | None') -> None:
    """Carry Xymon reports over SSH, one key per device."""
    ctx.obj = State(config_path(config))


@cli.command(context_settings={'ignore_unknown_options': True})
@click.argument('args', nargs=-1, type=click.UNPROCESSED)
def receive(args: 'tuple[str, ...]') -> None:
    """The forced command sshd runs for a device key (not for people)."""
    from .forced import main
    sys.exit(main(list(args)))


@cli.command()
@click.pass_obj
def serve(state: State) -> None:
    """Run the embedded SSH server (instead of sshd + xyssh receive).

    It listens on [server] listen, takes the same keys and applies the
    same rules as the forced command, and runs until SIGTERM, which lets
    the messages in flight finish.  SIGHUP reads the configuration
    again.  Its host key is created at the first start and its
    fingerprint printed, for the devices' known_hosts.
    """
    from .serve import main

    try:
        sys.exit(main(state.path))
    except XysshError as err:
        raise CommandError(err.detail) from None


@cli.command()
@click.option('--timeout', type=click.IntRange(1, 3600), default=None,
              help='Seconds to wait for the server.')
@click.argument('message_file', type=click.File('rb'), default='-')
@click.pass_obj
def send(state: State, timeout: 'int | None', message_file) -> None:
    """Send one Xymon message (a file, or stdin) and print the reply.

    With several servers configured they are tried in order.  A message
    no server can take now is kept in the spool, with whatever earlier
    runs kept, for the next run or "xyssh flush".
    """
    from .delivery import deliver, open_spool, start_delay

    client, servers = _sender(state, timeout)
    start_delay(client, _quiet)
    outcome = deliver(servers, [message_file.read()],
                      open_spool(client, servers), _quiet, _warning)
    answer = outcome.answers[0]

    if outcome.failure is not None:
        click.echo('xyssh: %s' % outcome.failure.text, err=True)
    elif answer is None or answer.exit_status:
        click.echo('xyssh: server %s: %s' % (
            outcome.destination.label,
            answer.text if answer else 'no answer'), err=True)
    else:
        sys.stdout.buffer.write(answer.reply)

    sys.exit(outcome.exit_status)


@cli.command()
@click.option('--timeout', type=click.IntRange(1, 3600), default=None,
              help='Seconds to wait for each server.')
@click.pass_obj
def flush(state: State, timeout: 'int | None') -> None:
    """Send the reports kept in the spool now; exit 1 if some remain."""
    from .delivery import every_group, flush as flush_spool, group_label
    from .delivery import open_spool

    client, servers = _sender(state, timeout)
    remaining = 0

    if not client.text('spool'):
        raise CommandError('no spool is configured ([client] spool)')

    for group in every_group(servers):
        spool = open_spool(client, group)

        if not spool.entries():
            continue

        before, after, outcome = flush_spool(group, spool, _quiet,
                                             _warning)
        remaining += after

        if outcome.failure is not None:
            click.echo('xyssh: %s' % outcome.failure.text, err=True)

        click.echo('sent %d kept report(s) to %s; %d still kept'
                   % (before - after, group_label(group), after))

    sys.exit(1 if remaining else 0)


@cli.command()
@click.pass_obj
def status(state: State) -> None:
    """Show the spool: kept reports, oldest, last success, last error."""
    from .delivery import describe, every_group, group_label, open_spool

    client, servers = _sender(state, None)

    if not client.text('spool'):
        raise CommandError('no spool is configured ([client] spool)')

    for number, group in enumerate(every_group(servers)):
        spool = open_spool(client, group)

        if len(group) > 1 and not spool.entries() and not spool.state():
            continue

        if number:
            click.echo('')

        click.echo('server %s' % group_label(group))

        for line in describe(spool):
            click.echo(line)

    _certificate_status(servers[0])


def _certificate_status(server) -> None:
    """Say when the device certificate expires, loudly once it has."""
    from .certificate import parse_certificate_line
    from .registry import utc_stamp

    try:
        with open(server.certificate, encoding='ascii') as handle:
            certificate = parse_certificate_line(handle.read())
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        click.echo('certificate %s cannot be read: %s'
                   % (server.certificate, exc))
        return

    if certificate.valid_before <= time.time():
        click.echo('\ncertificate %d EXPIRED at %s: it cannot renew; enrol '
                   'this device again' % (certificate.serial,
                                          utc_stamp(certificate.valid_before)))
    else:
        click.echo('\ncertificate %d for %s valid until %s'
                   % (certificate.serial, ','.join(certificate.principals),
                      utc_stamp(certificate.valid_before)))


@cli.command()
@click.option('--timeout', type=click.IntRange(1, 3600), default=None,
              help='Seconds to wait for each server.')
@click.pass_obj
def rotate(state: State, timeout: 'int | None') -> None:
    """Replace this device's key on every configured server.

    The new key is used only once every server has taken it and it has
    logged in everywhere; the old key is kept as IDENTITY.old and keeps
    working on the servers for their grace period.
    """
    from .registry import fingerprint_of_line
    from .rotation import RotationError, rotate as rotate_key

    _client, servers = _sender(state, timeout)

    try:
        public = rotate_key(servers, _quiet, click.echo)
    except RotationError as err:
        click.echo('xyssh: %s' % err.text, err=True)
        sys.exit(err.exit_status)

    click.echo('now using %s (%s); the old key is %s.old'
               % (servers[0].identity, fingerprint_of_line(public),
                  servers[0].identity))


@cli.command()
@click.option('--host', metavar='HOST',
              help='Without a token: offer the key for this hosts.cfg '
                   'host, for an admin to approve.')
@click.option('--server', 'server', metavar='NAME[:PORT]',
              help='The server to enrol with (default: [client] server).')
@click.option('--timeout', type=click.IntRange(1, 3600), default=None,
              help='Seconds to wait for the server.')
@click.argument('token', required=False)
@click.pass_obj
def enroll(state: State, host: 'str | None', server: 'str | None',
           timeout: 'int | None', token: 'str | None') -> None:
    """Enrol this device with a token from "xyssh keys enroll".

    Creates the device key if there is none, pins the server's host key
    named in the token, and registers the key (pending until its first
    report).  Without a token, --host offers the key for approval.
    """
    from .enrolling import EnrolmentError, enrol

    if bool(token) == bool(host):
        raise CommandError('give a TOKEN, or --host HOST to offer the key '
                           'for approval')

    client, servers = _sender(state, timeout)

    if server:
        from .client import Destination
        servers = [_admin_call(Destination, client, timeout, server)]

    try:
        said = enrol(servers[0], token, host, _quiet)
    except EnrolmentError as err:
        click.echo('xyssh: %s' % err.text, err=True)
        sys.exit(err.exit_status)

    click.echo(said)


@cli.command()
@click.argument('hosts', nargs=-1)
@click.option('--page', help='Every host on this hosts.cfg page.')
@click.option('--tag', help='Every host with this hosts.cfg tag.')
@click.option('--server', 'server', required=True, metavar='NAME[:PORT]',
              help='The Xymon server as devices reach it over SSH.')
@click.option('--user', default='xymon', show_default=True,
              help='The account devices log in as on the server.')
@click.option('--xymon-ssh', 'xymon_ssh', metavar='PATH',
              default='/usr/local/bin/xymon-ssh', show_default=True,
              help='Where xymon-ssh is installed on the devices.')
@click.option('--ssh-config', 'ssh_config', metavar='FILE',
              help='ssh_config for reaching the devices (ssh -F).')
@click.option('--ssh-user', 'ssh_user', default='root', show_default=True,
              help='The account to log in to the devices as.')
@click.option('--root', 'root', default='', metavar='DIR',
              help='Install under DIR on each device ({host} is replaced): '
                   'for staging trees or trying a rollout on one machine.')
@click.option('--parallel', type=click.IntRange(1, 200), default=10,
              show_default=True, help='Devices worked on at once.')
@click.option('--timeout', type=click.IntRange(1, 3600), default=60,
              show_default=True, help='Seconds per device.')
@click.option('--tokens', is_flag=True,
              help='Only print an enrolment token per device, for a '
                   'configuration-management tool to hand out.')
@click.option('--dry-run', 'dry_run', is_flag=True,
              help='Show what would change; change nothing.')
@click.pass_obj
def rollout(state: State, hosts, page, tag, server, user, xymon_ssh,
            ssh_config, ssh_user, root, parallel, timeout, tokens,
            dry_run) -> None:
    """Give devices from hosts.cfg their keys over your own SSH access."""
    from .rollout import Plan, roll_out

    admin = state.admin()
    devices = _admin_call(_chosen_devices, admin, hosts, page, tag)

    if tokens:
        _print_tokens(admin, devices, dry_run)
        return

    from .config import split_host_port
    from .enrolment import host_key_fingerprint

    host, port = _admin_call(split_host_port, server, 22)
    fingerprint = _admin_call(host_key_fingerprint,
                              admin.server.text('host_key'))
    with open(admin.server.text('host_key'), encoding='ascii') as handle:
        key_words = handle.read().split()[:2]
    pattern = host if port == 22 else '[%s]:%d' % (host, port)
    plan = Plan(host, port, user, '%s %s\n' % (pattern, ' '.join(key_words)),
                xymon_ssh, root=root)
    ssh = ['ssh', '-o', 'BatchMode=yes', '-l', ssh_user] + \
        (['-F', ssh_config] if ssh_config else [])
    click.echo('xyssh: %s %d device(s), %d at a time; server %s (%s)'
               % ('checking' if dry_run else 'rolling out to',
                  len(devices), parallel, pattern, fingerprint), err=True)

    with click.progressbar(length=len(devices), file=sys.stderr,
                           label='devices') as bar:
        results = roll_out([(name, name) for name, _ in devices], plan,
                           ssh, parallel, dry_run, timeout,
                           lambda result: _register(admin, result),
                           lambda: bar.update(1))

    width = max([len(result.host) for result in results] + [4])
    click.echo('%-*s  %-9s  %s' % (width, 'HOST', 'RESULT', 'DETAIL'))

    for result in results:
        click.echo('%-*s  %-9s  %s' % (width, result.host, result.status,
                                       result.detail or '-'))

    if any(result.status == 'failed' for result in results):
        sys.exit(1)


def _chosen_devices(admin, names, page, tag) -> 'list[tuple[str, tuple]]':
    """Return [(host, details)] chosen by name, page or tag, or raise."""
    from .errors import KeyFileError
    from .hostscfg import load_hosts

    if sum(map(bool, (names, page, tag))) != 1:
        raise KeyFileError('name hosts, or give --page or --tag (one of '
                           'them)')

    index = load_hosts(admin.server.text('hosts_cfg'))
    chosen = []

    for key, name in index.names.items():
        address, on_page, tags = index.details[key]
        lowered = [word.lower() for word in tags]

        if names and key in [word.lower() for word in names] or \
                page and on_page == page or \
                tag and (tag.lower() in lowered or any(
                    word.startswith(tag.lower() + ':') for word in lowered)):
            chosen.append((name, (address, on_page, tags)))

    missing = [word for word in names
               if word.lower() not in index.names]

    if missing:
        raise KeyFileError('not in hosts.cfg: %s' % ', '.join(missing))

    if not chosen:
        raise KeyFileError('no host in hosts.cfg matches')

    return chosen


def _register(admin, result) -> None:
    """Register the key a device printed; note what happened in RESULT."""
    from .registry import fingerprint_of_line, read_record

    fingerprint = fingerprint_of_line(result.public or '')

    if fingerprint is None:
        result.status, result.detail = 'failed', 'the device printed no key'
        return

    record = read_record(admin.registry, fingerprint)

    if record is not None:
        if record.host.lower() != result.host.lower():
            result.status = 'failed'
            result.detail = 'its key %s is registered for %s' % (
                fingerprint, record.host)
        return

    try:
        admin.add(result.host, result.public.encode('ascii') + b'\n',
                  'the key of %s' % result.host)
    except XysshError as err:
        result.status, result.detail = 'failed', err.detail
        return

    result.status = 'changed'
    result.detail = '; '.join(filter(None, [result.detail,
                                            'registered %s' % fingerprint]))


def _print_tokens(admin, devices, dry_run: bool) -> None:
    """Print HOST TOKEN per device (nothing is created with --dry-run)."""
    from .enrolment import create_token, host_key_fingerprint

    fingerprint = _admin_call(host_key_fingerprint,
                              admin.server.text('host_key'))

    for name, _ in devices:
        token = '-' if dry_run else _admin_call(
            create_token, admin.registry, name, 86400, fingerprint)
        click.echo('%s %s' % (name, token))


def _sender(state: State, timeout: 'int | None'):
    """Return the [client] section and its servers, or exit 26."""
    from .client import EXIT_CONFIG, destinations

    try:
        client = load_config(state.path).client
        return client, destinations(client, timeout)
    except XysshError as err:
        # The same status xymon-ssh gives for a bad client configuration.
        click.echo('xyssh: %s' % err.detail, err=True)
        sys.exit(EXIT_CONFIG)


def _quiet(text: str) -> None:
    """Drop a debugging line (xyssh send has no --debug)."""


def _warning(text: str) -> None:
    """Print a warning on stderr."""
    click.echo('xyssh: warning: %s' % text, err=True)


@cli.group()
def keys() -> None:
    """Register, list, revoke and check device keys."""


def _admin_call(function, *args):
    """Run a KeyAdmin operation, turning its errors into one line."""
    try:
        return function(*args)
    except XysshError as err:
        raise CommandError(err.detail) from None
    except OSError as exc:
        raise CommandError('%s: %s' % (exc.filename or 'file',
                                       exc.strerror)) from None


@keys.command('add')
@click.option('--allow', 'allow', multiple=True, metavar='TYPE',
              help='Also let this key send TYPE (for example query or '
                   'ping); repeat for more.  status, combo, client and '
                   'data are always allowed.')
@click.option('--from', 'addresses', default='', metavar='CIDR[,CIDR]',
              help='Let the key log in only from these addresses or '
                   'networks (authorized_keys from=), IPv4 or IPv6.')
@click.argument('host')
@click.argument('pubkey_file', type=click.File('rb'))
@click.pass_obj
def keys_add(state: State, allow: 'tuple[str, ...]', addresses: str,
             host: str, pubkey_file) -> None:
    """Register the public key(s) in PUBKEY_FILE for hosts.cfg host HOST."""
    admin = state.admin()
    words = tuple(word for item in allow for word in item.split(',')
                  if word)
    added = _admin_call(admin.add, host, pubkey_file.read(),
                        pubkey_file.name, words, addresses)

    for record in added:
        click.echo('added %s %s for %s' % (record.key_type,
                                           record.fingerprint, record.host))

    _warn(admin)


def _warn(admin) -> None:
    """Print what would keep the service account from taking reports."""
    for warning in admin.access_warnings():
        click.echo('xyssh: warning: %s' % warning, err=True)


@keys.command('list')
@click.option('--json', 'as_json', is_flag=True, help='Print JSON.')
@click.pass_obj
def keys_list(state: State, as_json: bool) -> None:
    """List registered keys: host, fingerprint, type, state, created,
    last seen, expiry of a retiring key."""
    import time

    from .registry import last_seen

    admin = state.admin()
    records = _admin_call(admin.records)
    seen = {record.fingerprint: last_seen(admin.registry,
                                          record.fingerprint)
            for record in records}

    def when(stamp) -> str:
        return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(stamp)) \
            if stamp is not None else 'never'

    if as_json:
        click.echo(json.dumps([{
            'host': record.host, 'fingerprint': record.fingerprint,
            'type': record.key_type, 'state': record.state,
            'created': record.created,
            'last_seen': when(seen[record.fingerprint])
            if seen[record.fingerprint] is not None else None,
            'expires': record.expires or None,
            'allow': list(record.allow), 'comment': record.comment}
            for record in records], indent=2))
        return

    rows = [('HOST', 'FINGERPRINT', 'TYPE', 'STATE', 'CREATED',
             'LAST SEEN', 'EXPIRES', 'COMMENT')]
    rows += [(record.host, record.fingerprint, record.key_type,
              record.state, record.created,
              when(seen[record.fingerprint]), record.expires or '-',
              record.comment)
             for record in records]
    widths = [max(len(row[column]) for row in rows) for column in range(7)]

    for row in rows:
        click.echo('  '.join(value.ljust(width) for value, width in
                             zip(row, widths + [0])).rstrip())


@keys.command('lookup', context_settings={'ignore_unknown_options': True})
@click.argument('args', nargs=-1, type=click.UNPROCESSED)
def keys_lookup(args: 'tuple[str, ...]') -> None:
    """AuthorizedKeysCommand: print the line for USER FINGERPRINT (sshd's
    %u %f), or nothing; see README.rst."""
    from .lookup import main
    sys.exit(main(list(args)))


@keys.command('enroll')
@click.option('--expires', default='24h', metavar='TIME',
              help='How long the token is good for: 30m, 24h, 7d '
                   '(default 24h).')
@click.argument('host')
@click.pass_obj
def keys_enroll(state: State, expires: str, host: str) -> None:
    """Print a one-time enrolment token for HOST (see README.rst)."""
    from .enrolment import create_token, host_key_fingerprint

    seconds = _duration(expires)
    admin = state.admin()
    canonical, _ = _admin_call(admin._canonical_host, host)
    fingerprint = _admin_call(host_key_fingerprint,
                              admin.server.text('host_key'))
    token = _admin_call(create_token, admin.registry, canonical, seconds,
                        fingerprint)
    click.echo(token)
    click.echo('xyssh: token for %s, good once, until %s; on the device: '
               'xyssh enroll TOKEN' % (canonical, time.strftime(
                   '%Y-%m-%d %H:%M:%S UTC', time.gmtime(
                       time.time() + seconds))), err=True)


def _duration(text: str) -> int:
    """Return the seconds of "30m", "24h", "7d" (or plain seconds)."""
    units = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else \
        (text, 's')

    if not number.isdigit() or int(number) < 1:
        raise CommandError('--expires %r: use a number with s, m, h or d, '
                           'such as 24h' % text)

    return int(number) * units[unit]


@keys.command('pending')
@click.pass_obj
def keys_pending(state: State) -> None:
    """List keys offered for enrolment without a token."""
    offered = [record for record in _admin_call(state.admin().records)
               if record.state == 'offered']

    for record in offered:
        click.echo('%s  %s  %s  %s  %s' % (
            record.fingerprint, record.host, record.key_type,
            record.created, record.comment))


@keys.command('approve')
@click.argument('fingerprint')
@click.pass_obj
def keys_approve(state: State, fingerprint: str) -> None:
    """Accept a key offered for enrolment: it becomes active."""
    record = _admin_call(state.admin().approve, fingerprint)
    click.echo('approved %s for %s' % (record.fingerprint, record.host))


@keys.command('reject')
@click.argument('fingerprint')
@click.pass_obj
def keys_reject(state: State, fingerprint: str) -> None:
    """Turn down a key offered for enrolment: it is forgotten."""
    record = _admin_call(state.admin().reject, fingerprint)
    click.echo('rejected %s for %s' % (record.fingerprint, record.host))


@keys.command('rotate')
@click.argument('host')
@click.pass_obj
def keys_rotate(state: State, host: str) -> None:
    """Ask HOST's device to replace its key at its next report."""
    for record in _admin_call(state.admin().request_rotation, host):
        click.echo('rotation requested for %s %s' % (record.host,
                                                     record.fingerprint))


@keys.command('revoke')
@click.option('--serial', type=click.IntRange(1), default=None,
              help='Revoke the certificate with this serial instead.')
@click.option('--key-id', default=None,
              help='Revoke every certificate with this key id instead.')
@click.option('--host', 'cert_host', default=None,
              help='Revoke every certificate of this host instead.')
@click.argument('fingerprint', required=False)
@click.pass_obj
def keys_revoke(state: State, serial: 'int | None', key_id: 'str | None',
                cert_host: 'str | None', fingerprint: 'str | None') -> None:
    """Revoke a key, or certificates (with the renewals made from them)
    by --serial, --key-id or --host: refused from the next connection
    on."""
    chosen = [value for value in (fingerprint, serial, key_id, cert_host)
              if value is not None]

    if len(chosen) != 1:
        raise CommandError('name one FINGERPRINT, or --serial N, --key-id '
                           'ID or --host HOST for certificates')

    if fingerprint is not None:
        record = _admin_call(state.admin().revoke, fingerprint)
        click.echo('revoked %s of %s' % (record.fingerprint, record.host))
        return

    from .ca import Authority

    state.admin()
    for record in _admin_call(Authority(state.config).revoke, serial,
                              key_id, cert_host):
        click.echo('revoked certificate %d (%s) of %s'
                   % (record.serial, record.key_id, record.host))


@keys.command('sign')
@click.option('--validity', default=None, metavar='DURATION',
              help='How long it is valid after issue, such as 30d or 12h '
              '(default: ca_validity).')
@click.option('--source-address', default=None, metavar='CIDR[,CIDR]',
              help='Only accept the certificate from these addresses.')
@click.option('--output', '-o', type=click.Path(dir_okay=False),
              default=None, help='Write the certificate here, not stdout.')
@click.argument('host')
@click.argument('pubkey_file', type=click.File('rb'))
@click.pass_obj
def keys_sign(state: State, validity: 'str | None',
              source_address: 'str | None', output: 'str | None',
              host: str, pubkey_file) -> None:
    """Issue a certificate for the key in PUBKEY_FILE as hosts.cfg HOST.

    The device keeps it beside its key, as id_ed25519-cert.pub for
    id_ed25519 (or where [client] certificate names), and renews it by
    itself; a renewal is valid for ca_validity.
    """
    from .ca import Authority, duration_seconds
    from .keys import write_atomically

    seconds = None if validity is None else duration_seconds(validity)

    if validity is not None and seconds is None:
        raise CommandError('--validity %r: use a number with s, m, h or d, '
                           'such as 30d' % validity)

    state.admin()
    line, record = _admin_call(Authority(state.config).sign, host,
                               pubkey_file.read(), pubkey_file.name,
                               seconds, source_address)

    if output:
        write_atomically(output, (line + '\n').encode('ascii'), 0o644)
        click.echo('certificate %d for %s, valid until %s, in %s'
                   % (record.serial, record.host, _stamp(
                       record.valid_before), output), err=True)
    else:
        click.echo(line)


@keys.command('certs')
@click.option('--json', 'as_json', is_flag=True, help='Print JSON.')
@click.pass_obj
def keys_certs(state: State, as_json: bool) -> None:
    """List the certificates the CA issued."""
    from .ca import read_all_cert_records
    from .registry import fingerprint_of_line

    records = read_all_cert_records(state.config.server.text('registry'))
    rows = [{'serial': record.serial, 'host': record.host,
             'key_id': record.key_id,
             'key': fingerprint_of_line(record.key),
             'renewed_from': record.renewed_from or None,
             'state': record.state if record.state != 'active' or
             record.usable() else 'expired',
             'valid_after': _stamp(record.valid_after),
             'valid_before': _stamp(record.valid_before)}
            for record in records]

    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return

    click.echo('%6s  %-10s %-20s  %-50s  %s' % (
        'serial', 'state', 'valid until', 'key', 'host'))

    for row in rows:
        click.echo('%(serial)6d  %(state)-10s %(valid_before)-20s  '
                   '%(key)-50s  %(host)s' % row)


def _stamp(seconds: float) -> str:
    """Return SECONDS since the epoch as a UTC stamp."""
    from .registry import utc_stamp
    return utc_stamp(seconds)


@cli.group()
def ca() -> None:
    """Run an SSH certificate authority for the devices.

    After "xyssh ca init", "xyssh keys sign" issues certificates, "xyssh
    keys certs" lists them and "xyssh keys revoke --serial" revokes them.
    """


@ca.command('init')
@click.option('--passphrase-file', type=click.Path(dir_okay=False,
                                                   exists=True),
              default=None, help='Protect the CA key with the passphrase '
              'in this file (name it as ca_passphrase_file in xyssh.cfg).')
@click.pass_obj
def ca_init(state: State, passphrase_file: 'str | None') -> None:
    """Create the CA key; print what sshd needs to trust it."""
    from .ca import Authority, ca_key_path, principals_path

    state.admin()
    public = _admin_call(Authority(state.config).init, passphrase_file)
    server = state.config.server
    click.echo(public)
    click.echo('CA key %s created.  For sshd, in the Match block of the '
               'service account:\n    TrustedUserCAKeys %s.pub\n'
               '    AuthorizedPrincipalsFile %s'
               % (ca_key_path(server), ca_key_path(server),
                  principals_path(server)), err=True)


@keys.command('check')
@click.pass_obj
def keys_check(state: State) -> None:
    """Check that authorized_keys matches the registry; exit 1 if not."""
    from .admin import WARNING

    admin = state.admin()
    findings = _admin_call(admin.check)
    problems = [text for text in findings if not text.startswith(WARNING)]

    for text in findings:
        if text.startswith(WARNING):
            click.echo('xyssh: %s' % text, err=True)
        else:
            click.echo(text)

    _warn(admin)

    for warning in admin.shell_warnings() + admin.algorithm_warnings():
        click.echo('xyssh: warning: %s' % warning, err=True)

    if problems:
        sys.exit(1)

    click.echo('authorized_keys matches the registry')


# The same checks under the name an admin looking for "what is wrong"
# tries first.
cli.add_command(keys_check, 'doctor')


@keys.command('sync')
@click.pass_obj
def keys_sync(state: State) -> None:
    """Rewrite the managed block of authorized_keys from the registry."""
    admin = state.admin()
    _admin_call(admin.sync)
    click.echo('rewrote the xyssh block of %s'
               % state.config.server.text('authorized_keys'))
    _warn(admin)
