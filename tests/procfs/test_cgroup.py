from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memdoor.procfs.cgroup import (
    UNLIMITED_FROM,
    CgroupEntry,
    CgroupMount,
    parse_flat_keyed,
    parse_int_file,
    parse_limit,
    parse_mountinfo_cgroups,
    parse_proc_cgroup,
    relative_to_mount_root,
)
from memdoor.procfs.errors import ParseError
from tests.procfs.recorded import damaged, fuzz, prefixes, value_or_parse_error

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "cgroup"

# This machine's own /proc/self/cgroup and the cgroup lines of its mountinfo
# (hybrid: v1 controllers, cgroup2 at /sys/fs/cgroup/unified).
HOST_CGROUP = """9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/3c10c13f80bfa67e3bcdf9cf1201aaa6
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
"""
HOST_MOUNTINFO = """31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# memory.oom_control of a v1 cgroup right after one OOM kill, recorded here.
HOST_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"


def fixture_text(relative: str) -> str:
    return (FIXTURES / relative).read_text()


def test_host_proc_cgroup() -> None:
    entries = parse_proc_cgroup(HOST_CGROUP)

    assert len(entries) == 10
    assert entries[0] == CgroupEntry(9, ("name=systemd",), "/")
    assert entries[5] == CgroupEntry(
        4, ("memory",), "/process_api/3c10c13f80bfa67e3bcdf9cf1201aaa6"
    )
    assert entries[-1] == CgroupEntry(0, (), "/")
    assert [entry.is_v2 for entry in entries] == [False] * 9 + [True]


def test_comounted_controllers_and_colons_in_names() -> None:
    entries = parse_proc_cgroup("4:cpuacct,cpu:/a:b\n0::/x/y:z\n")

    assert entries == [CgroupEntry(4, ("cpuacct", "cpu"), "/a:b"), CgroupEntry(0, (), "/x/y:z")]


@pytest.mark.parametrize(
    "text", ["", "\n", "memory:/x\n", "x:memory:/x\n", "4:memory:relative\n", "4:memory\n"]
)
def test_proc_cgroup_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_proc_cgroup(text)


def test_host_mountinfo() -> None:
    assert parse_mountinfo_cgroups(HOST_MOUNTINFO) == [
        CgroupMount("/sys/fs/cgroup/cpu", 1, ("cpu",), "/"),
        CgroupMount("/sys/fs/cgroup/memory", 1, ("memory",), "/"),
        CgroupMount("/sys/fs/cgroup/systemd", 1, ("name=systemd",), "/"),
        CgroupMount("/sys/fs/cgroup/unified", 2, (), "/"),
    ]


def test_v1_options_that_are_not_controllers_are_dropped() -> None:
    mounts = parse_mountinfo_cgroups(fixture_text("v1/proc/self/mountinfo"))

    assert [mount.controllers for mount in mounts] == [
        ("name=systemd",),
        ("cpuacct", "cpu"),
        ("memory",),
    ]


def test_bind_mounted_subtree_keeps_its_root() -> None:
    (mount,) = parse_mountinfo_cgroups(fixture_text("docker-v1/proc/self/mountinfo"))

    assert mount == CgroupMount("/sys/fs/cgroup/memory", 1, ("memory",), "/docker/0123abcd")


def test_octal_escapes_and_optional_fields() -> None:
    text = (
        "50 24 0:40 /a\\040b\\134c /mnt/my\\040cg\\011x rw shared:5 master:1 propagate_from:2"
        " - cgroup2 none rw\n"
    )

    assert parse_mountinfo_cgroups(text) == [CgroupMount("/mnt/my cg\tx", 2, (), "/a b\\c")]


@pytest.mark.parametrize(
    "text",
    [
        "31 23 0:28 / /sys/fs/cgroup rw,relatime tmpfs tmpfs rw\n",
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - cgroup2\n",
        "31 23 0:28 / -\n",
    ],
)
def test_mountinfo_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_mountinfo_cgroups(text)


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/", "/", ""),
        ("/a/b", "/", "a/b"),
        ("/docker/abc", "/docker/abc", ""),
        ("/docker/abc/sub", "/docker/abc", "sub"),
        ("/docker/abcdef", "/docker/abc", None),
        ("/system.slice", "/docker/abc", None),
        ("/../../user.slice", "/", None),
    ],
)
def test_relative_to_mount_root(path: str, root: str, expected: Optional[str]) -> None:
    assert relative_to_mount_root(path, root) == expected


# Cgroup names may hold any character but "/"; "." lets ".." appear too.
segment = st.text(st.sampled_from("ab.:- \\\u00e9"), min_size=1, max_size=6)


@fuzz
@given(st.lists(segment, max_size=4), st.lists(segment, max_size=4))
def test_any_path_below_the_root_is_found_again(root: list[str], below: list[str]) -> None:
    if ".." in root + below:
        return
    path = "/" + "/".join(root + below)

    assert relative_to_mount_root(path, "/" + "/".join(root)) == "/".join(below)


def test_flat_keyed_fixtures() -> None:
    events = parse_flat_keyed(
        fixture_text("v2/sys/fs/cgroup/system.slice/app.service/worker/memory.events.local")
    )

    assert events == {"low": 0, "high": 0, "max": 4, "oom": 1, "oom_kill": 1, "oom_group_kill": 0}
    assert parse_flat_keyed(HOST_OOM_CONTROL) == {
        "oom_kill_disable": 0,
        "under_oom": 0,
        "oom_kill": 1,
    }
    stat = parse_flat_keyed(fixture_text("hybrid/sys/fs/cgroup/memory/memory.stat"))
    assert stat["hierarchical_memory_limit"] == 9223372036854771712


def test_flat_keyed_keeps_unknown_keys() -> None:
    assert parse_flat_keyed("oom_kill 2\nsome_future_counter -3\n\n") == {
        "oom_kill": 2,
        "some_future_counter": -3,
    }


@pytest.mark.parametrize(
    "text", ["oom_kill\n", "oom_kill x\n", "oom_kill 1 2\n", "oom_kill 1_0\n", "oom_kill +1\n"]
)
def test_flat_keyed_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_flat_keyed(text)


@fuzz
@given(st.dictionaries(st.from_regex(r"[a-z_]{1,20}", fullmatch=True), st.integers()))
def test_flat_keyed_round_trip(values: dict[str, int]) -> None:
    text = "".join(f"{key} {value}\n" for key, value in values.items())

    assert parse_flat_keyed(text) == values


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max\n", None),
        ("9223372036854771712\n", None),  # v1 unset, 4 KiB pages (recorded here)
        ("9223372036854710272\n", None),  # v1 unset, 64 KiB pages
        (f"{UNLIMITED_FROM}\n", None),
        (f"{UNLIMITED_FROM - 1}\n", UNLIMITED_FROM - 1),
        ("268435456\n", 268435456),
        ("0\n", 0),
    ],
)
def test_limit(text: str, expected: Optional[int]) -> None:
    assert parse_limit(text) == expected


@pytest.mark.parametrize("text", ["", "\n", "-1\n", "1.5\n", "max max\n", "1_000\n", "unlimited"])
def test_limit_malformed(text: str) -> None:
    with pytest.raises(ParseError):
        parse_limit(text)


def test_int_file() -> None:
    assert parse_int_file("6500352\n") == 6500352
    with pytest.raises(ParseError):
        parse_int_file("6500352 kB\n")


def test_every_cut_gives_parse_error_or_a_prefix_of_the_truth() -> None:
    whole = parse_proc_cgroup(HOST_CGROUP)
    for text in prefixes(HOST_CGROUP):
        entries = value_or_parse_error(parse_proc_cgroup, text)
        if entries is not None:
            assert entries[:-1] == whole[: len(entries) - 1], repr(text)
    for text in prefixes(HOST_MOUNTINFO):
        value_or_parse_error(parse_mountinfo_cgroups, text)
    for text in prefixes(HOST_OOM_CONTROL):
        values = value_or_parse_error(parse_flat_keyed, text)
        if values is not None:
            assert set(values) <= {"oom_kill_disable", "under_oom", "oom_kill"}, repr(text)


@fuzz
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    for parse in (
        parse_proc_cgroup,
        parse_mountinfo_cgroups,
        parse_flat_keyed,
        parse_int_file,
        parse_limit,
    ):
        value_or_parse_error(parse, text)


@fuzz
@given(damaged(HOST_MOUNTINFO), damaged(HOST_CGROUP))
def test_damaged_recordings(mountinfo: str, cgroup: str) -> None:
    value_or_parse_error(parse_mountinfo_cgroups, mountinfo)
    value_or_parse_error(parse_proc_cgroup, cgroup)
