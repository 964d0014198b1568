"""The owner section as records, ECS documents and journal fields carry it."""

from __future__ import annotations

from typing import Any

import pytest

from memdoor.procfs.cgroup_owner import NOBODY, parse_cgroup_owner
from memdoor.render.ecs import to_ecs
from memdoor.render.owner import owner_dict
from memdoor.sinks.journal_fields import journal_fields

ID = "4b825dc642cb6eb9a060e54bf8d69288fbee4904e7b2b13a2d5f4dcc7c2b0e3a"
UID = "0f5c4a9e-1b2c-4d3e-8f9a-0123456789ab"
POD = f"/kubepods/burstable/pod{UID}"
INVOCATION = "5f1c7a0e2b3d4c6e8f9a0b1c2d3e4f50"


def record(owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "timestamp": "2026-11-24T19:30:18.905Z",
        "level": "info",
        "event": "target_found",
        "target": "app",
        "pid": 42,
        "schema_version": 1,
        "message": "app: watching pid 42",
        "owner": owner,
    }


def test_every_key_is_there_null_where_the_path_says_nothing() -> None:
    assert owner_dict(NOBODY) == {
        "unit": None,
        "slice": None,
        "user_unit": None,
        "user_slice": None,
        "invocation_id": None,
        "container": None,
        "pod": None,
    }


@pytest.mark.parametrize(
    ("path", "container", "orchestrator"),
    [
        (
            f"{POD}/crio-{ID}",
            {"id": ID, "runtime": "cri-o"},
            {"type": "kubernetes", "resource": {"type": "pod", "id": UID}},
        ),
        # The bare id under the cgroupfs driver does not say which runtime.
        (
            f"{POD}/{ID}",
            {"id": ID},
            {"type": "kubernetes", "resource": {"type": "pod", "id": UID}},
        ),
        # conmon runs beside the container, not in it: the pod, but no container.id.
        (
            f"{POD}/crio-conmon-{ID}",
            None,
            {"type": "kubernetes", "resource": {"type": "pod", "id": UID}},
        ),
        (f"/system.slice/docker-{ID}.scope", {"id": ID, "runtime": "docker"}, None),
        ("/system.slice/nginx.service", None, None),
    ],
)
def test_ecs_gets_container_and_orchestrator_fields(
    path: str, container: Any, orchestrator: Any
) -> None:
    document = to_ecs(record(owner_dict(parse_cgroup_owner(path))), "web-3")
    assert document.get("container") == container
    assert document.get("orchestrator") == orchestrator
    assert document["memdoor"]["owner"] == owner_dict(parse_cgroup_owner(path))


def test_a_record_without_owner_has_no_ecs_container_or_journal_owner_fields() -> None:
    bare = record(owner_dict(NOBODY))
    del bare["owner"]
    assert "container" not in to_ecs(bare, "web-3")
    assert not [name for name in journal_fields(bare, "{}") if "UNIT" in name or "POD" in name]


def test_journal_fields_make_unit_container_and_pod_filterable() -> None:
    owner = owner_dict(
        parse_cgroup_owner(
            f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
        ),
        INVOCATION,
    )
    fields = journal_fields(record(owner), "{}")
    assert fields["MEMDOOR_UNIT"] == "user@1000.service"
    assert fields["MEMDOOR_USER_UNIT"] == f"libpod-{ID}.scope"
    assert fields["MEMDOOR_INVOCATION_ID"] == INVOCATION
    assert fields["MEMDOOR_CONTAINER_ID"] == ID
    assert "MEMDOOR_POD_UID" not in fields
    pod_fields = journal_fields(record(owner_dict(parse_cgroup_owner(f"{POD}/{ID}"))), "{}")
    assert pod_fields["MEMDOOR_POD_UID"] == UID
    assert "MEMDOOR_UNIT" not in pod_fields and "MEMDOOR_INVOCATION_ID" not in pod_fields


def test_the_processes_of_one_owner_share_one_section_as_made_afresh() -> None:
    path = f"{POD}/{ID}"
    first = owner_dict(parse_cgroup_owner(path), INVOCATION)
    assert owner_dict(parse_cgroup_owner(path), INVOCATION) is first
    assert first == owner_dict.__wrapped__(parse_cgroup_owner(path), INVOCATION)
    other_run = owner_dict(parse_cgroup_owner(path), INVOCATION[::-1])
    assert other_run is not first and other_run["invocation_id"] == INVOCATION[::-1]
