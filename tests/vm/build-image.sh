#!/usr/bin/env bash
# Build the tests/vm guest, or find it already built, and print its directory.
#
#   bash tests/vm/build-image.sh [--rebuild]
#
# The guest is Debian 12 with systemd as PID 1 on pure cgroup v2, made by mmdebstrap
# from Debian's packages alone, through the apt sources this host already uses (so the
# mirror is the host's, and nothing comes from anywhere else). The image directory
# holds root.img (ext4, sparse, booted with snapshot=on so it never changes), vmlinuz
# and initrd.img (the guest kernel is booted directly) and python-version (the guest's
# python3, for which the host builds the wheelhouse).
#
# It lives outside the checkout, in $MEMDOOR_VM_CACHE (default
# /var/cache/memdoor-tests/vm), under a key hashed from this script, the package list
# and the files baked in: editing any of them builds a new image on the next run, and
# older ones are removed once it is done. --rebuild builds anew regardless.
# Runs as root (mmdebstrap --mode=root, mkfs.ext4 -d keeps owners). About 2 minutes.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${MEMDOOR_VM_CACHE:-/var/cache/memdoor-tests/vm}
rebuild=no
[ "${1:-}" = --rebuild ] && rebuild=yes

say() { printf 'memdoor vm image: %s\n' "$*" >&2; }
# The image's directory is all this prints on stdout (fd 3); what the tools say goes to
# stderr (mkfs.ext4 announces the file it creates even with -q).
exec 3>&1 1>&2

key=$(cat "$here/build-image.sh" "$here/guest-packages" "$here"/guest/* | sha256sum | cut -c1-16)
image=$cache/debian12-$key

mkdir -p "$cache"
# One build at a time, even from two checkouts: the second waits and finds it built.
exec 9>"$cache/.lock"
flock 9

if [ "$rebuild" = no ] && [ -f "$image/complete" ]; then
    printf '%s\n' "$image" >&3
    exit 0
fi

if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sources=/etc/apt/sources.list.d/debian.sources
elif [ -f /etc/apt/sources.list ]; then
    sources=/etc/apt/sources.list
else
    say "no Debian apt sources on this host (/etc/apt/sources.list.d/debian.sources)"
    exit 1
fi

work=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/tree
packages=$(grep -v '^#' "$here/guest-packages" | paste -sd, -)

say "building $image from $sources (about 2 minutes)"
mmdebstrap --quiet --variant=minbase --mode=root --include="$packages" \
    bookworm "$tree" "$sources"

install -m 0644 "$here/guest/fstab" "$tree/etc/fstab"
mkdir -p "$tree/mnt/share"
printf '9p\n9pnet_virtio\n' >"$tree/etc/modules-load.d/memdoor-test-share.conf"
echo memdoor-vm >"$tree/etc/hostname"
# A fixed machine id: an empty one would make every boot a "first boot" (presets run).
tr -d - </proc/sys/kernel/random/uuid >"$tree/etc/machine-id"
install -m 0644 "$here/guest/memdoor-test-agent.service" \
    "$tree/etc/systemd/system/memdoor-test-agent.service"
systemctl --root="$tree" --quiet enable memdoor-test-agent.service
# Timers that would wake in the middle of a test (apt, fstrim, e2scrub, dpkg backups),
# and the serial getty (the serial port is the console log, nobody logs in).
for unit in apt-daily.timer apt-daily-upgrade.timer fstrim.timer e2scrub_all.timer \
    e2scrub_reap.service dpkg-db-backup.timer serial-getty@ttyS0.service getty@tty1.service; do
    ln -sf /dev/null "$tree/etc/systemd/system/$unit"
done

chroot "$tree" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
    >"$work/python-version"
cp "$(readlink -f "$tree/vmlinuz")" "$work/vmlinuz"
cp "$(readlink -f "$tree/initrd.img")" "$work/initrd.img"
rm -rf "$tree/var/cache/apt/archives"/*.deb "$tree/var/lib/apt/lists"/*_Packages
mkfs.ext4 -q -L memdoor-vm -d "$tree" "$work/root.img" 3G
rm -rf "$tree"
touch "$work/complete"

# The new image replaces every other one: they only differ in what an older checkout
# built, and each is about 800 MB.
rm -rf "$cache"/debian12-*
mv "$work" "$image"
trap - EXIT
say "built $image"
printf '%s\n' "$image" >&3
