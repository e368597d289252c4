# Sourced by deploy/container/build and deploy/container/smoke: makes podman usable here.
#
# - Installs podman, runc, mmdebstrap and uidmap from Debian's packages when missing.
# - Unless CONTAINERS_CONF names a file already, writes one of ours and exports it: the OCI
#   runtime runc (crun is not installed with podman on every host) and fixed `nofile`/`nproc`
#   limits no higher than this process's own hard limits (a sandbox without CAP_SYS_RESOURCE
#   cannot give a container more than it has: runc then fails "error setting rlimits").
#   Nothing under /etc is changed.

container_state=${ARCHWAY_CONTAINER_STATE:-/var/tmp/archway-container}
mkdir -p "$container_state"

log() { echo "${0##*/}: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

container_tools() {
    local missing=() pkg
    for pkg in podman runc mmdebstrap uidmap; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null ||
            { log "podman, runc and mmdebstrap are needed (missing: ${missing[*]}); install them"; return 1; }
        log "installing ${missing[*]}"
        as_root apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
    fi
    if [ -z "${CONTAINERS_CONF:-}" ]; then
        local nofile nproc
        nofile=$(ulimit -Hn)
        nproc=$(ulimit -Hu)
        [ "$nofile" = unlimited ] || [ "$nofile" -gt 16384 ] && nofile=16384
        [ "$nproc" = unlimited ] || [ "$nproc" -gt 16384 ] && nproc=16384
        cat >"$container_state/containers.conf.new" <<CONF
# Written by deploy/container/lib.sh for Archway's container scripts.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
CONF
        mv "$container_state/containers.conf.new" "$container_state/containers.conf"
        export CONTAINERS_CONF="$container_state/containers.conf"
    fi
}

# podman-compose (PyPI, pinned) in a virtual environment of ours: Debian's is too old for
# compose profiles. Prints its path.
compose_tool() {
    local venv="$container_state/compose-venv" want="podman-compose==1.6.0"
    if [ "$(cat "$venv/installed" 2>/dev/null)" != "$want" ]; then
        log "installing $want into $venv"
        python3 -m venv "$venv" >&2
        "$venv/bin/python" -m pip install -q --disable-pip-version-check "$want" >&2
        echo "$want" >"$venv/installed"
    fi
    echo "$venv/bin/podman-compose"
}
