#!/usr/bin/env bash
# Install everything the test suite needs on a Debian machine and run all of it.
# Run as root from a checkout: bash tests/run.sh [extra pytest arguments]
# `bash tests/run.sh --install-only` installs and stops there.
#
# What it installs, and why:
#   Debian packages  iproute2 (ss, and network namespaces for the fleet test),
#                    systemd (journald, systemd-analyze, the container's PID 1),
#                    python3-venv, rsyslog and systemd-journal-remote (the
#                    shipping tests), and syslog-ng-core unpacked beside them
#                    (tests/shipping/install_syslog_ng.sh says why),
#                    chromium (the HTML post-mortem rendered headless, tests/views),
#                    groff-base and man-db (the man pages rendered, tests/packaging),
#                    qemu-system-x86, mmdebstrap and e2fsprogs (tests/vm: a Debian 12
#                    guest with systemd on pure cgroup v2, built from Debian's packages
#                    and booted under QEMU; docs/testing.md says what it costs).
#   A virtualenv     .venv-test/ with memdoor[test], so the host Python stays clean.
# Then it runs pytest once with the default python3, and once more with every
# other supported CPython it finds (pyenv's 3.9 and 3.13 on our CI machines), so
# the 3.9–3.13 range is tested for real.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(iproute2 systemd python3 python3-venv procps util-linux mount chromium
                 rsyslog systemd-journal-remote qemu-system-x86 mmdebstrap e2fsprogs
                 groff-base man-db)

missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "tests/run.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

bash tests/shipping/install_syslog_ng.sh

make_venv() {  # make_venv PYTHON DIR
    "$1" -m venv "$2"
    "$2/bin/pip" install -q --disable-pip-version-check -e '.[test]'
}

python=${PYTHON:-python3}
make_venv "$python" .venv-test
if [ "${1:-}" = --install-only ]; then
    exit 0
fi
.venv-test/bin/python -m pytest -q "$@"

# The same code on the oldest and newest supported interpreters: everything but
# tests/system and tests/vm (they install memdoor with Debian's python3 inside a
# systemd container or a VM) and tests/shipping (rsyslog and syslog-ng reading a journal). The
# daemon's asyncio use and its eventfd fallback (no os.eventfd before 3.10)
# depend on the interpreter, so these runs cover real kernel tests too.
for version in 3.9 3.13; do
    other=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$version".*/bin/python3 2>/dev/null | tail -n 1 || true)
    if [ -z "$other" ]; then
        echo "tests/run.sh: no CPython $version found, skipping its run"
        continue
    fi
    make_venv "$other" ".venv-test-$version"
    ".venv-test-$version/bin/python" -m pytest -q -p no:cacheprovider \
        --ignore=tests/system --ignore=tests/vm --ignore=tests/shipping tests
done
