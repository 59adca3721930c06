"""Read Xymon's hosts.cfg the way xymond 4.3.30 does, for name lookups.

Only what decides which host a report is filed under is kept: each host
name and its CLIENT: aliases.  include, directory and their "optional"
forms are followed like xymond's stackfgets(); page, group and every
other line are passed over, as xymond passes them over for this purpose.
"""

import os
import time

from .registry import is_fingerprint

# What C's isspace() and so sscanf() take as white space.  The module
# uses str methods, not re: it runs in the forced command, where
# importing re would cost about 10 ms at every login.
_SPACE = ' \t\n\v\f\r'
_DIGITS = '0123456789'

# File names a "directory" line passes over, as xymond's stackio.c does.
_SKIPPED_SUFFIXES = ('~', ',v', '.dpkg-new', '.dpkg-orig', '.rpmsave',
                     '.rpmnew', '.rpmorig')
_MAX_INCLUDE_DEPTH = 20


class HostIndex:
    """Host names and CLIENT: aliases, looked up without regard to case."""

    def __init__(self) -> None:
        self.names = {}
        self.aliases = {}
        self.windows = {}
        self.problems = []
        self.pins = {}
        # name in lower case -> (address, page, tags) of its first line.
        self.details = {}
        self.page = ''
        self._default_tags = []
        # Every file and directory read, so a long-running server can
        # tell when hosts.cfg changed.
        self.sources = []

    def add(self, name: str, tags: 'list[str]', where: str = '',
            address: str = '', page: str = '') -> None:
        """Record host NAME with the tags of its line (at WHERE).

        A host named .default. is no host: its tags apply to the hosts
        that follow it, as in xymond.  The first line for a name wins.
        """
        if name.startswith('@'):
            name = name[1:]

        if name.lower() == '.default.':
            self._default_tags = tags
            return

        tags = tags + self._default_tags
        key = name.lower()
        alias = _tag_value(tags, 'client:')

        # xymond takes the CLIENT: alias of every line, repeats included.
        if alias:
            self.aliases.setdefault(alias.lower(), name)

        if key in self.names:
            return

        self.names[key] = name
        self.details[key] = (address, page, tags)
        pins = self._pins(tags, name, where)

        if pins is not None:
            self.pins[key] = pins

        window = (_tag_value(tags, 'notbefore:'),
                  _tag_value(tags, 'notafter:'))

        if any(window):
            self.windows[key] = window

    def _pins(self, tags: 'list[str]', name: str,
              where: str) -> 'frozenset | None':
        """Return the fingerprints SSHKEY: tags pin NAME to, or None.

        A malformed tag pins the host to nothing at all, so that a typo
        refuses the host's keys instead of silently accepting any key;
        it is reported with its file and line.
        """
        values = [tag[len('sshkey:'):] for tag in tags
                  if tag[:len('sshkey:')].lower() == 'sshkey:']

        if not values:
            return None

        good = [value for value in values if is_fingerprint(value)]

        for value in values:
            if value not in good:
                self.problems.append(
                    '%s: SSHKEY:%s of %s is not an OpenSSH SHA256 '
                    'fingerprint (SHA256: and 43 base64 characters, no '
                    '"=", as ssh-keygen -l prints it); the host accepts no '
                    'key until it is fixed' % (where, value[:60], name))

        return frozenset(good) if len(good) == len(values) else frozenset()

    def pinned(self, name: str) -> 'frozenset | None':
        """Return the fingerprints host NAME is pinned to, or None."""
        return self.pins.get(name.lower())

    def resolve(self, reported: str) -> 'str | None':
        """Return the hosts.cfg name xymond files REPORTED under, or None.

        xymond looks the name up among host names first and only then
        among CLIENT: aliases, both without regard to case.  A host
        outside its NOTBEFORE:/NOTAFTER: window counts as unknown.
        """
        key = reported.lower()
        name = self.names.get(key) or self.aliases.get(key)
        return name if name and self._in_window(name) else None

    def canonical(self, name: str) -> 'str | None':
        """Return the hosts.cfg spelling of host NAME, or None."""
        name = self.names.get(name.lower())
        return name if name and self._in_window(name) else None

    def _in_window(self, name: str) -> bool:
        """Tell whether host NAME is inside its NOTBEFORE/NOTAFTER window."""
        window = self.windows.get(name.lower())

        if not window:
            return True

        now = time.strftime('%Y%m%d%H%M')
        not_before, not_after = (value if value and len(value) == 12
                                 else None for value in window)
        return not (not_before and now < not_before or
                    not_after and now > not_after)


def _tag_value(tags: 'list[str]', prefix: str) -> 'str | None':
    """Return the value of the first tag starting with PREFIX (any case)."""
    for tag in tags:
        if tag[:len(prefix)].lower() == prefix:
            return tag[len(prefix):]

    return None


def load_hosts(path: str) -> HostIndex:
    """Read hosts.cfg at PATH and every file it includes."""
    index = HostIndex()
    base = os.path.dirname(os.path.abspath(path))

    if not os.path.isfile(path):
        index.sources.append(path)
        index.problems.append('%s: cannot read hosts.cfg' % path)
        return index

    _read_file(index, path, base, 0)
    return index


def _read_file(index: HostIndex, path: str, base: str, depth: int) -> None:
    """Add the hosts of one file, following its include lines.

    The page a host is on is the last "page", "subpage" or "subparent"
    line before it; an included file continues the page it is
    included on, and the page of the including file goes on after it.
    """
    index.sources.append(path)

    try:
        with open(path, 'rb') as handle:
            data = handle.read().decode('utf-8', 'replace')
    except OSError as exc:
        index.problems.append('%s: %s' % (path, exc.strerror))
        return

    for number, line in _joined_lines(data):
        host = _host_line(line)

        if host is not None:
            index.add(host, _tags(line), '%s line %d' % (path, number),
                      line.split(None, 1)[0], index.page)
            continue

        words = line.split()

        if len(words) > 1 and words[0] in ('page', 'subpage'):
            index.page = words[1]
        elif len(words) > 2 and words[0] == 'subparent':
            index.page = words[2]

        directive = _directive(line)

        if directive is not None:
            optional, kind, target = directive
            _follow(index, kind, _absolute(target, base), optional, base,
                    depth)


def _joined_lines(data: str) -> 'list[tuple[int, str]]':
    """Split DATA into lines as xymond does, joining continued lines.

    xymond ends a line at LF only (a CR or form feed stays inside it),
    and a backslash as the last non-blank character of a line joins the
    next line on directly.  Each line comes with the number of the line
    it starts on.
    """
    lines = []
    pending = ''
    start = 1

    for number, line in enumerate(data.split('\n'), 1):
        stripped = line.rstrip(_SPACE)

        if not pending:
            start = number

        if stripped.endswith('\\'):
            pending += stripped[:-1]
            continue

        lines.append((start, pending + line))
        pending = ''

    if pending:
        lines.append((start, pending))

    return lines


def _host_line(line: str) -> 'str | None':
    """Return the host name of a host line, or None, as xymond's sscanf.

    xymond reads "%d.%d.%d.%d %s": four numbers (blanks and a sign may
    come before each) joined by dots, then a name; each number must be
    0 to 255.
    """
    position = 0

    for octet in range(4):
        while position < len(line) and line[position] in _SPACE:
            position += 1

        start = position

        if position < len(line) and line[position] in '+-':
            position += 1

        digits = position

        while position < len(line) and line[position] in _DIGITS:
            position += 1

        if position == digits or not 0 <= int(line[start:position]) < 256:
            return None

        if octet < 3:
            if line[position:position + 1] != '.':
                return None
            position += 1

    name = line[position:].lstrip(_SPACE)

    for end, char in enumerate(name):
        if char in _SPACE:
            name = name[:end]
            break

    return name or None


def _directive(line: str) -> 'tuple[bool, str, str] | None':
    """Return (optional, kind, target) of an include or directory line."""
    text = line.lstrip(_SPACE)
    optional = text.startswith('optional')

    if optional:
        text = text[len('optional'):].lstrip(_SPACE)

    for kind in ('include', 'directory'):
        if text.startswith(kind) and text[len(kind):][:1] in (' ', '\t'):
            target = text[len(kind):].strip(_SPACE)
            return (optional, kind, target) if target else None

    return None


def _follow(index: HostIndex, kind: str, target: str, optional: bool,
            base: str, depth: int) -> None:
    """Read an include file or a directory named in hosts.cfg."""
    if depth >= _MAX_INCLUDE_DEPTH:
        index.problems.append('%s: includes nested too deep' % target)
        return

    if kind == 'include':
        if os.path.isfile(target):
            _read_file(index, target, base, depth + 1)
        elif not optional:
            index.problems.append('%s: include file missing' % target)
        return

    if not os.path.isdir(target):
        if not optional:
            index.problems.append('%s: directory missing' % target)
        return

    for path in _directory_files(target, index.sources):
        _read_file(index, path, base, depth + 1)


def _directory_files(top: str, listed: 'list[str]',
                     depth: int = 0) -> 'list[str]':
    """Return the files a "directory" line reads, in xymond's order.

    A directory's own files come first, sorted, then those of its
    subdirectories (RCS excepted), each subdirectory in turn.  Every
    directory read is appended to LISTED.
    """
    listed.append(top)

    try:
        names = sorted(os.listdir(top))
    except OSError:
        return []

    files, subdirectories = [], []

    for name in names:
        if name.startswith(('.', 'README')) or \
                name.endswith(_SKIPPED_SUFFIXES):
            continue

        path = os.path.join(top, name)

        if os.path.isdir(path):
            if name != 'RCS' and depth < _MAX_INCLUDE_DEPTH:
                subdirectories.append(path)
        elif os.path.isfile(path):
            files.append(path)

    for path in subdirectories:
        files.extend(_directory_files(path, listed, depth + 1))

    return files


def _absolute(target: str, base: str) -> str:
    """Resolve TARGET against the directory of the main hosts.cfg."""
    return os.path.join(base, target)


def _tags(line: str) -> 'list[str]':
    """Return the tags after the first "#", honouring "quoted tags"."""
    hash_at = line.find('#')

    if hash_at < 0:
        return []

    text = line[hash_at + 1:]
    tags = []
    position = 0

    while position < len(text):
        if text[position] in _SPACE:
            position += 1
        elif text[position] == '"':
            end = text.find('"', position + 1)
            end = len(text) if end < 0 else end
            tags.append(text[position + 1:end])
            position = end + 1
        else:
            end = position

            while end < len(text) and text[end] not in _SPACE:
                end += 1

            tags.append(text[position:end])
            position = end

    return tags
