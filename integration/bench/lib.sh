# shellcheck shell=bash
# Helpers shared by the benchmark scripts; sourced, never run.

# Everything the benchmark keeps between runs: the built images, the
# registry's storage, the Python occystrap venv, the last run's outputs.
BENCH_WORK=${BENCH_WORK:-/var/tmp/occystrap-bench}
# Debian mirror for debootstrap and for apt inside the image chroots.
BENCH_MIRROR=${BENCH_MIRROR:-}

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1; }

# The first Debian mirror this machine's apt uses, so the image is built
# from the same archive (and snapshot) as the host.
default_mirror() {
    local uri
    uri=$(awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    if [ -z "$uri" ]; then
        uri=$(awk '$1 == "deb" && $3 ~ /\/debian\/?$/ {print $3; exit}' \
            /etc/apt/sources.list 2>/dev/null || true)
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# Installs the Debian packages that provide the given commands, once.
ensure_tools() {
    local missing=() pair cmd pkg
    for pair in "$@"; do
        cmd=${pair%%:*}
        pkg=${pair#*:}
        if [ "$cmd" = time ]; then
            [ -x /usr/bin/time ] || missing+=("$pkg")
        elif ! need "$cmd"; then
            missing+=("$pkg")
        fi
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# A free TCP port on the loopback interface.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts docker-registry on a free loopback port with its storage under
# BENCH_WORK (so pushed images survive between runs). Sets REGISTRY
# (host:port) and REGISTRY_PID; the access log goes to REGISTRY_LOG so
# blob requests can be counted.
start_registry() {
    local port
    port=$(free_port)
    mkdir -p "$BENCH_WORK/registry"
    REGISTRY_LOG=$BENCH_WORK/registry/access.log
    cat >"$BENCH_WORK/registry/config.yml" <<YML
version: 0.1
log:
  level: error
  accesslog: {disabled: false}
storage:
  filesystem: {rootdirectory: $BENCH_WORK/registry/storage}
  delete: {enabled: true}
http: {addr: 127.0.0.1:$port}
YML
    docker-registry serve "$BENCH_WORK/registry/config.yml" >"$REGISTRY_LOG" 2>&1 &
    REGISTRY_PID=$!
    REGISTRY=127.0.0.1:$port
    local _
    for _ in $(seq 100); do
        curl -fs "http://$REGISTRY/v2/" >/dev/null && return 0
        sleep 0.1
    done
    die "docker-registry did not start; see $REGISTRY_LOG"
}

# A second, empty registry in $1 to copy into (SINK, SINK_PID): each copy
# row gets a fresh one, so every blob is really sent.
start_sink() {
    local port dir=$1
    port=$(free_port)
    mkdir -p "$dir"
    cat >"$dir/config.yml" <<YML
version: 0.1
log: {level: error}
storage:
  filesystem: {rootdirectory: $dir/storage}
http: {addr: 127.0.0.1:$port}
YML
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    SINK_PID=$!
    SINK=127.0.0.1:$port
    local _
    for _ in $(seq 100); do
        curl -fs "http://$SINK/v2/" >/dev/null && return 0
        sleep 0.1
    done
    die "the sink registry did not start; see $dir/log"
}

stop_sink() {
    if [ -n "${SINK_PID:-}" ]; then
        kill "$SINK_PID" 2>/dev/null || true
        wait "$SINK_PID" 2>/dev/null || true
        SINK_PID=
    fi
}

stop_registry() {
    if [ -n "${REGISTRY_PID:-}" ]; then
        kill "$REGISTRY_PID" 2>/dev/null || true
        wait "$REGISTRY_PID" 2>/dev/null || true
        REGISTRY_PID=
    fi
}
