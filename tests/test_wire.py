"""The xyssh/1 request header and the ok/error answer lines."""

import hashlib

import pytest

from xyssh import wire

MESSAGE = b'status web01.example.com.cpu green\nload 0.10\n'
DIGEST = hashlib.sha256(MESSAGE).hexdigest().encode('ascii')


def split_frame(data: bytes) -> 'tuple[bytes, bytes]':
    """Split a frame into its header line (with LF) and its body."""
    header, _, body = data.partition(b'\n')
    return header + b'\n', body


# requests

def test_frame_round_trips_length_digest_and_body():
    header, body = split_frame(wire.frame(MESSAGE))

    length, digest = wire.parse_request_header(header)

    assert length == len(MESSAGE)
    assert digest == DIGEST.decode('ascii')
    assert body == MESSAGE
    assert wire.digest_matches(body, digest) is True


def test_header_names_magic_length_and_lowercase_digest():
    assert wire.request_header(MESSAGE) == \
        b'xyssh/1 %d %s\n' % (len(MESSAGE), DIGEST)


def test_frame_of_empty_message_round_trips():
    header, body = split_frame(wire.frame(b''))

    assert wire.parse_request_header(header) == (
        0, hashlib.sha256(b'').hexdigest())
    assert body == b''


def test_frame_keeps_binary_body_unchanged():
    message = bytes(range(256)) * 3

    header, body = split_frame(wire.frame(message))

    assert wire.parse_request_header(header)[0] == 768
    assert body == message


def test_header_of_large_message_fits_max_header():
    header = wire.request_header(b'x' * (1 << 20))

    assert len(header) < wire.MAX_HEADER
    assert wire.parse_request_header(header)[0] == 1 << 20


def test_digest_does_not_match_changed_message():
    digest = DIGEST.decode('ascii')

    assert wire.digest_matches(MESSAGE + b'x', digest) is False
    assert wire.digest_matches(MESSAGE[:-1], digest) is False


@pytest.mark.parametrize('line', [
    b'xyssh/1 45\n',
    b'xyssh/1 45 \n',
    b'xyssh/1 45 ' + DIGEST.upper() + b'\n',
    b'xyssh/1  45 ' + DIGEST + b'\n',
    b'xyssh/1 45  ' + DIGEST + b'\n',
    b' xyssh/1 45 ' + DIGEST + b'\n',
    b'xyssh/1 45 ' + DIGEST + b' \n',
    b'xyssh/1 45 ' + DIGEST + b'\r\n',
    b'xyssh/1 45 ' + DIGEST,
    b'xyssh/1 45 ' + DIGEST + b'\nextra',
    b'xyssh/1 45 ' + DIGEST[:63] + b'\n',
    b'xyssh/1 45 ' + DIGEST + b'0\n',
    b'xyssh/1 45 ' + DIGEST[:63] + b'g\n',
    b'xyssh/1 1234567890123 ' + DIGEST + b'\n',
    b'xyssh/1 -45 ' + DIGEST + b'\n',
    b'xyssh/1 +45 ' + DIGEST + b'\n',
    b'xyssh/1 4_5 ' + DIGEST + b'\n',
    b'xyssh/1 \xd9\xa4\xd9\xa5 ' + DIGEST + b'\n',
    b'xyssh/2 45 ' + DIGEST + b'\n',
    b'XYSSH/1 45 ' + DIGEST + b'\n',
    b'xyssh/1\t45 ' + DIGEST + b'\n',
    b'',
    b'\n',
    b'status web01.example.com.cpu green\n',
])
def test_rejects_malformed_request_header(line):
    assert wire.parse_request_header(line) is None


def test_rejects_header_padded_past_max_header():
    line = b'xyssh/1 45 ' + DIGEST + b' ' * wire.MAX_HEADER + b'\n'

    assert wire.parse_request_header(line) is None


def test_accepts_twelve_digit_length():
    line = b'xyssh/1 999999999999 ' + DIGEST + b'\n'

    assert wire.parse_request_header(line) == (999999999999,
                                               DIGEST.decode('ascii'))


# answers

def test_ok_answer_round_trips_reply():
    answer = wire.ok_answer(b'log:/var/log/app.log:10240\n')

    line, _, reply = answer.partition(b'\n')

    assert wire.parse_answer(line + b'\n') == (0, 27, '')
    assert reply == b'log:/var/log/app.log:10240\n'


def test_ok_answer_with_empty_reply():
    assert wire.ok_answer(b'') == b'ok 0\n'
    assert wire.parse_answer(b'ok 0\n') == (0, 0, '')


def test_error_answer_round_trips_status_and_text():
    answer = wire.error_answer(77, 'xyssh: not permitted: status for db01')

    assert answer == b'error 77 xyssh: not permitted: status for db01\n'
    assert wire.parse_answer(answer) == (
        77, None, 'xyssh: not permitted: status for db01')


def test_error_answer_folds_newlines_into_one_line():
    answer = wire.error_answer(65, 'bad\nline\rhere')

    assert answer == b'error 65 bad line here\n'
    assert wire.parse_answer(answer) == (65, None, 'bad line here')


def test_error_answer_with_empty_text_parses():
    assert wire.parse_answer(wire.error_answer(75, '')) == (75, None, '')


def test_error_answer_keeps_non_ascii_text():
    answer = wire.error_answer(65, 'hôte inconnu')

    assert wire.parse_answer(answer) == (65, None, 'hôte inconnu')


@pytest.mark.parametrize('line', [
    b'ok\n', b'ok 5', b'ok -5\n', b'ok 5 \n', b'OK 5\n', b'ok  5\n',
    b'ok 1234567890123\n', b'error 77\n', b'error x text\n',
    b'error 7777 text\n', b'error 77 text', b'error 77 a\nb\n',
    b'', b'\n', b'ready\n', b'xyssh: not permitted\n',
])
def test_rejects_malformed_answer_line(line):
    assert wire.parse_answer(line) is None


def test_rejects_error_answer_with_status_zero():
    assert wire.parse_answer(b'error 0 oops\n') is None
