"""What the benchmark scripts share: timing, checking, deploying.

Imported by scripts/bench-forced and scripts/bench-keys (a script's own
directory comes first on sys.path).
"""

import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

from xyssh import wire

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'xyssh'
TIMEOUT = 60


class Case:
    """One measured path: its label, its times and its failures."""

    def __init__(self, key: str, label: str,
                 devnull: bool = False) -> None:
        """Start with no times and no failures."""
        self.key = key
        self.label = label
        # cat's output must go nowhere, as with >/dev/null; a pipe back
        # to us would add a copy the forced command does not make.
        self.devnull = devnull
        self.times = []
        self.failures = []

    @property
    def median(self) -> float:
        """Return the median time in milliseconds."""
        return statistics.median(self.times) * 1000

    def row(self) -> str:
        """Return the table row: median, min, quartiles, failures."""
        if not self.times:
            return '%s  %-42s  %s' % (self.key, self.label, 'no data')

        ms = sorted(value * 1000 for value in self.times)
        # quantiles() needs two points; one round gives q1 = q3 = min.
        q1, _, q3 = (statistics.quantiles(ms, n=4) if len(ms) > 1
                     else (ms[0],) * 3)
        failed = ' %d failed' % len(self.failures) if self.failures else ''
        return '%s  %-42s %6.1f %6.1f %6.1f %6.1f%s' % (
            self.key, self.label, statistics.median(ms), ms[0], q1, q3,
            failed)


def say(text: str = '') -> None:
    """Print one line at once, so progress shows while it runs."""
    print(text, flush=True)


def interpreter_of(program: str) -> str:
    """Return the interpreter in PROGRAM's #! line (else this one)."""
    with open(program, 'rb') as handle:
        first = handle.readline().decode('utf-8', 'replace')

    words = first[2:].split() if first.startswith('#!') else []

    # "#!/usr/bin/env python3" or pip's /bin/sh trampoline for long
    # paths name no interpreter directly; sys.executable is then the
    # best guess, since the script is meant to run from the same venv.
    if words and 'python' in os.path.basename(words[0]) and \
            os.access(words[0], os.X_OK):
        return words[0]

    return sys.executable


def timed(argv: 'list[str]', data: bytes,
          env: 'dict | None' = None) -> 'tuple[float, int, bytes, bytes]':
    """Run ARGV with DATA on stdin; return (seconds, status, out, err)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(argv, input=data, capture_output=True,
                              env=env, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - start, -1, b'', b'timed out'
    return (time.perf_counter() - start, done.returncode, done.stdout,
            done.stderr)


def answer_problem(status: int, out: bytes, err: bytes) -> 'str | None':
    """Return why a framed push did not succeed, or None if it did."""
    line, _, rest = out.partition(b'\n')
    parsed = wire.parse_answer(line + b'\n') if line else None

    # "ok LENGTH" is only sent after xymond took the whole message, and
    # exactly LENGTH reply bytes must follow it.
    if status == 0 and parsed and parsed[0] == 0 and \
            parsed[1] == len(rest):
        return None

    text = (line or err).decode('utf-8', 'replace').strip()
    return 'exit %d: %s' % (status, text[:120] or 'no answer')


def deploy(workdir: pathlib.Path) -> str:
    """Install this checkout's xyssh as a server would; return its program.

    A server runs xyssh from a regular (not editable) install in a venv,
    with its modules compiled.  A development interpreter pays for its
    own site-packages (.pth files, the editable-install finder) at every
    start, which is no cost of xyssh's; so the forced command measured
    here runs from a fresh venv holding a copy of the package, started
    by the same launcher pip writes.  The forced command needs the
    standard library only, so no dependency is installed.
    """
    venv = workdir / 'deployed'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip',
                    str(venv)], check=True, timeout=TIMEOUT)
    python = venv / 'bin' / 'python'
    site = subprocess.run(
        [str(python), '-c', 'import sysconfig; '
         'print(sysconfig.get_paths()["purelib"])'], capture_output=True,
        text=True, check=True, timeout=TIMEOUT).stdout.strip()
    shutil.copytree(PACKAGE, pathlib.Path(site) / 'xyssh',
                    ignore=shutil.ignore_patterns('__pycache__'))
    subprocess.run([str(python), '-m', 'compileall', '-q', site],
                   check=True, timeout=TIMEOUT)
    program = venv / 'bin' / 'xyssh'
    program.write_text('#!%s\nimport sys\nfrom xyssh.entry import main\n'
                       'if __name__ == "__main__":\n    sys.exit(main())\n'
                       % python)
    program.chmod(0o755)
    return str(program)
