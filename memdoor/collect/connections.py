"""TCP and UDP sockets owned by a process, matched by inode.

The fd links tell which sockets are the process's own. The rows come from a
NETLINK_SOCK_DIAG dump where the process shares memdoor's network namespace
(memdoor.collect.sock_diag: the same rows for a third of the kernel time),
otherwise, and wherever a dump fails, from /proc/PID/net, whose tables show
the process's own namespace (a container's sockets, not the host's). Either
is only asked while some of the process's sockets are not found yet: both
walk the whole namespace's TCP hash (proc-costs.md), so a process without
sockets reads no table, and one whose sockets are all IPv4 TCP reads one.
"""

from __future__ import annotations

from typing import Optional

from memdoor.collect.reading import Unreadable, list_dir, malformed, read_links, read_text
from memdoor.collect.sock_diag import dump_sockets, in_own_network_namespace
from memdoor.procfs.errors import ParseError
from memdoor.procfs.net import Protocol, Socket, parse_net_table, socket_inodes

TABLES: tuple[tuple[str, Protocol, int], ...] = (
    ("tcp", "tcp", 4),
    ("tcp6", "tcp", 6),
    ("udp", "udp", 4),
    ("udp6", "udp", 6),
)


def read_socket_inodes(
    pid: int, problems: list[Unreadable], proc: str = "/proc"
) -> Optional[set[int]]:
    fd_dir = f"{proc}/{pid}/fd"
    names = list_dir(fd_dir)
    if isinstance(names, Unreadable):
        problems.append(names)
        return None
    links = read_links(fd_dir, names)
    if isinstance(links, Unreadable):
        problems.append(links)
        return None
    # An fd closed between listdir and readlink is normal churn, not a gap.
    # Any other failure (no CAP_SYS_PTRACE) hits every fd alike: report it
    # once for the directory and give up on the list.
    for failure in links.failures:
        if failure.reason != "vanished":
            problems.append(
                Unreadable(fd_dir, failure.reason, f"readlink of fds: {failure.detail}")
            )
            return None
    return socket_inodes(links.targets)


def read_connections(
    pid: int, problems: list[Unreadable], proc: str = "/proc"
) -> Optional[list[Socket]]:
    inodes = read_socket_inodes(pid, problems, proc)
    if inodes is None:
        return None
    sockets: list[Socket] = []
    if not inodes:
        return sockets
    dump = in_own_network_namespace(pid, proc)
    unfound = set(inodes)
    for table, protocol, family in TABLES:
        if not unfound:
            # Every socket is found: the other tables hold none of them.
            break
        rows = dump_sockets(protocol, family, unfound) if dump else None
        if rows is None:
            rows = _read_table(f"{proc}/{pid}/net/{table}", protocol, family, unfound, problems)
        sockets.extend(rows)
        unfound.difference_update(row.inode for row in rows)
    return sockets


def _read_table(
    path: str, protocol: Protocol, family: int, inodes: set[int], problems: list[Unreadable]
) -> list[Socket]:
    text = read_text(path)
    if isinstance(text, Unreadable):
        # A missing tcp6/udp6 means IPv6 is disabled; the process check at
        # the end of the snapshot catches a process that really vanished.
        if text.reason != "vanished":
            problems.append(text)
        return []
    try:
        return parse_net_table(text, protocol, family, inodes)
    except ParseError as exc:
        problems.append(malformed(path, str(exc)))
        return []
