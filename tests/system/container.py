"""A throwaway container whose PID 1 is a real systemd, for end-to-end tests.

memdoor's contract is with systemd (Type=notify, the watchdog, SIGHUP reload, the journal,
the unit's sandbox), and PID 1 on the test hosts is not systemd. So each test module that
needs it boots one: ``unshare`` gives fresh pid/mount/uts/ipc/cgroup namespaces,
``boot-container.sh`` pivots into an overlay of the host's own root (the host's Python and
this checkout are visible, every write lands in a tmpfs) and execs systemd.

Why unshare and not systemd-nspawn: it needs no extra package, no machined, and the v1 memory
controller it mounts is writable, so ``MemoryMax=`` is enforced without a remount and a
``daemon-reexec`` (both measured on these hosts, see shared/reference/systemd-in-a-test.md).

What must not leak: the mounts live only in the private mount namespace and vanish with it;
every process is in the container's pid namespace and dies with its PID 1; the cgroups are
the one thing that outlives the namespaces, so the launcher is first moved into a child
cgroup of ours in every hierarchy (which the cgroup namespace then makes the container's
root) and those directories are removed deepest-first at teardown.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar, Union

BOOT_SCRIPT = Path(__file__).with_name("boot-container.sh")
SYSTEMD = "/lib/systemd/systemd"
REQUIRED_BINARIES = ("unshare", "nsenter", "pivot_root", "mount", "systemctl", "journalctl")

# The environment of every command run inside this container or the VM: the PATH systemd
# gives services, and nothing from the test process (pyenv shims, virtualenv variables)
# that would make a command behave differently from how an operator's shell would.
MACHINE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_COLORS": "0",
}

# Units that fail or idle in a container of this shape: /dev/console is /dev/null, so a
# getty on it would fail and leave the system "degraded" for no reason; the postgresql
# template is instantiated by Debian's generator behind the masked postgresql.service.
ALWAYS_MASKED = ("console-getty.service", "postgresql@.service")

BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0

T = TypeVar("T")


class CommandFailed(subprocess.CalledProcessError):
    """CalledProcessError whose message carries the output: a failing systemctl inside the
    container is undiagnosable from its exit status alone."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"


def missing_requirements() -> Optional[str]:
    """Why a container cannot be booted here, or None; tests skip with this reason."""
    if os.geteuid() != 0:
        return "booting systemd in a container needs root (mounts, namespaces, cgroups)"
    if not os.access(SYSTEMD, os.X_OK):
        return f"{SYSTEMD} is missing (Debian package: systemd)"
    for binary in REQUIRED_BINARIES:
        if shutil.which(binary) is None:
            return f"{binary} is missing"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay filesystem"
    root_device = os.stat("/").st_dev
    for needed in (Path(__file__).resolve(), Path(sys.executable).resolve()):
        if os.stat(needed).st_dev != root_device:
            # The overlay's lower layer is the root filesystem alone; other mounts are
            # empty directories inside.
            return f"{needed} is not on the root filesystem, so the container cannot see it"
    mounts = _cgroup_mounts()
    unmounted = [key or "cgroup2" for key, _path in _own_cgroups() if key not in mounts]
    if unmounted:
        return (
            f"cgroup hierarchies not mounted on the host ({', '.join(unmounted)}): the "
            "container's cgroups in them could not be removed afterwards"
        )
    if _is_cgroup2_mount(Path("/sys/fs/cgroup")):
        return (
            "pure cgroup2 host: this container mirrors the hybrid/legacy layout (memory "
            "controller on v1) and would need the memory controller delegated from our own "
            "cgroup; tests/vm runs these scenarios on pure cgroup v2 under systemd in a VM "
            "(docs/testing.md)"
        )
    return None


def _is_cgroup2_mount(path: Path) -> bool:
    return any(
        len(fields) > 4 and fields[4] == str(path) and " - cgroup2 " in line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        for fields in [line.split()]
    )


def _unescape_mount_path(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 etc.)."""
    return field.encode().decode("unicode_escape")


def _cgroup_mounts() -> dict[str, Path]:
    """Hierarchy key (as /proc/self/cgroup names it) -> where the host mounts it.

    The key is "" for cgroup2 and the sorted, comma-joined controllers (or name=...) for v1,
    which is how /proc/PID/cgroup spells the hierarchy too. Other super options (xattr,
    clone_children, release_agent=...) are told apart by /proc/cgroups' list of controllers.
    """
    controllers = {
        line.split()[0]
        for line in Path("/proc/cgroups").read_text().splitlines()
        if not line.startswith("#")
    }
    mounts: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        before, _, after = line.partition(" - ")
        fstype, _source, super_options = after.split(" ", 2)
        mount_point = Path(_unescape_mount_path(before.split()[4]))
        if fstype == "cgroup2":
            mounts.setdefault("", mount_point)
        elif fstype == "cgroup":
            names = [
                option
                for option in super_options.split(",")
                if option in controllers or option.startswith("name=")
            ]
            mounts.setdefault(",".join(sorted(names)), mount_point)
    return mounts


def _own_cgroups() -> list[tuple[str, str]]:
    """(hierarchy key, path of this process's cgroup in it), from /proc/self/cgroup."""
    own = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _hierarchy_id, controllers, path = line.split(":", 2)
        key = ",".join(sorted(controllers.split(","))) if controllers else ""
        own.append((key, path))
    return own


def _own_cgroup_children(name: str) -> list[Path]:
    """A child directory of this process's cgroup in every hierarchy.

    Every hierarchy, not just the ones systemd needs: systemd mounts all v1 controllers it
    finds and creates its slices in each, relative to the cgroup namespace root. A hierarchy
    we left out would have its namespace root at our own cgroup (for most of them the host's
    root), and systemd would leave init.scope and system.slice there.
    """
    mounts = _cgroup_mounts()
    return [mounts[key] / path.lstrip("/") / name for key, path in _own_cgroups()]


def _inherit_cpuset(directory: Path) -> None:
    """A new v1 cpuset cgroup starts with no CPUs and no memory nodes (unless the parent
    has clone_children set), and joining it fails with ENOSPC; give it its parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = directory / name
        if own.exists() and not own.read_text().strip():
            own.write_text((directory.parent / name).read_text())


def _masked_units() -> list[str]:
    """The host's own enabled services plus ALWAYS_MASKED.

    What the host enables (a database, cron, an SSH server) varies from machine to machine,
    costs boot time and is irrelevant to a test, so it is read from the host rather than
    listed here.
    """
    wants = Path("/etc/systemd/system/multi-user.target.wants")
    enabled = sorted(p.name for p in wants.glob("*.service")) if wants.is_dir() else []
    return [*enabled, *ALWAYS_MASKED]


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        # The comm field is in parentheses and may hold spaces, ")" and bytes that are not
        # UTF-8 (another test's hostile process); ppid follows the last ")".
        fields = stat[stat.rindex(b")") + 2 :].split()
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def poll_until(condition: Callable[[], Optional[T]], timeout: float, what: str) -> T:
    """Wait for a state systemd reaches asynchronously (a unit's result, a journal entry).

    Bounded so that a test fails with `what` in the message instead of hanging.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


class SystemdMachine(abc.ABC):
    """A booted systemd that tests drive by running commands in it as root: this
    container, or the cgroup v2 VM of tests/vm. The helpers built on :meth:`run` and
    :meth:`write_file` are shared, so the same scenario code runs in both."""

    @abc.abstractmethod
    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 60.0,
        input: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside as root; CommandFailed if `check` and it fails."""

    @abc.abstractmethod
    def _feed(self, argv: list[str], payload: bytes) -> tuple[Optional[int], bytes, bytes]:
        """Run a command inside as root with `payload` on its stdin, unchecked: its exit
        status (None if it timed out), stdout and stderr."""

    def write_file(self, path: str, data: Union[str, bytes], mode: int = 0o644) -> None:
        """Create or replace a file inside; missing parent directories are created.

        Written by a shell inside rather than through /proc/PID1/root or a share: absolute
        symlinks met on the way (/etc/systemd/system/*.wants, /lib -> usr/lib) would
        resolve against the host's root, not the machine's.
        """
        payload = data.encode() if isinstance(data, str) else data
        script = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1" && chmod "$2" "$1"'
        argv = ["sh", "-c", script, "sh", path, f"{mode:o}"]
        returncode, out, err = self._feed(argv, payload)
        if returncode != 0:
            raise CommandFailed(
                -1 if returncode is None else returncode,
                argv,
                out.decode(errors="replace"),
                err.decode(errors="replace"),
            )

    def copy_in(self, host_path: Union[str, os.PathLike[str]], path: str) -> None:
        """Copy one host file in, keeping its permission bits."""
        source = Path(host_path)
        self.write_file(path, source.read_bytes(), source.stat().st_mode & 0o7777)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """`systemctl show` as a dict: the properties tests assert on (Result, StatusText)."""
        result = self.run("systemctl", "show", f"--property={','.join(properties)}", unit)
        pairs = (line.partition("=") for line in result.stdout.splitlines() if line)
        return {key: value for key, _, value in pairs}

    def stop_units(self, units: Iterable[str], timeout: float = 60.0) -> None:
        """Disable and stop each unit, in order, and forget its failed state: the units a
        test started, so that the next test on this shared machine finds it clean. A unit
        that never started is no error."""
        for unit in units:
            self.run("systemctl", "disable", "--now", unit, check=False, timeout=timeout)
            self.run("systemctl", "reset-failed", unit, check=False)

    def journal_entries(self, *match: str) -> list[dict[str, Any]]:
        """`journalctl MATCH... -o json --all`, parsed; --all because journalctl prints
        fields over 4096 bytes (a whole snapshot record) as null without it."""
        lines = self.run("journalctl", *match, "-o", "json", "--all").stdout
        return [json.loads(line) for line in lines.splitlines()]


class Container(SystemdMachine):
    """One booted systemd. Use :func:`booted_container`, which guarantees the teardown."""

    def __init__(self, hostname: str = "memdoor-test") -> None:
        self.hostname = hostname
        self._scratch = Path(tempfile.mkdtemp(prefix="memdoor-container-"))
        self._cgroups = _own_cgroup_children(f"memdoor-container-{uuid.uuid4().hex[:12]}")
        self._launcher: Optional[subprocess.Popen[bytes]] = None
        self._pid1: Optional[int] = None

    @property
    def pid1(self) -> int:
        """Host pid of the container's systemd, the anchor for nsenter."""
        if self._pid1 is None:
            raise RuntimeError("container is not booted")
        return self._pid1

    @property
    def cgroup_dirs(self) -> list[Path]:
        """Host directories that hold the container's cgroups (for leak checks)."""
        return list(self._cgroups)

    @property
    def scratch_dir(self) -> Path:
        return self._scratch

    def boot(self) -> None:
        for directory in self._cgroups:
            directory.mkdir()
            _inherit_cpuset(directory)
        state = self._scratch / "state"
        state.mkdir()
        log = (self._scratch / "boot.log").open("wb")
        procs_files = [str(directory / "cgroup.procs") for directory in self._cgroups]
        # The launcher joins the child cgroups itself, before unshare() makes its cgroups
        # the namespace roots; `--kill-child` takes PID 1 (and with it the whole pid
        # namespace) down if the launcher dies.
        join_then_exec = (
            'count=$1; shift; while [ "$count" -gt 0 ]; do echo $$ > "$1"; shift; '
            'count=$((count - 1)); done; exec "$@"'
        )
        unshare = [
            "unshare",
            "--pid",
            "--fork",
            "--mount",
            "--uts",
            "--ipc",
            "--cgroup",
            "--propagation=private",
            "--kill-child",
        ]
        boot = ["sh", str(BOOT_SCRIPT), str(state), self.hostname, *_masked_units()]
        join = ["sh", "-c", join_then_exec, "sh", str(len(procs_files)), *procs_files]
        with log:
            self._launcher = subprocess.Popen(
                [*join, *unshare, *boot],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=MACHINE_ENV,
            )
        self._pid1 = poll_until(self._find_systemd, BOOT_TIMEOUT, "systemd to start as PID 1")

    def _find_systemd(self) -> Optional[int]:
        assert self._launcher is not None
        if self._launcher.poll() is not None:
            raise RuntimeError(f"container failed to boot:\n{self.boot_log()}")
        for child in _children_of(self._launcher.pid):
            with contextlib.suppress(OSError):
                if os.path.realpath(f"/proc/{child}/exe") == os.path.realpath(SYSTEMD):
                    return child
        return None

    def boot_log(self) -> str:
        """What the boot script and systemd wrote before the journal took over."""
        return (self._scratch / "boot.log").read_text(errors="replace")

    def wait_until_running(self, timeout: float = BOOT_TIMEOUT) -> str:
        """Block until boot is finished; "degraded" counts, a failed unit is not our test."""

        def finished() -> Optional[str]:
            result = self.run(
                "systemctl", "is-system-running", "--wait", check=False, timeout=timeout
            )
            state = result.stdout.strip()
            # Before PID 1 listens on its private socket, systemctl fails to connect.
            return state if state in ("running", "degraded") else None

        try:
            return poll_until(finished, timeout, "systemctl is-system-running")
        except TimeoutError as exc:
            failed = self.run("systemctl", "--failed", "--no-legend", check=False)
            raise TimeoutError(f"{exc}; failed units:\n{failed.stdout}") from exc

    def _nsenter(self, argv: tuple[str, ...]) -> list[str]:
        # --root/--wd without a value take PID 1's: the pivoted overlay, not the host's /.
        return ["nsenter", f"--target={self.pid1}", "--all", "--root", "--wd", *argv]

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 60.0,
        input: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside, in every namespace of PID 1, as root."""
        result = subprocess.run(
            self._nsenter(argv),
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env={**MACHINE_ENV, **(env or {})},
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandFailed(result.returncode, argv, result.stdout, result.stderr)
        return result

    def _feed(self, argv: list[str], payload: bytes) -> tuple[Optional[int], bytes, bytes]:
        result = subprocess.run(
            self._nsenter(tuple(argv)), input=payload, capture_output=True, env=MACHINE_ENV
        )
        return result.returncode, result.stdout, result.stderr

    def stop(self) -> None:
        """Halt systemd, then remove what outlives the namespaces. Safe to call twice."""
        try:
            self._stop_processes()
        finally:
            self._remove_cgroups()
            shutil.rmtree(self._scratch, ignore_errors=True)

    def _stop_processes(self) -> None:
        launcher = self._launcher
        if launcher is None:
            return
        if self._pid1 is not None and launcher.poll() is None:
            # SIGRTMIN+3 is systemd's "halt": units stop in order, journald flushes, and
            # PID 1 exits because it knows it is in a container.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid1, signal.SIGRTMIN + 3)
            with contextlib.suppress(subprocess.TimeoutExpired):
                launcher.wait(STOP_TIMEOUT)
        if launcher.poll() is None:
            # --kill-child turns the launcher's death into SIGKILL for PID 1, and the
            # kernel kills every other process of the pid namespace with it.
            launcher.kill()
        launcher.wait(STOP_TIMEOUT)

    def _remove_cgroups(self) -> None:
        for top in self._cgroups:
            if top.is_dir():
                poll_until(
                    functools.partial(_remove_cgroup_tree, top),
                    STOP_TIMEOUT,
                    f"{top} to become removable",
                )


def field_text(value: Any) -> str:
    """A field of `journalctl -o json`: a string, or a list of byte values when the field is
    not printable UTF-8."""
    return bytes(value).decode() if isinstance(value, list) else str(value)


def _remove_cgroup_tree(top: Path) -> Optional[bool]:
    """rmdir every directory under `top`, deepest first; None while some are still busy.

    A cgroup directory holds only kernel control files, so rmdir removes it as soon as no
    process and no child is left; EBUSY right after the pid namespace died means the last
    tasks are still exiting.
    """
    for directory, _subdirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(directory)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return None
            if exc.errno != errno.ENOENT:
                raise
    return True


@contextlib.contextmanager
def booted_container(hostname: str = "memdoor-test") -> Iterator[Container]:
    """Boot, wait for the boot to finish, yield, and always tear down."""
    container = Container(hostname)
    try:
        container.boot()
        container.wait_until_running()
        yield container
    finally:
        container.stop()
