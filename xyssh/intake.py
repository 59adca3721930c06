"""The one path a message takes on the server: parse, decide, forward, log.

Both front ends, the OpenSSH forced command and the embedded server,
hand each complete, framed message to Intake.handle().
"""

from .errors import XysshError
from .hostscfg import HostIndex
from .registry import KeyRecord
from .log import audit
from .message import parse_message
from .policy import Limits, check_message
from .xymond import send_to_xymond


class Intake:
    """Checks messages for one authenticated key and forwards them."""

    def __init__(self, key: KeyRecord, key_host: str, hosts: HostIndex,
                 limits: Limits, xymond: 'tuple[str, int]',
                 xymond_timeout: float, peer: str) -> None:
        self.key = key
        self.key_host = key_host
        self.hosts = hosts
        self.limits = limits
        self.xymond = xymond
        self.xymond_timeout = xymond_timeout
        self.peer = peer

    def handle(self, data: bytes) -> bytes:
        """Forward DATA if this key may send it; return xymond's reply.

        Raises an XysshError, after logging it, when the message is
        refused or xymond does not take it; nothing reaches xymond then.
        """
        message = None

        try:
            message = parse_message(data)
            check_message(message, data, self.key_host, self.key.allow,
                          self.hosts, self.limits)
            reply = send_to_xymond(self.xymond, data, self.xymond_timeout)
        except XysshError as err:
            self._record('rejected', message, len(data), err)
            raise

        self._record('accepted', message, len(data), None)
        return reply

    def _record(self, verb: str, message, size: int,
                err: 'XysshError | None') -> None:
        """Write one audit line per part of MESSAGE (one if unparsed)."""
        reason = err.reason if err else None
        detail = err.detail if err else None
        parts = message.reports if message and message.reports else [None]

        for report in parts:
            audit(verb, fp=self.key.fingerprint, key=self.key_host,
                  **{'from': self.peer},
                  type=message.command if message else None,
                  host=report.host if report else None,
                  test=report.test if report else None,
                  bytes=report.size if report else size,
                  reason=reason, detail=detail)


def refuse(err: XysshError, fingerprint: str, peer: str,
           key_host: 'str | None' = None) -> None:
    """Log a refusal that happened before any message was read."""
    audit('rejected', fp=fingerprint, key=key_host, **{'from': peer},
          type=None, host=None, test=None, bytes=0, reason=err.reason,
          detail=err.detail)
