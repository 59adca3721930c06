"""Real Xymon and OpenSSH daemons, run privately on loopback.

Used by the demo (python -m xyssh.demo) and by the end-to-end tests.
Nothing here touches system services: every daemon runs as a child of
the calling process, listens on loopback only, keeps all of its files
under a caller-supplied work directory and is stopped by PID, never by
name.

Missing binaries raise RuntimeError on purpose: the end-to-end tests must
fail, not skip, on a machine that lacks xymon or openssh-server.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence

__all__ = [
    "Sshd",
    "Xymond",
    "free_port",
    "make_keypair",
    "ssh_command",
]

XYMON_BIN = pathlib.Path("/usr/lib/xymon/server/bin")
XYMOND = XYMON_BIN / "xymond"
XYMOND_CHANNEL = XYMON_BIN / "xymond_channel"
XYMOND_CLIENT = XYMON_BIN / "xymond_client"
# The server "xymon" is a symlink to the client one; both are identical.
XYMON_CLI = XYMON_BIN / "xymon"
SYSTEM_ANALYSIS_CFG = pathlib.Path("/etc/xymon/analysis.cfg")
SYSTEM_CLIENT_LOCAL_CFG = pathlib.Path("/etc/xymon/client-local.cfg")

SSHD = pathlib.Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
SSHD_PRIVSEP_DIR = pathlib.Path("/run/sshd")

LOOPBACK = "127.0.0.1"
# Channel ids 1..9 (status .. user) are shm+sem pairs, 10 is the
# backfeed message queue (off with --no-bfq, but checked to be safe).
XYMON_IPC_PROJECTS = range(1, 11)
XYMON_CLIENT_CHANNEL = 7  # C_CLIENT in xymond_ipc.h
SEM_CLIENTCOUNT = 2  # semaphore counting attached xymond_channel readers
SEM_GETVAL = 12  # semctl(2) command number on Linux

STOP_TIMEOUT = 5.0
START_TIMEOUT = 10.0
TERM_REPEAT = 0.5
POLL_INTERVAL = 0.02


# ---------------------------------------------------------------- helpers


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _require(path: pathlib.Path, package: str) -> None:
    """Raise RuntimeError unless PATH is an executable file."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"{path} is missing; run `apt-get install {package}`")


def _check_port_free(port: int) -> None:
    """Raise RuntimeError if 127.0.0.1:PORT cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR mirrors what the daemons do, so TIME_WAIT
        # leftovers from an earlier run do not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise RuntimeError(
                f"{LOOPBACK}:{port} is not free: {exc}") from exc


def _tail(path: pathlib.Path, lines: int = 40) -> str:
    """Return the last LINES lines of a text file, or a placeholder."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _proc_stat(pid: int) -> tuple[str, str, int] | None:
    """Return (comm, state, ppid) of PID from /proc, None if gone."""
    try:
        raw = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm is in parentheses and may itself contain spaces or ")".
    head, _, rest = raw.rpartition(")")
    fields = rest.split()
    return head.partition("(")[2], fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    """Tell whether PID exists and is not a zombie awaiting reaping."""
    stat = _proc_stat(pid)
    return stat is not None and stat[1] not in ("Z", "X")


def _process_table() -> dict[int, tuple[str, int]]:
    """Map PID to (comm, ppid) for every live process in /proc."""
    table = {}
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] not in ("Z", "X"):
                table[int(entry.name)] = (stat[0], stat[2])
    return table


def _descendants(root: int) -> list[list[tuple[int, str]]]:
    """Return ROOT's live descendants as (pid, comm), grouped by depth."""
    table = _process_table()
    levels: list[list[tuple[int, str]]] = []
    parents = {root}
    while True:
        level = sorted((pid, comm) for pid, (comm, ppid) in table.items()
                       if ppid in parents)
        if not level:
            return levels
        levels.append(level)
        parents = {pid for pid, _ in level}


def _signal(pid: int, signum: int) -> None:
    """Send SIGNUM to PID, ignoring a process that already exited."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _stop_group(procs: Sequence[subprocess.Popen[bytes]],
                pids: Sequence[tuple[int, str]],
                timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM PROCS and (pid, comm) PIDS, wait bounded, then SIGKILL.

    PIDS are processes we did not start ourselves (workers forked by
    our children); each is signalled only while /proc still shows the
    expected command name, so a recycled PID is never hit.
    """
    def ours(pid: int, comm: str) -> bool:
        """Tell whether PID is still alive and still runs COMM."""
        stat = _proc_stat(pid)
        return (stat is not None and stat[1] not in ("Z", "X")
                and stat[0] == comm)

    def survivors() -> bool:
        """Tell whether anything is left; poll() also reaps PROCS."""
        return (any(p.poll() is None for p in procs)
                or any(_alive(pid) for pid, _ in pids))

    deadline = time.monotonic() + timeout
    next_term = 0.0
    while survivors() and time.monotonic() < deadline:
        if time.monotonic() >= next_term:
            # Repeat SIGTERM: xymond_channel checks its "running" flag
            # and then blocks in semop(); a SIGTERM landing in between
            # is lost, and only another signal interrupts the semop.
            for pid, comm in pids:
                if ours(pid, comm):
                    _signal(pid, signal.SIGTERM)
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            next_term = time.monotonic() + TERM_REPEAT
        time.sleep(POLL_INTERVAL)
    for pid, comm in pids:
        if ours(pid, comm):
            _signal(pid, signal.SIGKILL)
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)


def _stop_tree(proc: subprocess.Popen[bytes],
               timeout: float = STOP_TIMEOUT) -> None:
    """Stop PROC's descendants deepest first, then PROC itself.

    Deepest first so that each parent is still alive to reap its
    children: an orphan would be reparented to PID 1, and a container
    init that never reaps leaves it behind as a zombie.
    """
    if proc.poll() is None:
        for level in reversed(_descendants(proc.pid)):
            _stop_group([], level, timeout)
    _stop_group([proc], [], timeout)


def _spawn(argv: Sequence[str | os.PathLike[str]],
           output: pathlib.Path) -> subprocess.Popen[bytes]:
    """Start ARGV in its own session with stdout+stderr going to OUTPUT."""
    with open(output, "ab") as sink:
        # A new session keeps terminal signals (Ctrl-C in pytest) from
        # reaching the daemon before stop() gets to run.
        return subprocess.Popen(
            [os.fspath(a) for a in argv], stdin=subprocess.DEVNULL,
            stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True)


# ------------------------------------------------------------- SysV IPC


def _ftok(path: pathlib.Path, project: int) -> int:
    """Compute glibc's ftok(PATH, PROJECT) key."""
    st = os.stat(path)
    return (((project & 0xFF) << 24) | ((st.st_dev & 0xFF) << 16)
            | (st.st_ino & 0xFFFF))


def _ipc_objects(keys: Iterable[int]) -> list[tuple[str, int, int]]:
    """List SysV (kind, id, key) objects whose key is in KEYS.

    kind is the ipcrm option letter: m (shm), s (semaphore), q (queue).
    """
    wanted = set(keys)
    found = []
    for kind, name in (("m", "shm"), ("s", "sem"), ("q", "msg")):
        table = pathlib.Path("/proc/sysvipc") / name
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            # /proc prints key_t as a signed int; normalise to unsigned.
            key = int(fields[0]) & 0xFFFFFFFF
            if key in wanted:
                found.append((kind, int(fields[1]), key))
    return found


def _ipc_remove(objects: Iterable[tuple[str, int, int]]) -> None:
    """Remove SysV IPC objects by id with ipcrm, ignoring vanished ones."""
    for kind, ident, _key in objects:
        subprocess.run(["ipcrm", f"-{kind}", str(ident)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=False)


def _semval(semid: int, semnum: int) -> int:
    """Return the value of semaphore SEMNUM of set SEMID (-1 on error)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.semctl(semid, semnum, SEM_GETVAL))


# ---------------------------------------------------------------- xymond


class Xymond:
    """A private xymond plus its client-channel worker on 127.0.0.1."""

    def __init__(self, home: pathlib.Path, port: int) -> None:
        """Record HOME and PORT; use Xymond.start() to run one."""
        self.home = home
        self.port = port
        self.keys = [_ftok(home, p) for p in XYMON_IPC_PROJECTS]
        self._xymond: subprocess.Popen[bytes] | None = None
        self._channel: subprocess.Popen[bytes] | None = None
        self._stopped = False

    # --- lifecycle

    @classmethod
    def start(cls, workdir: pathlib.Path, hosts_cfg: str,
              client_local_cfg: str | None = None,
              port: int | None = None) -> Xymond:
        """Start xymond and xymond_channel/xymond_client under WORKDIR.

        Each call gets a fresh XYMONHOME directory inside WORKDIR, so
        several instances may share one WORKDIR.  Returns once xymond
        answers "ping" and the client worker is attached, so a
        "client" message sent right away is not dropped.
        """
        for binary in (XYMOND, XYMOND_CHANNEL, XYMOND_CLIENT):
            _require(binary, "xymon")
        if port is None:
            port = free_port()
        _check_port_free(port)
        workdir = pathlib.Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        daemon = cls(_fresh_home(workdir), port)
        try:
            daemon._write_config(hosts_cfg, client_local_cfg)
            daemon._start_xymond()
            daemon._start_channel()
        except BaseException:
            daemon.stop()
            raise
        return daemon

    def _write_config(self, hosts_cfg: str,
                      client_local_cfg: str | None) -> None:
        """Create the XYMONHOME tree, env file and configuration files."""
        home = self.home
        for sub in ("etc", "logs", "tmp", "var", "download", "www"):
            (home / sub).mkdir(exist_ok=True)
        (home / "etc" / "hosts.cfg").write_text(hosts_cfg)
        # xymond itself (not xymond_client) answers client messages with
        # the matching section of $XYMONHOME/etc/client-local.cfg.
        if client_local_cfg is None:
            shutil.copyfile(SYSTEM_CLIENT_LOCAL_CFG,
                            home / "etc" / "client-local.cfg")
        else:
            (home / "etc" / "client-local.cfg").write_text(client_local_cfg)
        shutil.copyfile(SYSTEM_ANALYSIS_CFG, home / "etc" / "analysis.cfg")
        env = {
            "XYMONHOME": home,
            "XYMONSERVERROOT": home,
            "XYMONSERVERLOGS": home / "logs",
            "XYMONTMP": home / "tmp",
            "XYMONVAR": home / "var",
            "XYMONWWWDIR": home / "www",
            "HOSTSCFG": home / "etc" / "hosts.cfg",
            # Port via the env file: --listen=IP:PORT would bind all
            # addresses, --listen=127.0.0.1 plus XYMONDPORT binds one.
            "XYMONDPORT": self.port,
            # xymond_client posts its derived statuses to XYMSRV.
            "XYMSRV": LOOPBACK,
            "XYMSERVERS": "",
            # The server's own identity; tests may list this name in
            # hosts.cfg (tagged "bbd noconn") as Debian's default does.
            "XYMONSERVERHOSTNAME": "xymon-sandbox.example.com",
            "XYMONSERVERIP": LOOPBACK,
            "XYMONSERVEROS": "linux",
            "MACHINEDOTS": "xymon-sandbox.example.com",
            "MACHINE": "xymon-sandbox,example,com",
            "FQDN": "TRUE",
            "PATH": f"/bin:/usr/bin:/sbin:/usr/sbin:{XYMON_BIN}",
        }
        lines = ["# generated by xyssh.sandbox"]
        for name, value in env.items():
            text = str(value)
            # loadenv() expands $VAR and strips quotes; refuse values it
            # would mangle instead of starting a misconfigured daemon.
            if re.search(r'["$\\\n]', text):
                raise ValueError(f"unsafe character in {name}={text!r}")
            lines.append(f'{name}="{text}"')
        self.env_file.write_text("\n".join(lines) + "\n")

    def _start_xymond(self) -> None:
        """Run xymond in the foreground and wait until it answers ping."""
        home = self.home
        self._xymond = _spawn([
            XYMOND, f"--env={self.env_file}",
            f"--listen={LOOPBACK}",
            f"--hosts={home / 'etc' / 'hosts.cfg'}",
            f"--pidfile={home / 'logs' / 'xymond.pid'}",
            f"--log={self.log_path}",
            f"--checkpoint-file={home / 'tmp' / 'xymond.chk'}",
            "--checkpoint-interval=600",
            # Debian's tasks.cfg defaults; --no-bfq avoids a msg queue.
            f"--admin-senders={LOOPBACK}", "--store-clientlogs=!msgs",
            "--no-bfq",
        ], home / "logs" / "xymond.stdout")
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._xymond.poll() is not None:
                raise RuntimeError(
                    f"xymond exited with {self._xymond.returncode}\n"
                    + self._diagnostics())
            with contextlib.suppress(OSError):
                if self.query("ping", timeout=1).startswith(b"xymond"):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"xymond did not answer ping within {START_TIMEOUT}s\n"
                    + self._diagnostics())
            time.sleep(POLL_INTERVAL)

    def _start_channel(self) -> None:
        """Run xymond_channel --channel=client feeding xymond_client."""
        home = self.home
        self._channel = _spawn([
            XYMOND_CHANNEL, f"--env={self.env_file}", "--channel=client",
            f"--log={home / 'logs' / 'clientdata.log'}",
            f"--pidfile={home / 'logs' / 'xymond_channel_client.pid'}",
            XYMOND_CLIENT, f"--config={home / 'etc' / 'analysis.cfg'}",
        ], home / "logs" / "clientdata.stdout")
        # xymond silently drops channel messages while no reader is
        # registered (CLIENTCOUNT semaphore == 0), so wait for it.
        key = _ftok(home, XYMON_CLIENT_CHANNEL)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._channel.poll() is not None:
                raise RuntimeError(
                    f"xymond_channel exited with {self._channel.returncode}"
                    "\n" + self._diagnostics())
            sems = [i for k, i, _ in _ipc_objects([key]) if k == "s"]
            if sems and _semval(sems[0], SEM_CLIENTCOUNT) > 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "xymond_channel did not attach to the client channel "
                    f"within {START_TIMEOUT}s\n" + self._diagnostics())
            time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        """Stop worker, channel and xymond by PID, then free IPC keys."""
        if self._stopped:
            return
        self._stopped = True
        # The xymond_client worker (a child of the channel) and the
        # channel go first: xymond removes the channels when it exits,
        # and a reader still attached then only delays that.
        if self._channel is not None:
            _stop_tree(self._channel)
        if self._xymond is not None:
            _stop_tree(self._xymond)
        # A SIGKILLed xymond cannot clean up; its shm and semaphores
        # would outlive it and collide with a later run's keys.
        _ipc_remove(_ipc_objects(self.keys))

    def __enter__(self) -> Xymond:
        """Return self; the daemon is already running."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the daemon when leaving a with-block."""
        self.stop()

    # --- introspection

    @property
    def env_file(self) -> pathlib.Path:
        """Path of the --env file shared by xymond and xymond_channel."""
        return self.home / "etc" / "xymonserver.cfg"

    @property
    def log_path(self) -> pathlib.Path:
        """Path of xymond's own log file."""
        return self.home / "logs" / "xymond.log"

    @property
    def pids(self) -> dict[str, int]:
        """Map process name to PID for every process still running."""
        found = {}
        if self._xymond is not None and self._xymond.poll() is None:
            found["xymond"] = self._xymond.pid
        if self._channel is not None and self._channel.poll() is None:
            found["xymond_channel"] = self._channel.pid
        for pid in self._worker_pids():
            found["xymond_client"] = pid
        return found

    def _worker_pids(self) -> list[int]:
        """Return the PIDs of the channel's forked xymond_client workers."""
        # xymond_channel forks its worker lazily, on the first message.
        if self._channel is None or self._channel.poll() is not None:
            return []
        return [pid for pid, (_comm, ppid) in _process_table().items()
                if ppid == self._channel.pid]

    def log_text(self) -> str:
        """Return the contents of xymond.log (empty if not written yet)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _diagnostics(self) -> str:
        """Return the tails of all logs, for error messages."""
        logs = self.home / "logs"
        parts = []
        for name in ("xymond.log", "xymond.stdout", "clientdata.log",
                     "clientdata.stdout"):
            if (logs / name).exists():
                parts.append(f"--- {logs / name} (tail)\n"
                             + _tail(logs / name))
        return "\n".join(parts) or f"(no logs in {logs})"

    def xymon_env(self) -> dict[str, str]:
        """Return os.environ plus what Xymon's `xymon` needs to reach us.

        Use as subprocess env= for XYMON_CLI or for a replacement that
        honours the same variables (recipient "$XYMSRV" or 127.0.0.1).
        """
        env = dict(os.environ)
        env.update({
            "XYMONDPORT": str(self.port),
            "XYMSRV": LOOPBACK,
            "XYMSERVERS": "",
            "XYMON": str(XYMON_CLI),
            "XYMONHOME": str(self.home),
            "XYMONTMP": str(self.home / "tmp"),
        })
        return env

    # --- protocol

    def query(self, message: str | bytes, timeout: float = 10) -> bytes:
        """Send MESSAGE like the `xymon` program and return the reply.

        One message per connection: send it all, half-close, then read
        until xymond closes.  TIMEOUT bounds the whole exchange.
        """
        data = message.encode() if isinstance(message, str) else message
        deadline = time.monotonic() + timeout
        with socket.create_connection((LOOPBACK, self.port),
                                      timeout=timeout) as sock:
            sock.sendall(data)
            # xymond only processes a message after reading EOF.
            sock.shutdown(socket.SHUT_WR)
            chunks: list[bytes] = []
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no EOF from xymond within {timeout}s")
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)

    def board(self, host: str,
              fields: str = "hostname,testname,color") -> list[list[str]]:
        """Return xymondboard rows for HOST, each split on "|"."""
        # The host filter is a PCRE; escape it so dots match literally.
        reply = self.query(
            f"xymondboard host=^{re.escape(host)}$ fields={fields}")
        return [line.split("|")
                for line in reply.decode(errors="replace").splitlines()
                if line]

    def columns(self, host: str) -> set[str]:
        """Return the set of test names xymond currently has for HOST."""
        return {row[0] for row in self.board(host, fields="testname")}

    def wait_for_columns(self, host: str, columns: set[str],
                         timeout: float = 30) -> set[str]:
        """Poll until HOST has all COLUMNS; return the columns present."""
        deadline = time.monotonic() + timeout
        while True:
            present = self.columns(host)
            if set(columns) <= present:
                return present
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"{host}: missing columns "
                    f"{sorted(set(columns) - present)} after {timeout}s; "
                    f"present {sorted(present)}\n" + self._diagnostics())
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _fresh_home(workdir: pathlib.Path, attempts: int = 5) -> pathlib.Path:
    """Create a new XYMONHOME under WORKDIR whose IPC keys are unused.

    ftok() keys use only 16 bits of the inode, so an unrelated directory
    (or a stale object from a killed run) can collide; another fresh
    directory then almost always has other keys.
    """
    rejected: list[pathlib.Path] = []
    try:
        for _ in range(attempts):
            home = pathlib.Path(tempfile.mkdtemp(prefix="xymond-",
                                                 dir=workdir))
            busy = _ipc_objects(_ftok(home, p) for p in XYMON_IPC_PROJECTS)
            if not busy:
                return home
            # Keep it until we are done so mkdtemp cannot reuse its inode.
            rejected.append(home)
        raise RuntimeError(
            "SysV IPC keys for a new XYMONHOME are already in use: "
            + ", ".join(f"{k} id {i} key 0x{key:08x}"
                        for k, i, key in busy)
            + "; another xymond is running or a crashed one left objects "
            "behind (see `ipcs`, remove yours with `ipcrm`)")
    finally:
        for home in rejected:
            home.rmdir()


# ------------------------------------------------------------------ sshd


class Sshd:
    """A private OpenSSH sshd on loopback, for forced-command tests."""

    def __init__(self, workdir: pathlib.Path, port: int,
                 listen: tuple[str, ...]) -> None:
        """Record paths; use Sshd.start() to run one."""
        self.workdir = workdir
        self.port = port
        self.listen = listen
        self.config_path = workdir / "sshd_config"
        self.host_key_path = workdir / "ssh_host_ed25519_key"
        self.log_path = workdir / "sshd.log"
        self.pid_path = workdir / "sshd.pid"
        self.host_public_key = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = False

    @classmethod
    def start(cls, workdir: pathlib.Path, authorized_keys: pathlib.Path,
              port: int | None = None, extra_config: str = "",
              listen: tuple[str, ...] = (LOOPBACK,),
              host_key: pathlib.Path | None = None) -> Sshd:
        """Start sshd -D with its own host key and config under WORKDIR.

        EXTRA_CONFIG goes BEFORE the built-in settings because sshd keeps
        the first value it sees for most keywords, so it overrides them;
        any part of it from the first "Match" line on is placed at the
        end instead, since a Match block swallows every line after it.
        HOST_KEY, a private key path, replaces the generated host key.
        """
        _require(SSHD, "openssh-server")
        if port is None:
            port = free_port()
        if LOOPBACK in listen:
            _check_port_free(port)
        workdir = pathlib.Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        daemon = cls(workdir, port, tuple(listen))
        # sshd refuses to start without its privilege-separation dir.
        SSHD_PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        if host_key is None:
            _generate_key(daemon.host_key_path, "xyssh-test-host")
        else:
            # A host key of the caller's, for a server that "moved".
            shutil.copyfile(host_key, daemon.host_key_path)
            shutil.copyfile(_public_path(pathlib.Path(host_key)),
                            _public_path(daemon.host_key_path))
            daemon.host_key_path.chmod(0o600)
        daemon.host_public_key = (
            _public_path(daemon.host_key_path).read_text().strip())
        daemon.config_path.write_text(daemon._config(
            pathlib.Path(authorized_keys).resolve(), extra_config))
        check = subprocess.run(
            [SSHD, "-t", "-f", daemon.config_path], capture_output=True,
            text=True, check=False)
        if check.returncode != 0:
            raise RuntimeError(
                f"sshd rejected {daemon.config_path}:\n{check.stderr}")
        try:
            # -D: no fork, so the Popen PID is the listener; -e with -E
            # sends every log line (also of session children) to a file.
            daemon._proc = _spawn(
                [SSHD, "-D", "-e", "-f", daemon.config_path,
                 "-E", daemon.log_path], workdir / "sshd.stdout")
            daemon._wait_banner()
        except BaseException:
            daemon.stop()
            raise
        return daemon

    def _config(self, authorized_keys: pathlib.Path,
                extra_config: str) -> str:
        """Return the sshd_config text (EXTRA_CONFIG first, Match last)."""
        head, match = _split_match(extra_config)
        lines = ["# generated by xyssh.sandbox"]
        if head.strip():
            lines += ["# extra_config first: sshd keeps the first value",
                      head]
        lines += ["# defaults", f"Port {self.port}"]
        lines += [f"ListenAddress {addr}" for addr in self.listen]
        lines += [
            f"HostKey {_quote(self.host_key_path)}",
            f"PidFile {_quote(self.pid_path)}",
            # % starts a token in AuthorizedKeysFile; double it.
            "AuthorizedKeysFile "
            + _quote(str(authorized_keys).replace("%", "%%")),
            "PermitRootLogin forced-commands-only",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "UsePAM no",
            # pytest tmp dirs are not root-owned 0755 all the way up.
            "StrictModes no",
            "LogLevel VERBOSE",
            "ExposeAuthInfo yes",
            # Keep sessions from touching /var/log/lastlog or motd.
            "PrintMotd no",
            "PrintLastLog no",
            # No Subsystem line: sftp etc. stay unavailable.
        ]
        if _sshd_version() >= (9, 8):
            # Repeated refused keys from 127.0.0.1 must not get the
            # loopback address penalised between test cases.
            lines.append("PerSourcePenalties no")
        if match:
            lines += ["# Match blocks from extra_config", match]
        return "\n".join(lines) + "\n"

    def _wait_banner(self) -> None:
        """Wait until sshd accepts a connection and sends SSH-2.0-."""
        assert self._proc is not None
        family = socket.AF_INET6 if ":" in self.listen[0] else socket.AF_INET
        deadline = time.monotonic() + START_TIMEOUT
        last_error = "no attempt"
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"sshd exited with {self._proc.returncode}\n"
                    + self._diagnostics())
            try:
                with socket.socket(family, socket.SOCK_STREAM) as sock:
                    sock.settimeout(1)
                    sock.connect((self.listen[0], self.port))
                    banner = sock.recv(256)
                if banner.startswith(b"SSH-2.0-"):
                    return
                last_error = f"unexpected banner {banner[:60]!r}"
            except OSError as exc:
                last_error = str(exc)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"sshd not ready within {START_TIMEOUT}s "
                    f"({last_error})\n" + self._diagnostics())
            time.sleep(POLL_INTERVAL)

    def stop(self) -> None:
        """Stop sessions, then the listener, by PID (bounded, SIGKILL)."""
        if self._stopped:
            return
        self._stopped = True
        if self._proc is None:
            return
        # Sessions (and the forced commands under them) survive the
        # listener's SIGTERM; a hung one would otherwise linger.
        _stop_tree(self._proc)

    def __enter__(self) -> Sshd:
        """Return self; the daemon is already running."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the daemon when leaving a with-block."""
        self.stop()

    @property
    def pid(self) -> int | None:
        """PID of the listener, or None if it never started."""
        return None if self._proc is None else self._proc.pid

    def known_hosts_line(self, name: str = LOOPBACK) -> str:
        """Return a known_hosts line for NAME:port with our host key."""
        keytype, blob = self.host_public_key.split()[:2]
        host = name if self.port == 22 else f"[{name}]:{self.port}"
        return f"{host} {keytype} {blob}"

    def log_text(self) -> str:
        """Return the contents of the sshd log file."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _diagnostics(self) -> str:
        """Return the tails of the sshd log and stdout, for errors."""
        return "\n".join(
            f"--- {path} (tail)\n" + _tail(path)
            for path in (self.log_path, self.workdir / "sshd.stdout")
            if path.exists()) or "(no sshd logs)"


def _split_match(config: str) -> tuple[str, str]:
    """Split sshd config text into (global part, Match blocks part)."""
    lines = config.splitlines()
    for index, line in enumerate(lines):
        if re.match(r"\s*match\s", line, re.IGNORECASE):
            return "\n".join(lines[:index]), "\n".join(lines[index:])
    return config.rstrip("\n"), ""


def _quote(value: str | os.PathLike[str]) -> str:
    """Quote a path for sshd_config, which splits arguments on spaces."""
    text = os.fspath(value)
    if '"' in text or "\n" in text:
        raise ValueError(f"cannot quote {text!r} for sshd_config")
    return f'"{text}"'


def _sshd_version() -> tuple[int, int]:
    """Return sshd's (major, minor) version, (0, 0) if unknown."""
    # sshd -V exists from OpenSSH 9.0 on; older ones print usage, which
    # still begins with the version string.
    result = subprocess.run([SSHD, "-V"], capture_output=True, text=True,
                            check=False)
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stderr + result.stdout)
    return (int(found[1]), int(found[2])) if found else (0, 0)


# ------------------------------------------------------------- ssh keys


def _public_path(private: pathlib.Path) -> pathlib.Path:
    """Return where ssh-keygen puts the public half of PRIVATE."""
    return private.with_name(private.name + ".pub")


def _generate_key(path: pathlib.Path, comment: str) -> None:
    """Write a new unencrypted ed25519 key pair at PATH and PATH.pub."""
    if path.exists() or _public_path(path).exists():
        # ssh-keygen would stop and ask before overwriting.
        raise FileExistsError(f"{path} already exists")
    result = subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment,
         "-f", os.fspath(path)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ssh-keygen failed for {path}:\n"
                           f"{result.stderr}")
    path.chmod(0o600)


def make_keypair(directory: pathlib.Path, name: str,
                 comment: str = "") -> tuple[pathlib.Path, pathlib.Path]:
    """Create an ed25519 key pair DIRECTORY/NAME(.pub); return both."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    private = directory / name
    _generate_key(private, comment)
    return private, _public_path(private)


def ssh_command(sshd: Sshd, identity: pathlib.Path,
                known_hosts: pathlib.Path, user: str = "root",
                extra: Sequence[str] = ()) -> list[str]:
    """Return an ssh argv that reaches SSHD with exactly IDENTITY.

    Nothing from ~/.ssh, /etc/ssh/ssh_config or an agent is used, and
    the host key must already be in KNOWN_HOSTS.  EXTRA (more options)
    goes just before the destination; append the remote command after.
    """
    return [
        "ssh", "-F", "/dev/null", "-p", str(sshd.port),
        "-i", os.fspath(identity),
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", f"UserKnownHostsFile={os.fspath(known_hosts)}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "LogLevel=ERROR",
        "-o", "ConnectTimeout=10",
        *extra,
        f"{user}@{LOOPBACK}",
    ]
