"""A Debian 12 VM with systemd as PID 1 on pure cgroup v2, for end-to-end tests.

Most memdoor users run systemd on pure cgroup v2 (Debian 12, Ubuntu 22.04+, RHEL 9,
Kubernetes nodes); the test hosts mount cgroups hybrid and do not run systemd, so
tests/system's container only ever sees v1. This boots the real thing under QEMU:

- the image is built once by build-image.sh from Debian's packages and cached outside
  the checkout; it is booted with ``snapshot=on``, so every session starts from it as
  built and nothing the guest writes outlives QEMU;
- the guest has no network. A per-session 9p share brings in a copy of this checkout, a
  wheelhouse built here for the guest's python3, and agent.py, which a unit baked into
  the image starts and which runs this side's commands, one at a time, over a
  virtio-serial port: one boot serves every scenario;
- real KVM where the host has it; otherwise (no vmx/svm, or KVM that is PVM and cannot
  boot a stock kernel, as on the machines this was written on) QEMU's software
  emulation, several times slower but the same guest.

Nothing is left behind: QEMU runs under ``timeout``, is powered off (or killed) at the
end, and the share, socket and console log live in one temporary directory.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from tests.system.container import MACHINE_ENV, CommandFailed, SystemdMachine, poll_until

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]
BUILD_IMAGE = HERE / "build-image.sh"
AGENT = HERE / "agent.py"
QEMU = "qemu-system-x86_64"
REQUIRED_BINARIES = (QEMU, "mmdebstrap", "mkfs.ext4", "timeout")

# The guest's side of the share and of the agent's port (see guest/fstab and
# guest/memdoor-test-agent.service).
SHARE_IN_GUEST = "/mnt/share"
AGENT_PORT = "memdoor.agent"
CHECKOUT_IN_GUEST = f"{SHARE_IN_GUEST}/checkout"
WHEELHOUSE_IN_GUEST = f"{SHARE_IN_GUEST}/wheelhouse"

MEMORY_MB = 2048
# Under emulation the guest's systemd is up in about 20 s; the margin is for a busy host.
BOOT_TIMEOUT = 300.0
# The most a session may keep QEMU alive: if this process dies without its teardown,
# `timeout` still ends QEMU.
SESSION_LIMIT_S = 40 * 60

# What pip wheel/install.sh must leave out of the copy of the checkout.
_NOT_SHARED = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache",
    ".ruff_cache", ".pytest_cache", ".hypothesis",
)  # fmt: skip


def missing_requirements() -> Optional[str]:
    """Why the VM cannot be built or booted here, or None; tests skip with this reason."""
    if os.geteuid() != 0:
        return "building and booting the cgroup v2 VM needs root (mmdebstrap, mkfs.ext4 -d)"
    for binary in REQUIRED_BINARIES:
        if shutil.which(binary) is None:
            return f"{binary} is missing (tests/run.sh installs it from Debian's packages)"
    if not any(
        Path(p).is_file()
        for p in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list")
    ):
        return "no Debian apt sources on this host to build the guest from"
    return None


def accelerator() -> list[str]:
    """QEMU's accelerator and CPU: KVM where it can boot a stock kernel, else emulation.

    KVM needs a usable /dev/kvm and hardware virtualisation (vmx or svm); kvm_pvm, the
    paravirtualised KVM of some cloud machines, exposes /dev/kvm without either and
    runs only PVM-built guest kernels (Debian's hangs after "Probing EDD").
    """
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    usable = os.access("/dev/kvm", os.R_OK | os.W_OK) and bool(flags & {"vmx", "svm"})
    if usable and not Path("/sys/module/kvm_pvm").exists():
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def build_image() -> Path:
    """The cached image's directory, built first if this checkout's recipe is new."""
    built = subprocess.run(
        ["bash", str(BUILD_IMAGE)], capture_output=True, text=True, timeout=1800, check=False
    )
    if built.returncode != 0:
        raise RuntimeError(f"building the VM image failed:\n{built.stderr}")
    return Path(built.stdout.strip())


def build_wheelhouse(checkout_copy: Path, wheelhouse: Path, python_version: str) -> None:
    """memdoor's wheel and every wheel it needs, for the guest's python3.

    `pip wheel` builds what PyPI has only as source (sdnotify) and fetches the rest, with
    setuptools for install.sh's build of memdoor from source. Compiled wheels
    (pydantic-core) are for this interpreter; when the guest's differs, they are
    replaced by the same versions built for the guest's. The guest installs from here
    with no index.
    """
    _pip("wheel", "-w", str(wheelhouse), str(checkout_copy), "setuptools>=64", "wheel")
    if python_version == "{}.{}".format(*sys.version_info[:2]):
        return
    compiled = [w for w in wheelhouse.glob("*.whl") if not w.name.endswith("-none-any.whl")]
    pins = ["==".join(w.name.split("-")[:2]) for w in compiled]
    for wheel in compiled:
        wheel.unlink()
    _pip(
        "download", "--only-binary=:all:", "--no-deps", "--implementation", "cp",
        "--python-version", python_version, "--platform", "manylinux_2_17_x86_64",
        "--platform", "manylinux2014_x86_64", "-d", str(wheelhouse), *pins,
    )  # fmt: skip


def _pip(*args: str) -> None:
    argv = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise CommandFailed(done.returncode, argv, done.stdout, done.stderr)


class VirtualMachine(SystemdMachine):
    """One booted guest. Use :func:`booted_vm`, which guarantees the teardown."""

    def __init__(self, image: Path) -> None:
        self._image = image
        self._scratch = Path(tempfile.mkdtemp(prefix="memdoor-vm-"))
        self._share = self._scratch / "share"
        self._qemu: Optional[subprocess.Popen[bytes]] = None
        self._agent: Optional[socket.socket] = None
        self._replies = b""
        self._next_id = 0

    @property
    def console_log(self) -> str:
        """What the kernel and systemd printed on the serial console."""
        path = self._scratch / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def prepare_share(self) -> None:
        """The checkout's copy, the wheelhouse and the agent, before QEMU starts."""
        checkout = self._share / "checkout"
        shutil.copytree(CHECKOUT, checkout, ignore=_NOT_SHARED, symlinks=True)
        python_version = (self._image / "python-version").read_text().strip()
        build_wheelhouse(checkout, self._share / "wheelhouse", python_version)
        # pip wheel builds in place; install.sh leaves these out of its copy anyway.
        shutil.rmtree(checkout / "build", ignore_errors=True)
        shutil.copy2(AGENT, self._share / "agent.py")

    def boot(self) -> None:
        socket_path = self._scratch / "agent.sock"
        argv = [
            "timeout", "--kill-after=10", str(SESSION_LIMIT_S),
            QEMU, "-name", "memdoor-vm", "-nodefaults", "-no-user-config", "-no-reboot",
            "-display", "none", *accelerator(),
            "-smp", str(min(2, os.cpu_count() or 1)), "-m", str(MEMORY_MB),
            "-kernel", str(self._image / "vmlinuz"),
            "-initrd", str(self._image / "initrd.img"),
            "-append", "root=/dev/vda rw console=ttyS0 panic=1 "
            "systemd.unified_cgroup_hierarchy=1",
            "-drive", f"file={self._image / 'root.img'},format=raw,if=virtio,snapshot=on",
            "-virtfs", f"local,path={self._share},mount_tag=share,security_model=none,id=share",
            "-device", "virtio-serial-pci,id=vserial",
            "-chardev", f"socket,id=agent,path={socket_path},server=on,wait=off",
            "-device", f"virtserialport,bus=vserial.0,chardev=agent,name={AGENT_PORT}",
            "-serial", f"file:{self._scratch / 'console.log'}",
            "-nic", "none",
        ]  # fmt: skip
        # snapshot=on keeps the guest's writes in a temporary file; QEMU unlinks it.
        log = (self._scratch / "qemu.log").open("wb")
        with log:
            self._qemu = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        poll_until(lambda: socket_path.exists() or self._exited(), 30, "QEMU's agent socket")
        agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        agent.connect(str(socket_path))
        self._agent = agent
        poll_until(self._answers, BOOT_TIMEOUT, "the guest agent to answer")

    def _exited(self) -> Optional[bool]:
        assert self._qemu is not None
        if self._qemu.poll() is not None:
            qemu_log = (self._scratch / "qemu.log").read_text(errors="replace")
            raise RuntimeError(f"QEMU exited:\n{qemu_log}\n{self.console_log[-3000:]}")
        return None

    def _answers(self) -> Optional[bool]:
        """A ping with a short wait: before the guest's agent opens its port, a request
        is lost, so it is repeated until one is answered."""
        self._exited()
        with contextlib.suppress(TimeoutError):
            self._call(["true"], None, MACHINE_ENV, timeout=2.0, wait=3.0)
            return True
        return None

    def wait_until_running(self) -> str:
        """Block until boot is finished; "degraded" counts, a failed unit is not our test."""
        state = self.run(
            "systemctl", "is-system-running", "--wait", check=False, timeout=BOOT_TIMEOUT
        ).stdout.strip()
        if state not in ("running", "degraded"):
            failed = self.run("systemctl", "--failed", "--no-legend", check=False).stdout
            raise RuntimeError(f"guest boot ended {state!r}; failed units:\n{failed}")
        return state

    def _call(
        self,
        argv: list[str],
        payload: Optional[bytes],
        env: dict[str, str],
        timeout: float,
        wait: Optional[float] = None,
    ) -> tuple[Optional[int], bytes, bytes]:
        """Send one request and wait for its reply (`wait`, or the command's timeout
        plus a margin for the transfer); replies to earlier, abandoned requests are
        dropped by their id."""
        agent = self._agent
        assert agent is not None
        self._next_id += 1
        request = {
            "id": self._next_id,
            "argv": argv,
            "input": None if payload is None else base64.b64encode(payload).decode(),
            "env": env,
            "timeout": timeout,
        }
        agent.sendall(json.dumps(request).encode() + b"\n")
        deadline = time.monotonic() + (wait if wait is not None else timeout + 60)
        while True:
            while b"\n" in self._replies:
                line, self._replies = self._replies.split(b"\n", 1)
                reply: dict[str, Any] = json.loads(line)
                if reply["id"] == self._next_id:
                    return (
                        reply["returncode"],
                        base64.b64decode(reply["stdout"]),
                        base64.b64decode(reply["stderr"]),
                    )
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from the guest agent to {argv}")
            agent.settimeout(left)
            try:
                chunk = agent.recv(1 << 20)
            except socket.timeout as exc:
                raise TimeoutError(f"no answer from the guest agent to {argv}") from exc
            if not chunk:
                raise RuntimeError(f"the guest agent hung up:\n{self.console_log[-3000:]}")
            self._replies += chunk

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 60.0,
        input: Optional[str] = None,
        env: Optional[dict[str, str]] = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the guest as root (in the agent's unit)."""
        payload = None if input is None else input.encode()
        returncode, out, err = self._call(
            list(argv), payload, {**MACHINE_ENV, **(env or {})}, timeout
        )
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if returncode is None:
            raise subprocess.TimeoutExpired(list(argv), timeout, stdout, stderr)
        if check and returncode != 0:
            raise CommandFailed(returncode, argv, stdout, stderr)
        return subprocess.CompletedProcess(list(argv), returncode, stdout, stderr)

    def _feed(self, argv: list[str], payload: bytes) -> tuple[Optional[int], bytes, bytes]:
        return self._call(argv, payload, MACHINE_ENV, 60.0)

    def install_memdoor(self) -> str:
        """packaging/install.sh from the shared checkout, pip reading only the
        wheelhouse: the documented install, offline. Returns its output."""
        return self.run(
            "bash",
            f"{CHECKOUT_IN_GUEST}/packaging/install.sh",
            timeout=900,
            env={"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELHOUSE_IN_GUEST},
        ).stdout

    def stop(self) -> None:
        """Power the guest off (QEMU exits with it), or kill QEMU; remove every file."""
        try:
            self._power_off()
        finally:
            if self._agent is not None:
                self._agent.close()
            shutil.rmtree(self._scratch, ignore_errors=True)

    def _power_off(self) -> None:
        qemu = self._qemu
        if qemu is None:
            return
        if self._agent is not None and qemu.poll() is None:
            # No reply is awaited: the agent dies with the guest.
            request = {"id": 0, "argv": ["systemctl", "poweroff"], "input": None,
                       "env": MACHINE_ENV, "timeout": 60}  # fmt: skip
            with contextlib.suppress(OSError):
                self._agent.sendall(json.dumps(request).encode() + b"\n")
            with contextlib.suppress(subprocess.TimeoutExpired):
                qemu.wait(60)
        if qemu.poll() is None:
            qemu.kill()
        qemu.wait(30)


@contextlib.contextmanager
def booted_vm() -> Iterator[VirtualMachine]:
    """Build (or find) the image, boot it, wait for systemd, yield; always tear down."""
    vm = VirtualMachine(build_image())
    try:
        vm.prepare_share()
        vm.boot()
        vm.wait_until_running()
        yield vm
    finally:
        vm.stop()
