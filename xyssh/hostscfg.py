"""Read Xymon's hosts.cfg the way xymond 4.3.30 does, for name lookups.

Only what decides which host a report is filed under is kept: each host
name and its CLIENT: aliases.  include, directory and their "optional"
forms are followed like xymond's stackfgets(); page, group and every
other line are passed over, as xymond passes them over for this purpose.
"""

import os
import re
import time

# xymond recognises a host line with sscanf("%d.%d.%d.%d %s"), which lets
# blanks and signs in around the numbers.
_HOST_LINE = re.compile(r'\s*([+-]?\d+)\.\s*([+-]?\d+)\.\s*([+-]?\d+)\.'
                        r'\s*([+-]?\d+)(?!\d)\s*(\S+)')
_DIRECTIVE = re.compile(r'\s*(optional\s*)?(include|directory)[ \t]+(.+?)'
                        r'\s*\Z')
_CONTINUATION = re.compile(r'\\[ \t]*\r?\n')

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
        self._default_tags = []

    def add(self, name: str, tags: 'list[str]') -> None:
        """Record host NAME with the tags of its line.

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

        window = (_tag_value(tags, 'notbefore:'),
                  _tag_value(tags, 'notafter:'))

        if any(window):
            self.windows[key] = window

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
        index.problems.append('%s: cannot read hosts.cfg' % path)
        return index

    _read_file(index, path, base, 0)
    return index


def _read_file(index: HostIndex, path: str, base: str, depth: int) -> None:
    """Add the hosts of one file, following its include lines."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read().decode('utf-8', 'replace')
    except OSError as exc:
        index.problems.append('%s: %s' % (path, exc.strerror))
        return

    # A backslash at the end of a line continues it on the next one.
    data = _CONTINUATION.sub('', data)

    # xymond ends a line at LF only; a CR, form feed or the like stays
    # inside the line (str.splitlines() would split there).
    for line in data.split('\n'):
        match = _HOST_LINE.match(line)

        if match:
            if all(0 <= int(octet) < 256 for octet in match.groups()[:4]):
                index.add(match.group(5), _tags(line))
            continue

        match = _DIRECTIVE.match(line)

        if match:
            optional, kind, target = match.groups()
            _follow(index, kind, _absolute(target, base), bool(optional),
                    base, depth)


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

    for path in _directory_files(target):
        _read_file(index, path, base, depth + 1)


def _directory_files(top: str, depth: int = 0) -> 'list[str]':
    """Return the files a "directory" line reads, in xymond's order.

    A directory's own files come first, sorted, then those of its
    subdirectories (RCS excepted), each subdirectory in turn.
    """
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
        files.extend(_directory_files(path, depth + 1))

    return files


def _absolute(target: str, base: str) -> str:
    """Resolve TARGET against the directory of the main hosts.cfg."""
    return os.path.join(base, target)


def _tags(line: str) -> 'list[str]':
    """Return the tags after the first "#", honouring "quoted tags"."""
    hash_at = line.find('#')

    if hash_at < 0:
        return []

    return [quoted or plain for quoted, plain in
            re.findall(r'"([^"]*)"|(\S+)', line[hash_at + 1:])]
