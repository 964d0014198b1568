"""TCP and UDP sockets owned by a process, matched by inode.

The tables come from /proc/PID/net so they show the process's own network
namespace (a container's sockets, not the host's), and the fd links tell which
rows are its own. Tables are only read when the process has sockets at all:
net/tcp walks the whole namespace's TCP hash (proc-costs.md).
"""

from __future__ import annotations

from typing import Optional

from memdoor.collect.reading import Unreadable, list_dir, malformed, read_link, read_text
from memdoor.procfs.errors import ParseError
from memdoor.procfs.net import Protocol, Socket, parse_net_table, socket_inode

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
    inodes: set[int] = set()
    for name in names:
        link = read_link(f"{fd_dir}/{name}")
        if isinstance(link, Unreadable):
            # An fd closed between listdir and readlink is normal churn, not a
            # gap. Any other failure (no CAP_SYS_PTRACE) hits every fd alike:
            # report it once for the directory and give up on the list.
            if link.reason == "vanished":
                continue
            problems.append(Unreadable(fd_dir, link.reason, f"readlink of fds: {link.detail}"))
            return None
        inode = socket_inode(link)
        if inode is not None:
            inodes.add(inode)
    return inodes


def read_connections(
    pid: int, problems: list[Unreadable], proc: str = "/proc"
) -> Optional[list[Socket]]:
    inodes = read_socket_inodes(pid, problems, proc)
    if inodes is None:
        return None
    sockets: list[Socket] = []
    if not inodes:
        return sockets
    for table, protocol, family in TABLES:
        path = f"{proc}/{pid}/net/{table}"
        text = read_text(path)
        if isinstance(text, Unreadable):
            # A missing tcp6/udp6 means IPv6 is disabled; the process check at
            # the end of the snapshot catches a process that really vanished.
            if text.reason != "vanished":
                problems.append(text)
            continue
        try:
            sockets.extend(parse_net_table(text, protocol, family, inodes))
        except ParseError as exc:
            problems.append(malformed(path, str(exc)))
    return sockets
