"""xymon-ssh: a drop-in for Xymon's `xymon` program that sends over SSH.

    xymon-ssh [--debug] [--timeout=N] [--merge] RECIPIENT MESSAGE

MESSAGE "@" sends all of stdin as one message, "-" sends each stdin line
as a message of its own (replies are dropped, as xymon drops them), any
other text is sent as it is; with --merge, MESSAGE, a newline and all of
stdin make one message.  RECIPIENT is accepted as xymon accepts it (an
address, host:port, a list, or 0.0.0.0 for $XYMSERVERS); the SSH
destination itself comes from the [client] section of xyssh.cfg.

stdout carries xymond's reply and nothing else: Xymon's client script
saves it as the logfetch configuration.  Every diagnostic goes to stderr.
"""

import os
import subprocess
import sys

from .client import EXIT_CONFIG, EXIT_OK, EXIT_USAGE, destinations
from .delivery import deliver, group_label, open_spool, route, start_delay
from .config import config_path, load_config
from .errors import ConfigError

XYMON_VERSION = 'Xymon version 4.3.30'
USAGE = ('Usage: xymon-ssh [--debug] [--timeout=N] [--merge] '
         '[--config PATH] RECIPIENT MESSAGE\n'
         '       xymon-ssh --version\n')

# Options of Xymon's xymon that make no sense over SSH; accepted quietly.
_IGNORED = ('--response', '--str', '--proxy=', '--env=', '--area=',
            '--out=')


class Options:
    """What the command line asked for."""

    def __init__(self) -> None:
        self.debug = False
        self.timeout = None
        self.merge = False
        self.config = None
        self.version = False
        self.help = False
        self.words = []


def parse_argv(argv: 'list[str]') -> Options:
    """Parse argv the way xymon does: unknown options only draw a warning."""
    options = Options()

    words = iter(argv)

    for word in words:
        # Like xymon, every word starting with "--" is an option, even
        # after RECIPIENT or MESSAGE.
        if word == '--config':
            # xyssh's own option, also spelt as the other commands take
            # it: --config PATH.
            options.config = next(words, None)

            if not options.config:
                sys.stderr.write('--config needs a PATH\n')
                options.help = True
        elif not word.startswith('--') and word != '-?':
            options.words.append(word)
        elif word == '--debug':
            options.debug = True
        elif word == '--merge':
            options.merge = True
        elif word == '--version':
            options.version = True
        elif word in ('--help', '-?'):
            options.help = True
        elif word.startswith('--timeout='):
            value = word[len('--timeout='):]
            options.timeout = int(value) if value.isdigit() and \
                int(value) > 0 else None
        elif word.startswith('--config='):
            options.config = word[len('--config='):]
        elif word.startswith(_IGNORED):
            pass
        else:
            sys.stderr.write('Unknown option %s\n' % word)

    return options


def version_line() -> str:
    """Return what `xymon --version` says on this machine.

    Xymon's client script reports it as the client version, and the
    server may start a client update when it differs; so the wrapped
    xymon binary is asked when it is there.
    """
    home = os.environ.get('XYMONHOME', '/usr/lib/xymon/client')
    stock = os.path.join(home, 'bin', 'xymon')

    try:
        if os.path.isfile(stock) and not os.path.samefile(stock,
                                                           sys.argv[0]):
            result = subprocess.run([stock, '--version'], timeout=5,
                                    capture_output=True, check=False)
            line = result.stdout.decode('utf-8', 'replace').strip()

            if line.startswith('Xymon version'):
                return line.splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass

    return XYMON_VERSION


def _messages(options: Options, stdin) -> 'tuple[list[bytes], bool]':
    """Return the messages to send and whether their replies are wanted."""
    message = options.words[1]

    if options.merge:
        return [message.encode('utf-8', 'surrogateescape') + b'\n' +
                stdin.read()], True

    if message == '@':
        return [stdin.read()], True

    if message == '-':
        # One message per line, split at LF only as xymon does; a blank
        # line would only be refused by the server.
        lines = stdin.read().split(b'\n')
        messages = [line + b'\n' for line in lines[:-1]] + \
            ([lines[-1]] if lines[-1] else [])
        return [line for line in messages if line.strip()], False

    return [message.encode('utf-8', 'surrogateescape')], True


def main(argv: 'list[str] | None' = None) -> int:
    """Run xymon-ssh; return its exit status."""
    options = parse_argv(sys.argv[1:] if argv is None else argv)

    if options.version:
        sys.stdout.write(version_line() + '\n')
        return EXIT_OK

    if options.help or len(options.words) < 2:
        sys.stderr.write(USAGE)
        return EXIT_USAGE

    def debug(text: str) -> None:
        """Print a debugging line when --debug is given."""
        if options.debug:
            sys.stderr.write('xymon-ssh: %s\n' % text)

    def warn(text: str) -> None:
        """Print a warning: something the admin should know."""
        sys.stderr.write('xymon-ssh: warning: %s\n' % text)

    try:
        config = load_config(config_path(options.config))
        servers = destinations(config.client, options.timeout)
        groups = route(options.words[0], servers)
        spools = [open_spool(config.client, group) for group in groups]
    except ConfigError as err:
        sys.stderr.write('xymon-ssh: %s\n' % err.detail)
        return EXIT_CONFIG

    messages, want_reply = _messages(options, sys.stdin.buffer)
    messages = [message for message in messages if message]

    if not messages:
        debug('nothing to send')
        return EXIT_OK

    start_delay(config.client, debug)
    statuses = []
    replied = False
    notices = set()
    delivered_to = None

    for group, spool in zip(groups, spools):
        debug('sending %d message(s) to %s as %s' % (
            len(messages), group_label(group), group[0].user))
        outcome = deliver(group, messages, spool, debug, warn)
        statuses.append(outcome.exit_status)

        if outcome.failure is not None:
            sys.stderr.write('xymon-ssh: %s\n' % outcome.failure.text)
            continue

        for answer in outcome.answers:
            if answer is not None and answer.exit_status:
                sys.stderr.write('xymon-ssh: server %s: %s\n'
                                 % (outcome.destination.label, answer.text))

        first = outcome.answers[0]

        if delivered_to is None and first is not None and \
                not first.exit_status:
            delivered_to = outcome.destination

        notices.update(*(answer.notices for answer in outcome.answers
                         if answer is not None))

        # With several servers, the reply of the first that took the
        # message is the one printed, as xymon does.
        if want_reply and not replied and first is not None and \
                not first.exit_status:
            sys.stdout.buffer.write(first.reply)
            sys.stdout.buffer.flush()
            replied = True

    if 'rotate' in notices:
        _rotate_as_asked(servers, debug)

    if delivered_to is not None:
        renew_if_due(delivered_to, debug)

    return next((status for status in statuses if status), EXIT_OK)


def renew_if_due(server, debug) -> None:
    """Renew the device certificate at SERVER when it is due.

    The reports went first; a renewal that fails is said on stderr and
    tried again at the next run, while the old certificate still works.
    """
    from .renewal import renew, renewal_due
    from .rotation import RotationError

    if not renewal_due(server):
        return

    try:
        renew(server, debug)
    except RotationError as err:
        sys.stderr.write('xymon-ssh: warning: renewing the device '
                         'certificate failed: %s\n' % err.text)
        return

    debug('renewed the device certificate at %s' % server.label)


def _rotate_as_asked(servers, debug) -> None:
    """Replace the device key because a server asked for it.

    The reports went first; a rotation that fails is said on stderr and
    tried again at the next run, since the server keeps asking.
    """
    from .registry import fingerprint_of_line
    from .rotation import RotationError, rotate

    try:
        public = rotate(servers, debug, debug)
    except RotationError as err:
        sys.stderr.write('xymon-ssh: warning: the server asked for a new '
                         'device key, but rotating failed: %s\n' % err.text)
        return

    sys.stderr.write('xymon-ssh: the server asked for a new device key: '
                     'now using %s\n' % fingerprint_of_line(public))
