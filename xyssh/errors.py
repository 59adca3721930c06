"""Exceptions, each with the line a remote client sees and its status.

Exit statuses follow sysexits.h so a sending client can tell whether a
retry may help: 65 malformed or too large, 77 not permitted, 75 xymond
unavailable (retry later), 70 internal error, 78 configuration error.
"""


class XysshError(Exception):
    """Base of every error xyssh reports on purpose."""

    exit_status = 70
    phrase = 'internal error'
    reason = 'internal'

    def __init__(self, detail: str = '') -> None:
        super().__init__(detail or self.phrase)
        self.detail = detail

    @property
    def client_text(self) -> str:
        """The one line told to the remote client: no internals."""
        if self.detail:
            return 'xyssh: %s: %s' % (self.phrase, self.detail)
        return 'xyssh: %s' % self.phrase


class MalformedMessage(XysshError):
    """The input is not a message xyssh can check, or was cut short."""

    exit_status = 65
    phrase = 'malformed message'
    reason = 'malformed'


class MessageTooLarge(XysshError):
    """The message is over the size limit for its type."""

    exit_status = 65
    phrase = 'message too large'
    reason = 'too-large'


class NotPermitted(XysshError):
    """The message is well formed, but this key may not send it."""

    exit_status = 77
    phrase = 'not permitted'
    reason = 'not-permitted'


class UpstreamUnavailable(XysshError):
    """xymond could not be reached or did not take the whole message."""

    exit_status = 75
    phrase = 'xymond unavailable, try again later'
    reason = 'xymond-unavailable'


class ConfigError(XysshError):
    """The configuration file or a file it names is wrong.

    The client is told only that the server is misconfigured: the
    details name paths and settings, and go to the server's log.
    """

    exit_status = 78
    phrase = 'server configuration error'
    reason = 'config'

    @property
    def client_text(self) -> str:
        """The one line told to the remote client: no details."""
        return 'xyssh: %s; see the server log' % self.phrase


class KeyFileError(XysshError):
    """A public key file or the registry cannot be used as given."""

    exit_status = 65
    phrase = 'bad key'
    reason = 'bad-key'
