"""Program entry points, kept light.

`xyssh receive` runs at every login of a device, so it is dispatched
here before click (about 75 ms) or anything else is imported.
"""

import os
import sys


def main() -> int:
    """Run the xyssh command."""
    if len(sys.argv) > 1 and sys.argv[1] == 'receive':
        from .forced import main as receive

        # Everything is written with os.write and nothing needs cleaning
        # up, so skip the interpreter's shutdown (a few ms per login).
        os._exit(receive(sys.argv[2:]))

    if len(sys.argv) > 1 and sys.argv[1] == 'enroll-receive':
        from .forced import enrol_main
        os._exit(enrol_main(sys.argv[2:]))

    lookup = _lookup_arguments(sys.argv[1:])

    if lookup is not None:
        # sshd runs this twice per login: no click either.
        from .lookup import main as run_lookup
        os._exit(run_lookup(lookup))

    import click

    from .cli import cli

    try:
        return cli.main(prog_name='xyssh', standalone_mode=False) or 0
    except click.ClickException as err:
        # Usage errors exit 1, as in Xymon's tools and the xymon-ssh
        # table, not click's 2, which xyssh send uses for "cannot
        # resolve the server's name".
        err.show()
        return 1
    except click.Abort:
        sys.stderr.write('xyssh: interrupted\n')
        return 1


def _lookup_arguments(argv: 'list[str]') -> 'list[str] | None':
    """Return the arguments of "[--config P] keys lookup ...", or None."""
    head = []

    while argv[:1] == ['--config'] and len(argv) > 1 or \
            argv[:1] and argv[0].startswith('--config='):
        step = 1 if argv[0].startswith('--config=') else 2
        head += argv[:step]
        argv = argv[step:]

    if argv[:2] != ['keys', 'lookup'] or '--help' in argv or '-h' in argv:
        return None

    return head + argv[2:]


def xymon_ssh() -> int:
    """Run the xymon-ssh command, the drop-in for Xymon's xymon."""
    from .xymoncli import main as run
    return run()
