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


def xymon_ssh() -> int:
    """Run the xymon-ssh command, the drop-in for Xymon's xymon."""
    from .xymoncli import main as run
    return run()
