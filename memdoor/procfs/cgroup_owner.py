"""Whose a cgroup is: its systemd unit, its container, its Kubernetes pod, read from the path.

Fleet users ask "which unit, which pod, which container" before anything else,
and the cgroup path (/proc/PID/cgroup, the kernel log's task_memcg) already
says it: each manager names the cgroups it makes after what it runs. The path
is named by whoever made the cgroup, a delegated user or a container included,
so only the exact shapes below are recognised, every value is cut from a
component that matched one, nothing raises, and anything else gives nothing.

Where each form comes from:

- systemd units (systemd.unit(5), systemd.slice(5)): a unit's cgroup is its
  slice path plus the unit name ("/system.slice/nginx.service"); "-" in a
  slice name is the slice hierarchy ("a-b.slice" lies in "a.slice"); a user's
  manager is "user@UID.service", whose subtree holds that manager's own units
  ("…/user@1000.service/app.slice/app-x.scope"). unit, slice, user_unit and
  user_slice mean what sd_pid_get_unit(3), sd_pid_get_slice, sd_pid_get_user_unit
  and sd_pid_get_user_slice return, the root slice included ("-.slice").
- Kubernetes pods (kubelet, pkg/kubelet/cm/cgroup_manager_linux.go and
  pod_container_manager_linux.go): a pod's cgroup is {"kubepods", QoS class,
  "pod" + UID}, the QoS component left out for Guaranteed pods. The systemd
  driver (CgroupName.ToSystemd) replaces "-" with "_" in each component
  (escapeSystemdCgroupName) and expands the joined name into slices:
  "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice";
  the cgroupfs driver joins the components: "/kubepods/burstable/pod<uid>".
  kubelet's --cgroup-root adds components in front ("kubelet-kubepods-…").
  UIDs are UUIDs, or 32 hex digits for static pods (a hash of the manifest).
- Container runtimes, under the systemd driver, hand runc (or crun) a
  cgroupsPath "slice:prefix:id", which becomes the scope "<prefix>-<id>.scope"
  (runc docs/systemd.md): containerd's CRI plugin joins the pod slice,
  "cri-containerd" and the id (getCgroupsPath; kubelet's
  SystemdPathPrefixOfRuntime names the same prefix), CRI-O uses "crio"
  (internal/config/cgmgr/systemd_linux.go, ContainerCgroupPath) and puts its
  monitor in "crio-conmon-<id>.scope", Docker "system.slice:docker:"
  (cmd/dockerd/daemon_systemd_unix.go, newCgroupParent) and Podman
  "%s:libpod:%s" (libpod/container_internal_linux.go), its monitor in
  "libpod-conmon-<id>.scope" (the unit Podman's test/e2e/logs_test.go reads
  with journalctl -u). Under cgroupfs: Docker "/docker/<id>", CRI-O
  "crio-<id>" and "crio-conmon-<id>" in the pod's cgroup
  (cgmgr/cgroupfs_linux.go), Podman "libpod-<id>" under its cgroup parent, and
  containerd (or dockershim) the bare id in the pod's cgroup
  (filepath.Join(cgroupsParent, id)), which does not say which runtime made
  it. Container ids are 64 lowercase hex digits in every one of them.

The outermost container and pod on the path are the ones reported: a nested
runtime's names lie inside a cgroup the host's runtime delegated, where the
contained process could have written them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Optional

Runtime = Literal["containerd", "cri-o", "docker", "podman"]
QosClass = Literal["guaranteed", "burstable", "besteffort"]

# Longer than any path the kernel prints in /proc/PID/cgroup (PATH_MAX).
MAX_PATH = 4096
# systemd's UNIT_NAME_MAX is 256 with the terminating NUL; kernfs names are NAME_MAX.
MAX_COMPONENT = 255
ROOT_SLICE = "-.slice"

# systemd's unit name alphabet (unit_name_is_valid: letters, digits, ":-_.\" and
# "@" for instances), a name before the type suffix, and nothing else.
_UNIT = re.compile(r"[A-Za-z0-9:_.\\@-]*[A-Za-z0-9:_\\@-]\.(service|scope|slice)")
_USER_MANAGER = re.compile(r"user@[0-9]{1,10}\.service")
_HEX64 = r"[0-9a-f]{64}"
_UUID_ESCAPED = r"[0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12}"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_STATIC_UID = r"[0-9a-f]{32}"
_POD_SLICE = re.compile(
    rf"(?:[A-Za-z0-9_]+-)*kubepods(?:-(burstable|besteffort))?-pod({_UUID_ESCAPED}|{_STATIC_UID})"
    r"\.slice"
)
_POD_DIRECTORY = re.compile(rf"pod({_UUID}|{_STATIC_UID})")
# A QoS component as both drivers spell it; none at all for Guaranteed pods.
_QOS: dict[str, QosClass] = {"": "guaranteed", "burstable": "burstable", "besteffort": "besteffort"}
_BARE_ID = re.compile(_HEX64)
# (pattern, runtime, monitor): the conmon forms first, as "crio-" would not match
# them anyway but the order then reads as the runtimes document them.
_CONTAINER_FORMS: tuple[tuple[re.Pattern[str], Runtime, bool], ...] = (
    (re.compile(rf"cri-containerd-({_HEX64})\.scope"), "containerd", False),
    (re.compile(rf"crio-conmon-({_HEX64})(?:\.scope)?"), "cri-o", True),
    (re.compile(rf"crio-({_HEX64})(?:\.scope)?"), "cri-o", False),
    (re.compile(rf"docker-({_HEX64})\.scope"), "docker", False),
    (re.compile(rf"libpod-conmon-({_HEX64})(?:\.scope)?"), "podman", True),
    (re.compile(rf"libpod-({_HEX64})(?:\.scope)?"), "podman", False),
)


@dataclass(frozen=True)
class Container:
    """monitor: the cgroup of the runtime's monitor for the container (conmon), not of
    the container's own processes."""

    id: str
    runtime: Optional[Runtime]
    monitor: bool = False


@dataclass(frozen=True)
class Pod:
    uid: str
    qos: QosClass


@dataclass(frozen=True)
class CgroupOwner:
    """What a cgroup path says about whose it is; None where it does not say.

    unit_path is the cgroup of unit itself (a prefix of the path), where systemd
    keeps the unit's invocation ID.
    """

    unit: Optional[str] = None
    slice: Optional[str] = None
    user_unit: Optional[str] = None
    user_slice: Optional[str] = None
    unit_path: Optional[str] = None
    container: Optional[Container] = None
    pod: Optional[Pod] = None


NOBODY = CgroupOwner()


@dataclass(frozen=True)
class _Units:
    unit: Optional[str] = None
    slice: Optional[str] = None
    user_unit: Optional[str] = None
    user_slice: Optional[str] = None
    unit_path: Optional[str] = None


def _unit_type(component: str) -> Optional[str]:
    match = _UNIT.fullmatch(component)
    return None if match is None else match.group(1)


def _units(components: list[str]) -> _Units:
    """Walk slices from the root to the first service or scope; inside a user's
    manager, once more for its own units. Anything below a unit is the unit's
    own (delegated) subtree, not systemd's."""
    unit = unit_slice = unit_path = user_unit = user_slice = None
    innermost: Optional[str] = None
    for index, component in enumerate(components):
        kind = _unit_type(component)
        if kind is None:
            break
        if kind == "slice":
            innermost = component
        elif unit is None:
            unit, unit_slice = component, innermost or ROOT_SLICE
            unit_path = "/" + "/".join(components[: index + 1])
            if not _USER_MANAGER.fullmatch(component):
                break
            innermost = None
        else:
            user_unit, user_slice = component, innermost or ROOT_SLICE
            break
    if unit is None:
        unit_slice = innermost
    return _Units(unit, unit_slice, user_unit, user_slice, unit_path)


def _pod(components: list[str]) -> Optional[Pod]:
    for index, component in enumerate(components):
        match = _POD_SLICE.fullmatch(component)
        if match is not None:
            return Pod(match.group(2).replace("_", "-"), _QOS[match.group(1) or ""])
        match = _POD_DIRECTORY.fullmatch(component)
        if match is None:
            continue
        above = components[max(0, index - 2) : index]
        if above[-1:] == ["kubepods"]:
            return Pod(match.group(1), "guaranteed")
        if len(above) == 2 and above[0] == "kubepods" and above[1] in _QOS:
            return Pod(match.group(1), _QOS[above[1]])
    return None


def _container(components: list[str], pod: Optional[Pod]) -> Optional[Container]:
    for index, component in enumerate(components):
        for pattern, runtime, monitor in _CONTAINER_FORMS:
            match = pattern.fullmatch(component)
            if match is not None:
                return Container(match.group(1), runtime, monitor)
        if index == 0 or not _BARE_ID.fullmatch(component):
            continue
        parent = components[index - 1]
        if parent == "docker":
            return Container(component, "docker")
        if pod is not None and parent == f"pod{pod.uid}":
            return Container(component, None)
    return None


def parse_cgroup_owner(path: str) -> CgroupOwner:
    """The unit, container and pod a cgroup path names; NOBODY for any other shape.

    Never raises: a path too long, with a component longer than a name can
    be, or of no known shape gives what its recognised part says, or nothing.
    """
    if len(path) > MAX_PATH or not path.startswith("/"):
        return NOBODY
    components = [part for part in path.split("/") if part]
    if any(len(part) > MAX_COMPONENT for part in components):
        return NOBODY
    units = _units(components)
    pod = _pod(components)
    container = _container(components, pod)
    return CgroupOwner(
        units.unit,
        units.slice,
        units.user_unit,
        units.user_slice,
        units.unit_path,
        container,
        pod,
    )
