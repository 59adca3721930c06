"""check_message holds every part of a message to the key's own host."""

import pytest

from conftest import HOSTS_CFG
from xyssh.errors import MessageTooLarge, NotPermitted
from xyssh.hostscfg import load_hosts
from xyssh.registry import DEFAULT_ALLOW
from xyssh.message import parse_message
from xyssh.policy import CHANNEL_HEADER_ROOM, Limits, check_message, grantable

WEB01 = 'web01.example.com'
KIB = 1024


@pytest.fixture(scope='module')
def hosts(tmp_path_factory):
    """The test hosts.cfg, loaded once."""
    path = tmp_path_factory.mktemp('policy') / 'hosts.cfg'
    path.write_text(HOSTS_CFG)
    index = load_hosts(str(path))
    assert index.problems == []
    return index


@pytest.fixture
def check(hosts):
    """Return a function that checks DATA for a key, raising if refused."""
    def run(data: bytes, key_host: str = WEB01,
            allow: 'tuple[str, ...]' = DEFAULT_ALLOW,
            limits: Limits = Limits(256, 512, 256)) -> str:
        message = parse_message(data)
        check_message(message, data, key_host, allow, hosts, limits)
        return message.kind

    return run


def refusal(check, data: bytes, error=NotPermitted, **options) -> str:
    """Run CHECK on DATA expecting ERROR; return the error's text."""
    with pytest.raises(error) as caught:
        check(data, **options)
    return str(caught.value)


def padded(first_line: bytes, size: int) -> bytes:
    """Return FIRST_LINE plus a body, SIZE bytes in all."""
    head = first_line + b'\n'
    return head + b'x' * (size - len(head))


# own host and foreign hosts

def test_allows_status_for_own_host(check):
    assert check(b'status web01.example.com.cpu green ok\n') == 'status'


def test_allows_combo_whose_parts_are_all_for_own_host(check):
    data = (b'combo\nstatus web01.example.com.cpu green\n'
            b'\nstatus web01,example,com.disk red\n')

    assert check(data) == 'combo'


def test_rejects_whole_combo_with_one_part_for_foreign_host(check):
    data = (b'combo\nstatus web01.example.com.cpu green\n'
            b'\nstatus db01.example.com.cpu red\n'
            b'\nstatus web01.example.com.disk green\n')

    text = refusal(check, data)

    assert 'db01.example.com' in text
    assert 'not permitted for this key' in text


def test_rejects_combo_smuggled_in_a_status_body_for_foreign_host(check):
    data = (b'combo\nstatus web01.example.com.cpu green\nbody\n'
            b'\nstatus db01.example.com.cpu red\n')

    assert 'db01.example.com' in refusal(check, data)


def test_rejects_status_for_foreign_host(check):
    text = refusal(check, b'status db01.example.com.cpu red\n')

    assert 'status for db01.example.com' in text


def test_allows_uppercase_comma_host_for_own_host(check):
    assert check(b'status WEB01,EXAMPLE,COM.cpu green\n') == 'status'


def test_allows_key_host_spelled_in_another_case(check):
    data = b'status web01.example.com.cpu green\n'

    assert check(data, key_host='Web01.Example.COM') == 'status'


def test_rejects_short_name_naming_it_and_the_key_host(check):
    text = refusal(check, b'status web01.cpu green\n')

    assert 'status for web01:' in text
    assert "this key's host web01.example.com" in text
    assert 'not a hosts.cfg name or CLIENT: alias' in text


def test_allows_client_alias_for_its_host(check):
    key_host = 'win01.example.com'

    assert check(b'status WIN01.cpu green\n', key_host) == 'status'
    assert check(b'client win01.win32 win\n[date]\n', key_host) == 'client'


def test_rejects_client_alias_of_another_host(check):
    text = refusal(check, b'status WIN01.cpu green\n')

    assert 'status for WIN01' in text
    assert 'not permitted for this key' in text


def test_rejects_status_for_host_missing_from_hosts_cfg(check):
    text = refusal(check, b'status ghost.example.com.cpu red\n')

    assert 'ghost.example.com' in text
    assert 'not a hosts.cfg name' in text


def test_rejects_client_message_for_foreign_host(check):
    text = refusal(check, b'client db01.example.com.linux\n[date]\n')

    assert 'client for db01.example.com' in text


def test_rejects_data_for_foreign_host(check):
    text = refusal(check, b'data db01.example.com.trends\n')

    assert 'data for db01.example.com' in text


# message types a key is granted

@pytest.mark.parametrize('data', [
    b'drop web01.example.com', b'xymondboard', b'query web01.example.com.cpu',
])
def test_rejects_other_command_not_granted(check, data):
    text = refusal(check, data)

    assert 'messages are not permitted for this key' in text


def test_rejects_report_type_missing_from_the_grant(check):
    text = refusal(check, b'data web01.example.com.trends\n',
                   allow=('status',))

    assert "'data' messages are not permitted" in text


def test_allows_granted_drop_for_own_host(check):
    allow = DEFAULT_ALLOW + ('drop',)

    assert check(b'drop web01.example.com', allow=allow) == 'other'


def test_rejects_granted_drop_for_foreign_host(check):
    allow = DEFAULT_ALLOW + ('drop',)

    text = refusal(check, b'drop db01.example.com cpu', allow=allow)

    assert 'drop for db01.example.com' in text


def test_allows_granted_xymondboard(check):
    allow = DEFAULT_ALLOW + ('xymondboard',)

    assert check(b'xymondboard host=web01', allow=allow) == 'other'


def test_allows_granted_query_for_own_host(check):
    allow = DEFAULT_ALLOW + ('query',)

    assert check(b'query web01.example.com.cpu', allow=allow) == 'other'


def test_rejects_granted_query_for_another_host(check):
    allow = DEFAULT_ALLOW + ('query',)

    text = refusal(check, b'query db01,example,com.cpu', allow=allow)

    assert 'query for db01.example.com' in text


@pytest.mark.parametrize('data', [
    b'extcombo 30\nstatus web01.example.com.cpu green',
    b'schedule 1800000000 drop web01.example.com',
    b'rename web01.example.com web02.example.com',
])
def test_rejects_never_grantable_command_even_when_in_grant(check, data):
    allow = DEFAULT_ALLOW + ('extcombo', 'schedule', 'rename')

    text = refusal(check, data, allow=allow)

    assert 'not permitted for this key' in text


@pytest.mark.parametrize('word', ['extcombo', 'schedule', 'rename',
                                  'bogus', 'statusfoo', ''])
def test_grantable_refuses_dangerous_and_unknown_words(word):
    assert grantable(word) is False


@pytest.mark.parametrize('word', ['status', 'combo', 'client', 'data',
                                  'drop', 'query', 'xymondboard'])
def test_grantable_accepts_report_types_and_known_commands(word):
    assert grantable(word) is True


# size limits

def test_status_limit_leaves_room_for_channel_header():
    assert Limits(256, 512, 256).limit('status') == \
        256 * KIB - CHANNEL_HEADER_ROOM


def test_allows_status_exactly_at_the_limit(check):
    size = 256 * KIB - CHANNEL_HEADER_ROOM

    assert check(padded(b'status web01.example.com.cpu green', size)) \
        == 'status'


def test_rejects_status_one_byte_over_limit_naming_size_and_limit(check):
    limit = 256 * KIB - CHANNEL_HEADER_ROOM
    data = padded(b'status web01.example.com.cpu green', limit + 1)

    text = refusal(check, data, MessageTooLarge)

    assert '%d bytes' % (limit + 1) in text
    assert 'limit of %d bytes' % limit in text
    assert 'MAXMSG_STATUS' in text


def test_allows_client_message_of_500_kib(check):
    data = padded(b'client web01.example.com.linux linux', 500 * KIB)

    assert check(data) == 'client'


def test_rejects_client_message_of_600_kib(check):
    data = padded(b'client web01.example.com.linux linux', 600 * KIB)

    text = refusal(check, data, MessageTooLarge)

    assert '%d bytes' % (600 * KIB) in text
    assert 'limit of %d bytes' % (512 * KIB - CHANNEL_HEADER_ROOM) in text


def test_rejects_combo_with_one_oversize_part(check):
    part = padded(b'status web01.example.com.disk green', 300 * KIB)
    data = b'combo\nstatus web01.example.com.cpu green\n\n' + part

    text = refusal(check, data, MessageTooLarge)

    assert 'status message of' in text


def test_rejects_combo_larger_than_largest_limit(check):
    part = padded(b'status web01.example.com.cpu green', 200 * KIB)
    data = b'combo\n' + b'\n'.join([part] * 3)

    text = refusal(check, data, MessageTooLarge)

    assert 'combo of %d bytes' % len(data) in text


def test_rejects_granted_other_command_over_status_limit(check):
    data = padded(b'query web01.example.com.cpu', 300 * KIB)

    text = refusal(check, data, MessageTooLarge,
                   allow=DEFAULT_ALLOW + ('query',))

    assert 'MAXMSG_STATUS' in text


def test_check_frame_refuses_only_above_the_largest_limit():
    limits = Limits(256, 512, 256)
    largest = 512 * KIB - CHANNEL_HEADER_ROOM

    limits.check_frame(largest)

    with pytest.raises(MessageTooLarge) as caught:
        limits.check_frame(largest + 1)

    assert '%d bytes' % (largest + 1) in str(caught.value)
    assert 'MAXMSG_CLIENT 512 KiB' in str(caught.value)


def test_limits_follow_configured_sizes(check):
    limits = Limits(4, 8, 2)
    data = padded(b'data web01.example.com.trends', 2 * KIB)

    text = refusal(check, data, MessageTooLarge, limits=limits)

    assert limits.limit('data') == 2 * KIB - CHANNEL_HEADER_ROOM
    assert limits.largest == 8 * KIB - CHANNEL_HEADER_ROOM
    assert 'MAXMSG_DATA 2 KiB' in text
    assert check(padded(b'client web01.example.com.linux', 6 * KIB),
                 limits=limits) == 'client'
