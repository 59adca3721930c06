"""`xyssh serve` as a test server: a real process on a loopback port."""

import os
import pathlib
import signal
import subprocess
import time

from xyssh.sandbox import free_port

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class ServeProcess:
    """xyssh serve started with CONFIG, stopped by PID.

    The config's [server] section must already name the listen address;
    start() picks a free port and writes it there.  Quacks like
    xyssh.sandbox.Sshd where the tests need it: port, host_key_path,
    known_hosts_line() and stop().
    """

    def __init__(self, program: str, config: pathlib.Path,
                 host_key_path: pathlib.Path, port: int,
                 log: pathlib.Path) -> None:
        self.program = program
        self.config = config
        self.host_key_path = host_key_path
        self.port = port
        self.output_path = log
        self.proc = None

    @classmethod
    def start(cls, program: str, config: pathlib.Path,
              host_key_path: pathlib.Path,
              port: 'int | None' = None) -> 'ServeProcess':
        """Start serve and return once it is listening."""
        server = cls(program, config, host_key_path, port or free_port(),
                     config.parent / ('serve-%d.out' % os.getpid()))
        server.run()
        return server

    def run(self) -> None:
        """Start the process and wait for its ready line (bounded)."""
        start = len(self.output())
        output = open(self.output_path, 'ab')
        self.proc = subprocess.Popen(
            [self.program, '--config', str(self.config), 'serve'],
            stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        output.close()
        deadline = time.monotonic() + START_TIMEOUT

        while time.monotonic() < deadline:
            if b'listening on' in self.output()[start:]:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)

        self.stop()
        log = self.config.parent / 'xyssh.log'
        raise RuntimeError('xyssh serve did not start: %s; log: %s' % (
            self.output()[start:].decode(errors='replace'),
            log.read_text() if log.exists() else '-'))

    def output(self) -> bytes:
        """Return what serve printed so far."""
        try:
            return self.output_path.read_bytes()
        except FileNotFoundError:
            return b''

    @property
    def pid(self) -> 'int | None':
        """PID of serve, or None if it never started."""
        return None if self.proc is None else self.proc.pid

    def signal(self, number: int) -> None:
        """Send signal NUMBER to serve."""
        self.proc.send_signal(number)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """Wait for serve to exit (bounded); return its status."""
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT."""
        if self.proc is None or self.proc.poll() is not None:
            return

        self.proc.send_signal(signal.SIGTERM)

        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT)

    def known_hosts_line(self, name: str = '127.0.0.1') -> str:
        """Return a known_hosts line for NAME:port with serve's host key."""
        keytype, blob = (self.host_key_path.parent /
                         (self.host_key_path.name + '.pub')
                         ).read_text().split()[:2]
        return '[%s]:%d %s %s' % (name, self.port, keytype, blob)
