"""Read xyssh.cfg, one INI file for the server and the client side.

Every default lives here.  An unknown section or key is an error that
names the file, section and key: a mistyped security setting must not be
ignored.

The file is read by a small reader of its own instead of configparser:
the forced command reads it at every login, and configparser (with the
re module it pulls in) costs about 12 ms of start-up there.  The format
is the common INI subset: "[section]" lines, "key = value" (or
"key: value") lines, and blank lines and comment lines starting with "#"
or ";".  Anything else is an error naming the file and line.
"""

import os

from .errors import ConfigError

DEFAULT_PATH = '/etc/xymon/xyssh.cfg'

SERVER_DEFAULTS = {
    'hosts_cfg': '/etc/xymon/hosts.cfg',
    'xymond': '127.0.0.1:1984',
    'authorized_keys': '/var/lib/xymon/.ssh/authorized_keys',
    'registry': '/var/lib/xyssh',
    # Where the audit lines go: "syslog", or the path of a file.
    'log': 'syslog',
    'syslog_facility': 'daemon',
    # Size limits in KiB, named and counted as in xymonserver.cfg.
    'maxmsg_status': '256',
    'maxmsg_client': '512',
    'maxmsg_data': '256',
    # Seconds the forced command waits for the next bytes from the client,
    # and the most one message may take to arrive in all.  xyssh serve
    # also closes a connection with no open channel after idle_timeout.
    'idle_timeout': '60',
    'message_time': '300',
    # Seconds to wait for xymond to take a message and answer; less than
    # the client's timeout, so the client hears why.
    'xymond_timeout': '10',
    # The OpenSSH key revocation list xyssh keeps for sshd's RevokedKeys;
    # empty: none is written.
    'revoked_keys': '/var/lib/xyssh/revoked_keys',
    # Days a key replaced by "xyssh rotate" keeps working.
    'rotation_grace_days': '7',
    # The program written into command=; empty: the running xyssh.
    'command': '',
    # yes: sshd finds keys with "xyssh keys lookup" (AuthorizedKeysCommand),
    # and "keys check" checks what sshd demands of that program's path.
    'lookup': 'no',
    # yes (with lookup = yes): unknown keys may log in to present an
    # enrolment token or offer themselves for approval, and nothing else.
    'enrolment': 'no',
    # Enrolment attempts one address may make in an hour.
    'enrolment_attempts': '10',
    # The server's SSH host key whose fingerprint enrolment tokens carry.
    'host_key': '/etc/ssh/ssh_host_ed25519_key.pub',
    # yes: refuse unless sshd's ExposeAuthInfo names the key that logged in.
    'require_auth_info': 'no',
    # The SSH certificate authority ("xyssh ca init"): its private key
    # (empty: ca/ca_key in the registry directory), a file holding its
    # passphrase if it has one, how long certificates are valid after
    # issue (a number with s, m, h or d), and the
    # file xyssh writes for sshd's AuthorizedPrincipalsFile (empty:
    # ca/principals in the registry directory).
    'ca_key': '',
    'ca_passphrase_file': '',
    'ca_validity': '30d',
    'principals_file': '',
    # yes: accept RSA signatures made with SHA-1 (ssh-rsa), for old
    # devices.  xyssh serve applies it; for sshd, "xyssh keys check"
    # warns where sshd's PubkeyAcceptedAlgorithms disagrees.
    'ssh_rsa_sha1': 'no',
    # The sshd configuration "xyssh keys check" compares with it.
    'sshd_config': '/etc/ssh/sshd_config',
    # xyssh serve: addresses to listen on, blank-separated, each
    # ADDRESS:PORT or [IPv6]:PORT.
    'listen': '0.0.0.0:1985 [::]:1985',
    # xyssh serve's own host key, created at first start; empty:
    # serve_host_key in the registry directory.
    'serve_host_key': '',
    # xyssh serve's limits: connections at once, connections from one
    # address that have not logged in yet, seconds to log in.
    'max_connections': '1000',
    'max_unauthenticated_per_address': '10',
    'login_grace_time': '30',
    # xyssh serve reports its health to xymond as this column (empty:
    # no report) of status_host (empty: this machine's name), every
    # status_interval seconds.  Yellow from status_refused_yellow refused
    # messages in an interval, red from status_refused_red; yellow too
    # while a key expires within status_expiry_days.
    'status_column': 'xyssh',
    'status_host': '',
    'status_interval': '300',
    'status_refused_yellow': '10',
    'status_refused_red': '100',
    'status_expiry_days': '7',
}

CLIENT_DEFAULTS = {
    'server': '',
    'port': '22',
    'user': 'xymon',
    'identity': '/etc/xymon/xyssh/id_ed25519',
    'known_hosts': '/etc/xymon/xyssh/known_hosts',
    'timeout': '15',
    # Where reports wait while the server cannot take them (one directory
    # per server below it; empty: nothing is kept), and its size in KiB.
    'spool': '/var/lib/xymon/xyssh-spool',
    'spool_size': '10240',
    # Seconds: a run started without a terminal first waits a random
    # part of this, so a fleet on one schedule does not connect at once.
    'start_window': '30',
    # The device's certificate, if the server runs a CA (empty: the
    # identity's name with -cert.pub, as OpenSSH looks for it).  With
    # less than a third of its validity left, a run renews it.
    'certificate': '',
}

SECTIONS = {'server': SERVER_DEFAULTS, 'client': CLIENT_DEFAULTS}


def config_path(option: 'str | None' = None) -> str:
    """Return the config path: the option, $XYSSH_CONFIG, or the default."""
    return option or os.environ.get('XYSSH_CONFIG') or DEFAULT_PATH


class Section:
    """The values of one section, defaults filled in, typed on access."""

    def __init__(self, path: str, name: str, values: dict) -> None:
        self.path = path
        self.name = name
        self._values = values

    def text(self, key: str) -> str:
        """Return the value of KEY as a string."""
        return self._values[key]

    def number(self, key: str, minimum: int = 0) -> int:
        """Return the value of KEY as a whole number of at least MINIMUM."""
        value = self._values[key]

        try:
            result = int(value)
        except ValueError:
            result = minimum - 1

        if result < minimum:
            raise ConfigError('%s [%s] %s = %r: expected a whole number '
                              'of at least %d'
                              % (self.path, self.name, key, value, minimum))

        return result

    def flag(self, key: str) -> bool:
        """Return the value of KEY as a yes/no flag."""
        value = self._values[key].strip().lower()

        if value in ('yes', 'true', 'on', '1'):
            return True

        if value in ('no', 'false', 'off', '0'):
            return False

        raise ConfigError('%s [%s] %s = %r: expected yes or no'
                          % (self.path, self.name, key, value))


class Config:
    """The whole file: .server and .client, each a Section."""

    def __init__(self, path: str, server: Section, client: Section) -> None:
        self.path = path
        self.server = server
        self.client = client


def load_config(path: str) -> Config:
    """Read PATH; a missing file or an unknown name is a ConfigError."""
    try:
        with open(path, encoding='utf-8-sig') as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError('cannot read %s: %s' % (path, exc.strerror))
    except UnicodeDecodeError:
        raise ConfigError('cannot read %s: not UTF-8 text' % path)

    values = {name: dict(defaults) for name, defaults in SECTIONS.items()}
    seen = set()
    section = None

    for number, line in enumerate(text.split('\n'), 1):
        line = line.strip()

        if not line or line[0] in '#;':
            continue

        where = '%s line %d' % (path, number)

        if line.startswith('[') and line.endswith(']'):
            section = line[1:-1].strip()

            if section not in SECTIONS:
                raise ConfigError('%s: unknown section [%s]; expected '
                                  '[server] or [client]' % (where, section))
            continue

        key, value = _split_setting(line, where)

        if section is None:
            raise ConfigError('%s: %r comes before any [section]'
                              % (where, key))

        if key not in SECTIONS[section]:
            raise ConfigError('%s: unknown key %r in section [%s]'
                              % (where, key, section))

        if (section, key) in seen:
            raise ConfigError('%s: %r is set twice in [%s]'
                              % (where, key, section))

        seen.add((section, key))
        values[section][key] = value

    return Config(os.path.abspath(path),
                  Section(path, 'server', values['server']),
                  Section(path, 'client', values['client']))


def _split_setting(line: str, where: str) -> 'tuple[str, str]':
    """Split "key = value" or "key: value" into its stripped parts."""
    cut = min((line.find(sign) for sign in '=:' if sign in line),
              default=-1)

    if cut <= 0:
        raise ConfigError('%s: expected "key = value", got %r'
                          % (where, line[:60]))

    return line[:cut].strip().lower(), line[cut + 1:].strip()


def split_host_port(value: str, default_port: int) -> 'tuple[str, int]':
    """Split HOST, HOST:PORT, [V6] or [V6]:PORT; a bare IPv6 keeps PORT.

    A bare IPv6 address such as 2001:db8::10 has no port: its last group
    is part of the address, never a port number.
    """
    value = value.strip()

    if value.startswith('['):
        close = value.find(']')

        if close < 0:
            raise ConfigError('%r: missing "]" after an IPv6 address'
                              % value)

        host, rest = value[1:close], value[close + 1:]

        if not rest:
            return host, default_port

        if not rest.startswith(':'):
            raise ConfigError('%r: expected ":PORT" after "]"' % value)

        return host, _port_number(value, rest[1:])

    if value.count(':') == 1:
        host, port = value.split(':')
        return host, _port_number(value, port)

    return value, default_port


def _port_number(value: str, port: str) -> int:
    """Return PORT as a TCP port number, or raise naming VALUE."""
    if not (port.isascii() and port.isdigit() and len(port) <= 5) or \
            not 0 < int(port) < 65536:
        raise ConfigError('%r: port must be a number from 1 to 65535'
                          % value)

    return int(port)
