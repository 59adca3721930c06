"""The authorized_keys line of a registered key, built with light modules.

Used by the admin commands that write authorized_keys and by
"xyssh keys lookup", which sshd runs (as AuthorizedKeysCommand) twice
per login, so nothing here may pull in re, shlex or other slow imports.
"""

import os
import sys

# Every managed line carries these: restrict, and the explicit options
# for OpenSSH versions or readers that do not know restrict.
KEY_OPTIONS = ('restrict', 'no-pty', 'no-port-forwarding',
               'no-agent-forwarding', 'no-X11-forwarding', 'no-user-rc')

# What shlex.quote leaves bare (its [\w@%+=:,./-] in ASCII).
_SHELL_SAFE = frozenset('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'
                        '0123456789_@%+=:,./-')


def shell_quote(word: str) -> str:
    """Quote WORD for a POSIX shell, as shlex.quote does."""
    if word and all(char in _SHELL_SAFE for char in word):
        return word

    return "'" + word.replace("'", "'\"'\"'") + "'"


def receive_command(program: str, config_path: str,
                    fingerprint: str) -> str:
    """Return the command= value that runs the forced command for a key.

    sshd hands this string to the account's shell, so each word is
    shell-quoted; inside the option's double quotes a double quote is
    written \\" (sshd undoes that and nothing else: a backslash stays).
    """
    words = [program, 'receive', '--config', config_path,
             '--fp', fingerprint]
    command = ' '.join(shell_quote(word) for word in words)
    return command.replace('"', '\\"')


def authorized_keys_line(record, program: str, config_path: str) -> str:
    """Return the managed authorized_keys line for a usable key.

    A retiring key carries sshd's expiry-time, so it stops working when
    its grace period ends even if nothing rewrites the file by then.
    """
    command = receive_command(program, config_path, record.fingerprint)
    options = ','.join(KEY_OPTIONS)

    if record.source:
        options += ',from="%s"' % record.source

    if record.state == 'retiring':
        # 2026-01-31T23:59:59Z -> 20260131235959Z (UTC).
        options += ',expiry-time="%sZ"' % ''.join(
            char for char in record.expires if char.isdigit())

    return '%s,command="%s" %s' % (options, command, record.key)


def enrolment_line(key_type: str, key_blob: str, fingerprint: str,
                   program: str, config_path: str) -> str:
    """Return the line that lets an unknown key reach enrolment only."""
    words = [program, 'enroll-receive', '--config', config_path,
             '--fp', fingerprint]
    command = ' '.join(shell_quote(word) for word in words)
    return '%s,command="%s" %s %s' % (','.join(KEY_OPTIONS),
                                      command.replace('"', '\\"'),
                                      key_type, key_blob)


def default_program() -> str:
    """Return the absolute path of the xyssh program now running."""
    beside = os.path.join(os.path.dirname(sys.executable), 'xyssh')

    if os.path.isfile(beside):
        return beside

    return os.path.abspath(sys.argv[0])
