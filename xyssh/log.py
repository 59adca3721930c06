"""Where xyssh's log goes, and the one audit line written per message.

Audit lines look like

    rejected fp=SHA256:... key=web01.example.com from=192.0.2.7
    type=status host=db01.example.com test=cpu bytes=812
    reason=not-permitted detail="status for db01.example.com is ..."

(one line).  Every value comes from an untrusted peer, so control
characters and blanks are replaced and the length is capped.

This module writes through syslog(3) or appends to a file by itself
rather than through the logging package: the forced command logs at
every login, and logging (with the modules it pulls in) would cost it
about 14 ms of start-up each time.
"""

import os
import syslog
import time

_MAX_VALUE = 200
# Control characters and blanks become "_" in a key=value field.
_UNSAFE = {code: '_' for code in list(range(33)) + [127]}
# In the quoted detail field they become blanks, and quotes go too.
_UNQUOTED = {code: ' ' for code in list(range(32)) + [127]}
_UNQUOTED.update({ord('"'): "'", ord('\\'): '/'})

_FACILITIES = {
    'daemon': syslog.LOG_DAEMON, 'user': syslog.LOG_USER,
    'auth': syslog.LOG_AUTH, 'local0': syslog.LOG_LOCAL0,
    'local1': syslog.LOG_LOCAL1, 'local2': syslog.LOG_LOCAL2,
    'local3': syslog.LOG_LOCAL3, 'local4': syslog.LOG_LOCAL4,
    'local5': syslog.LOG_LOCAL5, 'local6': syslog.LOG_LOCAL6,
    'local7': syslog.LOG_LOCAL7,
}

_PRIORITIES = {'debug': syslog.LOG_DEBUG, 'info': syslog.LOG_INFO,
               'warning': syslog.LOG_WARNING, 'error': syslog.LOG_ERR}


class _Destination:
    """The log: a file if one is set, else syslog."""

    def __init__(self) -> None:
        self.path = None

    def write(self, level: str, text: str) -> None:
        """Write one line; a log that fails never stops a report.

        A log file that cannot be written (say it was created by root
        and the forced command runs as the service account) is not
        allowed to swallow the line: it goes to syslog instead, with the
        reason, so the admin finds both.
        """
        if self.path:
            line = '%s xyssh[%d]: %s\n' % (
                time.strftime('%Y-%m-%d %H:%M:%S'), os.getpid(), text)

            try:
                descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND
                                     | os.O_CREAT, 0o640)
                try:
                    os.write(descriptor, line.encode('utf-8', 'replace'))
                finally:
                    os.close(descriptor)
                return
            except OSError as exc:
                text = '%s (log file %s: %s)' % (text, self.path,
                                                 exc.strerror)

        try:
            syslog.syslog(_PRIORITIES[level], text)
        except OSError:
            pass


_destination = _Destination()


def setup_logging(destination: str, facility: str = 'daemon') -> None:
    """Log to syslog (ident xyssh), or append to the file DESTINATION."""
    if destination == 'syslog':
        syslog.openlog('xyssh', syslog.LOG_PID,
                       _FACILITIES.get(facility, syslog.LOG_DAEMON))
        _destination.path = None
    else:
        _destination.path = destination


def log_event(level: str, text: str) -> None:
    """Log TEXT at LEVEL: debug, info, warning or error."""
    _destination.write(level, text)


def clean(value: object) -> str:
    """Make VALUE safe for one log field: no blanks, capped, '-' if none."""
    if value is None or value == '':
        return '-'

    text = str(value).translate(_UNSAFE)

    if len(text) > _MAX_VALUE:
        text = text[:_MAX_VALUE] + '...'

    return text


def quoted(value: object) -> str:
    """Make free text safe for one log field: quoted, on one line."""
    if value is None or value == '':
        return '-'

    return '"%s"' % str(value).translate(_UNQUOTED)[:_MAX_VALUE]


def audit(verb: str, detail: object = None, **fields: object) -> None:
    """Write one audit line: VERB, the fields as key=value, then detail.

    Accepted messages are logged at info, refusals at warning; DETAIL is
    the human sentence behind the reason, quoted.
    """
    line = ' '.join([verb] + ['%s=%s' % (key, clean(value))
                              for key, value in fields.items()] +
                    ['detail=%s' % quoted(detail)])
    log_event('info' if verb == 'accepted' else 'warning', line)
