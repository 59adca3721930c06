"""load_config, config_path and split_host_port, without the real /etc."""

import pytest

from xyssh.config import (DEFAULT_PATH, config_path, load_config,
                          split_host_port)
from xyssh.errors import ConfigError


def write_config(tmp_path, text: str) -> str:
    """Write TEXT as xyssh.cfg in TMP_PATH; return its path."""
    path = tmp_path / 'xyssh.cfg'
    path.write_text(text)
    return str(path)


def config_error(path: str) -> str:
    """Load PATH expecting a ConfigError; return its text."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


# unknown names

def test_rejects_unknown_key_naming_file_section_and_key(tmp_path):
    path = write_config(tmp_path, '[server]\nhosts_cgf = /etc/hosts.cfg\n')

    text = config_error(path)

    assert path in text
    assert '[server]' in text
    assert "'hosts_cgf'" in text


def test_rejects_unknown_client_key_naming_client_section(tmp_path):
    path = write_config(tmp_path, '[client]\nserver = x\nprot = 2222\n')

    text = config_error(path)

    assert path in text
    assert '[client]' in text
    assert "'prot'" in text


def test_rejects_server_key_in_client_section(tmp_path):
    path = write_config(tmp_path, '[client]\nhosts_cfg = /etc/h.cfg\n')

    assert "'hosts_cfg' in section [client]" in config_error(path)


def test_rejects_unknown_section_naming_file_and_section(tmp_path):
    path = write_config(tmp_path, '[sever]\nhosts_cfg = /etc/h.cfg\n')

    text = config_error(path)

    assert path in text
    assert '[sever]' in text


def test_rejects_default_section_as_unknown(tmp_path):
    path = write_config(tmp_path, '[DEFAULT]\nport = 22\n')

    assert '[DEFAULT]' in config_error(path)


def test_rejects_missing_file_naming_it(tmp_path):
    path = str(tmp_path / 'absent.cfg')

    text = config_error(path)

    assert 'cannot read' in text
    assert path in text


def test_rejects_text_that_is_not_ini_naming_file(tmp_path):
    path = write_config(tmp_path, 'hosts_cfg = /etc/h.cfg\n')

    text = config_error(path)

    assert 'comes before any [section]' in text
    assert path + ' line 1' in text


def test_rejects_key_given_twice(tmp_path):
    path = write_config(tmp_path, '[server]\nlog = a\nlog = b\n')

    assert 'line 3' in config_error(path)
    assert 'set twice' in config_error(path)


def test_rejects_line_that_is_not_a_setting(tmp_path):
    path = write_config(tmp_path, '[server]\njust some words\n')

    text = config_error(path)

    assert 'line 2' in text
    assert 'expected "key = value"' in text


def test_accepts_comments_colons_and_spacing(tmp_path):
    path = write_config(tmp_path, '# comment\n; other\n\n[server]\n'
                        '  log:/var/log/x.log  \nHOSTS_CFG = /h.cfg\n')

    config = load_config(path)

    assert config.server.text('log') == '/var/log/x.log'
    assert config.server.text('hosts_cfg') == '/h.cfg'


# defaults and values

def test_empty_file_gives_every_default(tmp_path):
    config = load_config(write_config(tmp_path, ''))

    assert config.server.text('hosts_cfg') == '/etc/xymon/hosts.cfg'
    assert config.server.text('xymond') == '127.0.0.1:1984'
    assert config.server.text('log') == 'syslog'
    assert config.server.number('maxmsg_status') == 256
    assert config.server.number('maxmsg_client') == 512
    assert config.server.number('maxmsg_data') == 256
    assert config.server.number('idle_timeout') == 60
    assert config.server.number('message_time') == 300
    assert config.server.number('xymond_timeout') == 10
    assert config.server.flag('require_auth_info') is False
    assert config.client.text('server') == ''
    assert config.client.number('port') == 22
    assert config.client.text('user') == 'xymon'
    assert config.client.number('timeout') == 15


def test_file_values_override_defaults_and_are_stripped(tmp_path):
    path = write_config(tmp_path, '[server]\nmaxmsg_client = 1024  \n'
                                  'Require_Auth_Info = Yes\n'
                                  '[client]\nserver = xymon.example.com\n')

    config = load_config(path)

    assert config.server.number('maxmsg_client') == 1024
    assert config.server.flag('require_auth_info') is True
    assert config.server.text('hosts_cfg') == '/etc/xymon/hosts.cfg'
    assert config.client.text('server') == 'xymon.example.com'


def test_config_records_absolute_path(tmp_path, monkeypatch):
    write_config(tmp_path, '')
    monkeypatch.chdir(tmp_path)

    assert load_config('xyssh.cfg').path == str(tmp_path / 'xyssh.cfg')


@pytest.mark.parametrize('value', ['ten', '-1', '', '1.5'])
def test_rejects_bad_number_naming_file_section_and_key(tmp_path, value):
    path = write_config(tmp_path, '[server]\nidle_timeout = %s\n' % value)
    config = load_config(path)

    with pytest.raises(ConfigError) as caught:
        config.server.number('idle_timeout')

    assert path in str(caught.value)
    assert '[server] idle_timeout' in str(caught.value)


def test_rejects_number_below_minimum(tmp_path):
    config = load_config(write_config(tmp_path, '[client]\nport = 0\n'))

    with pytest.raises(ConfigError) as caught:
        config.client.number('port', minimum=1)

    assert 'at least 1' in str(caught.value)


@pytest.mark.parametrize('value, flag', [
    ('yes', True), ('TRUE', True), ('on', True), ('1', True),
    ('no', False), ('False', False), ('off', False), ('0', False),
])
def test_flag_reads_yes_and_no_words(tmp_path, value, flag):
    path = write_config(tmp_path, '[server]\nrequire_auth_info = %s\n'
                        % value)

    assert load_config(path).server.flag('require_auth_info') is flag


def test_rejects_flag_that_is_neither_yes_nor_no(tmp_path):
    path = write_config(tmp_path, '[server]\nrequire_auth_info = maybe\n')
    config = load_config(path)

    with pytest.raises(ConfigError) as caught:
        config.server.flag('require_auth_info')

    assert 'expected yes or no' in str(caught.value)


# config_path

def test_config_path_prefers_the_option(monkeypatch):
    monkeypatch.setenv('XYSSH_CONFIG', '/env/xyssh.cfg')

    assert config_path('/opt/xyssh.cfg') == '/opt/xyssh.cfg'


def test_config_path_uses_environment_without_option(monkeypatch):
    monkeypatch.setenv('XYSSH_CONFIG', '/env/xyssh.cfg')

    assert config_path() == '/env/xyssh.cfg'
    assert config_path(None) == '/env/xyssh.cfg'


def test_config_path_falls_back_to_etc(monkeypatch):
    monkeypatch.delenv('XYSSH_CONFIG', raising=False)

    assert config_path() == '/etc/xymon/xyssh.cfg'
    assert DEFAULT_PATH == '/etc/xymon/xyssh.cfg'


def test_config_path_ignores_empty_environment(monkeypatch):
    monkeypatch.setenv('XYSSH_CONFIG', '')

    assert config_path() == '/etc/xymon/xyssh.cfg'


# split_host_port

@pytest.mark.parametrize('value, expected', [
    ('[2001:db8::10]:2222', ('2001:db8::10', 2222)),
    ('2001:db8::10', ('2001:db8::10', 22)),
    ('[2001:db8::10]', ('2001:db8::10', 22)),
    ('xymon.example.com:2222', ('xymon.example.com', 2222)),
    ('xymon.example.com', ('xymon.example.com', 22)),
    ('192.0.2.5', ('192.0.2.5', 22)),
    ('192.0.2.5:1984', ('192.0.2.5', 1984)),
    ('  192.0.2.5:65535 ', ('192.0.2.5', 65535)),
    ('fe80::1%eth0', ('fe80::1%eth0', 22)),
    ('[fe80::1%eth0]:2222', ('fe80::1%eth0', 2222)),
    ('::1', ('::1', 22)),
])
def test_split_host_port(value, expected):
    assert split_host_port(value, 22) == expected


def test_bare_ipv6_keeps_default_port_never_its_last_group():
    assert split_host_port('2001:db8::10', 1984) == ('2001:db8::10', 1984)


@pytest.mark.parametrize('value', [
    'xymon.example.com:0', 'xymon.example.com:65536',
    'xymon.example.com:ssh', 'xymon.example.com:', 'xymon:-1',
    '[2001:db8::10]:', '[2001:db8::10]:99999', '[2001:db8::10',
    '[2001:db8::10]2222', '[2001:db8::10]:22x',
])
def test_rejects_bad_port_with_config_error_naming_value(value):
    with pytest.raises(ConfigError) as caught:
        split_host_port(value, 22)

    assert repr(value.strip()) in str(caught.value)


def test_rejects_superscript_digit_port_with_config_error():
    with pytest.raises(ConfigError):
        split_host_port('xymon.example.com:\u00b2', 22)
