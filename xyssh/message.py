"""Parse a Xymon message the way xymond 4.3.30 reads it.  Pure functions.

xymond picks a handler by comparing the start of the message with its
command words, so "statusfoo" is taken as a status.  xyssh instead takes
the first word of the first line exactly and refuses anything it does
not recognise.  Where xymond reads a host name, this module reads the
same name, by the same rules: HOST.TEST is split at the last dot and
commas in HOST become dots (for Big Brother clients).  A message xymond
would cut short or file under another name is refused here.
"""

from .errors import MalformedMessage, NotPermitted

REPORT_TYPES = ('status', 'combo', 'client', 'data')

# Commands xymond 4.3.30 knows besides the four report types.  None of
# them may be sent unless a key is granted the word.
OTHER_COMMANDS = frozenset((
    'extcombo', 'meta', 'modify', 'summary', 'notes', 'usermsg', 'enable',
    'disable', 'config', 'download', 'flush', 'reload', 'rotate', 'query',
    'xymondlog', 'xymondxlog', 'xymondboard', 'xymondxboard', 'hostinfo',
    'xymondack', 'hobbitdack', 'ack', 'ackinfo', 'drop', 'rename', 'dummy',
    'ping', 'notify', 'schedule', 'clientlog', 'ghostlist', 'multisrclist',
    'senderstats', 'pullclient',
))

# Granted commands whose second word is HOST.TEST or HOST: the host is
# held to the key's own host like a report's.
HOST_TEST_COMMANDS = frozenset(('query', 'xymondlog', 'xymondxlog',
                                'enable', 'disable', 'notify', 'modify',
                                'meta', 'ackinfo'))
HOST_COMMANDS = frozenset(('drop', 'clientlog'))

# Commands that can carry messages or actions for any host; no key may
# be granted them.
NEVER_GRANTED = frozenset(('extcombo', 'schedule', 'rename'))

# Text that makes xymond record another sender address (xymond.c: the
# "Status message received from" line cuts the status there; a [proxy]
# section with ClientIP: does the same for client data).
_FAKE_SENDER = (b'\nStatus message received from ', b'\n[proxy]\n')

# The module uses str methods, not re: it runs in the forced command,
# where importing re would cost about 10 ms at every login.
_TEST_NAME_CHARACTERS = frozenset('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij'
                                  'klmnopqrstuvwxyz0123456789_-')
_DIGITS = '0123456789'
_COLORS = ('green', 'yellow', 'red', 'clear', 'client')
_REFUSED_COLORS = ('purple', 'blue')
_UNIT_MINUTES = {'': 1, 'm': 1, 'h': 60, 'd': 1440, 'w': 10080}


class Report:
    """One host-bearing part of a message: a status, client or data."""

    def __init__(self, kind: str, host: str, test: str, size: int) -> None:
        self.kind = kind
        self.host = host
        self.test = test
        self.size = size


class Message:
    """A parsed message: its command word, type and the parts it holds."""

    def __init__(self, command: str, kind: str, reports: 'list[Report]',
                 size: int) -> None:
        self.command = command
        self.kind = kind
        self.reports = reports
        self.size = size


def parse_message(data: bytes) -> Message:
    """Parse DATA into a Message, or raise MalformedMessage/NotPermitted.

    Only the four report types are parsed in full.  Any other command
    xymond knows comes back with kind "other" so a grant can let it
    through; anything else is malformed.
    """
    if not data:
        raise MalformedMessage('empty message')

    if b'\x00' in data:
        raise MalformedMessage('NUL byte in the message (xymond would '
                               'cut it there)')

    for marker in _FAKE_SENDER:
        if marker in data:
            raise NotPermitted('the message carries a %r line that would '
                               'set a false sender address'
                               % marker.strip().decode())

    text = data.decode('latin-1')
    words = split_words(text.split('\n', 1)[0])
    command = words[0] if words and text[:1] not in ' \t' else ''

    if split_status_word(command) is not None:
        return Message(command, 'status', [_parse_status(text)], len(data))

    if command == 'combo' and text.startswith('combo\n'):
        return Message(command, 'combo', _parse_combo(text), len(data))

    if command == 'client' or command.startswith('client/'):
        if not text.startswith(('client ', 'client/')):
            # xymond takes a client message only with a blank or "/"
            # right after the word; a tab or newline there is ignored.
            raise MalformedMessage('client needs HOST.OSTYPE after one '
                                   'blank')

        return Message(command, 'client', [_parse_client(text)],
                       len(data))

    if command == 'data':
        return Message(command, 'data', [_parse_data(text)], len(data))

    if command in OTHER_COMMANDS:
        return Message(command, 'other', [], len(data))

    raise MalformedMessage('unknown message type %r' % command[:40])


def split_words(line: str) -> 'list[str]':
    """Split a line into words at blanks and tabs only, as strtok(" \\t").

    str.split() would also split at CR, form feed and other characters
    that xymond keeps inside a word.
    """
    return [word for word in line.replace('\t', ' ').split(' ') if word]


def split_status_word(word: str) -> 'tuple[str | None, str | None] | None':
    """Split "status[+LIFETIME][/group:GROUPS]" into (lifetime, groups).

    Returns None when WORD is not a status command word at all.
    """
    if not word.startswith('status'):
        return None

    rest = word[len('status'):]
    lifetime = groups = None

    if rest.startswith('+'):
        lifetime, slash, after = rest[1:].partition('/')
        rest = slash + after

    if rest.startswith('/group:'):
        groups = rest[len('/group:'):]
    elif rest:
        return None

    return lifetime, groups


def _is_name(text: str) -> bool:
    """Tell whether TEXT is a test or data name xyssh passes on.

    xymond would also take ":", "/" and "\\", but those end up in file
    names under its history and rrd directories.
    """
    return bool(text) and all(char in _TEST_NAME_CHARACTERS
                              for char in text)


def _is_duration(text: str) -> bool:
    """Tell whether TEXT is numbers each with an optional unit m/h/d/w."""
    position = 0

    while position < len(text):
        start = position

        while position < len(text) and text[position] in _DIGITS:
            position += 1

        if position == start:
            return False

        if position < len(text) and text[position] in 'mhdw':
            position += 1

    return bool(text)


def _split_host_test(word: str, kind: str) -> 'tuple[str, str]':
    """Split HOST.TEST at the last dot and turn commas into dots."""
    host, dot, test = word.rpartition('.')

    if not dot or not host or not test:
        raise MalformedMessage('%s needs HOST.TEST, got %r'
                               % (kind, word[:80]))

    return host.replace(',', '.'), test


def duration_minutes(text: str) -> int:
    """Return the minutes xymond's durationvalue() reads from TEXT.

    It reads a number and an optional unit m, h, d or w (minutes without
    one), again and again, adding them up; it stops at anything that is
    not a number where a number should start.  So "2H" is 2 minutes,
    "10mh5" is 10, and an empty lifetime is 0.
    """
    total = 0
    position = 0

    while position < len(text) and text[position] in _DIGITS:
        start = position

        while position < len(text) and text[position] in _DIGITS:
            position += 1

        unit = ''

        if position < len(text) and text[position] in 'mhdw':
            unit = text[position]
            position += 1

        total += int(text[start:position - len(unit)]) * _UNIT_MINUTES[unit]

    return total


def parse_color(word: str) -> 'str | None':
    """Return the color xymond reads in WORD, or None, as parse_color().

    xymond looks at the first seven characters, takes their leading
    letters and compares them, ignoring case, with the color names: so
    "Red," is red and "greenish" is no color at all.
    """
    letters = ''

    for char in word[:7]:
        if not ('a' <= char <= 'z' or 'A' <= char <= 'Z'):
            break
        letters += char

    letters = letters.lower()
    return letters if letters in _COLORS + _REFUSED_COLORS else None


def _parse_status(text: str) -> Report:
    """Parse one "status[+LIFETIME][/group:G] HOST.TEST COLOR ..." message."""
    words = split_words(text.split('\n', 1)[0])
    lifetime, groups = split_status_word(words[0])

    if lifetime is not None and not _is_duration(lifetime):
        raise MalformedMessage('status lifetime +%s: unit must be m/h/d/w, '
                               'in lowercase, as in +30 or +1h30m (xymond '
                               'would read +%s as %d minutes)'
                               % (lifetime[:20], lifetime[:20],
                                  duration_minutes(lifetime)))

    if groups is not None and not groups:
        raise MalformedMessage('status: empty /group: name')

    if len(words) < 3:
        raise MalformedMessage('status needs HOST.TEST and a color')

    host, test = _split_host_test(words[1], 'status')

    if not _is_name(test):
        raise MalformedMessage('test name %r: use letters, digits, "_" '
                               'and "-" only' % test[:40])

    color = parse_color(words[2])

    if color in _REFUSED_COLORS:
        raise MalformedMessage('color %r is reserved to xymond; send '
                               'green, yellow, red or clear' % words[2])

    if color is None:
        raise MalformedMessage('unknown color %r' % words[2][:20])

    return Report('status', host, test, len(text))


def _parse_combo(text: str) -> 'list[Report]':
    """Split a combo where xymond splits it and parse every status."""
    parts = text[len('combo\n'):].split('\n\nstatus')
    reports = []

    for number, part in enumerate(parts):
        if number > 0:
            part = 'status' + part

        word = (split_words(part.split('\n', 1)[0]) or [''])[0]

        if split_status_word(word) is None:
            raise MalformedMessage('combo part %d is not a status'
                                   % (number + 1))

        reports.append(_parse_status(part))

    return reports


def _parse_client(text: str) -> Report:
    """Parse "client[/COLLECTOR] HOST.OSTYPE [CLASS]" and its sections.

    For client messages xymond ends the first line at a CR as well.
    """
    words = split_words(text.split('\n', 1)[0].split('\r', 1)[0])

    if len(words) < 2:
        raise MalformedMessage('client needs HOST.OSTYPE')

    host, ostype = _split_host_test(words[1], 'client')
    return Report('client', host, ostype, len(text))


def _parse_data(text: str) -> Report:
    """Parse "data HOST.NAME" and its free text.

    xymond takes the name up to a blank, tab, CR or newline.
    """
    words = split_words(text[len('data'):].split('\n', 1)[0].split('\r', 1)[0])

    if text[len('data'):][:1] not in (' ', '\t') or not words:
        raise MalformedMessage('data needs HOST.NAME')

    host, name = _split_host_test(words[0], 'data')

    if not _is_name(name):
        raise MalformedMessage('data name %r: use letters, digits, "_" '
                               'and "-" only' % name[:40])

    return Report('data', host, name, len(text))


def other_command_host(data: bytes, command: str) -> 'str | None':
    """Return the host a granted non-report command names, or None."""
    words = split_words(data.decode('latin-1').split('\n', 1)[0])

    if len(words) < 2:
        return None

    if command in HOST_TEST_COMMANDS:
        return _split_host_test(words[1], command)[0]

    if command in HOST_COMMANDS:
        return words[1].replace(',', '.')

    return None
