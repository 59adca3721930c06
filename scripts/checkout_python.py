"""Run a benchmark script with the checkout's .venv when it needs to.

`scripts/bench-...` starts whatever python3 is first on PATH, while
README's scripts/try-xyssh installs xyssh (and asyncssh) into the
checkout's .venv.  Standard library only: it runs before xyssh can be
imported.
"""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
VENV_PYTHON = ROOT / '.venv' / 'bin' / 'python'
# Set before re-running, so a .venv without xyssh fails once instead of
# re-running for ever.
REEXEC_MARK = 'XYSSH_BENCH_REEXEC'


def use_checkout_venv(script: str) -> None:
    """Re-run SCRIPT (its __file__) with .venv's Python when this Python
    cannot import xyssh and asyncssh."""
    try:
        import asyncssh  # noqa: F401
        import xyssh  # noqa: F401
        return
    except ImportError:
        pass

    name = os.path.basename(script)

    if os.environ.get(REEXEC_MARK) or not os.access(VENV_PYTHON, os.X_OK):
        sys.exit('%s: %s cannot import xyssh and asyncssh; run '
                 'scripts/try-xyssh first, or run this script with a '
                 'Python that has xyssh installed' % (name, sys.executable))

    os.environ[REEXEC_MARK] = '1'
    os.execv(str(VENV_PYTHON), [str(VENV_PYTHON), script] + sys.argv[1:])
