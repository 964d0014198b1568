"""A process that names itself with chosen bytes, to try memdoor as an attacker would.

Everything memdoor reports about a process that the process itself picks is
set here to bytes from a case: its name (comm, by prctl PR_SET_NAME), its
argv (it execs itself with them), the names of files it maps (in a directory
it is given, or a temporary one it removes), the path of its executable (a
copy of the interpreter under a chosen name) and, given a memory cgroup, the
name of a child cgroup it creates and joins. The cases cover what has broken
memdoor or could: bytes that are not UTF-8, control characters and ANSI
escape sequences, newlines and text that looks like journal fields, names as
long as the kernel takes, and tens of thousands of arguments.

Run as ``python -m memdoor.lab.hostile --case NAME [--dir DIR] [--cgroup DIR]
[--touch-mb N] [--grow-mb-per-s N --grow-to-mb N]`` from the directory that
holds memdoor (cwd is on sys.path under -m). It prints one JSON ready line
(pid, and the exe, mapped files and cgroup it ended up with, as hex bytes),
then holds its memory, or grows it, until SIGTERM. The chosen argv[0] leaves
the interpreter unable to find itself, so the second stage uses the standard
library only. :class:`HostileProcess` is the parent's side: start, wait for
the ready line, stop, and remove the cgroup and files the child made, which a
child killed by the OOM killer cannot do.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import mmap
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any, Optional

from memdoor.lab.memory_cgroup import remove_cgroup_directory
from memdoor.lab.python_child import IMPORT_ROOT, module_command

MODULE = "memdoor.lab.hostile"
MIB = 1 << 20
# Where the first stage hands the second its orders: argv is the case's alone.
SPEC_VARIABLE = "MEMDOOR_LAB_HOSTILE"
_PR_SET_NAME = 15
# The kernel keeps 15 bytes of a name (TASK_COMM_LEN less its NUL).
COMM_BYTES = 15
_GROW_STEP_SECONDS = 0.05


@dataclass(frozen=True)
class Case:
    """The bytes one hostile process picks; cgroup is used only when given --cgroup."""

    comm: bytes
    argv: tuple[bytes, ...]
    maps: tuple[bytes, ...]
    exe: bytes
    cgroup: bytes


CASES: dict[str, Case] = {
    "latin1": Case(
        comm=b"caf\xe9-w\xf6rker",
        argv=(b"/opt/caf\xe9/bin/caf\xe9", b"--user=Jos\xe9", b"--dir=/srv/r\xe9sum\xe9s"),
        maps=(b"caf\xe9.dat", b"r\xe9sum\xe9.bin"),
        exe=b"caf\xe9-python",
        cgroup=b"caf\xe9",
    ),
    "malformed": Case(
        # A UTF-16 surrogate encoded as UTF-8, an overlong "/", a cut sequence, stray bytes.
        comm=b"\xed\xa0\x80\xc0\xaf\xe2\x82\xff",
        argv=(b"\xed\xa0\x80", b"\xc0\xafetc\xc0\xafpasswd", b"cut \xe2\x82", b"\xfe\xff"),
        maps=(b"\xed\xa0\x80.dat", b"\xf8\x88\x80\x80\x80.dat"),
        exe=b"\xed\xb3\xbf-python",
        cgroup=b"\xed\xa0\x80\xc0\xaf",
    ),
    "lookalike": Case(
        # Valid text that reads like the escaped form, and invalid text with backslashes.
        comm=b"a\\xff\\\\b",
        argv=(b"/opt/a\\xff", b"/opt/a\\\xff", b"\\x2d\\\\x41\xe9", b"C:\\caf\xe9"),
        maps=(b"lit\\xff.dat", b"raw\\\xff.dat"),
        exe=b"a\\x41\xff-python",
        cgroup=b"system-a\\x2db\xff.slice",
    ),
    "control": Case(
        comm=b"\x1b[2J\x1b[H\x07ok",
        argv=(
            b"ctl\x1b[2J\x1b[H",
            b"bell\x07 del\x7f bs\x08 nul-free",
            b"cr\r tab\t vt\x0b ff\x0c fs\x1c",
            b"c1 \xc2\x85 \xc2\x9b2J raw \x9b2J",
        ),
        maps=(b"ctl\x1b[2J.dat", b"c1\xc2\x85\x7f.dat"),
        exe=b"ctl\x1b[2J\x7f",
        cgroup=b"ctl\x1b[2J\x7f\r",
    ),
    "newline": Case(
        comm=b"a\nERROR: PID 1",
        argv=(
            b"worker\nERROR: PID 1 does not match the executable name /sbin/init",
            b"\n\n\n",
            b"line\xe2\x80\xa8sep para\xe2\x80\xa9sep",
        ),
        maps=(b"f\nERROR: PID 1.dat", b"u2028\xe2\x80\xa8.dat"),
        exe=b"exe\nERROR",
        # The kernel refuses a newline in a cgroup's name; these other line breaks pass.
        cgroup=b"nl\xc2\x85\xe2\x80\xa8\x1e",
    ),
    "journal_fields": Case(
        comm=b"MESSAGE=pwned",
        argv=(
            b"MESSAGE=forged",
            b"x\nPRIORITY=0\nMESSAGE=forged\nMEMDOOR_EVENT=oom_killed\n",
            b"SYSLOG_IDENTIFIER=sshd",
        ),
        maps=(b"MESSAGE=x PRIORITY=0.dat", b"PRIORITY=0\nMESSAGE=y"),
        exe=b"MESSAGE=exe",
        cgroup=b"MESSAGE=cg PRIORITY=0",
    ),
    "ansi": Case(
        comm=b"\x1b]0;pwn\x07\x1b[31m",
        argv=(
            b"\x1b[31mERROR\x1b[0m: fake",
            b"\x1b]8;;http://evil.invalid\x1b\\link\x1b]8;;\x1b\\",
            b"\x1b[1A\x1b[2K\rERROR: PID 1",
            b"\xe2\x80\xaeevil\xe2\x80\xac",
        ),
        maps=(b"\x1b[32mlib.so", b"\x1b]52;c;ZXZpbA==\x07.dat"),
        exe=b"\x1b[5mexe",
        cgroup=b"\x1b[31mcg\x1b[0m",
    ),
    "long": Case(
        comm=b"\xe9" * COMM_BYTES,
        # Each argument stays under the kernel's 128 KiB per-argument limit.
        argv=(b"/long/" + b"\xe9" * 100_000, b"x" * 60_000 + b"\xff", b"\\" * 1000),
        maps=(b"\xe9a" * 127,),
        exe=b"\xe9" * 200,
        cgroup=b"\xe9" * 200,
    ),
    "many_args": Case(
        comm=b"many\xff",
        argv=(b"many\xff", *([b"\xff"] * 20_000), *([b""] * 30_000), b"last"),
        maps=tuple(b"many-\xff-%d.dat" % index for index in range(64)),
        exe=b"many\xff",
        cgroup=b"many\xff",
    ),
}


# --- the child --------------------------------------------------------------


class _Stop(Exception):
    """Raised from the signal handler so the cleanup ``finally`` runs."""


def _stop_on_signal(signum: int, frame: Optional[FrameType]) -> None:
    signal.signal(signum, signal.SIG_IGN)
    raise _Stop


def _join_child_cgroup(parent: bytes, name: bytes) -> bytes:
    directory = os.path.join(parent, name)
    os.mkdir(directory)
    with open(os.path.join(directory, b"cgroup.procs"), "w") as procs:
        procs.write(str(os.getpid()))
    return directory


def _copy_interpreter(directory: bytes, name: bytes) -> bytes:
    path = os.path.join(directory, name)
    shutil.copy2(os.fsencode(os.path.realpath(sys.executable)), path)
    return path


def first_stage(args: argparse.Namespace) -> None:
    """Join the cgroup, put the interpreter under its chosen name, exec with the chosen argv."""
    case = CASES[args.case]
    remove_dir = args.dir is None
    directory = os.fsencode(args.dir or tempfile.mkdtemp(prefix="memdoor-hostile-"))
    cgroup = None if args.cgroup is None else os.fsencode(args.cgroup)
    spec = {
        "case": args.case,
        "dir": directory.hex(),
        "remove_dir": remove_dir,
        "cgroup": None if cgroup is None else _join_child_cgroup(cgroup, case.cgroup).hex(),
        "touch_mb": args.touch_mb,
        "grow_mb_per_s": args.grow_mb_per_s,
        "grow_to_mb": args.grow_to_mb,
    }
    argv = [case.argv[0], b"-m", MODULE.encode(), *case.argv[1:]]
    env = {**os.environ, SPEC_VARIABLE: json.dumps(spec)}
    try:
        os.execve(_copy_interpreter(directory, case.exe), argv, env)
    except OSError:
        # A directory mounted noexec: the argv and names still are the case's.
        os.execve(os.path.realpath(sys.executable), argv, env)


def _set_comm(name: bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")


def _map_files(directory: bytes, names: Sequence[bytes]) -> tuple[list[bytes], list[mmap.mmap]]:
    """One page each, read so it is resident: /proc/PID/maps then names every file."""
    paths, regions = [], []
    for name in names:
        path = os.path.join(directory, name)
        with open(path, "wb") as handle:
            handle.write(b"\x5a" * mmap.PAGESIZE)
        with open(path, "rb") as handle:
            region = mmap.mmap(handle.fileno(), mmap.PAGESIZE, prot=mmap.PROT_READ)
        region.read(1)
        paths.append(path)
        regions.append(region)
    return paths, regions


def _touched(mib: int) -> bytearray:
    memory = bytearray(mib * MIB)
    for offset in range(0, len(memory), mmap.PAGESIZE):
        memory[offset] = 0x5A
    return memory


def second_stage(spec: dict[str, Any]) -> int:
    """Running under the chosen argv: take the chosen name, map the files, hold or grow."""
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGINT, _stop_on_signal)
    case = CASES[spec["case"]]
    directory = bytes.fromhex(spec["dir"])
    held: list[Any] = []
    try:
        _set_comm(case.comm)
        paths, regions = _map_files(directory, case.maps)
        held += regions
        held.append(_touched(spec["touch_mb"]))
        ready = {
            "pid": os.getpid(),
            "exe": os.readlink(b"/proc/self/exe").hex(),
            "maps": [path.hex() for path in paths],
        }
        sys.stdout.write(json.dumps(ready) + "\n")
        sys.stdout.flush()
        grown = 0
        while True:
            step = int(spec["grow_mb_per_s"] * _GROW_STEP_SECONDS) or 1
            if spec["grow_mb_per_s"] and grown < spec["grow_to_mb"]:
                held.append(_touched(step))
                grown += step
            time.sleep(_GROW_STEP_SECONDS)
    except _Stop:
        return 0
    finally:
        if spec["remove_dir"]:
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    spec = os.environ.pop(SPEC_VARIABLE, None)
    if spec is not None:
        return second_stage(json.loads(spec))
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--case", required=True, choices=sorted(CASES))
    parser.add_argument("--dir", help="where the mapped files and the exe go (default: a temp dir)")
    parser.add_argument("--cgroup", help="a memory cgroup to create the case's child cgroup in")
    parser.add_argument("--touch-mb", type=int, default=0)
    parser.add_argument("--grow-mb-per-s", type=int, default=0)
    parser.add_argument("--grow-to-mb", type=int, default=0)
    first_stage(parser.parse_args(argv))
    return 1


# --- the parent -------------------------------------------------------------


class HostileStartError(RuntimeError):
    """The hostile process exited or stayed silent instead of printing its ready line."""


class HostileProcess:
    """A hostile process as its parent sees it; stop() also removes what it made."""

    def __init__(
        self,
        case: str,
        directory: str,
        cgroup: Optional[str] = None,
        options: Sequence[str] = (),
        ready_timeout: float = 60.0,
    ) -> None:
        """A fresh directory is made in directory for this process's files; options are
        the child's --touch-mb, --grow-mb-per-s and --grow-to-mb."""
        self.case = CASES[case]
        self.directory = tempfile.mkdtemp(prefix="hostile-", dir=directory)
        self._stderr: IO[bytes] = tempfile.TemporaryFile(prefix="hostile-stderr-")  # noqa: SIM115
        command = module_command(MODULE, "--case", case, "--dir", self.directory, *options)
        self.proc = subprocess.Popen(
            command + ([] if cgroup is None else ["--cgroup", cgroup]),
            cwd=IMPORT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.pid = self.proc.pid
        self.cgroup_dir: Optional[bytes] = (
            None if cgroup is None else os.path.join(os.fsencode(cgroup), self.case.cgroup)
        )
        try:
            ready = json.loads(self._ready_line(ready_timeout))
        except (HostileStartError, ValueError) as exc:
            self.stop()
            stderr = self.stderr
            self._stderr.close()
            raise HostileStartError(f"hostile case {case}: {exc}; stderr:\n{stderr}") from exc
        self.exe: bytes = bytes.fromhex(ready["exe"])
        self.map_paths: list[bytes] = [bytes.fromhex(path) for path in ready["maps"]]

    @property
    def cmdline(self) -> list[bytes]:
        """/proc/PID/cmdline as the case makes it: the interpreter's -m sits after argv[0]."""
        argv = self.case.argv
        return [argv[0], b"-m", MODULE.encode(), *argv[1:]]

    @property
    def comm(self) -> bytes:
        return self.case.comm[:COMM_BYTES]

    @property
    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _ready_line(self, timeout: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        data = b""
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise HostileStartError(f"no ready line within {timeout:g} s")
            if select.select([fd], [], [], remaining)[0]:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise HostileStartError("stdout closed before the ready line")
                data += chunk
        return data.split(b"\n", 1)[0]

    def stop(self, grace: float = 10.0) -> Optional[int]:
        """SIGTERM, SIGKILL after grace, reap; then remove the child cgroup and the files.

        Returns the exit status as Popen reports it. Idempotent.
        """
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        status = self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        if self.cgroup_dir is not None:
            remove_cgroup_directory(self.cgroup_dir)
        shutil.rmtree(self.directory, ignore_errors=True)
        return status

    def close(self) -> None:
        self.stop()
        self._stderr.close()


@contextlib.contextmanager
def hostile_process(
    case: str, directory: str, cgroup: Optional[str] = None, options: Sequence[str] = ()
) -> Iterator[HostileProcess]:
    """A HostileProcess for the duration of the block, stopped and cleaned up however it ends."""
    process = HostileProcess(case, directory, cgroup, options)
    try:
        yield process
    finally:
        process.close()


if __name__ == "__main__":
    sys.exit(main())
