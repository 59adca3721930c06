"""parse_message and its helpers read messages the way xymond 4.3.30 does."""

import pytest

from conftest import DATA
from xyssh.errors import MalformedMessage, NotPermitted
from xyssh.message import duration_minutes, parse_color, parse_message



def hosts_and_tests(data: bytes) -> 'list[tuple[str, str]]':
    """Return (host, test) for every part parse_message finds in DATA."""
    return [(report.host, report.test)
            for report in parse_message(data).reports]


def refusal(data: bytes, error=MalformedMessage) -> str:
    """Parse DATA, expecting ERROR; return the error's text."""
    with pytest.raises(error) as caught:
        parse_message(data)
    return str(caught.value)


# status: host and test

def test_status_turns_commas_in_host_into_dots():
    message = parse_message(b'status web01,example,com.cpu green ok\n')

    assert message.kind == 'status'
    assert message.command == 'status'
    assert hosts_and_tests(b'status web01,example,com.cpu green') == [
        ('web01.example.com', 'cpu')]


def test_status_splits_host_and_test_at_the_last_dot():
    assert hosts_and_tests(b'status web01.example.com.cpu green') == [
        ('web01.example.com', 'cpu')]


def test_status_split_at_last_dot_happens_before_commas_become_dots():
    assert hosts_and_tests(b'status a,b,com.cpu green') == [
        ('a.b.com', 'cpu')]


def test_status_reports_size_of_whole_message():
    data = b'status web01.example.com.cpu green\nload 0.1\n'

    message = parse_message(data)

    assert message.size == len(data)
    assert message.reports[0].size == len(data)
    assert message.reports[0].kind == 'status'


def test_status_words_may_be_separated_by_runs_of_blanks_and_tabs():
    data = b'status \t web01.example.com.cpu\t\tgreen  text'

    assert hosts_and_tests(data) == [('web01.example.com', 'cpu')]


# status: lifetime and group

def test_accepts_status_with_lifetime_in_minutes():
    message = parse_message(b'status+30 web01.example.com.cpu green')

    assert message.kind == 'status'
    assert message.command == 'status+30'


def test_accepts_status_with_combined_lifetime_and_group():
    data = b'status+1h30m/group:dba web01.example.com.cpu green'

    message = parse_message(data)

    assert message.kind == 'status'
    assert message.command == 'status+1h30m/group:dba'
    assert hosts_and_tests(data) == [('web01.example.com', 'cpu')]


def test_accepts_status_with_group_only():
    message = parse_message(b'status/group:a,b web01.example.com.cpu red')

    assert message.kind == 'status'


def test_rejects_status_lifetime_with_uppercase_unit():
    text = refusal(b'status+2H web01.example.com.cpu green')

    assert 'unit must be m/h/d/w' in text
    assert '2 minutes' in text


def test_rejects_status_with_empty_lifetime():
    text = refusal(b'status+ web01.example.com.cpu green')

    assert 'unit must be m/h/d/w' in text


def test_rejects_status_with_empty_group_name():
    text = refusal(b'status/group: web01.example.com.cpu green')

    assert 'group' in text


# status: colors

@pytest.mark.parametrize('color', [b'Green', b'Red,', b'YELLOW', b'clear',
                                   b'green!', b'red\r'])
def test_accepts_status_color_xymond_reads(color):
    message = parse_message(b'status web01.example.com.cpu ' + color)

    assert message.kind == 'status'
    assert message.reports[0].host == 'web01.example.com'


def test_accepts_client_pseudo_color_in_status():
    message = parse_message(b'status web01.example.com.linux client\n')

    assert message.kind == 'status'
    assert message.reports[0].test == 'linux'


def test_rejects_status_color_with_letters_after_the_name():
    text = refusal(b'status web01.example.com.cpu greenish')

    assert 'unknown color' in text
    assert 'greenish' in text


@pytest.mark.parametrize('color', [b'purple', b'blue', b'Purple', b'BLUE,'])
def test_rejects_status_colors_reserved_to_xymond(color):
    text = refusal(b'status web01.example.com.cpu ' + color)

    assert 'reserved to xymond' in text


def test_rejects_status_without_color():
    text = refusal(b'status web01.example.com.cpu\ntext')

    assert 'HOST.TEST and a color' in text


@pytest.mark.parametrize('word, color', [
    ('Green', 'green'), ('Red,', 'red'), ('yellow1', 'yellow'),
    ('CLIENT', 'client'), ('purple', 'purple'), ('blue', 'blue'),
    ('greenish', None), ('redx', None), ('clientx', None), ('', None),
    ('1red', None),
])
def test_parse_color_reads_leading_letters_ignoring_case(word, color):
    assert parse_color(word) == color


# status: test names and word splitting

@pytest.mark.parametrize('hosttest', [
    b'web01.example.com.a/b', b'web01.example.com.a\\b',
    b'web01.example.com.*', b'web01.example.com.cp:u',
    b'web01.example.com.cpu|x',
])
def test_rejects_status_test_name_with_characters_outside_the_safe_set(
        hosttest):
    text = refusal(b'status ' + hosttest + b' green')

    assert 'test name' in text


@pytest.mark.parametrize('hosttest', [b'web01', b'web01.', b'.cpu'])
def test_rejects_status_without_both_host_and_test(hosttest):
    text = refusal(b'status ' + hosttest + b' green')

    assert 'needs HOST.TEST' in text


def test_status_words_are_not_split_at_carriage_return():
    text = refusal(b'status web01.example.com.cpu\rx green')

    assert "'cpu\\rx'" in text


def test_status_words_are_not_split_at_vertical_tab():
    text = refusal(b'status web01.example.com.cpu\x0bgreen')

    assert 'HOST.TEST and a color' in text


def test_status_keyword_is_not_split_at_vertical_tab():
    text = refusal(b'status\x0bweb01.example.com.cpu green')

    assert 'unknown message type' in text


def test_rejects_status_starting_with_a_blank():
    text = refusal(b' status web01.example.com.cpu green')

    assert 'unknown message type' in text


# combo

def test_combo_yields_one_report_per_status():
    data = (b'combo\nstatus web01.example.com.cpu green a\n'
            b'\nstatus web01.example.com.disk red b\n')

    message = parse_message(data)

    assert message.kind == 'combo'
    assert message.command == 'combo'
    assert hosts_and_tests(data) == [('web01.example.com', 'cpu'),
                                     ('web01.example.com', 'disk')]


def test_combo_splits_where_a_body_smuggles_blank_line_and_status():
    data = (b'combo\nstatus web01.example.com.cpu green\nbody\n'
            b'\nstatus db01.example.com.cpu red forged\n')

    assert hosts_and_tests(data) == [('web01.example.com', 'cpu'),
                                     ('db01.example.com', 'cpu')]


def test_plain_status_with_smuggled_status_in_body_is_one_part():
    data = (b'status web01.example.com.cpu green\nbody\n'
            b'\nstatus db01.example.com.cpu red forged\n')

    message = parse_message(data)

    assert message.kind == 'status'
    assert hosts_and_tests(data) == [('web01.example.com', 'cpu')]


def test_combo_is_not_split_at_crlf_blank_line():
    data = (b'combo\nstatus web01.example.com.cpu green\r\n'
            b'\r\nstatus db01.example.com.cpu red\r\n')

    assert hosts_and_tests(data) == [('web01.example.com', 'cpu')]


def test_combo_blank_line_before_other_text_stays_in_the_body():
    data = (b'combo\nstatus web01.example.com.cpu green\n'
            b'\nstatistics follow\n')

    assert hosts_and_tests(data) == [('web01.example.com', 'cpu')]


def test_combo_with_crlf_after_keyword_is_not_a_combo():
    text = refusal(b'combo\r\nstatus web01.example.com.cpu green\n')

    assert 'unknown message type' in text


def test_rejects_combo_whose_first_part_is_not_a_status():
    text = refusal(b'combo\ndata web01.example.com.trends\n')

    assert 'combo part 1 is not a status' in text


def test_rejects_combo_part_with_word_glued_to_status():
    data = (b'combo\nstatus web01.example.com.cpu green\n'
            b'\nstatusfoo web01.example.com.disk green\n')

    text = refusal(data)

    assert 'combo part 2 is not a status' in text


def test_rejects_combo_with_empty_first_part():
    text = refusal(b'combo\n\n\nstatus web01.example.com.cpu green\n')

    assert 'combo part 1 is not a status' in text


def test_rejects_combo_part_with_bad_color():
    data = (b'combo\nstatus web01.example.com.cpu green\n'
            b'\nstatus web01.example.com.disk purple\n')

    assert 'reserved to xymond' in refusal(data)


# client

def test_client_with_class_names_host_and_os():
    data = b'client web01.example.com.linux linux\n[date]\nnow\n'

    message = parse_message(data)

    assert message.kind == 'client'
    assert message.command == 'client'
    assert hosts_and_tests(data) == [('web01.example.com', 'linux')]


def test_client_with_collector_names_host_and_os():
    data = b'client/snmp web01.example.com.linux\n[date]\n'

    message = parse_message(data)

    assert message.kind == 'client'
    assert message.command == 'client/snmp'
    assert hosts_and_tests(data) == [('web01.example.com', 'linux')]


def test_client_first_line_ends_at_carriage_return():
    data = b'client web01.example.com.linux\rdb01.example.com.x\n'

    assert hosts_and_tests(data) == [('web01.example.com', 'linux')]


def test_rejects_client_without_host():
    text = refusal(b'client\n[date]\n')

    assert 'client needs HOST.OSTYPE' in text


def test_rejects_client_host_without_os():
    text = refusal(b'client web01\n[date]\n')

    assert 'needs HOST.TEST' in text


def test_rejects_client_keyword_followed_by_tab():
    text = refusal(b'client\tweb01.example.com.linux linux\n[date]\n')

    assert 'client needs HOST.OSTYPE after one blank' in text


def test_clientlog_is_not_a_client_message():
    message = parse_message(b'clientlog web01.example.com section=df')

    assert message.kind == 'other'
    assert message.command == 'clientlog'
    assert message.reports == []


def test_real_linux_client_message_is_a_client_report_for_host1():
    data = (DATA / 'client-linux.txt').read_bytes()

    message = parse_message(data)

    assert message.kind == 'client'
    assert message.size == len(data)
    assert hosts_and_tests(data) == [('host1.example.com', 'linux')]


# data

def test_data_names_host_and_name():
    data = b'data web01,example,com.trends\n[cpu.rrd]\nDS:x:GAUGE\n'

    message = parse_message(data)

    assert message.kind == 'data'
    assert hosts_and_tests(data) == [('web01.example.com', 'trends')]


def test_data_name_ends_at_carriage_return():
    data = b'data web01.example.com.trends\r\nbody\n'

    assert hosts_and_tests(data) == [('web01.example.com', 'trends')]


def test_rejects_data_without_name():
    text = refusal(b'data web01\nbody\n')

    assert 'needs HOST.TEST' in text


def test_rejects_data_name_with_characters_outside_the_safe_set():
    text = refusal(b'data web01.example.com.a|b\n')

    assert 'data name' in text


# command words

@pytest.mark.parametrize('data', [
    b'statusfoo web01.example.com.cpu green',
    b'database web01.example.com.trends',
    b'clientx web01.example.com.linux',
    b'client\rweb01.example.com.linux',
    b'combo web01.example.com.cpu green',
    b'bogus web01.example.com',
])
def test_rejects_unknown_word_even_when_xymond_would_take_its_prefix(data):
    text = refusal(data)

    assert 'unknown message type' in text


@pytest.mark.parametrize('data', [
    b'drop web01.example.com', b'rename web01.example.com web02',
    b'disable web01.example.com.cpu 60 maintenance',
    b'enable web01.example.com.cpu', b'schedule 1800000000 drop x',
    b'clientlog web01.example.com', b'xymondboard host=web01',
    b'extcombo 30 60\nstatus web01.example.com.cpu green',
    b'config hosts.cfg', b'query web01.example.com.cpu',
    b'notify web01.example.com.cpu hello',
])
def test_other_xymond_commands_parse_as_kind_other(data):
    message = parse_message(data)

    assert message.kind == 'other'
    assert message.command == data.split()[0].decode()
    assert message.reports == []


# refused outright

def test_rejects_empty_message():
    assert 'empty message' in refusal(b'')


def test_rejects_nul_byte():
    data = b'status web01.example.com.cpu green\x00status db01.x.cpu red'

    assert 'NUL byte' in refusal(data)


def test_rejects_status_received_from_marker_as_not_permitted():
    data = (b'status web01.example.com.cpu green\nok\n'
            b'Status message received from 203.0.113.7\nhidden\n')

    text = refusal(data, NotPermitted)

    assert 'false sender' in text


def test_rejects_proxy_section_in_client_message_as_not_permitted():
    data = (b'client web01.example.com.linux linux\n[date]\nnow\n'
            b'[proxy]\nClientIP:203.0.113.8\n')

    text = refusal(data, NotPermitted)

    assert '[proxy]' in text


def test_rejects_status_marker_inside_a_combo_part():
    data = (b'combo\nstatus web01.example.com.cpu green\n'
            b'\nstatus web01.example.com.disk green\n'
            b'Status message received from 203.0.113.7\n')

    assert 'false sender' in refusal(data, NotPermitted)


# duration_minutes

@pytest.mark.parametrize('text, minutes', [
    ('2H', 2), ('1h30', 90), ('1h30m', 90), ('', 0), ('10mh', 10),
    ('1w', 10080), ('5w3d', 54720), ('30', 30), ('2d', 2880),
    ('15m', 15), ('H', 0),
])
def test_duration_minutes_matches_xymond_durationvalue(text, minutes):
    assert duration_minutes(text) == minutes


@pytest.mark.parametrize('text, minutes', [('h5', 0), ('10mh5', 10),
                                           ('1mm5', 1)])
def test_duration_minutes_stops_where_a_number_should_start(text, minutes):
    assert duration_minutes(text) == minutes
