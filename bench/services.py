"""Private Redis and PostgreSQL servers that the fault tests and ``bench.faults`` kill and restart.

Each runs on a free loopback port, in a folder of its own, as a direct child of this process
(never the machine's shared servers, never through a service manager). None outlives its owner:
each server is started with a parent-death signal (Linux ``PR_SET_PDEATHSIG``; from one thread
that lives as long as the process, since the signal follows the thread that started a child),
so a test run killed with SIGKILL takes its servers with it, and every server still running is stopped at
exit (``atexit``) otherwise. PostgreSQL refuses to run as root: as root the cluster is made and
run as the ``postgres`` user.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
PG_BIN = Path(os.environ.get("INSPECTOR_PG_BIN", "/usr/lib/postgresql/15/bin"))
PR_SET_PDEATHSIG = 1
PG_PREFIX = "inspector-pg-"  # the folders clusters make under the temporary folder
OWNER = "owner.pid"  # in such a folder: the process it belongs to

_RUNNING: set[Server] = set()
_MADE: set[PostgresCluster] = set()  # clusters whose folder is removed at exit


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Spawner:
    """Starts child processes from one thread that lives as long as this process: Linux sends the
    parent-death signal when the *thread* that started a child ends, so a server restarted from
    a short-lived thread (a fault played beside a stream) would die with that thread."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], subprocess.Popen], Future[subprocess.Popen]]] = (
            queue.Queue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, *args: Any, **kwargs: Any) -> subprocess.Popen:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="spawner", daemon=True)
                self._thread.start()
        done: Future[subprocess.Popen] = Future()
        self._jobs.put((lambda: subprocess.Popen(*args, **kwargs), done))
        return done.result()

    def _run(self) -> None:
        while True:
            start, done = self._jobs.get()
            try:
                done.set_result(start())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                done.set_exception(exc)


popen = _Spawner().popen  # subprocess.Popen, from the long-lived thread


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def child_setup(uid: int | None, gid: int | None, death_signal: int) -> Callable[[], None]:
    """What the child runs before exec: its own user (set first: a change of user clears the
    parent-death signal) and the signal it gets when this process dies."""

    def setup() -> None:
        os.setpgid(0, 0)  # its own group: a Ctrl-C meant for the tests is not also the server's
        if gid is not None and uid is not None:
            os.setgid(gid)
            os.setuid(uid)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() == 1:  # the owner died before the signal was set
            os._exit(1)

    return setup


class Server:
    """A server process of our own on ``port``; ``kill`` and ``start`` again to play an outage."""

    death_signal = signal.SIGTERM
    stop_signal = signal.SIGTERM

    def __init__(self, folder: Path, port: int | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self.log = self.folder / "server.log"

    def command(self) -> list[str]:
        raise NotImplementedError

    def user(self) -> tuple[int | None, int | None]:
        return None, None

    def start(self, timeout: float = 30.0) -> None:
        uid, gid = self.user()
        with self.log.open("ab") as log:
            self.process = popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=child_setup(uid, gid, self.death_signal),  # noqa: PLW1509 - before exec only
            )
        _RUNNING.add(self)
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"{type(self).__name__} did not start on port {self.port}:\n{tail}")
            time.sleep(0.05)

    def ready(self) -> bool:
        return _listening(self.port)

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill does."""
        self._end(signal.SIGKILL)

    def stop(self) -> None:
        self._end(self.stop_signal)

    def _end(self, how: int) -> None:
        process, self.process = self.process, None
        _RUNNING.discard(self)
        if process is None or process.poll() is not None:
            return
        process.send_signal(how)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


class RedisServer(Server):
    """redis-server without persistence, as a broker's restart loses what it held."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            REDIS_SERVER,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
            *("--dir", str(self.folder), "--protected-mode", "yes"),
        ]


class PostgresCluster(Server):
    """A PostgreSQL cluster of our own (initdb once, then ``postgres`` as our child), trust auth on
    loopback; its socket lies in its folder."""

    death_signal = signal.SIGQUIT  # immediate shutdown: its backends go with it
    stop_signal = signal.SIGINT  # fast shutdown, as a restart by an operator

    def __init__(self, folder: Path | None = None, port: int | None = None):
        # A folder of its own under the temporary folder (removed with the cluster): as root the
        # cluster runs as postgres, who may not enter a test's private (0700) folders.
        self.made = folder is None
        if self.made:
            _remove_orphans()
        super().__init__(Path(folder or tempfile.mkdtemp(prefix=PG_PREFIX)), port)
        if self.made:
            (self.folder / OWNER).write_text(str(os.getpid()))
        self.data = self.folder / "data"
        if self.made:
            _MADE.add(self)
        if os.geteuid() == 0:  # initdb and postgres refuse root
            shutil.chown(self.folder, "postgres", "postgres")
        if not (self.data / "PG_VERSION").exists():
            uid, gid = self.user()
            subprocess.run(
                [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8"],
                check=True,
                capture_output=True,
                preexec_fn=child_setup(uid, gid, signal.SIGKILL),  # noqa: PLW1509
            )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def user(self) -> tuple[int | None, int | None]:
        if os.geteuid() != 0:
            return None, None
        entry = pwd.getpwnam("postgres")
        return entry.pw_uid, entry.pw_gid

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.folder),
            "fsync": "off",  # a test's data: speed over durability
            "max_connections": "100",
            "shared_buffers": "32MB",
        }
        return [str(PG_BIN / "postgres"), "-D", str(self.data), *(f"-c{k}={v}" for k, v in settings.items())]

    def remove(self) -> None:
        """Stop the cluster and delete its folder (if it made it)."""
        self.stop()
        _MADE.discard(self)
        if self.made:
            shutil.rmtree(self.folder, ignore_errors=True)

    def ready(self) -> bool:
        probe = subprocess.run(
            [str(PG_BIN / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
        )
        return probe.returncode == 0


def _remove_orphans() -> None:
    """Folders of clusters whose owner was killed (its servers died with it; atexit did not run)."""
    for folder in Path(tempfile.gettempdir()).glob(PG_PREFIX + "*"):
        try:
            os.kill(int((folder / OWNER).read_text()), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except (OSError, ValueError):
            continue  # being made, or not ours to judge


def terminate(processes: Sequence[subprocess.Popen]) -> None:
    """SIGTERM every process still running, then wait for each (30 s, then SIGKILL): all are
    asked before any is waited for, so they shut down side by side."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_all() -> None:
    """Stop every server still running, and remove the folders clusters made (at exit)."""
    for server in list(_RUNNING):
        server.stop()
    for cluster in list(_MADE):
        cluster.remove()


atexit.register(stop_all)
