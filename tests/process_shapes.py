"""Real processes whose shape, not their memory, is what a record must survive.

Each is a context manager that starts the process, yields what a test needs,
and ends and reaps every process it started (and removes every directory and
cgroup it made), however the test ends: tens of thousands of arguments, an
ancestry hundreds of processes deep, an executable and mapped files with
names near PATH_MAX, a cgroup path as long, a leader that called
pthread_exit() while its other thread runs and grows.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

# Linux's limit on one path name component, and on a whole path given to a syscall.
NAME_MAX = 255
PATH_MAX = 4096

# Prints "ready" once it holds what it was asked to, then waits for stdin to close.
_HOLD = "import sys; {setup}; print('ready', flush=True); sys.stdin.read()"


def _ready(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"child {proc.args!r:.200} exited with {proc.wait()} before it was ready"
    return line


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Close its stdin (it exits), or kill it after a grace period; always reap it."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def held(argv: Sequence[str], cgroup: Optional[str] = None) -> Iterator[subprocess.Popen[bytes]]:
    """A child that prints one line when ready and ends when its stdin closes."""
    join = None if cgroup is None else (lambda: Path(cgroup, "cgroup.procs").write_text("0"))
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=join
    )
    try:
        yield proc
    finally:
        _end(proc)


@contextlib.contextmanager
def python_holding(setup: str, *args: str, cgroup: Optional[str] = None) -> Iterator[int]:
    """`python -c` running setup (its sys.argv[1:] are args), then holding still: its pid."""
    with held([sys.executable, "-c", _HOLD.format(setup=setup), *args], cgroup) as proc:
        assert _ready(proc) == b"ready\n"
        yield proc.pid


# Each process forks the next and waits for it; the deepest prints the chain's pids
# and waits for stdin to close, upon which the chain unwinds from the bottom.
_CHAIN = """
import os, sys
chain = [os.getpid()]
for _ in range(int(sys.argv[1]) - 1):
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        os._exit(0)
    chain.append(os.getpid())
print(" ".join(map(str, chain)), flush=True)
sys.stdin.read()
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@contextlib.contextmanager
def process_chain(depth: int) -> Iterator[list[int]]:
    """depth processes, each the parent of the next: their pids, outermost first."""
    with held([sys.executable, "-c", _CHAIN, str(depth)]) as proc:
        chain = [int(pid) for pid in _ready(proc).split()]
        try:
            assert len(chain) == depth
            yield chain
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            deadline = time.monotonic() + 30
            while any(_alive(pid) for pid in chain) and time.monotonic() < deadline:
                time.sleep(0.02)
            for pid in reversed(chain):
                with contextlib.suppress(ProcessLookupError):
                    if _alive(pid):
                        os.kill(pid, signal.SIGKILL)


def long_directory(base: Path, length: int, character: str = "\x01") -> Path:
    """A directory under base whose path is length bytes long, made of names that
    are character repeated (each at most NAME_MAX bytes)."""
    path = base
    while len(os.fsencode(str(path))) < length - 2:
        room = length - len(os.fsencode(str(path))) - 1
        name = character * min(NAME_MAX // len(character.encode()), max(1, room))
        path = path / name
        path.mkdir()
    return path


@contextlib.contextmanager
def mapping_files(paths: Sequence[Path]) -> Iterator[int]:
    """A process that maps each of paths (created here, one page each): its pid."""
    for path in paths:
        path.write_bytes(b"m" * 4096)
    setup = (
        "import mmap, os; maps = [mmap.mmap(os.open(p, os.O_RDONLY), 0, prot=mmap.PROT_READ)"
        " for p in sys.argv[1:]]"
    )
    with python_holding(setup, *map(str, paths)) as pid:
        yield pid


@contextlib.contextmanager
def running_from(directory: Path) -> Iterator[int]:
    """sleep, copied into directory and run from there: a process whose exe is that long."""
    exe = directory / "sleep"
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", exe)
    proc = subprocess.Popen([str(exe), "3600"])
    try:
        deadline = time.monotonic() + 10
        while os.readlink(f"/proc/{proc.pid}/exe") != str(exe):
            assert time.monotonic() < deadline, "sleep never ran from its long directory"
            time.sleep(0.01)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def nested_cgroups(parent: str, length: int) -> Iterator[str]:
    """Cgroups nested below parent until the deepest one's path is length bytes long
    (under PATH_MAX, so that its files can still be opened); every process in them is
    killed and they are removed, deepest first."""
    made: list[str] = []
    directory = parent
    try:
        while len(directory) < length - 2:
            room = length - len(directory) - 1
            directory = os.path.join(directory, "c" * min(NAME_MAX, max(1, room)))
            os.mkdir(directory)
            made.append(directory)
        yield directory
    finally:
        for child in reversed(made):
            deadline = time.monotonic() + 30
            while True:
                for pid in Path(child, "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                try:
                    os.rmdir(child)
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"cgroup {child} never emptied"
                    time.sleep(0.02)


# The main thread starts a worker and calls pthread_exit(); the worker waits until
# the leader is a zombie, says so with its thread id, then grows by the MiB each
# stdin line asks for ("hog": without end), and ends the process when stdin closes.
_LEADER_EXITS = r"""
import ctypes, mmap, sys, threading, time

def leader_state():
    with open("/proc/self/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]

def grow(mib, blocks):
    region = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for offset in range(0, mib << 20, mmap.PAGESIZE):
        region[offset] = 1
    blocks.append(region)

def work():
    while leader_state() != "Z":
        time.sleep(0.01)
    print("ready", threading.get_native_id(), flush=True)
    blocks = []
    for line in sys.stdin:
        while line.strip() == "hog":
            grow(8, blocks)
        grow(int(line), blocks)
        print("grown", flush=True)

threading.Thread(target=work).start()
ctypes.CDLL(None).pthread_exit(None)
"""


@dataclass
class LeaderExited:
    """A process whose leader is a zombie while its one other thread, tid, runs."""

    proc: subprocess.Popen[bytes]
    tid: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def grow(self, mib: int) -> None:
        """Touch mib MiB more in the live thread; returns once it is resident."""
        self._say(f"{mib}\n")
        assert _ready(self.proc) == b"grown\n"

    def hog(self) -> None:
        """Grow without end, until the OOM killer (or the end of the test) stops it."""
        self._say("hog\n")

    def end_last_thread(self) -> None:
        """The live thread returns, and with it the process ends."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)

    def _say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()


@contextlib.contextmanager
def leader_exited(cgroup: Optional[str] = None) -> Iterator[LeaderExited]:
    with held([sys.executable, "-c", _LEADER_EXITS], cgroup) as proc:
        word, tid = _ready(proc).split()
        assert word == b"ready"
        yield LeaderExited(proc, int(tid))
