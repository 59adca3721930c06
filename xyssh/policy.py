"""Decide whether one key may send one parsed message.  Pure.

A key is bound to one hosts.cfg host.  Every host a message names, in
every part of a combo, must resolve (as xymond resolves it) to that host;
a message with even one foreign part is refused whole.
"""

from .errors import MessageTooLarge, NotPermitted
from .hostscfg import HostIndex
from .message import (NEVER_GRANTED, Message, REPORT_TYPES,
                      other_command_host)

# xymond copies a message into its worker channel behind a header line
# of its own (sequence, host, time, sender, ...); the copy is cut at
# MAXMSG_*, so a message must leave room for that header.
CHANNEL_HEADER_ROOM = 1024


class Limits:
    """Largest message accepted per type, in bytes."""

    def __init__(self, status_kib: int, client_kib: int,
                 data_kib: int) -> None:
        self.by_kind = {
            'status': ('MAXMSG_STATUS', status_kib),
            'client': ('MAXMSG_CLIENT', client_kib),
            'data': ('MAXMSG_DATA', data_kib),
        }

    def limit(self, kind: str) -> int:
        """Return the byte limit for a report of KIND."""
        return self.by_kind[kind][1] * 1024 - CHANNEL_HEADER_ROOM

    @property
    def largest(self) -> int:
        """Return the largest limit: no frame may be bigger."""
        return max(self.limit(kind) for kind in self.by_kind)

    def check(self, kind: str, size: int) -> None:
        """Raise MessageTooLarge if SIZE is over the limit for KIND."""
        if size > self.limit(kind):
            raise MessageTooLarge('%s message of %d bytes is over %s'
                                  % (kind, size, self._describe(kind)))

    def check_frame(self, size: int) -> None:
        """Refuse a frame above every limit before reading it."""
        if size > self.largest:
            kind = max(self.by_kind, key=self.limit)
            raise MessageTooLarge('message of %d bytes is over the '
                                  'largest limit, %s'
                                  % (size, self._describe(kind)))

    def _describe(self, kind: str) -> str:
        """Say what the limit for KIND is and where it comes from."""
        name, kib = self.by_kind[kind]
        return ('the limit of %d bytes (%s %d KiB, less %d for xymond\'s '
                'channel header); xymond would cut it'
                % (self.limit(kind), name, kib, CHANNEL_HEADER_ROOM))


def check_message(message: Message, data: bytes, key_host: str,
                  allow: 'tuple[str, ...]', hosts: HostIndex,
                  limits: Limits) -> None:
    """Raise NotPermitted or MessageTooLarge unless the key may send it."""
    kind = message.kind if message.kind != 'other' else message.command

    if kind not in allow or kind in NEVER_GRANTED:
        raise NotPermitted('%r messages are not permitted for this key'
                           % message.command)

    if message.kind == 'other':
        limits.check('status', message.size)
        host = other_command_host(data, message.command)

        if host is not None:
            _check_host(host, message.command, key_host, hosts)
        return

    if message.kind == 'combo' and message.size > limits.largest:
        raise MessageTooLarge('combo of %d bytes is over the limit of %d '
                              'bytes' % (message.size, limits.largest))

    for report in message.reports:
        limits.check(report.kind, report.size)
        _check_host(report.host, report.kind, key_host, hosts)


def _check_host(reported: str, kind: str, key_host: str,
                hosts: HostIndex) -> None:
    """Refuse unless REPORTED is filed by xymond under KEY_HOST."""
    filed_under = hosts.resolve(reported)

    if filed_under is not None and filed_under.lower() == key_host.lower():
        return

    if filed_under is None:
        raise NotPermitted('%s for %s: not a hosts.cfg name or CLIENT: '
                           'alias of this key\'s host %s'
                           % (kind, reported, key_host))

    raise NotPermitted('%s for %s is not permitted for this key (its '
                       'host is %s)' % (kind, reported, key_host))


def grantable(word: str) -> bool:
    """Tell whether a key may be granted the message type WORD."""
    from .message import OTHER_COMMANDS
    return (word in REPORT_TYPES or word in OTHER_COMMANDS) and \
        word not in NEVER_GRANTED
