"""xyssh keys lookup: the AuthorizedKeysCommand for large fleets.

sshd_config (inside "Match User xymon"):

    AuthorizedKeysCommand /opt/xyssh/bin/xyssh keys lookup --config /etc/xymon/xyssh.cfg %u %f
    AuthorizedKeysCommandUser xymon

sshd runs it for every key a client offers and once more for the
signature, each time a new process, so it starts with light modules only
and finds the key with one open() in the registry, however large the
fleet.  It prints the one authorized_keys line of an active key, or
nothing, and exits 0 either way: sshd ignores the output of a command
that fails.  Only a configuration or registry it cannot read is an error
(exit 1, the reason on stderr, which sshd logs).
"""

import os
import sys

from .config import config_path, load_config
from .errors import XysshError
from .keyline import authorized_keys_line, default_program, enrolment_line
from .registry import fingerprint_of_line, is_fingerprint, read_record

USAGE = ('usage: xyssh keys lookup [--config PATH] USER FINGERPRINT '
         '[TYPE KEY]  (sshd: %u %f [%t %k])\n')


def main(argv: 'list[str]') -> int:
    """Print the authorized_keys line for argv's fingerprint; return 0."""
    config = None
    words = []
    position = 0

    while position < len(argv):
        word = argv[position]

        if word == '--config' and position + 1 < len(argv):
            config = argv[position + 1]
            position += 2
            continue

        if word.startswith('--config='):
            config = word[len('--config='):]
        else:
            words.append(word)

        position += 1

    if len(words) not in (2, 4):
        sys.stderr.write(USAGE)
        return 1

    fingerprint = words[1]

    if not is_fingerprint(fingerprint):
        # sshd passes %f as SHA256:...; anything else matches no key.
        return 0

    try:
        loaded = load_config(config_path(config))
        server = loaded.server
        record = read_record(server.text('registry'), fingerprint)
    except XysshError as err:
        sys.stderr.write('xyssh keys lookup: %s\n' % err.detail)
        return 1

    program = server.text('command') or default_program()

    if record is None and len(words) == 4 and server.flag('enrolment'):
        # sshd's %t %k: an unknown key may log in to enrolment only.
        key_type, key_blob = words[2], words[3]

        if fingerprint_of_line('%s %s' % (key_type, key_blob)) == \
                fingerprint:
            line = enrolment_line(key_type, key_blob, fingerprint, program,
                                  loaded.path)
            os.write(1, (line + '\n').encode('utf-8'))

        return 0

    if record is None or not record.usable():
        return 0

    line = authorized_keys_line(record, program, loaded.path)
    os.write(1, (line + '\n').encode('utf-8'))
    return 0
