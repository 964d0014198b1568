#!/usr/bin/env bash
# Install memdoor on this host from a checkout -- the one documented way to do it.
#
#   packaging/install.sh [--prefix /opt/memdoor] [--root /]
#   packaging/install.sh --uninstall [--purge] [--prefix /opt/memdoor] [--root /]
#
# What it puts where:
#   PREFIX (default /opt/memdoor)     a virtualenv made with the system /usr/bin/python3,
#                                     holding memdoor (not editable) and its dependencies;
#                                     the unit runs PREFIX/bin/memdoor. A venv keeps memdoor's
#                                     pydantic/structlog versions away from the distribution's.
#   /usr/local/lib/systemd/system/memdoor@.service
#                                     the unit. /usr/local/lib rather than /etc/systemd/system:
#                                     /etc stays the administrator's (drop-ins made with
#                                     `systemctl edit memdoor@NAME` override it there), and
#                                     this is where systemd looks for locally installed
#                                     software's units.
#   /usr/local/lib/systemd/system/memdoor@.socket
#                                     systemd-oomd's pre-kill hook, not enabled.
#   /usr/local/bin/memdoor            a symlink to PREFIX/bin/memdoor, so that `memdoor` and
#                                     `sudo memdoor` work as the README writes them
#                                     (/usr/local/bin is in sudo's secure_path and every
#                                     login PATH). /usr/local rather than /usr/bin: /usr is
#                                     the distribution's, managed by dpkg, and software
#                                     installed locally goes under /usr/local (FHS 4.9).
#                                     An existing /usr/local/bin/memdoor that is not this
#                                     link is never replaced: the install stops first.
#   /usr/local/share/man/man8/memdoor.8, /usr/local/share/man/man5/memdoor.toml.5
#                                     the man pages, where man-db looks for local ones
#                                     (MANDATORY_MANPATH in /etc/manpath.config).
#   /usr/local/share/bash-completion/completions/memdoor
#                                     bash completion, loaded on first use by
#                                     bash-completion, which searches
#                                     $XDG_DATA_DIRS/bash-completion/completions
#                                     (/usr/local/share first).
#   /etc/memdoor/example.toml         only if absent: an edited copy is never overwritten.
#   /usr/lib/systemd/catalog/memdoor.catalog
#                                     the journal message catalog, if the checkout has one,
#                                     followed by `journalctl --update-catalog`.
# Everything created outside PREFIX is listed in PREFIX/memdoor-install.manifest, which is
# how --uninstall removes exactly that and nothing else. --uninstall keeps /etc/memdoor
# (the configurations are the administrator's) unless --purge is given.
#
# --root DIR installs below DIR instead of / (a test installs into a temporary directory
# this way). The venv then lives at DIR/PREFIX and only works there: venvs are not
# relocatable. systemctl daemon-reload runs only when --root is / and systemd is running.
#
# Running it again is safe: the venv is reused, memdoor reinstalled, the unit replaced,
# an existing example.toml kept.
set -euo pipefail

readonly DEFAULT_PREFIX=/opt/memdoor
readonly PYTHON=/usr/bin/python3
readonly UNIT_DIR=/usr/local/lib/systemd/system
readonly UNIT=memdoor@.service
readonly SOCKET_UNIT=memdoor@.socket
readonly CONFIG_DIR=/etc/memdoor
readonly CATALOG_DIR=/usr/lib/systemd/catalog
readonly CATALOG_INDEX=/var/lib/systemd/catalog/database
readonly MANIFEST_NAME=memdoor-install.manifest
readonly COMMAND_LINK=/usr/local/bin/memdoor
readonly MAN_DIR=/usr/local/share/man
readonly COMPLETION=/usr/local/share/bash-completion/completions/memdoor

say() { printf 'memdoor install: %s\n' "$*"; }
die() {
    printf 'memdoor install: error: %s\n' "$*" >&2
    exit 1
}
usage() {
    if [ "$1" = 0 ]; then
        sed -n '4,5p' "$0" | sed 's/^# *//'
    else
        sed -n '4,5p' "$0" | sed 's/^# *//' >&2
    fi
    exit "$1"
}

prefix=$DEFAULT_PREFIX
root=/
action=install
purge=no
while (($#)); do
    case $1 in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --prefix=*) prefix=${1#*=}; shift ;;
        --root) root=${2:?--root needs a directory}; shift 2 ;;
        --root=*) root=${1#*=}; shift ;;
        --uninstall) action=uninstall; shift ;;
        --purge) purge=yes; shift ;;
        -h | --help) usage 0 ;;
        *) printf 'memdoor install: unknown argument: %s\n' "$1" >&2; usage 2 ;;
    esac
done

# The prefix goes into the unit's ExecStart= and into sed below: keep it to characters
# that need no quoting in either.
[[ $prefix =~ ^/[A-Za-z0-9._/-]+$ ]] || die "--prefix must be an absolute path of [A-Za-z0-9._/-] (got '$prefix')"
[[ /$prefix/ != */../* && /$prefix/ != */./* ]] || die "--prefix must not contain . or .. components (got '$prefix')"
prefix=${prefix%/}
[[ $root == /* ]] || die "--root must be an absolute path (got '$root')"
[ -d "$root" ] || die "--root $root is not a directory"
root=${root%/}

checkout=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=$root$prefix
manifest=$venv/$MANIFEST_NAME

systemd_running() { [ -z "$root" ] && [ -d /run/systemd/system ]; }

# journalctl --update-catalog rebuilds the catalog index under the given root.
update_catalog() {
    if ! command -v journalctl >/dev/null; then
        say "journalctl not found: catalog index not updated"
    elif [ -z "$root" ]; then
        journalctl --update-catalog
        say "updated the journal catalog index"
    else
        journalctl --root="$root" --update-catalog
        say "updated the journal catalog index under $root"
    fi
}

daemon_reload() {
    if systemd_running; then
        systemctl daemon-reload
        say "systemctl daemon-reload done"
    else
        say "systemd is not running here (or --root was given): daemon-reload skipped"
    fi
}

# Record a path created outside the prefix, once, in creation order.
created=()
record() { created+=("$1"); }

# mkdir -p that records each directory it had to create (outermost first).
make_dirs() {
    local dir=$1 missing=()
    while [ ! -d "$root$dir" ]; do
        missing=("$dir" "${missing[@]+"${missing[@]}"}")
        dir=$(dirname "$dir")
    done
    local each
    for each in "${missing[@]+"${missing[@]}"}"; do
        mkdir -m 0755 "$root$each"
        record "$each/"
    done
}

# Copy $1 to $2 (a path on the target host) with mode 0644; record it if it is new.
put_file() {
    local source=$1 target=$2
    make_dirs "$(dirname "$target")"
    if [ -e "$root$target" ] && cmp -s "$source" "$root$target"; then
        say "unchanged: $target"
        return
    fi
    [ -e "$root$target" ] || record "$target"
    install -m 0644 "$source" "$root$target"
    say "installed: $target"
}

# Point $COMMAND_LINK at the installed memdoor; record it if it is new.
put_command_link() {
    local target=$prefix/bin/memdoor
    if [ -L "$root$COMMAND_LINK" ] && [ "$(readlink "$root$COMMAND_LINK")" = "$target" ]; then
        say "unchanged: $COMMAND_LINK"
        return
    fi
    make_dirs "$(dirname "$COMMAND_LINK")"
    [ -L "$root$COMMAND_LINK" ] || record "$COMMAND_LINK"
    ln -sfn "$target" "$root$COMMAND_LINK"
    say "installed: $COMMAND_LINK -> $target"
}

# A $COMMAND_LINK that is neither absent nor our link into this prefix belongs to
# someone else: stop before anything is changed.
check_command_link() {
    local found=$root$COMMAND_LINK
    if [ -L "$found" ] && [ "$(readlink "$found")" = "$prefix/bin/memdoor" ]; then
        return
    fi
    if [ -e "$found" ] || [ -L "$found" ]; then
        die "$COMMAND_LINK exists and is not memdoor's link; move it away and run this again"
    fi
}

make_venv() {
    [ -x "$PYTHON" ] || die "$PYTHON not found: memdoor needs the system Python 3 (Debian package python3)"
    if [ -x "$venv/bin/python" ]; then
        say "reusing the virtualenv at $prefix"
        return
    fi
    # Debian splits venv/ensurepip into python3-venv; without it `python3 -m venv` fails
    # after creating a half-made directory, which the second attempt completes.
    if ! "$PYTHON" -m venv "$venv"; then
        command -v apt-get >/dev/null \
            || die "'$PYTHON -m venv' failed; install your distribution's venv support for $PYTHON and run this again"
        say "'$PYTHON -m venv' failed: installing python3-venv with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv \
            || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv; } \
            || die "could not install python3-venv"
        "$PYTHON" -m venv "$venv" || die "'$PYTHON -m venv $venv' failed even with python3-venv"
    fi
    say "created a virtualenv at $prefix with $("$PYTHON" --version)"
}

install_package() {
    # Build from a copy: pip builds a local directory in place, and the build/ and
    # egg-info it would leave would dirty the checkout.
    local build
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    tar -C "$checkout" -cf - \
        --exclude=./.git --exclude='./.venv*' --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache \
        --exclude=.ruff_cache --exclude=.pytest_cache --exclude=.hypothesis . \
        | tar -C "$build" -xf -
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$build"
    rm -rf "$build"
    trap - EXIT
    say "installed $("$venv/bin/memdoor" --version) into $prefix"
}

write_manifest() {
    local previous=()
    [ -f "$manifest" ] && mapfile -t previous <"$manifest"
    # Entries from earlier runs stay: a directory this run found existing may be one an
    # earlier run created.
    printf '%s\n' "${previous[@]+"${previous[@]}"}" "${created[@]+"${created[@]}"}" \
        | awk 'NF && !seen[$0]++' >"$manifest.new"
    mv "$manifest.new" "$manifest"
}

do_install() {
    [ -f "$checkout/pyproject.toml" ] || die "$checkout is not a memdoor checkout"
    [ -f "$checkout/etc/memdoor/example.toml" ] || die "$checkout/etc/memdoor/example.toml is missing"
    # Refuse to take over a directory that is not ours: --uninstall deletes the prefix.
    if [ -d "$venv" ] && [ ! -f "$manifest" ] && [ -n "$(ls -A "$venv")" ]; then
        die "$venv exists and is not a memdoor installation; choose another --prefix"
    fi
    check_command_link
    make_dirs "$(dirname "$prefix")"
    # The manifest claims the prefix first, so that a run that fails half-way can be
    # repeated (or undone with --uninstall).
    mkdir -p "$venv"
    touch "$manifest"
    make_venv
    install_package

    local unit
    unit=$(mktemp)
    sed "s|^ExecStart=$DEFAULT_PREFIX/|ExecStart=$prefix/|" "$checkout/packaging/systemd/$UNIT" >"$unit"
    put_file "$unit" "$UNIT_DIR/$UNIT"
    rm -f "$unit"
    # systemd-oomd's pre-kill hook: installed, not enabled (docs/runtime.md, "systemd-oomd").
    put_file "$checkout/packaging/systemd/$SOCKET_UNIT" "$UNIT_DIR/$SOCKET_UNIT"

    put_command_link
    put_file "$checkout/packaging/man/memdoor.8" "$MAN_DIR/man8/memdoor.8"
    put_file "$checkout/packaging/man/memdoor.toml.5" "$MAN_DIR/man5/memdoor.toml.5"
    put_file "$checkout/packaging/completion/memdoor" "$COMPLETION"

    if [ -e "$root$CONFIG_DIR/example.toml" ]; then
        say "kept the existing $CONFIG_DIR/example.toml"
    else
        put_file "$checkout/etc/memdoor/example.toml" "$CONFIG_DIR/example.toml"
    fi

    if [ -f "$checkout/packaging/systemd/memdoor.catalog" ]; then
        put_file "$checkout/packaging/systemd/memdoor.catalog" "$CATALOG_DIR/memdoor.catalog"
        # On a real host systemd's package made the index long ago; under a fresh --root it
        # is ours, and --uninstall removes it with the rest.
        make_dirs "$(dirname "$CATALOG_INDEX")"
        [ -e "$root$CATALOG_INDEX" ] || record "$CATALOG_INDEX"
        update_catalog
    fi

    write_manifest
    daemon_reload
    say "memdoor is $COMMAND_LINK; man memdoor, man memdoor.toml"
    say "done. Next: copy $CONFIG_DIR/example.toml to $CONFIG_DIR/NAME.toml, adapt it, then"
    say "  systemctl enable --now memdoor@NAME"
}

purge_configs() {
    if [ -d "$root$CONFIG_DIR" ]; then
        rm -rf "$root$CONFIG_DIR"
        say "purged $CONFIG_DIR"
    fi
}

do_uninstall() {
    if [ ! -f "$manifest" ]; then
        # Purging the configurations of an installation removed earlier is still useful.
        if [ "$purge" = yes ]; then
            say "no memdoor installation at $prefix"
            purge_configs
            return
        fi
        die "no memdoor installation at $prefix (no $MANIFEST_NAME); nothing removed"
    fi
    if systemd_running; then
        systemctl stop 'memdoor@*.service' || say "could not stop every memdoor@ instance"
        say "stopped all memdoor@ instances"
    fi
    # Instances the administrator enabled: their links would dangle once the unit is gone.
    local link
    while IFS= read -r link; do
        if [ -z "$root" ]; then
            systemctl disable --quiet "$(basename "$link")"
        else
            systemctl --root="$root" disable --quiet "$(basename "$link")"
        fi
        say "disabled $(basename "$link")"
    done < <(find "$root/etc/systemd/system" -type l -name 'memdoor@*.service' 2>/dev/null | sort -u)

    local entries=() entry catalog_removed=no index_removed=no
    mapfile -t entries <"$manifest"
    for entry in "${entries[@]}"; do
        if [ "$purge" = no ] && [[ $entry == "$CONFIG_DIR"/* ]]; then
            continue
        fi
        if [ "$entry" = "$COMMAND_LINK" ] && [ "$(readlink "$root$entry")" != "$prefix/bin/memdoor" ]; then
            say "left $entry alone: it is no longer a link to $prefix/bin/memdoor"
            continue
        fi
        # -L too: the command link dangles if the prefix went first.
        if [[ $entry != */ ]] && { [ -e "$root$entry" ] || [ -L "$root$entry" ]; }; then
            rm -f "$root$entry"
            say "removed $entry"
            case $entry in
                "$CATALOG_DIR/memdoor.catalog") catalog_removed=yes ;;
                "$CATALOG_INDEX") index_removed=yes ;;
            esac
        fi
    done
    [ "$purge" = no ] || purge_configs
    rm -rf "$venv"
    say "removed $prefix"
    # Directories last and deepest first, and only if nothing else has moved in.
    local index
    for ((index = ${#entries[@]} - 1; index >= 0; index--)); do
        entry=${entries[index]}
        if [[ $entry == */ ]] && [ -d "$root$entry" ] && [ -z "$(ls -A "$root$entry")" ]; then
            rmdir "$root$entry"
            say "removed ${entry%/}"
        fi
    done
    # An index that was there before us is rebuilt without our entries.
    if [ "$catalog_removed" = yes ] && [ "$index_removed" = no ]; then
        update_catalog
    fi
    daemon_reload
}

if [ "$action" = install ]; then do_install; else do_uninstall; fi
