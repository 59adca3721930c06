"""Which servers a recipient means, and how long retries wait."""

import pytest

from xyssh.client import destinations
from xyssh.config import load_config
from xyssh.delivery import backoff, group_label, route


@pytest.fixture
def servers(tmp_path):
    """Three configured servers."""
    path = tmp_path / 'xyssh.cfg'
    path.write_text('[client]\nserver = xymon1.example.com, '
                    '192.0.2.7:2222 [2001:db8::10]:22\n')
    return destinations(load_config(str(path)).client, None)


def _labels(groups) -> 'list[str]':
    return [group_label(group) for group in groups]


def test_zero_address_means_every_server_on_its_own(servers):
    assert _labels(route('0.0.0.0', servers)) == [
        'xymon1.example.com:22', '192.0.2.7:2222', '[2001:db8::10]:22']


def test_a_list_is_one_failover_group_in_configured_order(servers):
    assert _labels(route('10.0.0.1 10.0.0.2', servers)) == [
        'xymon1.example.com:22 192.0.2.7:2222 [2001:db8::10]:22']


@pytest.mark.parametrize('recipient, label', [
    ('192.0.2.7', '192.0.2.7:2222'),
    ('XYMON1.example.com', 'xymon1.example.com:22'),
    ('2001:db8::10', '[2001:db8::10]:22'),
])
def test_a_configured_name_picks_that_server(servers, recipient, label):
    assert _labels(route(recipient, servers)) == [label]


def test_an_unknown_single_name_is_only_a_label(servers):
    assert len(route('xymon.old.example.com', servers)[0]) == 3


@pytest.mark.parametrize('attempt, low, high', [
    (1, 0.5, 1.5), (2, 1, 3), (4, 4, 12), (10, 15, 45)])
def test_backoff_doubles_with_jitter_up_to_a_cap(attempt, low, high):
    pauses = [backoff(attempt) for _ in range(200)]

    assert low <= min(pauses) and max(pauses) <= high
    assert max(pauses) - min(pauses) > (high - low) / 4
