"""C20: a fleet on one schedule against sshd's MaxStartups.

200 devices, each with its own key and host, start xymon-ssh at the same
instant against an sshd that drops unauthenticated connections beyond
MaxStartups 10:30:100.  Their random start delays and retries must get
(almost) every report through within two minutes.
"""

import os
import re
import subprocess
import time

import asyncssh

from conftest import XYMON_SSH
from xyssh import keys as xkeys
from xyssh.registry import KeyRecord, fingerprint_of_line

DEVICES = 200
WINDOW = 30
DEADLINE = 120


def _host(number: int) -> str:
    return 'c20-%03d.example.com' % number


def test_c20_two_hundred_devices_at_once_get_through(make_deployment,
                                                     tmp_path):
    hosts_cfg = tmp_path / 'fleet-hosts.cfg'
    hosts_cfg.write_text(''.join(
        '10.20.%d.%d %s # fleet\n' % (number // 250, number % 250 + 1,
                                      _host(number))
        for number in range(DEVICES)))
    deployment = make_deployment(
        sshd_config='MaxStartups 10:30:100\nLoginGraceTime 30\n',
        hosts_cfg=str(hosts_cfg))
    devices = tmp_path / 'fleet'
    devices.mkdir()
    registry = str(deployment.root / 'registry')
    configs = []

    for number in range(DEVICES):
        key = asyncssh.generate_private_key('ssh-ed25519')
        private = devices / ('%03d' % number)
        private.write_bytes(key.export_private_key())
        os.chmod(private, 0o600)
        public = key.export_public_key().decode().strip()
        xkeys.write_record(registry, KeyRecord(
            fingerprint_of_line(public), _host(number), public))
        config = devices / ('%03d.cfg' % number)
        config.write_text(
            '[client]\nserver = 127.0.0.1\nport = %d\nuser = root\n'
            'identity = %s\nknown_hosts = %s\ntimeout = %d\n'
            'spool = %s\nstart_window = %d\n'
            % (deployment.sshd.port, private, deployment.known_hosts,
               DEADLINE - WINDOW - 10, devices / ('%03d-spool' % number),
               WINDOW))
        configs.append(config)

    synced = deployment.xyssh('keys', 'sync')
    assert synced.returncode == 0, synced.stderr

    started = time.monotonic()
    processes = [subprocess.Popen(
        [XYMON_SSH, '--debug', '127.0.0.1',
         'status %s.fleet green ok' % _host(number)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ, XYSSH_CONFIG=str(config)))
        for number, config in enumerate(configs)]
    outcomes = []

    for process in processes:
        left = max(1.0, DEADLINE + 10 - (time.monotonic() - started))
        try:
            _, stderr = process.communicate(timeout=left)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        outcomes.append((process.returncode, stderr.decode()))

    elapsed = time.monotonic() - started
    received = deployment.tap.wait_for(DEVICES, timeout=5)
    hosts = {message.split()[1].rsplit(b'.', 1)[0] for message in received}
    delivered = [stderr for status, stderr in outcomes if status == 0]
    delays = [float(match) for _, stderr in outcomes for match in
              re.findall(r'waiting ([0-9.]+) seconds before connecting',
                         stderr)]

    assert len(hosts) >= DEVICES * 99 // 100, (len(hosts), outcomes[:3])
    assert elapsed < DEADLINE + 10
    assert len(delivered) >= DEVICES * 99 // 100
    # A client that got through after a dropped connection mentions the
    # drop only in its debugging lines ("try 1 failed ..."): it reports
    # no failure.
    assert not [stderr for stderr in delivered if re.search(
        r'^xymon-ssh: (cannot connect|no answer|server 127)', stderr,
        re.M)]
    retried = [stderr for stderr in delivered if 'try 1 failed' in stderr]
    assert len(delays) == DEVICES
    assert 0 <= min(delays) < 5 and WINDOW - 5 < max(delays) <= WINDOW
    print('%d of %d delivered in %.0f s; %d needed a retry'
          % (len(delivered), DEVICES, elapsed, len(retried)))
