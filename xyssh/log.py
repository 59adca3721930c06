"""Logging set-up and the one audit line written per message.

Audit lines look like

    rejected fp=SHA256:... host=web01.example.com from=192.0.2.7
    type=status bytes=812 reason=not-permitted detail=...

(one line).  Every value comes from an untrusted peer, so control
characters and blanks are replaced and the length is capped.
"""

import logging
import re
import syslog

_UNSAFE = re.compile(r'[\x00-\x20\x7f]+')
_MAX_VALUE = 200

_FACILITIES = {
    'daemon': syslog.LOG_DAEMON, 'user': syslog.LOG_USER,
    'auth': syslog.LOG_AUTH, 'local0': syslog.LOG_LOCAL0,
    'local1': syslog.LOG_LOCAL1, 'local2': syslog.LOG_LOCAL2,
    'local3': syslog.LOG_LOCAL3, 'local4': syslog.LOG_LOCAL4,
    'local5': syslog.LOG_LOCAL5, 'local6': syslog.LOG_LOCAL6,
    'local7': syslog.LOG_LOCAL7,
}

_PRIORITIES = {
    logging.DEBUG: syslog.LOG_DEBUG, logging.INFO: syslog.LOG_INFO,
    logging.WARNING: syslog.LOG_WARNING, logging.ERROR: syslog.LOG_ERR,
    logging.CRITICAL: syslog.LOG_CRIT,
}

audit_log = logging.getLogger('xyssh.audit')


class SyslogHandler(logging.Handler):
    """Write records through the C library's syslog(3).

    logging.handlers would cost the forced command about 14 ms of imports
    at every login; syslog(3) does the same job here.
    """

    def __init__(self, facility: str) -> None:
        super().__init__()
        syslog.openlog('xyssh', syslog.LOG_PID,
                       _FACILITIES.get(facility, syslog.LOG_DAEMON))

    def emit(self, record: logging.LogRecord) -> None:
        """Send one record to syslog."""
        try:
            priority = _PRIORITIES.get(record.levelno, syslog.LOG_INFO)
            syslog.syslog(priority, self.format(record))
        except Exception:
            self.handleError(record)


def setup_logging(destination: str, facility: str = 'daemon',
                  level: int = logging.INFO) -> None:
    """Send xyssh's log to syslog, or append it to the file DESTINATION.

    A log that cannot be opened never stops a report: the records then go
    nowhere, and the caller's own error handling still applies.
    """
    root = logging.getLogger('xyssh')
    root.setLevel(level)

    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()

    if destination == 'syslog':
        handler = SyslogHandler(facility)
        handler.setFormatter(logging.Formatter('%(message)s'))
    else:
        try:
            handler = logging.FileHandler(destination, encoding='utf-8')
        except OSError:
            handler = logging.NullHandler()

        handler.setFormatter(logging.Formatter(
            '%(asctime)s xyssh[%(process)d]: %(message)s'))

    root.addHandler(handler)
    root.propagate = False


def clean(value: object) -> str:
    """Make VALUE safe for one log field: no blanks, capped, '-' if none."""
    if value is None or value == '':
        return '-'

    text = _UNSAFE.sub('_', str(value))

    if len(text) > _MAX_VALUE:
        text = text[:_MAX_VALUE] + '...'

    return text


def quoted(value: object) -> str:
    """Make free text safe for one log field: quoted, on one line."""
    if value is None or value == '':
        return '-'

    text = re.sub(r'[\x00-\x1f\x7f"\\]+', ' ', str(value))[:_MAX_VALUE]
    return '"%s"' % text


def audit(verb: str, detail: object = None, **fields: object) -> None:
    """Write one audit line: VERB, the fields as key=value, then detail.

    DETAIL is the human sentence behind the reason, quoted.
    """
    line = ' '.join([verb] + ['%s=%s' % (key, clean(value))
                              for key, value in fields.items()] +
                    ['detail=%s' % quoted(detail)])
    level = logging.INFO if verb == 'accepted' else logging.WARNING
    audit_log.log(level, '%s', line)
