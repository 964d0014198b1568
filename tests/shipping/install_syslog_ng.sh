#!/usr/bin/env bash
# Unpack Debian's syslog-ng-core where tests/shipping/test_syslog_ng.py looks for it.
#
#   bash tests/shipping/install_syslog_ng.sh [DIR]     (default /opt/memdoor-test/syslog-ng)
#
# Why not `apt-get install syslog-ng-core`: Debian's syslog-ng-core and rsyslog
# conflict (both provide system-log-daemon), and the tests need both. So
# rsyslog is installed as usual, while syslog-ng-core's libraries are installed
# from its Depends: and the package itself is only unpacked into DIR: no
# service, no /etc/syslog-ng, nothing registered with dpkg. The test runs
# DIR/usr/sbin/syslog-ng with LD_LIBRARY_PATH and --module-path pointing into
# DIR. Safe to run again; it does nothing when DIR already holds syslog-ng.
set -euo pipefail

dest=${1:-/opt/memdoor-test/syslog-ng}
if [ -x "$dest/usr/sbin/syslog-ng" ]; then
    exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Package lists may be missing or stale on a machine that needed nothing else.
(cd "$work" && { apt-get download -q syslog-ng-core \
    || { apt-get update -qq && apt-get download -q syslog-ng-core; }; })
deb=$(ls "$work"/syslog-ng-core_*.deb)

# Depends: "a (>= 1), b | c, d" -> the first alternative of each, without versions.
# sysvinit-utils | lsb-base is only for the package's init script.
mapfile -t libraries < <(
    dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed -e 's/|.*//' -e 's/(.*)//' -e 's/ //g' \
        | grep -v -e '^$' -e '^sysvinit-utils$'
)
missing=()
for package in "${libraries[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

mkdir -p "$dest"
dpkg-deb -x "$deb" "$dest"
# Proves the unpacked binary finds its libraries the way the test runs it.
LD_LIBRARY_PATH="$dest/usr/lib/syslog-ng" "$dest/usr/sbin/syslog-ng" --version >/dev/null
echo "syslog-ng-core unpacked into $dest"
