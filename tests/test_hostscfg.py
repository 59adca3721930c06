"""load_hosts reads hosts.cfg names and aliases as xymond 4.3.30 does."""

import pathlib

import pytest

from xyssh.hostscfg import load_hosts


def write(path: pathlib.Path, text: str) -> pathlib.Path:
    """Write TEXT to PATH, creating its directory; return PATH."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(tmp_path: pathlib.Path, text: str):
    """Write TEXT as the main hosts.cfg and load it."""
    return load_hosts(str(write(tmp_path / 'hosts.cfg', text)))


# host lines

def test_reads_host_name_and_resolves_it_ignoring_case(tmp_path):
    index = load(tmp_path, '192.0.2.10 web01.example.com # noconn\n')

    assert index.resolve('WEB01.Example.com') == 'web01.example.com'
    assert index.canonical('web01.EXAMPLE.com') == 'web01.example.com'
    assert index.problems == []


def test_unknown_host_does_not_resolve(tmp_path):
    index = load(tmp_path, '192.0.2.10 web01.example.com\n')

    assert index.resolve('db01.example.com') is None
    assert index.canonical('db01.example.com') is None


def test_strips_one_leading_at_sign_from_host_name(tmp_path):
    index = load(tmp_path, '192.0.2.10 @hidden.example.com\n'
                           '192.0.2.11 @@twice.example.com\n')

    assert index.resolve('hidden.example.com') == 'hidden.example.com'
    assert index.resolve('@hidden.example.com') is None
    assert index.resolve('@twice.example.com') == '@twice.example.com'


def test_octet_over_255_is_not_a_host(tmp_path):
    index = load(tmp_path, '192.0.2.256 bad.example.com\n'
                           '256.0.2.1 worse.example.com\n'
                           '192.0.2.255 good.example.com\n')

    assert index.resolve('bad.example.com') is None
    assert index.resolve('worse.example.com') is None
    assert index.resolve('good.example.com') == 'good.example.com'


def test_reads_host_lines_sscanf_accepts(tmp_path):
    index = load(tmp_path, '  +1.2.3.4 signed.example.com\n'
                           '1. 2. 3. 4 spaced.example.com\n'
                           '1.2.3.4glued.example.com\n')

    assert index.resolve('signed.example.com') == 'signed.example.com'
    assert index.resolve('spaced.example.com') == 'spaced.example.com'
    assert index.resolve('glued.example.com') == 'glued.example.com'


@pytest.mark.parametrize('line', [
    'page web Web servers', 'subpage db Databases', 'vpage x X',
    'group Web', 'group-only cpu|disk Web', 'title Hosts',
    '# 192.0.2.30 commented.example.com', 'web02.example.com',
])
def test_lines_other_than_host_lines_add_no_host(tmp_path, line):
    index = load(tmp_path, line + '\n192.0.2.10 web01.example.com\n')

    assert list(index.names.values()) == ['web01.example.com']
    assert index.problems == []


def test_first_definition_of_a_name_wins(tmp_path):
    index = load(tmp_path, '192.0.2.10 Web01.Example.com # CLIENT:first\n'
                           '192.0.2.11 web01.example.com # CLIENT:second\n')

    assert index.resolve('web01.example.com') == 'Web01.Example.com'
    assert index.resolve('first') == 'Web01.Example.com'
    assert list(index.names.values()) == ['Web01.Example.com']


def test_alias_on_a_repeated_host_line_still_resolves(tmp_path):
    index = load(tmp_path, '192.0.2.10 web01.example.com # CLIENT:first\n'
                           '192.0.2.11 web01.example.com # CLIENT:second\n')

    assert index.resolve('second') == 'web01.example.com'


def test_backslash_continues_a_line(tmp_path):
    index = load(tmp_path, '192.0.2.10 web01.example.com # noconn \\  \n'
                           'CLIENT:w1\n'
                           '192.0.2.11 \\\n'
                           'db01.example.com\n')

    assert index.resolve('w1') == 'web01.example.com'
    assert index.resolve('db01.example.com') == 'db01.example.com'


def test_reads_file_with_crlf_line_ends(tmp_path):
    index = load(tmp_path, '192.0.2.10 web01.example.com # CLIENT:w1\r\n'
                           '192.0.2.11 db01.example.com\r\n')

    assert index.resolve('w1') == 'web01.example.com'
    assert index.resolve('db01.example.com') == 'db01.example.com'


# CLIENT: aliases and tags

def test_client_alias_resolves_to_its_host_ignoring_case(tmp_path):
    index = load(tmp_path, '192.0.2.12 win01.example.com # CLIENT:WIN01\n')

    assert index.resolve('win01') == 'win01.example.com'
    assert index.canonical('win01') is None


def test_host_names_are_looked_up_before_client_aliases(tmp_path):
    index = load(tmp_path, '192.0.2.10 web01.example.com # '
                           'CLIENT:db01.example.com\n'
                           '192.0.2.11 db01.example.com\n')

    assert index.resolve('db01.example.com') == 'db01.example.com'


def test_first_host_claiming_an_alias_keeps_it(tmp_path):
    index = load(tmp_path, '192.0.2.10 web01.example.com # CLIENT:shared\n'
                           '192.0.2.11 db01.example.com # CLIENT:shared\n')

    assert index.resolve('shared') == 'web01.example.com'


def test_client_tag_prefix_matches_in_any_case(tmp_path):
    index = load(tmp_path, '192.0.2.10 web01.example.com # noconn '
                           'client:w1 CLIENT:w2\n')

    assert index.resolve('w1') == 'web01.example.com'
    assert index.resolve('w2') is None


def test_quoted_tag_may_contain_spaces(tmp_path):
    index = load(tmp_path, '192.0.2.10 web01.example.com # noconn '
                           '"CLIENT:web 01" "DESCR:Web server"\n')

    assert index.resolve('web 01') == 'web01.example.com'


def test_hash_glued_to_name_is_in_the_name_and_still_starts_tags(tmp_path):
    index = load(tmp_path, '192.0.2.10 web01.example.com#CLIENT:w1\n')

    assert index.resolve('web01.example.com') is None
    assert index.resolve('w1') == 'web01.example.com#CLIENT:w1'


def test_default_pseudo_host_is_not_a_host(tmp_path):
    index = load(tmp_path, '0.0.0.0 .default. # noconn\n'
                           '192.0.2.10 web01.example.com\n')

    assert index.resolve('.default.') is None
    assert list(index.names.values()) == ['web01.example.com']


def test_default_tags_apply_to_following_hosts_only(tmp_path):
    index = load(tmp_path, '192.0.2.9 early.example.com\n'
                           '0.0.0.0 .DEFAULT. # CLIENT:fleet\n'
                           '192.0.2.10 web01.example.com\n'
                           '192.0.2.11 db01.example.com\n')

    assert index.resolve('fleet') == 'web01.example.com'
    assert index.resolve('early.example.com') == 'early.example.com'


def test_own_client_tag_overrides_default_client_tag(tmp_path):
    index = load(tmp_path, '0.0.0.0 .default. # CLIENT:fleet\n'
                           '192.0.2.10 web01.example.com # CLIENT:w1\n'
                           '192.0.2.11 db01.example.com\n')

    assert index.resolve('w1') == 'web01.example.com'
    assert index.resolve('fleet') == 'db01.example.com'


def test_default_notafter_applies_to_following_hosts(tmp_path):
    index = load(tmp_path, '0.0.0.0 .default. # NOTAFTER:200001010000\n'
                           '192.0.2.10 retired.example.com\n')

    assert index.resolve('retired.example.com') is None


# NOTBEFORE: / NOTAFTER:

@pytest.mark.parametrize('tags', [
    'NOTBEFORE:209901010000', 'NOTAFTER:200001010000',
    'notbefore:209901010000 NOTAFTER:209912312359',
])
def test_host_outside_its_window_is_unknown(tmp_path, tags):
    index = load(tmp_path, '192.0.2.10 web01.example.com # CLIENT:w1 %s\n'
                 % tags)

    assert index.resolve('web01.example.com') is None
    assert index.resolve('w1') is None
    assert index.canonical('web01.example.com') is None


def test_host_inside_its_window_is_known(tmp_path):
    index = load(tmp_path, '192.0.2.10 web01.example.com # '
                           'NOTBEFORE:200001010000 NOTAFTER:209912312359\n')

    assert index.resolve('web01.example.com') == 'web01.example.com'


@pytest.mark.parametrize('tag', ['NOTBEFORE:20990101',
                                 'NOTAFTER:2000010100001'])
def test_window_value_not_twelve_characters_is_ignored(tmp_path, tag):
    index = load(tmp_path, '192.0.2.10 web01.example.com # %s\n' % tag)

    assert index.resolve('web01.example.com') == 'web01.example.com'


# include and directory

def test_follows_include(tmp_path):
    write(tmp_path / 'more.cfg', '192.0.2.11 db01.example.com\n')

    index = load(tmp_path, '192.0.2.10 web01.example.com\n'
                           'include more.cfg\n')

    assert index.resolve('db01.example.com') == 'db01.example.com'
    assert index.problems == []


def test_follows_include_with_absolute_path_and_trailing_blanks(tmp_path):
    other = write(tmp_path / 'elsewhere' / 'x.cfg', '192.0.2.11 db01.x\n')

    index = load(tmp_path, '  include\t%s  \n' % other)

    assert index.resolve('db01.x') == 'db01.x'


def test_optional_include_of_missing_file_records_no_problem(tmp_path):
    index = load(tmp_path, 'optional include missing.cfg\n'
                           'optionalinclude missing2.cfg\n'
                           '192.0.2.10 web01.example.com\n')

    assert index.problems == []
    assert index.resolve('web01.example.com') == 'web01.example.com'


def test_missing_include_records_a_problem_and_reading_goes_on(tmp_path):
    index = load(tmp_path, 'include missing.cfg\n'
                           '192.0.2.10 web01.example.com\n')

    assert len(index.problems) == 1
    assert 'missing.cfg' in index.problems[0]
    assert index.resolve('web01.example.com') == 'web01.example.com'


def test_missing_directory_records_a_problem_unless_optional(tmp_path):
    index = load(tmp_path, 'directory nodir\noptional directory nodir2\n')

    assert len(index.problems) == 1
    assert 'nodir' in index.problems[0]


def test_missing_main_file_records_a_problem(tmp_path):
    index = load_hosts(str(tmp_path / 'absent.cfg'))

    assert len(index.problems) == 1
    assert 'absent.cfg' in index.problems[0]
    assert index.names == {}


def test_relative_include_resolves_against_main_file_directory(tmp_path):
    write(tmp_path / 'sub' / 'first.cfg', 'include second.cfg\n')
    write(tmp_path / 'second.cfg', '192.0.2.11 main-dir.example.com\n')
    write(tmp_path / 'sub' / 'second.cfg', '192.0.2.12 sub-dir.example.com\n')

    index = load(tmp_path, 'include sub/first.cfg\n')

    assert index.resolve('main-dir.example.com') == 'main-dir.example.com'
    assert index.resolve('sub-dir.example.com') is None


def test_relative_directory_files_include_against_main_directory(tmp_path):
    write(tmp_path / 'hosts.d' / 'a.cfg', 'include extra.cfg\n')
    write(tmp_path / 'extra.cfg', '192.0.2.11 extra.example.com\n')

    index = load(tmp_path, 'directory hosts.d\n')

    assert index.resolve('extra.example.com') == 'extra.example.com'
    assert index.problems == []


def test_include_loop_stops_with_a_problem(tmp_path):
    write(tmp_path / 'loop.cfg', '192.0.2.11 loop.example.com\n'
                                 'include loop.cfg\n')

    index = load(tmp_path, 'include loop.cfg\n')

    assert index.resolve('loop.example.com') == 'loop.example.com'
    assert any('nested too deep' in problem for problem in index.problems)


def test_directory_reads_files_recursively(tmp_path):
    write(tmp_path / 'hosts.d' / 'a.cfg', '192.0.2.11 a.example.com\n')
    write(tmp_path / 'hosts.d' / 'deep' / 'er' / 'b.cfg',
          '192.0.2.12 b.example.com\n')

    index = load(tmp_path, 'directory hosts.d\n')

    assert index.resolve('a.example.com') == 'a.example.com'
    assert index.resolve('b.example.com') == 'b.example.com'


def test_directory_reads_own_files_alphabetically_before_subdirs(tmp_path):
    directory = tmp_path / 'hosts.d'
    write(directory / 'b.cfg', '192.0.2.12 Second.example.com\n')
    write(directory / 'a.cfg', '192.0.2.11 FIRST.example.com\n'
                               '192.0.2.11 second.EXAMPLE.com\n')
    write(directory / 'c.cfg', '192.0.2.13 third.example.com\n')
    write(directory / 'a-sub' / 'x.cfg', '192.0.2.14 Third.Example.Com\n')

    index = load(tmp_path, 'directory hosts.d\n')

    assert index.canonical('second.example.com') == 'second.EXAMPLE.com'
    assert index.canonical('third.example.com') == 'third.example.com'


@pytest.mark.parametrize('name', [
    '.hidden.cfg', 'old.cfg~', 'hosts.cfg.dpkg-new', 'hosts.cfg.dpkg-orig',
    'README', 'README.txt', 'hosts.cfg,v', 'x.rpmsave', 'x.rpmnew',
    'x.rpmorig', 'RCS/hosts.cfg', '.git/hosts.cfg',
])
def test_directory_skips_backup_hidden_readme_and_rcs(tmp_path, name):
    write(tmp_path / 'hosts.d' / 'real.cfg', '192.0.2.10 real.example.com\n')
    write(tmp_path / 'hosts.d' / name, '192.0.2.11 skipped.example.com\n')

    index = load(tmp_path, 'directory hosts.d\n')

    assert index.resolve('real.example.com') == 'real.example.com'
    assert index.resolve('skipped.example.com') is None


def test_optional_directory_that_exists_is_read(tmp_path):
    write(tmp_path / 'hosts.d' / 'a.cfg', '192.0.2.11 a.example.com\n')

    index = load(tmp_path, 'optional directory hosts.d\n')

    assert index.resolve('a.example.com') == 'a.example.com'


# known differences from xymond

def test_negative_octet_is_not_a_host(tmp_path):
    index = load(tmp_path, '-1.0.2.10 neg.example.com\n')

    assert index.resolve('neg.example.com') is None


def test_address_without_name_is_not_a_host(tmp_path):
    index = load(tmp_path, '192.0.2.10\n')

    assert index.names == {}


def test_lone_carriage_return_does_not_start_a_new_line(tmp_path):
    index = load(tmp_path, '192.0.2.10 a.example.com\r'
                           '192.0.2.11 b.example.com\n')

    assert index.resolve('a.example.com') == 'a.example.com'
    assert index.resolve('b.example.com') is None


# C19: SSHKEY: tags pin a host to fingerprints, in OpenSSH's SHA256 form.

GOOD = 'SHA256:' + 'e6w5YcKy070lrU+QaeM/YE4YtSOpSjyJ+M7m53nt058'
OTHER = 'SHA256:' + 'A' * 43


def test_sshkey_tags_pin_a_host_to_those_fingerprints(tmp_path):
    index = load(tmp_path, '192.0.2.1 web01.example.com # SSHKEY:%s '
                 'sshkey:%s\n192.0.2.2 db01.example.com # noconn\n'
                 % (GOOD, OTHER))

    assert index.pinned('WEB01.example.com') == {GOOD, OTHER}
    assert index.pinned('db01.example.com') is None
    assert index.problems == []


def test_malformed_sshkey_tags_are_named_by_line_and_pin_to_nothing(
        tmp_path):
    index = load(tmp_path, '\n'.join([
        '192.0.2.1 web01.example.com # SSHKEY:%s' % GOOD,
        '192.0.2.2 db01.example.com # '
        'SSHKEY:MD5:08:4b:b2:f0:cb:10:1c:30:c1:e4:a3:5a:4d:f2:9e:5b',
        '192.0.2.3 db02.example.com \\',
        '  # SSHKEY:084bb2f0cb101c30c1e4a35a4df29e5b',
        '192.0.2.4 win01.example.com # SSHKEY:%s= SSHKEY:%s'
        % (GOOD, OTHER), '']))
    path = tmp_path / 'hosts.cfg'

    assert index.pinned('web01.example.com') == {GOOD}
    assert [index.pinned(name) for name in (
        'db01.example.com', 'db02.example.com', 'win01.example.com')] == \
        [frozenset()] * 3
    assert [problem.split(': SSHKEY:')[0] for problem in index.problems] \
        == ['%s line %d' % (path, number) for number in (2, 3, 5)]
    assert (': SSHKEY:MD5:08:4b:b2:f0:cb:10:1c:30:c1:e4:a3:5a:4d:f2:9e:5b '
            'of db01.example.com is not an OpenSSH SHA256 fingerprint'
            in index.problems[0])
    assert index.problems[0].endswith('the host accepts no key until it '
                                      'is fixed')
