"""Whose a cgroup is, from its path: each runtime's and driver's real naming, and hostile paths.

Where each fixture's form comes from (the module docstring of
memdoor.procfs.cgroup_owner says the same at more length):

- systemd: systemd.unit(5) and systemd.slice(5) (a unit's cgroup is its slice
  path plus its name; "-" in a slice name is the slice hierarchy), user
  managers as user@UID.service; sd_pid_get_unit(3) and its siblings define
  unit, slice, user unit and user slice. The rootless Podman path is Podman's
  default for a user's containers (its scope in the user manager's user.slice).
- Kubernetes: kubelet pkg/kubelet/cm/cgroup_manager_linux.go, whose ToSystemd
  comment gives {"kubepods", "burstable", "pod1234-abcd-5678-efgh"} ->
  "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_abcd_5678_efgh.slice"
  (escapeSystemdCgroupName: "-" -> "_") and ToCgroupfs "/" + path.Join(...);
  pod_container_manager_linux.go names the pod "pod" + UID; Guaranteed pods
  have no QoS component.
- containerd's CRI plugin (getCgroupsPath): cgroupsPath
  "<pod slice>:cri-containerd:<id>", or "<parent>/<id>" under cgroupfs, which
  runc's systemd driver (runc docs/systemd.md: "[slice]:[prefix]:[name]") makes
  the scope "cri-containerd-<id>.scope"; kubelet's SystemdPathPrefixOfRuntime
  maps containerd to "cri-containerd" and CRI-O to "crio".
- CRI-O internal/config/cgmgr (systemd_linux.go ContainerCgroupPath: parent +
  ":crio:" + id): systemd "crio-<id>.scope" and its monitor
  "crio-conmon-<id>.scope"; cgroupfs "<parent>/crio-<id>" and
  "<parent>/crio-conmon-<id>" (CgroupfsManager.MoveConmonToCgroup).
- Docker: dockerd's newCgroupParent (cmd/dockerd/daemon_systemd_unix.go):
  "system.slice:docker:" under the systemd driver ("docker-<id>.scope"),
  "/docker" under cgroupfs ("/docker/<id>").
- Podman libpod/container_internal_linux.go: "%s:libpod:%s" under the systemd
  driver ("libpod-<id>.scope" in machine.slice), "libpod-<id>" under its cgroup
  parent with cgroupfs; its monitor's "libpod-conmon-<id>.scope" is the unit
  Podman's own test/e2e/logs_test.go reads with journalctl -u.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.cgroup_owner import (
    MAX_PATH,
    NOBODY,
    CgroupOwner,
    Container,
    Pod,
    parse_cgroup_owner,
)

ID = "4b825dc642cb6eb9a060e54bf8d69288fbee4904e7b2b13a2d5f4dcc7c2b0e3a"
OTHER_ID = "8e4f2a9c" * 8
UID = "0f5c4a9e-1b2c-4d3e-8f9a-0123456789ab"
UID_ESCAPED = UID.replace("-", "_")
STATIC_UID = "6f1d2c3b4a5968778695a4b3c2d1e0f9"

K8S_SYSTEMD = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + UID_ESCAPED


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "/system.slice/nginx.service",
            CgroupOwner("nginx.service", "system.slice", unit_path="/system.slice/nginx.service"),
        ),
        ("/init.scope", CgroupOwner("init.scope", "-.slice", unit_path="/init.scope")),
        (
            "/user.slice/user-1000.slice/session-3.scope",
            CgroupOwner(
                "session-3.scope",
                "user-1000.slice",
                unit_path="/user.slice/user-1000.slice/session-3.scope",
            ),
        ),
        (
            "/system.slice/system-postgresql.slice/postgresql@15-main.service",
            CgroupOwner(
                "postgresql@15-main.service",
                "system-postgresql.slice",
                unit_path="/system.slice/system-postgresql.slice/postgresql@15-main.service",
            ),
        ),
        (
            "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-4321.scope",
            CgroupOwner(
                "user@1000.service",
                "user-1000.slice",
                "app-gnome-firefox-4321.scope",
                "app.slice",
                "/user.slice/user-1000.slice/user@1000.service",
            ),
        ),
        (
            "/user.slice/user-1000.slice/user@1000.service/init.scope",
            CgroupOwner(
                "user@1000.service",
                "user-1000.slice",
                "init.scope",
                "-.slice",
                "/user.slice/user-1000.slice/user@1000.service",
            ),
        ),
        # A delegated unit's own subtree is not systemd's: "payload.service" here
        # was named by whatever runs in the unit.
        (
            "/system.slice/runner.service/payload.service",
            CgroupOwner("runner.service", "system.slice", unit_path="/system.slice/runner.service"),
        ),
        # Escapes are part of the name, as systemd keeps them.
        (
            "/machine.slice/machine-qemu\\x2d1\\x2dvm.scope",
            CgroupOwner(
                "machine-qemu\\x2d1\\x2dvm.scope",
                "machine.slice",
                unit_path="/machine.slice/machine-qemu\\x2d1\\x2dvm.scope",
            ),
        ),
        ("/system.slice", CgroupOwner(slice="system.slice")),
    ],
)
def test_systemd_units(path: str, expected: CgroupOwner) -> None:
    assert parse_cgroup_owner(path) == expected


@pytest.mark.parametrize(
    ("path", "container", "pod"),
    [
        # containerd, kubelet's systemd driver.
        (
            f"{K8S_SYSTEMD}.slice/cri-containerd-{ID}.scope",
            Container(ID, "containerd"),
            Pod(UID, "burstable"),
        ),
        (
            f"/kubepods.slice/kubepods-pod{UID_ESCAPED}.slice/cri-containerd-{ID}.scope",
            Container(ID, "containerd"),
            Pod(UID, "guaranteed"),
        ),
        (
            "/kubepods.slice/kubepods-besteffort.slice/"
            f"kubepods-besteffort-pod{STATIC_UID}.slice/cri-containerd-{ID}.scope",
            Container(ID, "containerd"),
            Pod(STATIC_UID, "besteffort"),
        ),
        # kubelet --cgroup-root=/kubelet (kind, nested nodes).
        (
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
            f"kubelet-kubepods-burstable-pod{UID_ESCAPED}.slice/cri-containerd-{ID}.scope",
            Container(ID, "containerd"),
            Pod(UID, "burstable"),
        ),
        # containerd (or dockershim), kubelet's cgroupfs driver: the bare id.
        (f"/kubepods/burstable/pod{UID}/{ID}", Container(ID, None), Pod(UID, "burstable")),
        (f"/kubepods/besteffort/pod{UID}/{ID}", Container(ID, None), Pod(UID, "besteffort")),
        (f"/kubepods/pod{UID}/{ID}", Container(ID, None), Pod(UID, "guaranteed")),
        # CRI-O, both drivers, its monitor too; the systemd driver may nest "container".
        (f"{K8S_SYSTEMD}.slice/crio-{ID}.scope", Container(ID, "cri-o"), Pod(UID, "burstable")),
        (
            f"{K8S_SYSTEMD}.slice/crio-{ID}.scope/container",
            Container(ID, "cri-o"),
            Pod(UID, "burstable"),
        ),
        (
            f"{K8S_SYSTEMD}.slice/crio-conmon-{ID}.scope",
            Container(ID, "cri-o", monitor=True),
            Pod(UID, "burstable"),
        ),
        (f"/kubepods/burstable/pod{UID}/crio-{ID}", Container(ID, "cri-o"), Pod(UID, "burstable")),
        (
            f"/kubepods/burstable/pod{UID}/crio-conmon-{ID}",
            Container(ID, "cri-o", monitor=True),
            Pod(UID, "burstable"),
        ),
        # Docker, both drivers (and under kubelet with cri-dockerd).
        (f"/system.slice/docker-{ID}.scope", Container(ID, "docker"), None),
        (f"/docker/{ID}", Container(ID, "docker"), None),
        (f"{K8S_SYSTEMD}.slice/docker-{ID}.scope", Container(ID, "docker"), Pod(UID, "burstable")),
        # Podman, rootful and rootless, and its monitor.
        (f"/machine.slice/libpod-{ID}.scope", Container(ID, "podman"), None),
        (
            f"/machine.slice/libpod-conmon-{ID}.scope",
            Container(ID, "podman", monitor=True),
            None,
        ),
        (
            f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope",
            Container(ID, "podman"),
            None,
        ),
        (f"/libpod_parent/libpod-{ID}", Container(ID, "podman"), None),
    ],
)
def test_containers_and_pods(path: str, container: Container, pod: Pod) -> None:
    owner = parse_cgroup_owner(path)
    assert (owner.container, owner.pod) == (container, pod)


def test_a_containers_scope_is_its_unit_and_the_pods_slice_its_slice() -> None:
    owner = parse_cgroup_owner(f"{K8S_SYSTEMD}.slice/cri-containerd-{ID}.scope")
    assert owner.unit == f"cri-containerd-{ID}.scope"
    assert owner.slice == f"kubepods-burstable-pod{UID_ESCAPED}.slice"


def test_the_outermost_container_is_reported_not_one_named_inside_it() -> None:
    """Docker in Docker, or a container naming its own sub-cgroup after another's id."""
    assert parse_cgroup_owner(f"/docker/{ID}/docker/{OTHER_ID}").container == Container(
        ID, "docker"
    )
    inside = f"/system.slice/docker-{ID}.scope/docker-{OTHER_ID}.scope"
    assert parse_cgroup_owner(inside).container == Container(ID, "docker")


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "",
        "relative/system.slice/x.service",
        "/process_api/3c10c13f80bfa67e3bcdf9cf1201aaa6",
        "/../../system.slice/nginx.service",
        f"/docker/{ID[:63]}",  # one digit short
        f"/docker/{ID.upper()}",  # runtimes write lower case
        f"/system.slice/docker-{ID}",  # the systemd driver's name without its suffix
        f"/kubepods/burstable/pod{UID}x/{ID}",  # not a UID
        f"/kubepods/silver/pod{UID}/{ID}",  # not a QoS class
        f"/elsewhere/pod{UID}/{ID}",  # a pod-like name outside kubepods
        "/system.slice/.service",
        "/system.slice/nginx.service\n",
        "/system.slice/ngi nx.service",
        "/system.slice/nginx.timer",
    ],
)
def test_unknown_shapes_give_nothing_they_do_not_name(path: str) -> None:
    owner = parse_cgroup_owner(path)
    assert owner.container is None and owner.pod is None and owner.unit is None


def test_a_path_longer_than_the_kernel_prints_gives_nothing() -> None:
    path = "/system.slice/nginx.service/" + "a/" * (MAX_PATH // 2)
    assert parse_cgroup_owner(path) is NOBODY
    assert parse_cgroup_owner("/system.slice/" + "x" * 300 + ".service") is NOBODY


_UNIT_WORDS = st.sampled_from(
    [
        "system.slice",
        "user.slice",
        "user-1000.slice",
        "user@1000.service",
        "app.slice",
        "kubepods.slice",
        "kubepods",
        "burstable",
        f"pod{UID}",
        f"kubepods-burstable-pod{UID_ESCAPED}.slice",
        f"cri-containerd-{ID}.scope",
        f"crio-conmon-{ID}",
        "docker",
        ID,
        "x.service",
        "..",
        "",
    ]
)


@given(
    st.lists(st.one_of(_UNIT_WORDS, st.text(max_size=40)), max_size=12).map(
        lambda parts: "/" + "/".join(parts)
    )
)
def test_any_path_parses_without_raising_into_bounded_values(path: str) -> None:
    owner = parse_cgroup_owner(path)
    for name in (owner.unit, owner.slice, owner.user_unit, owner.user_slice):
        assert name is None or (len(name) <= 255 and name.isprintable() and "/" not in name)
    if owner.unit_path is not None:
        # The unit's cgroup, its components as the path has them, empty ones left out.
        normal = "/" + "/".join(part for part in path.split("/") if part)
        assert (normal + "/").startswith(owner.unit_path + "/") and owner.unit is not None
    if owner.container is not None:
        assert len(owner.container.id) == 64 and owner.container.id in path
    if owner.pod is not None:
        assert owner.pod.uid in path or owner.pod.uid.replace("-", "_") in path


@given(st.text(max_size=MAX_PATH + 10))
def test_any_text_parses_without_raising(text: str) -> None:
    assert isinstance(parse_cgroup_owner(text), CgroupOwner)
