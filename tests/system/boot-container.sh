#!/bin/sh
# PID 1 of fresh pid/mount/uts/ipc/cgroup namespaces (started by container.py through
# `unshare --fork`): build a root that is an overlay of the host's own root, give it the
# hybrid cgroup layout of the host, pivot into it and become systemd.
#
# Why an overlay of / and not a second root filesystem: the host's Python, the test
# virtualenv and the checkout are visible inside for free, and every write lands in a tmpfs
# that disappears with the mount namespace. Why the cgroups are mounted here rather than by
# systemd: systemd 252 would mount a pure cgroup2 tree (its compiled-in default), in which
# the memory controller is missing on these hybrid hosts (it is bound to the v1 hierarchy),
# so MemoryMax= would be accepted and silently not enforced.
#
# Usage: boot-container.sh STATE_DIR HOSTNAME [UNIT_TO_MASK...]
set -eu

state=$1
hostname=$2
shift 2

mount -t tmpfs -o mode=0700 memdoor-container "$state"
mkdir "$state/upper" "$state/work" "$state/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$state/upper,workdir=$state/work" "$state/root"
root=$state/root

# The host's enabled services (a database, a cron daemon, ...) have no business in a test
# boot and would cost seconds; masking them in the overlay leaves the host untouched.
for unit in "$@"; do
    ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
# Read-only sysfs is what systemd expects in a container: it then skips udev and the units
# that would try to configure real hardware.
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"

# The cgroup namespace makes each hierarchy's root the directory container.py prepared
# for us, so systemd manages a private subtree and never touches the host's cgroups.
mount -t tmpfs -o mode=0755,nosuid,nodev,noexec cgroup-root "$root/sys/fs/cgroup"
mkdir "$root/sys/fs/cgroup/unified" "$root/sys/fs/cgroup/systemd" \
    "$root/sys/fs/cgroup/memory" "$root/sys/fs/cgroup/pids"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup/unified"
mount -t cgroup -o none,name=systemd,nosuid,nodev,noexec cgroup "$root/sys/fs/cgroup/systemd"
mount -t cgroup -o memory,nosuid,nodev,noexec cgroup "$root/sys/fs/cgroup/memory"
mount -t cgroup -o pids,nosuid,nodev,noexec cgroup "$root/sys/fs/cgroup/pids"

# A minimal /dev: the device nodes services expect, a private devpts and shm. The nodes are
# made here with their standard modes rather than bind-mounted from the host, so that a
# host whose /dev/null lost its 0666 cannot break services running as other users.
# /dev/console is /dev/null, so that systemd's status output goes nowhere.
mount -t tmpfs -o mode=0755,nosuid dev "$root/dev"
mknod -m 0666 "$root/dev/null" c 1 3
mknod -m 0666 "$root/dev/zero" c 1 5
mknod -m 0666 "$root/dev/full" c 1 7
mknod -m 0666 "$root/dev/random" c 1 8
mknod -m 0666 "$root/dev/urandom" c 1 9
mknod -m 0666 "$root/dev/tty" c 5 0
mknod -m 0600 "$root/dev/console" c 1 3
# /dev/kmsg only where the host has one: it lets journald inside collect the kernel's
# messages (the OOM killer's reports among them) so `journalctl -k` works in tests.
if [ -c /dev/kmsg ]; then
    mknod -m 0644 "$root/dev/kmsg" c 1 11
fi
mkdir "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,nosuid,noexec devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"

# Debian's tmpfiles.d/tmp.conf says `D /tmp`: systemd-tmpfiles empties /tmp at boot, which
# in the overlay hides the host's /tmp, and with it a checkout there (install.sh, the
# workload). A file of the same name in /etc overrides it: create /tmp, clean nothing.
mkdir -p "$root/etc/tmpfiles.d"
echo 'd /tmp 1777 root root -' >"$root/etc/tmpfiles.d/tmp.conf"

# systemd sets the hostname from /etc/hostname; the container's own name tells its journal
# lines apart from the host's.
echo "$hostname" >"$root/etc/hostname"

cd "$root"
pivot_root . .
umount -l .
cd /

exec env -i container=memdoor-test /lib/systemd/systemd --system
