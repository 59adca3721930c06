"""The device's spool: reports kept while the server cannot take them.

One directory per server, one file per report, named after what the
report is about (status of HOST.TEST, client data of HOST ...): a newer
report of the same thing replaces the older one by a rename, so only the
newest is ever replayed.  Each file starts with one header line giving
when the report was made and when it goes stale; a stale report is
dropped, never sent: a status outlives its "+LIFETIME" (30 minutes
without one, as xymond) and then means nothing any more.

Files are written to a temporary name, fsynced and renamed, so a crash or
a full disk leaves either the old file or the new one, never half of one.
"""

import errno
import hashlib
import json
import os
import tempfile
import time

from .errors import XysshError
from .message import split_status_word, split_words, duration_minutes

# A report without a lifetime of its own goes stale after xymond's default
# status lifetime.
DEFAULT_LIFETIME = 30 * 60

HEADER = b'xyssh-spool 1'
SUFFIX = '.msg'
STATE = 'state.json'


class SpoolError(XysshError):
    """The spool could not keep a report."""

    def __init__(self, detail: str, error_number: int = 0) -> None:
        super().__init__(detail)
        self.error_number = error_number


class Entry:
    """One spooled report."""

    def __init__(self, path: str, created: float, expires: float,
                 data: bytes, size: int) -> None:
        self.path = path
        self.created = created
        self.expires = expires
        self.data = data
        self.size = size

    @property
    def key(self) -> str:
        """Return what the report is about, as its file name says."""
        return os.path.basename(self.path)[:-len(SUFFIX)]


def split_reports(message: bytes) -> 'list[bytes]':
    """Split a combo into its statuses; any other message stays whole.

    xymond handles a combo as its statuses one by one, so keeping them
    apart lets a newer status of one test replace just that test.
    """
    if not message.startswith(b'combo\n'):
        return [message]

    parts = message[len(b'combo\n'):].split(b'\n\nstatus')
    return [part if number == 0 else b'status' + part
            for number, part in enumerate(parts)]


def report_key(message: bytes) -> str:
    """Return the spool key of MESSAGE: same key, same subject.

    status and data: per host and test; client: per host (and collector);
    anything else: per exact content.  Hosts are compared as xymond
    compares them: commas are dots, case does not count.
    """
    first = message.split(b'\n', 1)[0].decode('latin-1')
    words = split_words(first)
    command = words[0] if words else ''

    if len(words) >= 2:
        subject = words[1].replace(',', '.').lower()

        if split_status_word(command) is not None or command == 'data':
            kind = 'status' if command != 'data' else 'data'
            return '%s-%s' % (kind, _digest(subject))

        if command == 'client' or command.startswith('client/'):
            host = subject.rpartition('.')[0] or subject
            return 'client-%s' % _digest(command + ' ' + host)

    return 'other-%s' % _digest(message)


def lifetime_seconds(message: bytes) -> int:
    """Return how long MESSAGE means something: its +LIFETIME or 30 min."""
    words = split_words(message.split(b'\n', 1)[0].decode('latin-1'))
    split = split_status_word(words[0]) if words else None

    if split is not None and split[0]:
        minutes = duration_minutes(split[0])

        if minutes > 0:
            return minutes * 60

    return DEFAULT_LIFETIME


def _digest(text) -> str:
    """Return a short hex digest of TEXT (a file name part)."""
    data = text if isinstance(text, bytes) else text.encode('utf-8')
    return hashlib.sha256(data).hexdigest()[:32]


def server_directory(base: str, label: str) -> str:
    """Return the spool directory for the server LABEL under BASE."""
    safe = ''.join(char if char.isalnum() or char in '.-_' else '_'
                   for char in label)
    return os.path.join(base, safe)


class Spool:
    """The spool of one server."""

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    def _ensure(self) -> None:
        """Create the directory (mode 0700) or raise SpoolError."""
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise SpoolError('cannot create spool directory %s: %s'
                             % (self.directory, exc.strerror)) from None

    def entries(self, now: 'float | None' = None) -> 'list[Entry]':
        """Return the live entries, oldest first; remove stale ones."""
        now = time.time() if now is None else now

        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SpoolError('cannot read spool directory %s: %s'
                             % (self.directory, exc.strerror)) from None

        entries = []

        for name in names:
            path = os.path.join(self.directory, name)

            if name.startswith('.tmp-'):
                # A writer that died: its report is either in the old
                # file or lost with the process that was adding it.
                if now - _mtime(path) > 60:
                    _remove(path)
                continue

            if not name.endswith(SUFFIX):
                continue

            entry = _read_entry(path)

            if entry is None or entry.expires <= now:
                _remove(path)
                continue

            entries.append(entry)

        entries.sort(key=lambda entry: entry.created)
        return entries

    def add(self, message: bytes, now: 'float | None' = None) -> 'list[str]':
        """Keep MESSAGE's reports; return what had to be dropped for room.

        Raises SpoolError when the report cannot be kept at all; the
        spool is then as it was.
        """
        now = time.time() if now is None else now
        self._ensure()
        dropped = []

        for number, report in enumerate(split_reports(message)):
            # A millisecond apart, so the parts of a combo keep their
            # order when sent later.
            dropped += self._add_one(report, now + number / 1000)

        return dropped

    def _add_one(self, report: bytes, now: float) -> 'list[str]':
        """Write one report, making room by dropping the oldest."""
        data = b'%s %.3f %.3f\n' % (HEADER, now,
                                    now + lifetime_seconds(report)) + report

        if len(data) > self.max_bytes:
            raise SpoolError('report of %d bytes is larger than the whole '
                             'spool (spool_size)' % len(report))

        path = os.path.join(self.directory, report_key(report) + SUFFIX)
        dropped = []
        entries = [entry for entry in self.entries(now)
                   if entry.path != path]
        used = sum(entry.size for entry in entries)

        while entries and used + len(data) > self.max_bytes:
            oldest = entries.pop(0)
            used -= oldest.size
            _remove(oldest.path)
            dropped.append(oldest.data.split(b'\n', 1)[0].decode(
                'utf-8', 'replace')[:80])

        try:
            write_atomically(path, data)
            return dropped
        except SpoolError as err:
            if err.error_number != errno.ENOSPC:
                raise
            full = err

        # A full disk is like a full spool: the newest report matters
        # more than the oldest, but the oldest go only if that makes room.
        victims = _make_room(self.directory, entries, len(data))

        if victims is None:
            raise full

        for oldest in victims:
            _remove(oldest.path)
            dropped.append(oldest.data.split(b'\n', 1)[0].decode(
                'utf-8', 'replace')[:80])

        write_atomically(path, data)
        return dropped

    def remove(self, entry: Entry) -> None:
        """Forget ENTRY (delivered, refused or replaced)."""
        _remove(entry.path)

    def note(self, success: bool, text: str = '',
             now: 'float | None' = None) -> None:
        """Record the outcome of a delivery for "xyssh status"."""
        now = time.time() if now is None else now
        state = self.state()
        state['last_success' if success else 'last_error'] = now

        if not success:
            state['last_error_text'] = text

        try:
            self._ensure()
            write_atomically(os.path.join(self.directory, STATE),
                             json.dumps(state, sort_keys=True).encode())
        except (SpoolError, OSError):
            # The state is only for people looking; a report never waits
            # for it.
            pass

    def state(self) -> dict:
        """Return the recorded outcomes (empty when there are none)."""
        try:
            with open(os.path.join(self.directory, STATE), 'rb') as file:
                state = json.loads(file.read())
        except (OSError, ValueError):
            return {}

        return state if isinstance(state, dict) else {}


def _make_room(directory: str, entries: 'list[Entry]',
               size: int) -> 'list[Entry] | None':
    """Return the oldest ENTRIES whose removal frees room for SIZE bytes.

    None when removing all of them would not be enough.
    """
    try:
        status = os.statvfs(directory)
    except OSError:
        return None

    block = status.f_frsize or 4096

    def on_disk(length: int) -> int:
        return -(-length // block) * block

    free = status.f_bavail * status.f_frsize
    chosen = []

    for entry in entries:
        if free >= on_disk(size):
            break
        chosen.append(entry)
        free += on_disk(entry.size)

    return chosen if free >= on_disk(size) else None


def _read_entry(path: str) -> 'Entry | None':
    """Read one spool file, or None when it is not a complete entry."""
    try:
        with open(path, 'rb') as file:
            data = file.read()
    except OSError:
        return None

    header, newline, report = data.partition(b'\n')
    fields = header.split(b' ')

    if not newline or len(fields) != 4 or \
            b' '.join(fields[:2]) != HEADER or not report:
        return None

    try:
        created, expires = float(fields[2]), float(fields[3])
    except ValueError:
        return None

    return Entry(path, created, expires, report, len(data))


def write_atomically(path: str, data: bytes) -> None:
    """Write DATA to PATH through a temporary file, fsync and rename."""
    directory = os.path.dirname(path)

    try:
        handle, temporary = tempfile.mkstemp(prefix='.tmp-', dir=directory)
    except OSError as exc:
        raise SpoolError('cannot write in %s: %s' % (directory,
                                                     exc.strerror),
                         exc.errno) from None

    try:
        with os.fdopen(handle, 'wb') as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())

        os.rename(temporary, path)
    except OSError as exc:
        _remove(temporary)
        raise SpoolError('cannot write %s: %s' % (path, exc.strerror),
                         exc.errno) from None

    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return

    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _mtime(path: str) -> float:
    """Return PATH's modification time, or 0."""
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _remove(path: str) -> None:
    """Remove PATH if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
