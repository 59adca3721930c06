"""What the admin's key commands do, apart from their command line.

Every change happens under the registry lock.  The new authorized_keys is
built first, so that a file which cannot be rewritten safely stops the
change before anything is written; then the registry record; then the
managed block of authorized_keys, rewritten atomically.
"""

import os
import pwd
import time

from .errors import ConfigError, KeyFileError, XysshError
from .hostscfg import load_hosts
from .keyline import KEY_OPTIONS, authorized_keys_line, default_program
from .keys import (BEGIN_MARK, parse_public_keys,
                   prepare_authorized_keys, read_lines, registry_lock,
                   remove_stale_temporaries, revocation_list,
                   split_authorized_keys, write_authorized_keys,
                   write_record, write_revocation_list)
from .registry import (DEFAULT_ALLOW, KeyRecord, fingerprint_of_line,
                       is_fingerprint, read_all_records, read_record,
                       record_path, utc_stamp)
from .log import log_event
from .policy import grantable


class KeyAdmin:
    """Key registry operations for one server configuration."""

    def __init__(self, config) -> None:
        self.config = config
        self.server = config.server
        self.registry = self.server.text('registry')
        self.authorized_keys = self.server.text('authorized_keys')
        self.program = self.server.text('command') or default_program()

    def _canonical_host(self, host: str) -> 'tuple[str, frozenset | None]':
        """Return HOST as hosts.cfg spells it and its pins, or raise."""
        path = self.server.text('hosts_cfg')
        hosts = load_hosts(path)

        if hosts.problems and not hosts.names:
            raise ConfigError('; '.join(hosts.problems))

        canonical = hosts.canonical(host)

        if canonical is None:
            raise KeyFileError('%s is not a host in %s; add it there first '
                               '(xyssh keys are bound to hosts.cfg names)'
                               % (host, path))

        return canonical, hosts.pinned(canonical)

    def add(self, host: str, raw: bytes, source: str,
            extra_allow: 'tuple[str, ...]' = (),
            addresses: str = '') -> 'list[KeyRecord]':
        """Register the keys in RAW for HOST and rewrite authorized_keys;
        with ADDRESSES (from= networks) they log in from there only."""
        addresses = normalise_networks(addresses)
        canonical, pins = self._canonical_host(host)
        keys = parse_public_keys(raw, source)

        for key in keys:
            if pins is not None and key.fingerprint not in pins:
                raise KeyFileError('hosts.cfg pins %s to other keys '
                                   '(SSHKEY: tags); add SSHKEY:%s to its '
                                   'line first' % (canonical,
                                                   key.fingerprint))
        allow = list(DEFAULT_ALLOW)

        for word in extra_allow:
            if not grantable(word):
                raise KeyFileError('%r cannot be granted: it is not a '
                                   'Xymon message type, or it can act for '
                                   'any host' % word)
            if word not in allow:
                allow.append(word)

        seen = set()

        for key in keys:
            if key.fingerprint in seen:
                raise KeyFileError('%s: key %s appears twice'
                                   % (source, key.fingerprint))
            seen.add(key.fingerprint)

        with registry_lock(self.registry):
            records = read_all_records(self.registry)
            known = {record.fingerprint: record for record in records}

            for key in keys:
                old = known.get(key.fingerprint)

                if old is not None:
                    raise KeyFileError('key %s is already registered for %s '
                                       '(%s); nothing was changed'
                                       % (key.fingerprint, old.host,
                                          old.state))

            added = [KeyRecord(key.fingerprint, canonical, key.text,
                               allow=tuple(allow)) for key in keys]

            for record in added:
                record.source = addresses

            # Build the new file first: if it cannot be rewritten, nothing
            # is registered either.
            self._clean_up()
            files = self._prepare(records + added)

            for record in added:
                write_record(self.registry, record)

            self._install(files)

        for record in added:
            log_event('info', 'key added fp=%s host=%s type=%s'
                      % (record.fingerprint, record.host, record.key_type))

        return added

    def revoke(self, fingerprint: str) -> KeyRecord:
        """Mark a key revoked and take it out of authorized_keys."""
        if not is_fingerprint(fingerprint):
            raise KeyFileError('%r is not a SHA256:... fingerprint (as '
                               '"xyssh keys list" or ssh-keygen -lf shows)'
                               % fingerprint)

        with registry_lock(self.registry):
            record = read_record(self.registry, fingerprint)

            if record is None:
                raise KeyFileError('no key %s in the registry' % fingerprint)

            record.state = 'revoked'
            self._clean_up()
            records = [other for other in read_all_records(self.registry)
                       if other.fingerprint != record.fingerprint]
            files = self._prepare(records + [record])
            write_record(self.registry, record)
            self._install(files)

        log_event('info', 'key revoked fp=%s host=%s'
                  % (record.fingerprint, record.host))
        return record

    def rotate(self, fingerprint: str, raw: bytes,
               grace_seconds: int) -> 'tuple[KeyRecord, KeyRecord]':
        """Register the key in RAW in place of FINGERPRINT's key.

        The new key gets the old one's host and grants.  The old key
        keeps working for GRACE_SECONDS (its line gets sshd's
        expiry-time), so a device that never switches over is not locked
        out before someone notices.  Returns (old, new).
        """
        [key] = parse_public_keys(raw, 'the new key')

        with registry_lock(self.registry):
            old = read_record(self.registry, fingerprint)

            if old is None or old.state != 'active':
                raise KeyFileError('key %s is not active; only an active '
                                   'key can be rotated' % fingerprint)

            records = read_all_records(self.registry)

            if any(record.fingerprint == key.fingerprint
                   for record in records):
                raise KeyFileError('key %s is already registered'
                                   % key.fingerprint)

            _, pins = self._canonical_host(old.host)

            if pins is not None and key.fingerprint not in pins:
                raise KeyFileError('hosts.cfg pins %s to other keys '
                                   '(SSHKEY: tags); add SSHKEY:%s to its '
                                   'line first' % (old.host,
                                                   key.fingerprint))

            new = KeyRecord(key.fingerprint, old.host, key.text,
                            allow=old.allow)
            # The new key is bound to the same addresses as the old one.
            new.source = old.source
            old.state = 'retiring'
            old.expires = utc_stamp(time.time() + grace_seconds)
            self._clean_up()
            others = [record for record in records
                      if record.fingerprint != old.fingerprint]
            files = self._prepare(others + [old, new])
            write_record(self.registry, new)
            write_record(self.registry, old)
            self._install(files)

        log_event('info', 'key rotated fp=%s host=%s new=%s expires=%s'
                  % (old.fingerprint, old.host, new.fingerprint,
                     old.expires))
        return old, new

    def enrol(self, raw: bytes, host: str, state: str) -> KeyRecord:
        """Record the key in RAW for HOST as pending or offered."""
        canonical, pins = self._canonical_host(host)
        [key] = parse_public_keys(raw, 'the enrolled key')

        if pins is not None and key.fingerprint not in pins:
            raise KeyFileError('hosts.cfg pins %s to other keys (SSHKEY: '
                               'tags)' % canonical)

        record = KeyRecord(key.fingerprint, canonical, key.text,
                           state=state)

        with registry_lock(self.registry):
            records = read_all_records(self.registry)

            if any(other.fingerprint == key.fingerprint
                   for other in records):
                raise KeyFileError('key %s is already registered'
                                   % key.fingerprint)

            self._clean_up()
            files = self._prepare(records + [record])
            write_record(self.registry, record)
            self._install(files)

        log_event('info', 'key enrolled fp=%s host=%s state=%s'
                  % (record.fingerprint, canonical, state))
        return record

    def _change_state(self, fingerprint: str, before: 'tuple[str, ...]',
                      after: 'str | None') -> KeyRecord:
        """Move a key from a state in BEFORE to AFTER (None: forget it)."""
        with registry_lock(self.registry):
            record = read_record(self.registry, fingerprint)

            if record is None or record.state not in before:
                raise KeyFileError('no %s key %s' % (' or '.join(before),
                                                     fingerprint))

            records = [other for other in read_all_records(self.registry)
                       if other.fingerprint != fingerprint]

            if after is not None:
                record.state = after
                records.append(record)

            self._clean_up()
            files = self._prepare(records)

            if after is None:
                os.unlink(record_path(self.registry, fingerprint))
            else:
                write_record(self.registry, record)

            self._install(files)

        log_event('info', 'key %s fp=%s host=%s'
                  % (after or 'rejected', fingerprint, record.host))
        return record

    def activate(self, fingerprint: str) -> KeyRecord:
        """Make a pending key active: it has delivered its first report."""
        return self._change_state(fingerprint, ('pending',), 'active')

    def approve(self, fingerprint: str) -> KeyRecord:
        """Accept a key offered without a token."""
        return self._change_state(fingerprint, ('offered',), 'active')

    def reject(self, fingerprint: str) -> KeyRecord:
        """Forget a key offered without a token."""
        return self._change_state(fingerprint, ('offered',), None)

    def request_rotation(self, host: str) -> 'list[KeyRecord]':
        """Mark HOST's active keys: the device rotates at its next login."""
        canonical, _ = self._canonical_host(host)

        with registry_lock(self.registry):
            marked = [record for record in read_all_records(self.registry)
                      if record.host.lower() == canonical.lower() and
                      record.state == 'active']

            if not marked:
                raise KeyFileError('%s has no active key' % canonical)

            for record in marked:
                record.rotate_requested = True
                write_record(self.registry, record)

        log_event('info', 'key rotation requested host=%s keys=%s'
                  % (canonical, ','.join(record.fingerprint
                                         for record in marked)))
        return marked

    def records(self) -> 'list[KeyRecord]':
        """Return every registered key."""
        return read_all_records(self.registry)

    def check(self) -> 'list[str]':
        """Return every disagreement between authorized_keys and registry."""
        records = read_all_records(self.registry)
        problems = self._check_lookup() + \
            self._check_revocation_list(records) + \
            self._check_principals()
        by_fingerprint = {record.fingerprint: record for record in records}

        try:
            raw_lines = read_lines(self.authorized_keys)
            before, managed, _ = split_authorized_keys(raw_lines)
        except OSError as exc:
            return problems + ['%s: cannot read: %s' % (
                self.authorized_keys, exc.strerror)]
        except XysshError as err:
            return problems + ['%s: %s' % (self.authorized_keys,
                                           err.detail)]

        lines = [line.decode('utf-8', 'replace') for line in raw_lines]
        block = range(len(before) + 1, len(before) + 1 + len(managed))

        if active_count(records) and BEGIN_MARK not in lines:
            problems.append('%s: the xyssh managed block is missing'
                            % self.authorized_keys)

        seen = {}

        for index, line in enumerate(lines):
            number = index + 1

            if not line.strip() or line.lstrip().startswith('#'):
                continue

            where = '%s line %d' % (self.authorized_keys, number)
            options, key_text = split_key_line(line)
            fingerprint = fingerprint_of_line(key_text) if key_text else None

            if fingerprint is None:
                problems.append('%s: not a key line sshd can read' % where)
                continue

            if fingerprint in seen:
                problems.append('%s: duplicate of line %d (%s)'
                                % (where, seen[fingerprint], fingerprint))
            seen.setdefault(fingerprint, number)

            record = by_fingerprint.get(fingerprint)
            in_block = index in block

            if not in_block:
                names = [option.split('=', 1)[0].lower()
                         for option in options]

                if record is not None:
                    problems.append('%s: registered key %s of %s stands '
                                    'outside the managed block'
                                    % (where, fingerprint, record.host))
                elif 'command' not in names:
                    problems.append(WARNING + '%s: key %s has no command= '
                                    'option: whoever holds it gets a shell '
                                    'as this account' % (where, fingerprint))
                continue

            problems.extend(self._check_managed_line(
                where, line, options, fingerprint, record))

        for record in records:
            if record.usable() and record.fingerprint not in seen:
                problems.append('%s: key %s of %s is missing'
                                % (self.authorized_keys, record.fingerprint,
                                   record.host))

        hosts = load_hosts(self.server.text('hosts_cfg'))
        problems.extend(problem for problem in hosts.problems
                        if 'SSHKEY:' in problem)

        for record in records:
            if record.state != 'active':
                continue

            canonical = hosts.canonical(record.host)
            pins = hosts.pinned(canonical) if canonical else None

            if canonical is None:
                problems.append('key %s: host %s is not in hosts.cfg; its '
                                'reports are refused'
                                % (record.fingerprint, record.host))
            elif pins is not None and record.fingerprint not in pins:
                problems.append('key %s: hosts.cfg pins %s to other keys '
                                '(SSHKEY:); its reports are refused'
                                % (record.fingerprint, record.host))

        return problems

    def _check_principals(self) -> 'list[str]':
        """With a CA, check the principals file sshd reads."""
        from .ca import (ca_public_line, principals_path, principals_text,
                         read_all_cert_records)

        if ca_public_line(self.server) is None:
            return []

        path = principals_path(self.server)
        wanted = principals_text(read_all_cert_records(self.registry),
                                 self.program, self.config.path)

        try:
            with open(path, 'rb') as handle:
                present = handle.read()
        except OSError as exc:
            return ['%s: cannot read the principals file: %s; sshd then '
                    'refuses every certificate: run "xyssh keys sync"'
                    % (path, exc.strerror)]

        if present != wanted:
            return ['%s: the principals file differs from the certificate '
                    'registry; run "xyssh keys sync"' % path]

        return []

    def _check_lookup(self) -> 'list[str]':
        """With lookup = yes, check the program sshd would run."""
        if not self.server.flag('lookup'):
            return []

        unsafe = unsafe_command_path(self.program)

        if unsafe is None:
            return []

        return ['AuthorizedKeysCommand %s: %s; sshd would refuse every '
                'key ("Unsafe AuthorizedKeysCommand"): install xyssh in '
                'root-owned directories, such as /opt/xyssh'
                % (self.program, unsafe)]

    def _check_revocation_list(self, records: 'list[KeyRecord]'
                               ) -> 'list[str]':
        """Check the RevokedKeys file: there, readable by ssh-keygen, and
        revoking exactly the keys the registry has revoked."""
        import subprocess

        path = self.server.text('revoked_keys')

        if not path:
            return []

        if not os.path.isfile(path):
            return ['%s: the key revocation list is missing or not a '
                    'file; sshd (RevokedKeys) then refuses every key: run '
                    '"xyssh keys sync"' % path]

        try:
            listing = subprocess.run(['ssh-keygen', '-Q', '-l', '-f', path],
                                     capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            return ['%s: cannot run ssh-keygen to read it: %s'
                    % (path, exc)]

        if listing.returncode != 0:
            return ['%s: the key revocation list does not parse (%s); '
                    'sshd then refuses every key: run "xyssh keys sync"'
                    % (path, listing.stderr.decode('utf-8', 'replace')
                       .strip()[:120])]

        lines = listing.stdout.decode('ascii', 'replace').splitlines()
        listed = {line.split()[1] for line in lines
                  if line.startswith('hash: ')}
        serials = {line.split()[1] for line in lines
                   if line.startswith('serial: ')}
        problems = ['%s: revoked certificate %d is not in the list; run '
                    '"xyssh keys sync"' % (path, serial)
                    for serial in self._revoked_certificates()[0]
                    if str(serial) not in serials]

        for record in records:
            if record.state == 'revoked' and record.fingerprint not in \
                    listed:
                problems.append('%s: revoked key %s of %s is not in the '
                                'list' % (path, record.fingerprint,
                                          record.host))
            elif record.state != 'revoked' and record.fingerprint in listed:
                problems.append('%s: %s key %s of %s is revoked by the list'
                                % (path, record.state, record.fingerprint,
                                   record.host))

        return problems

    def _check_managed_line(self, where: str, line: str,
                            options: 'list[str]', fingerprint: str,
                            record: 'KeyRecord | None') -> 'list[str]':
        """Return the problems of one line inside the managed block."""
        problems = []
        names = [option.split('=', 1)[0].lower() for option in options]

        if 'command' not in names:
            problems.append('%s: no command= option' % where)

        if 'restrict' not in names:
            problems.append('%s: no restrict option' % where)

        unknown = [name for name in names if name not in
                   [option.lower() for option in KEY_OPTIONS] +
                   ['command', 'expiry-time']]

        if unknown:
            problems.append('%s: unexpected options %s'
                            % (where, ','.join(unknown)))

        if record is None:
            problems.append('%s: key %s is not in the registry'
                            % (where, fingerprint))
        elif not record.usable():
            problems.append('%s: key %s of %s is %s but still in the file'
                            % (where, fingerprint, record.host,
                               record.state if record.state != 'retiring'
                               else 'past its expiry'))
        elif line != authorized_keys_line(record, self.program,
                                          self.config.path):
            problems.append('%s: line for %s differs from the registry; '
                            'run "xyssh keys sync"' % (where, fingerprint))

        return problems

    def sync(self) -> None:
        """Rewrite the managed block from the registry (and, with a CA,
        the principals file)."""
        from .ca import Authority, ca_public_line

        if ca_public_line(self.server) is not None:
            Authority(self.config).sync()
            return

        with registry_lock(self.registry):
            self.sync_locked()

    def sync_locked(self) -> None:
        """Rewrite authorized_keys and the revocation list; the caller
        holds the registry lock."""
        self._clean_up()
        self._install(self._prepare(read_all_records(self.registry)))

    def access_warnings(self) -> 'list[str]':
        """Say what the service account will not be able to use.

        sshd runs the forced command as the owner of authorized_keys'
        directory; that account must be able to run the program written
        into command= and read the configuration, registry and hosts.cfg.
        A mistake here refuses every device, so it is said at once.
        """
        directory = os.path.dirname(os.path.abspath(self.authorized_keys))

        try:
            account = os.stat(directory)
        except OSError:
            return []

        if account.st_uid == 0:
            return []

        wanted = [(self.program, 0o5, 'run'),
                  (self.config.path, 0o4, 'read'),
                  (os.path.join(self.registry, 'keys'), 0o5, 'read'),
                  (self.server.text('hosts_cfg'), 0o4, 'read')]
        warnings = []

        for path, bits, verb in wanted:
            blocker = _blocker(path, bits, account.st_uid, account.st_gid)

            if blocker:
                warnings.append('the service account (uid %d, owner of %s) '
                                'cannot %s %s: %s'
                                % (account.st_uid, directory, verb, path,
                                   blocker))

        return warnings

    def shell_warnings(self) -> 'list[str]':
        """Say whether the service account's shell would spoil sessions.

        sshd runs every forced command through the account's login
        shell.  A shell that cannot run commands (Debian gives the xymon
        account nologin) refuses every device; one whose start-up files
        print something puts those bytes in front of each answer.
        """
        directory = os.path.dirname(os.path.abspath(self.authorized_keys))

        try:
            account = pwd.getpwuid(os.stat(directory).st_uid)
        except (OSError, KeyError):
            return []

        return probe_shell(account)

    def algorithm_warnings(self) -> 'list[str]':
        """Say where sshd and ssh_rsa_sha1 disagree about SHA-1 RSA
        signatures: xyssh serve follows the setting itself, sshd only
        its own PubkeyAcceptedAlgorithms, so both are compared here."""
        import subprocess

        directory = os.path.dirname(os.path.abspath(self.authorized_keys))

        try:
            account = pwd.getpwuid(os.stat(directory).st_uid).pw_name
            shown = subprocess.run(
                ['/usr/sbin/sshd', '-T', '-f',
                 self.server.text('sshd_config'), '-C',
                 'user=%s,host=localhost,addr=127.0.0.1' % account],
                capture_output=True, timeout=30)
        except (OSError, KeyError, subprocess.SubprocessError):
            return []

        accepted = None

        for line in shown.stdout.decode('ascii', 'replace').splitlines():
            name, _, value = line.partition(' ')

            if name == 'pubkeyacceptedalgorithms':
                accepted = value.split(',')

        if shown.returncode != 0 or accepted is None:
            return []

        wanted = self.server.flag('ssh_rsa_sha1')

        if wanted and 'ssh-rsa' not in accepted:
            return ['ssh_rsa_sha1 = yes, but sshd (%s) refuses ssh-rsa '
                    'signatures for %s: add "PubkeyAcceptedAlgorithms '
                    '+ssh-rsa" to its Match block'
                    % (self.server.text('sshd_config'), account)]

        if not wanted and 'ssh-rsa' in accepted:
            return ['sshd (%s) accepts ssh-rsa (SHA-1) signatures for %s, '
                    'which ssh_rsa_sha1 = no refuses in xyssh serve: '
                    'remove ssh-rsa from its PubkeyAcceptedAlgorithms'
                    % (self.server.text('sshd_config'), account)]

        return []

    def _prepare(self, records: 'list[KeyRecord]'
                 ) -> 'tuple[bytes, bytes | None]':
        """Return authorized_keys and the revocation list for RECORDS.

        Both are built before anything is written, so a change that
        cannot be completed changes nothing.
        """
        revoked_keys = self.server.text('revoked_keys')

        if revoked_keys and not os.path.isdir(os.path.dirname(
                os.path.abspath(revoked_keys))):
            raise ConfigError('%s: the directory of revoked_keys %s does '
                              'not exist' % (self.config.path, revoked_keys))

        return (prepare_authorized_keys(self.authorized_keys, records,
                                        self.program, self.config.path),
                revocation_list(records, *self._revoked_certificates())
                if revoked_keys else None)

    def _revoked_certificates(self) -> 'tuple[list[int], str | None]':
        """Return the revoked certificate serials and the CA key line."""
        from .ca import ca_public_line, revoked_serials

        ca_line = ca_public_line(self.server)

        if ca_line is None:
            return [], None

        return revoked_serials(self.registry), ca_line

    def _install(self, files: 'tuple[bytes, bytes | None]') -> None:
        """Write what _prepare built: the revocation list first, so a
        revoked key is refused by sshd before its line even goes."""
        authorized_keys, revocations = files

        if revocations is not None:
            write_revocation_list(self.server.text('revoked_keys'),
                                  revocations)

        write_authorized_keys(self.authorized_keys, authorized_keys)

    def _clean_up(self) -> None:
        """Remove temporary files of writers that were killed.

        Runs under the registry lock, so no writer of ours is using them.
        """
        remove_stale_temporaries(os.path.dirname(
            os.path.abspath(self.authorized_keys)))
        remove_stale_temporaries(os.path.join(self.registry, 'keys'))

        if self.server.text('revoked_keys'):
            remove_stale_temporaries(os.path.dirname(
                os.path.abspath(self.server.text('revoked_keys'))))


# Findings that are worth saying but do not make "keys check" fail.
WARNING = 'warning: '


def _blocker(path: str, bits: int, uid: int, gid: int) -> 'str | None':
    """Say why UID/GID cannot use PATH with permission BITS, or None.

    Every directory on the way must be searchable and PATH itself must
    allow BITS (4 read, 1 execute).  Supplementary groups are not known
    here, so this can warn about a path a group member can use.
    """
    path = os.path.realpath(path)
    parts = path.split(os.sep)

    for depth in range(1, len(parts) + 1):
        current = os.sep.join(parts[:depth]) or os.sep
        need = bits if depth == len(parts) else 0o1

        try:
            status = os.stat(current)
        except OSError:
            return '%s does not exist' % current

        if status.st_uid == uid:
            allowed = status.st_mode >> 6
        elif status.st_gid == gid:
            allowed = status.st_mode >> 3
        else:
            allowed = status.st_mode

        if allowed & need != need:
            return '%s is mode %04o, owner uid %d' % (
                current, status.st_mode & 0o7777, status.st_uid)

    return None


def probe_shell(account, home: 'str | None' = None) -> 'list[str]':
    """Run ACCOUNT's shell as sshd runs a forced command; say what is wrong.

    Only root (or the account itself) can do this; for anyone else the
    check is left out.  HOME overrides the account's home directory.
    """
    import subprocess

    euid = os.geteuid()

    if euid not in (0, account.pw_uid):
        return []

    home = home or account.pw_dir
    shell = account.pw_shell or '/bin/sh'
    # SSH_CLIENT is what makes Debian's bash read ~/.bashrc even for a
    # non-interactive command, as it does under sshd.
    env = {'HOME': home, 'USER': account.pw_name,
           'LOGNAME': account.pw_name, 'SHELL': shell,
           'PATH': '/usr/local/bin:/usr/bin:/bin',
           'SSH_CLIENT': '127.0.0.1 22 22',
           'SSH_CONNECTION': '127.0.0.1 22 127.0.0.1 22'}
    switch = {} if euid == account.pw_uid else {
        'user': account.pw_uid, 'group': account.pw_gid,
        'extra_groups': []}
    fix = 'give it /bin/sh: usermod -s /bin/sh %s' % account.pw_name

    try:
        result = subprocess.run(
            [shell, '-c', 'exit 0'], stdin=subprocess.DEVNULL,
            capture_output=True, env=env, timeout=10,
            cwd=home if os.path.isdir(home) else '/', **switch)
    except (OSError, subprocess.SubprocessError) as exc:
        return ['the shell %s of account %s cannot run commands (%s), so '
                'sshd cannot start xyssh receive; %s'
                % (shell, account.pw_name, exc, fix)]

    if result.returncode != 0:
        said = (result.stdout + result.stderr).decode(
            'utf-8', 'replace').strip().split('\n')[0][:100]
        return ['the shell %s of account %s cannot run commands (exit '
                'status %d: %r), so sshd cannot start xyssh receive; %s'
                % (shell, account.pw_name, result.returncode, said, fix)]

    if result.stdout:
        return ['the shell %s of account %s prints %r before every '
                'command sshd runs; it comes ahead of each answer to the '
                'devices (xymon-ssh skips it, with a warning): make %s/'
                '.bashrc, .profile and the like print nothing when not '
                'interactive'
                % (shell, account.pw_name, result.stdout[:60].decode(
                    'utf-8', 'replace'), home)]

    return []


def normalise_networks(text: str) -> str:
    """Return TEXT, addresses and networks separated by commas, checked
    and written as OpenSSH's from= takes them ("" for none)."""
    import ipaddress

    networks = []

    for item in text.replace(' ', ',').split(','):
        if not item:
            continue

        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise KeyFileError('%r is not an address or network such as '
                               '192.0.2.0/24 or 2001:db8::/32' % item) \
                from None

        networks.append(str(network.network_address)
                        if network.num_addresses == 1 else str(network))

    return ','.join(networks)


def address_allowed(peer: str, source: str) -> bool:
    """Tell whether PEER may log in under a from= list SOURCE."""
    import ipaddress

    if not source:
        return True

    try:
        address = ipaddress.ip_address(peer.split('%')[0])
    except ValueError:
        return False

    if getattr(address, 'ipv4_mapped', None):
        address = address.ipv4_mapped

    return any(address in ipaddress.ip_network(item, strict=False)
               for item in source.split(','))


def unsafe_command_path(path: str) -> 'str | None':
    """Say why sshd would refuse PATH as AuthorizedKeysCommand, or None.

    sshd resolves symlinks, then wants the file and every directory up
    to / owned by root and writable by no one else; otherwise it logs
    "Unsafe AuthorizedKeysCommand" and refuses every key.
    """
    real = os.path.realpath(path)

    try:
        status = os.stat(real)
    except OSError as exc:
        return '%s: %s' % (real, exc.strerror)

    if status.st_uid != 0 or status.st_mode & 0o022:
        return 'file %s is owned by uid %d with mode %04o (sshd wants ' \
            'root and no group or other write)' % (
                real, status.st_uid, status.st_mode & 0o7777)

    directory = os.path.dirname(real)

    while True:
        status = os.stat(directory)

        if status.st_uid != 0 or status.st_mode & 0o022:
            return 'directory %s is owned by uid %d with mode %04o (sshd ' \
                'wants root and no group or other write)' % (
                    directory, status.st_uid, status.st_mode & 0o7777)

        if directory == '/':
            return None

        directory = os.path.dirname(directory)


def active_count(records: 'list[KeyRecord]') -> int:
    """Return how many of RECORDS are active."""
    return sum(1 for record in records if record.state == 'active')


def split_key_line(line: str) -> 'tuple[list[str], str]':
    """Split an authorized_keys line into (options, "TYPE BASE64 ...").

    Options are comma-separated and may hold double-quoted values with
    blanks and escaped quotes, as sshd reads them.
    """
    line = line.strip()
    fields = line.split(None, 1)

    if fields and (fields[0].startswith(('ssh-', 'ecdsa-', 'sk-'))):
        return [], line

    options, current, quoted, position = [], '', False, 0

    while position < len(line):
        char = line[position]

        if quoted and char == '\\' and position + 1 < len(line):
            current += line[position:position + 2]
            position += 2
            continue

        if char == '"':
            quoted = not quoted
        elif not quoted and char == ',':
            options.append(current)
            current = ''
            position += 1
            continue
        elif not quoted and char in ' \t':
            break

        current += char
        position += 1

    options.append(current)
    return options, line[position:].strip()
