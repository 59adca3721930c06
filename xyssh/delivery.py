"""Deliver reports with retries, and keep what cannot go now for later.

A run sends its own reports first, then whatever earlier runs could not
deliver, all in one SSH session.  A report counts as delivered only when
the server answered "ok" for it, which it does after xymond took the
whole message; anything else leaves it (or puts it) in the spool.
"""

import random
import sys
import time

from .client import (EXIT_CONNECT, EXIT_DEVICE_KEY, EXIT_HOST_KEY,
                     EXIT_OK, EXIT_RESOLVE, EXIT_SERVER_ERROR,
                     EXIT_TIMEOUT, EXIT_XYMOND_DOWN,
                     Answer, Destination, SendFailure, send_messages)
from .spool import Spool, SpoolError, report_key, server_directory, \
    split_reports

# Failures worth another try within the same run: the server could not
# be reached (sshd's MaxStartups drops connections before they log in),
# or the session broke before every answer came.
RETRY_IN_RUN = (EXIT_RESOLVE, EXIT_CONNECT, EXIT_SERVER_ERROR)

# Failures after which a report is kept for a later run.  A server host
# key that changed and a device key that cannot be used are among them:
# nothing was sent, and once the admin has checked and fixed the key the
# reports still within their lifetime go out.  Refusals are not kept:
# the server said no to the message itself.
KEEP_FOR_LATER = RETRY_IN_RUN + (EXIT_TIMEOUT, EXIT_XYMOND_DOWN,
                                 EXIT_HOST_KEY, EXIT_DEVICE_KEY)

FIRST_BACKOFF = 1.0
LONGEST_BACKOFF = 30.0


def route(recipient: str,
          servers: 'list[Destination]') -> 'list[list[Destination]]':
    """Return the groups RECIPIENT goes to, each a failover list.

    As with Xymon's xymon: "0.0.0.0" (the stock client's word for "every
    server in $XYMSERVERS") sends to every configured server, each on its
    own; a blank-separated list tries the servers in order until one
    takes the message.  A single name goes to the server of that name,
    else (it is only a label) to the configured servers in order.
    """
    if recipient == '0.0.0.0':
        return [[server] for server in servers]

    if ' ' not in recipient.strip():
        name = recipient.strip().lower()
        named = [server for server in servers
                 if name in (server.host.lower(), server.label.lower())]

        if named:
            return [named[:1]]

    return [servers]


def group_label(group: 'list[Destination]') -> str:
    """Return how a failover group is named in messages and the spool."""
    return ' '.join(server.label for server in group)


def open_spool(section, group: 'list[Destination]') -> 'Spool | None':
    """Return the spool of GROUP from [client], or None if it is off."""
    base = section.text('spool')

    if not base:
        return None

    return Spool(server_directory(base, group_label(group)),
                 section.number('spool_size', 1) * 1024)


def start_delay(section, debug, sleep=time.sleep) -> None:
    """Wait a random part of start_window before the first connection.

    Xymon clients all run on the same five-minute schedule; spreading
    their connections keeps sshd's MaxStartups from dropping them.  A
    person at a terminal is not made to wait.
    """
    window = section.number('start_window', 0)

    if not window or sys.stdin.isatty() or sys.stderr.isatty():
        return

    delay = random.uniform(0, window)
    debug('waiting %.1f seconds before connecting (start_window)' % delay)
    sleep(delay)


def backoff(attempt: int) -> float:
    """Return the pause before retry ATTEMPT (1, 2, ...), with jitter."""
    limit = min(LONGEST_BACKOFF, FIRST_BACKOFF * 2 ** (attempt - 1))
    return random.uniform(limit / 2, limit * 1.5)


def send_with_retries(destination: Destination, batch: 'list[bytes]',
                      debug, warn, sleep=time.sleep) -> 'list[Answer]':
    """Send BATCH, retrying what is worth it until the timeout is used.

    Raises the last SendFailure when no try succeeded.
    """
    deadline = time.monotonic() + destination.timeout
    attempt = 0

    while True:
        remaining = deadline - time.monotonic()

        try:
            return send_messages(destination, batch, debug, warn,
                                 timeout=max(1.0, remaining))
        except SendFailure as failure:
            attempt += 1
            pause = backoff(attempt)

            if failure.exit_status not in RETRY_IN_RUN or \
                    not failure.transient or \
                    time.monotonic() + pause >= deadline:
                raise

            debug('try %d failed (%s); next try in %.1f seconds'
                  % (attempt, failure.text, pause))
            sleep(pause)


def send_with_failover(group: 'list[Destination]', batch: 'list[bytes]',
                       debug, warn, sleep=time.sleep
                       ) -> 'tuple[Destination, list[Answer]]':
    """Send BATCH to the first server of GROUP that can take it.

    A server that cannot be reached, or whose xymond is down, passes the
    batch to the next; anything else (a refusal, a key problem) is
    final.  Raises the last failure when every server failed.
    """
    for number, destination in enumerate(group):
        last = number == len(group) - 1

        try:
            answers = send_with_retries(destination, batch, debug, warn,
                                        sleep)
        except SendFailure as failure:
            if last or failure.exit_status not in KEEP_FOR_LATER:
                raise
            debug('%s failed (%s); trying %s'
                  % (destination.label, failure.text,
                     group[number + 1].label))
            continue

        down = answers and answers[0].exit_status == EXIT_XYMOND_DOWN

        if not down or last:
            return destination, answers

        debug('%s: xymond unavailable; trying %s'
              % (destination.label, group[number + 1].label))

    raise AssertionError('unreachable: the last server returns or raises')


class Outcome:
    """What became of a run's own messages, and which server took them."""

    def __init__(self, answers: 'list[Answer | None]',
                 failure: 'SendFailure | None',
                 destination: 'Destination | None' = None) -> None:
        self.answers = answers
        self.failure = failure
        self.destination = destination

    @property
    def exit_status(self) -> int:
        """Return the run's exit status: the failure's, or the last's."""
        if self.failure is not None:
            return self.failure.exit_status

        statuses = [answer.exit_status if answer else EXIT_SERVER_ERROR
                    for answer in self.answers]
        return statuses[-1] if statuses else EXIT_OK


def deliver(group: 'list[Destination]', messages: 'list[bytes]',
            spool: 'Spool | None', debug, warn,
            sleep=time.sleep) -> Outcome:
    """Send MESSAGES and the spooled reports; spool what did not go."""
    pending, superseded = _pending(spool, messages, warn)
    frames = list(messages) + [entry.data for entry in pending]

    if not frames:
        return Outcome([], None, group[0])

    try:
        destination, answers = send_with_failover(group, frames, debug,
                                                  warn, sleep)
    except SendFailure as failure:
        if failure.exit_status in KEEP_FOR_LATER:
            _keep(spool, messages, warn)
        if spool is not None:
            spool.note(False, failure.text)
        return Outcome([None] * len(messages), failure, group[-1])

    own = [answers[index] if index < len(answers) else None
           for index in range(len(messages))]
    later = [message for message, answer in zip(messages, own)
             if answer is None or answer.exit_status in KEEP_FOR_LATER]

    if not later:
        # Newer reports of the same tests went through.  (When one is
        # kept instead, it replaces these files by a rename.)
        for entry in superseded:
            spool.remove(entry)

    for index, entry in enumerate(pending, len(messages)):
        answer = answers[index] if index < len(answers) else None

        if answer is None or answer.exit_status in KEEP_FOR_LATER:
            continue

        spool.remove(entry)

        if answer.exit_status == EXIT_OK:
            debug('delivered a report kept since %s'
                  % time.strftime('%H:%M:%S', time.localtime(entry.created)))
        else:
            warn('dropped a kept report the server refused: %s (%s)'
                 % (_first_line(entry.data), answer.text))

    _keep(spool, later, warn)

    if spool is not None:
        delivered = all(answer is not None and answer.exit_status ==
                        EXIT_OK for answer in answers) and \
            len(answers) == len(frames)
        spool.note(delivered, '' if delivered else _problem(answers))

    return Outcome(own, None, destination)


def flush(group: 'list[Destination]', spool: Spool, debug, warn,
          sleep=time.sleep) -> 'tuple[int, int, Outcome]':
    """Send only the spooled reports; return (before, after, outcome)."""
    before = len(spool.entries())
    outcome = deliver(group, [], spool, debug, warn, sleep)
    return before, len(spool.entries()), outcome


def every_group(servers: 'list[Destination]') -> 'list[list[Destination]]':
    """Return every group a run may have spooled for: each server alone,
    and all of them as one failover list when there are several."""
    groups = [[server] for server in servers]
    return groups + [servers] if len(servers) > 1 else groups


def _pending(spool: 'Spool | None', messages: 'list[bytes]',
             warn) -> 'tuple[list, list]':
    """Return the spooled entries to send with MESSAGES, and the rest.

    A spooled report about the same thing as a new one is superseded and
    never sent: only the newest report of a host and test is replayed.
    """
    if spool is None:
        return [], []

    try:
        entries = spool.entries()
    except SpoolError as err:
        warn(err.detail)
        return [], []

    fresh = {report_key(report) for message in messages
             for report in split_reports(message)}
    return ([entry for entry in entries if entry.key not in fresh],
            [entry for entry in entries if entry.key in fresh])


def _keep(spool: 'Spool | None', messages: 'list[bytes]', warn) -> None:
    """Put MESSAGES in the spool and say so, or say why they are lost."""
    if not messages:
        return

    if spool is None:
        warn('%d message(s) not delivered and not kept: no spool is '
             'configured' % len(messages))
        return

    kept = 0

    for message in messages:
        try:
            for dropped in spool.add(message):
                warn('spool full (spool_size): dropped the oldest kept '
                     'report: %s' % dropped)
            kept += 1
        except SpoolError as err:
            warn('message not kept: %s' % err.detail)

    if kept:
        warn('kept %d message(s) in %s; the next run or "xyssh flush" '
             'sends them' % (kept, spool.directory))


def _problem(answers: 'list[Answer]') -> str:
    """Return the text of the first failed answer, for "xyssh status"."""
    for answer in answers:
        if answer.exit_status != EXIT_OK:
            return answer.text

    return 'the server did not answer every message'


def _first_line(data: bytes) -> str:
    """Return the first line of a report, shortened for a message."""
    return data.split(b'\n', 1)[0].decode('utf-8', 'replace')[:80]


def describe(spool: Spool, now: 'float | None' = None) -> 'list[str]':
    """Return the lines "xyssh status" prints for SPOOL."""
    now = time.time() if now is None else now
    entries = spool.entries(now)
    state = spool.state()
    lines = ['spool %s' % spool.directory,
             'kept reports %d (%d bytes, at most %d)'
             % (len(entries), sum(entry.size for entry in entries),
                spool.max_bytes)]

    if entries:
        lines.append('oldest %s (%d seconds ago)'
                     % (_when(entries[0].created),
                        now - entries[0].created))

    lines.append('last success %s' % _when(state.get('last_success')))
    lines.append('last error %s' % _when(state.get('last_error')))

    if state.get('last_error'):
        lines.append('last error text %s' % state.get('last_error_text',
                                                      ''))

    return lines


def _when(stamp) -> str:
    """Return STAMP as local time, or "never"."""
    if not isinstance(stamp, (int, float)):
        return 'never'

    return time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(stamp))

