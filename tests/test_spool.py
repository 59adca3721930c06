"""The device spool on its own: what is kept, replaced, dropped, written."""

import os

import pytest

from xyssh.spool import (DEFAULT_LIFETIME, Spool, SpoolError,
                         lifetime_seconds, report_key, split_reports)

NOW = 1_800_000_000.0


@pytest.fixture
def spool(tmp_path):
    """An empty spool of 64 KiB."""
    return Spool(str(tmp_path / 'server'), 64 * 1024)


def _bodies(spool, now=NOW) -> 'list[bytes]':
    return [entry.data for entry in spool.entries(now)]


@pytest.mark.parametrize('message, seconds', [
    (b'status web01.example.com.cpu green ok', DEFAULT_LIFETIME),
    (b'status+10 web01.example.com.cpu green ok', 600),
    (b'status+1h30m/group:ops web01.example.com.cpu green ok', 5400),
    (b'status+2d web01.example.com.cpu green ok', 2 * 86400),
    (b'client web01.example.com.linux linux\n[date]\nnow\n',
     DEFAULT_LIFETIME),
    (b'data web01.example.com.trends\n[x.rrd]\nDS:a GAUGE 1\n',
     DEFAULT_LIFETIME),
])
def test_lifetime_is_the_status_lifetime_or_30_minutes(message, seconds):
    assert lifetime_seconds(message) == seconds


def test_same_test_in_any_spelling_has_one_key():
    keys = {report_key(message) for message in (
        b'status web01.example.com.cpu green a',
        b'status+5 web01,example,com.cpu red b',
        b'status WEB01.example.com.cpu yellow c')}

    assert len(keys) == 1
    assert report_key(b'status web01.example.com.disk green') not in keys
    assert report_key(b'client web01.example.com.linux') != \
        report_key(b'client/extra web01.example.com.linux')


def test_combo_is_kept_as_its_statuses():
    combo = (b'combo\nstatus web01.example.com.cpu green a\n\n'
             b'status web01.example.com.disk red b\n')

    assert split_reports(combo) == [
        b'status web01.example.com.cpu green a',
        b'status web01.example.com.disk red b\n']


def test_newest_status_per_test_replaces_the_older(spool):
    spool.add(b'status web01.example.com.cpu green first', NOW)
    spool.add(b'status web01.example.com.disk green disk', NOW + 1)
    spool.add(b'status web01.example.com.cpu red second', NOW + 2)

    assert _bodies(spool, NOW + 3) == [
        b'status web01.example.com.disk green disk',
        b'status web01.example.com.cpu red second']


def test_newest_client_message_replaces_the_older(spool):
    spool.add(b'client web01.example.com.linux linux\n[date]\none\n', NOW)
    spool.add(b'client web01.example.com.linux linux\n[date]\ntwo\n',
              NOW + 300)

    assert _bodies(spool, NOW + 301) == [
        b'client web01.example.com.linux linux\n[date]\ntwo\n']


def test_report_older_than_its_lifetime_is_dropped_unsent(spool):
    spool.add(b'status+5 web01.example.com.cpu green short', NOW)
    spool.add(b'status web01.example.com.disk green default', NOW)

    assert len(spool.entries(NOW + 299)) == 2
    assert _bodies(spool, NOW + 301) == [
        b'status web01.example.com.disk green default']
    assert _bodies(spool, NOW + DEFAULT_LIFETIME + 1) == []
    assert os.listdir(spool.directory) == []


def test_full_spool_drops_the_oldest_reports(tmp_path):
    spool = Spool(str(tmp_path / 'server'), 3000)
    for number in range(5):
        dropped = spool.add(b'status web01.example.com.t%d green %s'
                            % (number, b'x' * 900), NOW + number)

    # Each file is just under 1000 bytes: three fit.
    bodies = _bodies(spool, NOW + 10)
    assert [body.split()[1] for body in bodies] == [
        b'web01.example.com.t2', b'web01.example.com.t3',
        b'web01.example.com.t4']
    assert dropped == ['status web01.example.com.t1 green ' + 'x' * 46]


def test_report_larger_than_the_spool_is_refused(tmp_path):
    spool = Spool(str(tmp_path / 'server'), 1000)
    spool.add(b'status web01.example.com.cpu green small', NOW)

    with pytest.raises(SpoolError, match='larger than the whole spool'):
        spool.add(b'status web01.example.com.disk green ' + b'x' * 2000,
                  NOW)

    assert _bodies(spool) == [b'status web01.example.com.cpu green small']


def test_damaged_and_temporary_files_are_never_sent(spool):
    spool.add(b'status web01.example.com.cpu green ok', NOW)
    damaged = os.path.join(spool.directory, 'status-0.msg')
    with open(damaged, 'wb') as file:
        file.write(b'xyssh-spool 1 17')
    leftover = os.path.join(spool.directory, '.tmp-abc')
    with open(leftover, 'wb') as file:
        file.write(b'xyssh-spool 1 1 2\nstatus half')
    os.utime(leftover, (NOW - 120, NOW - 120))

    assert _bodies(spool) == [b'status web01.example.com.cpu green ok']
    assert sorted(os.listdir(spool.directory)) == [
        report_key(b'status web01.example.com.cpu') + '.msg']


def test_state_records_success_and_error(spool):
    spool.note(False, 'cannot connect to xymon:22', NOW)
    spool.note(True, now=NOW + 60)

    assert spool.state() == {'last_error': NOW, 'last_success': NOW + 60,
                             'last_error_text': 'cannot connect to xymon:22'}
