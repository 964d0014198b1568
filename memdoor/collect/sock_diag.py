"""A process's TCP and UDP sockets by a NETLINK_SOCK_DIAG dump, where it shows the right namespace.

A netlink socket dumps the namespace it was created in, memdoor's own, so the
dump is used only for a process in that namespace (the same ns/net inode);
a container's process is read from its /proc/PID/net tables instead. Any
failure (no netlink, no diag module for the protocol, a reply that does not
parse) returns None and the caller reads that table's text: the dump is a
faster way to the same rows, never the only one.
"""

from __future__ import annotations

import itertools
import os
import socket
from typing import Optional

from memdoor.procfs.errors import ParseError
from memdoor.procfs.net import Protocol, Socket
from memdoor.procfs.sock_diag import NETLINK_SOCK_DIAG, DumpRefused, dump_request, parse_dump_reply

# Large enough for the kernel's largest dump datagram (it fills up to 32 KiB).
_RECEIVE_BYTES = 64 * 1024
# The kernel answers from the receiving call itself; this only bounds a kernel
# that never ends a dump.
_TIMEOUT_SECONDS = 5.0
_sequences = itertools.count(1)


def in_own_network_namespace(pid: int, proc: str = "/proc") -> bool:
    """Whether pid's sockets are in the namespace a netlink socket made here would dump.

    False for a recorded /proc tree (its sockets are not this host's) and
    whenever either namespace cannot be looked at.
    """
    if proc != "/proc":
        return False
    try:
        theirs = os.stat(f"/proc/{pid}/ns/net")
        ours = os.stat("/proc/self/ns/net")
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def dump_sockets(
    protocol: Protocol, family: int, wanted_inodes: set[int]
) -> Optional[list[Socket]]:
    """The wanted sockets of one protocol and family (4 or 6) of memdoor's network
    namespace, or None where the dump cannot give them."""
    sequence = next(_sequences) & 0xFFFFFFFF
    try:
        with socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
        ) as diag:
            diag.settimeout(_TIMEOUT_SECONDS)
            diag.sendall(dump_request(protocol, family, sequence))
            sockets: list[Socket] = []
            while True:
                reply = diag.recv(_RECEIVE_BYTES)
                if not reply:
                    return None
                found, done = parse_dump_reply(reply, protocol, family, sequence, wanted_inodes)
                sockets.extend(found)
                if done:
                    return sockets
    except (OSError, ParseError, DumpRefused):
        return None
