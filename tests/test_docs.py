"""The documentation and samples say what the code does."""

import pathlib
import re

from xyssh import client
from xyssh.config import CLIENT_DEFAULTS, SERVER_DEFAULTS, load_config

TOP = pathlib.Path(__file__).parent.parent


def _try_it_commands() -> 'list[str]':
    """Return the two commands under README.rst's "Try it" heading."""
    text = (TOP / 'README.rst').read_text()
    section = text.split('Try it\n------\n', 1)[1].split('\n\n', 2)[1]
    return [line.strip() for line in section.splitlines() if line.strip()]


def test_readme_opens_with_install_and_test_commands():
    install, tests = _try_it_commands()

    assert install == 'scripts/try-xyssh'
    assert tests == '.venv/bin/python -m pytest'


def test_ci_runs_exactly_the_readme_test_command():
    commands = [line.strip() for line in
                (TOP / '.ci' / 'run').read_text().splitlines()
                if line.strip() and not line.startswith('#')]

    assert commands[-1] == _try_it_commands()[1]
    assert 'scripts/try-xyssh --install-only' in commands


def test_sample_config_loads_and_shows_the_defaults():
    config = load_config(str(TOP / 'conf' / 'xyssh.cfg'))

    for key, default in SERVER_DEFAULTS.items():
        assert config.server.text(key) == default, key
    for key, default in CLIENT_DEFAULTS.items():
        if key != 'server':
            assert config.client.text(key) == default, key


def test_readme_lists_every_client_exit_status():
    text = (TOP / 'README.rst').read_text().split(
        'Exit statuses of xymon-ssh and xyssh send\n', 1)[1]
    section = re.split(r'\n\S[^\n]*\n-{3,}\n', text)[0]
    table = re.findall(r'^(\d+)\s{2,}', section, re.M)
    statuses = {value for name, value in vars(client).items()
                if name.startswith('EXIT_')}

    assert statuses == {int(value) for value in table}
