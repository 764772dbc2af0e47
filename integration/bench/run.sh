#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `make bench`: occystrap side by side with the tools a user would pick
# instead, on images built here and served by a local docker-registry.
# See integration/bench/README.md for what is measured and the knobs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_BIG_RUNS=${BENCH_BIG_RUNS:-3}
BENCH_IMAGES=${BENCH_IMAGES:-debian big}
BENCH_TOOLS=${BENCH_TOOLS:-occystrap-bundle occystrap-export occystrap-bundle-warm skopeo-umoci skopeo-archive py-oci py-tar naive occystrap-bundle-link occystrap-bundle-warm-link occystrap-bundle-archive occystrap-bundle-oci occystrap-copy-oci skopeo-oci occystrap-copy-registry skopeo-copy-registry occystrap-copy-engine export-docker-load occystrap-check occystrap-search occystrap-bundle-overlay-warm occystrap-run-warm docker-run-warm occystrap-bundle-overlay-cold containerd-snapshot-warm occystrap-bundle-store-copy occystrap-bundle-warm-xfs occystrap-bundle-store-copy-xfs occystrap-bundle-overlay-warm-xfs}
BENCH_LINK=${BENCH_LINK:-1gbit}
BENCH_RESULTS=${BENCH_RESULTS:-$here/RESULTS.md}
BENCH_PY_OCCYSTRAP=${BENCH_PY_OCCYSTRAP:-occystrap}
BENCH_FS=${BENCH_FS:-ext4}
BENCH_FS_SIZE=${BENCH_FS_SIZE:-16G}

[ "$(id -u)" -eq 0 ] || die "make bench needs root (image build, tar -x of device nodes)"

ensure_tools skopeo:skopeo umoci:umoci docker-registry:docker-registry \
    debootstrap:debootstrap curl:curl time:time python3:python3 tc:iproute2
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    log "installing python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi

RUN_DIR=$BENCH_WORK/run
# Where the tools write; a filesystem of its own unless BENCH_FS=none.
OUT_ROOT=$RUN_DIR/out
OUT_FS_IMAGE=$BENCH_WORK/outputs.$BENCH_FS
# The *-xfs tools' work dirs (layer store, cache and bundles together, as
# reflinks stay within one filesystem): a fresh XFS with reflink=1.
XFS_ROOT=$RUN_DIR/xfs
XFS_FS_IMAGE=$BENCH_WORK/outputs.xfs
RAW=$RUN_DIR/raw.tsv
META=$RUN_DIR/meta.tsv
VENV=$BENCH_WORK/venv
OCC=$repo_root/target/release/occystrap

cleanup() {
    shape_link off
    stop_registry
    rm -rf "${OUT_ROOT:?}"/*
    if mountpoint -q "$OUT_ROOT"; then
        umount "$OUT_ROOT" && rm -f "$OUT_FS_IMAGE"
    fi
    if mountpoint -q "$XFS_ROOT"; then
        rm -rf "${XFS_ROOT:?}"/*
        umount "$XFS_ROOT" && rm -f "$XFS_FS_IMAGE"
    fi
    # mount -o loop frees its loop device on umount; one left by a run
    # that died between losetup and mount is freed here.
    if [ -e "$XFS_FS_IMAGE" ] && ! mountpoint -q "$XFS_ROOT"; then
        losetup -j "$XFS_FS_IMAGE" | cut -d: -f1 | xargs -r -n1 losetup -d
        rm -f "$XFS_FS_IMAGE"
    fi
}
trap cleanup EXIT

# ---- preparation (not timed) -------------------------------------------

build_images() {
    local name
    for name in $BENCH_IMAGES; do
        bash "$here/build-image.sh" "$name"
        if [ ! -e "$BENCH_WORK/images/$name/describe.json" ]; then
            log "$name: counting layer sizes and entries"
            python3 "$here/describe.py" "$BENCH_WORK/images/$name/oci" \
                "$BENCH_WORK/images/$name/describe.json.tmp"
            mv "$BENCH_WORK/images/$name/describe.json.tmp" "$BENCH_WORK/images/$name/describe.json"
        fi
    done
}

# Docker schema 2 manifests: every tool here (and docker-registry's
# content negotiation for older clients) understands them.
push_images() {
    local name
    for name in $BENCH_IMAGES; do
        log "pushing $name to $REGISTRY/bench/$name:latest"
        skopeo copy --quiet --format v2s2 --dest-tls-verify=false \
            "oci:$BENCH_WORK/images/$name/oci:latest" "docker://$REGISTRY/bench/$name:latest"
    done
}

build_occystrap() {
    log "cargo build --release"
    (cd "$repo_root" && cargo build --release --quiet) || die "cargo build --release failed"
}

setup_python_occystrap() {
    if [ ! -x "$VENV/bin/occystrap" ]; then
        log "installing the Python occystrap ($BENCH_PY_OCCYSTRAP) in $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet "$BENCH_PY_OCCYSTRAP"
    fi
}

# The engine rows need a Docker engine: start Debian's dockerd if none
# answers (the tests do the same).
ensure_engine() {
    case " $BENCH_TOOLS " in
        *" containerd-snapshot-warm "*) ensure_tools containerd:containerd ctr:containerd ;;
    esac
    case " $BENCH_TOOLS " in
        *" occystrap-copy-engine "* | *" export-docker-load "* | *" docker-run-warm "*) ;;
        *) return 0 ;;
    esac
    ensure_tools docker:docker.io
    docker info >/dev/null 2>&1 && return 0
    log "starting dockerd"
    dockerd >"$BENCH_WORK/dockerd.log" 2>&1 &
    local _
    for _ in $(seq 240); do
        docker info >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    die "dockerd did not start; see $BENCH_WORK/dockerd.log"
}

occystrap_has_cache() {
    "$OCC" bundle --help 2>/dev/null | grep -q -- '--cache'
}

# Outputs go to a fresh, journaled ext4 on a loop device. Two reasons: the
# same starting state for every tool, and ext4 *without* a journal (this
# machine's root filesystem) checks every recently deleted inode when it
# allocates one, so each run slows down the runs after it: occystrap's
# bundle took 4.8, 7.5, 12.0, 16.9 s in four back-to-back runs there, tar
# the same. No tool is spared or favoured; BENCH_FS=none measures in
# $BENCH_WORK as it is.
setup_output_fs() {
    mkdir -p "$OUT_ROOT"
    if mountpoint -q "$OUT_ROOT"; then umount "$OUT_ROOT"; fi
    [ "$BENCH_FS" = none ] && return 0
    [ "$BENCH_FS" = ext4 ] || die "BENCH_FS must be ext4 or none"
    ensure_tools mkfs.ext4:e2fsprogs
    rm -f "$OUT_FS_IMAGE"
    truncate -s "$BENCH_FS_SIZE" "$OUT_FS_IMAGE"
    # Inode tables and journal written now, not by a kernel thread mid-run.
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$OUT_FS_IMAGE"
    mount -o loop "$OUT_FS_IMAGE" "$OUT_ROOT" ||
        die "cannot loop-mount $OUT_FS_IMAGE (BENCH_FS=none writes to $BENCH_WORK instead)"
}

wants_xfs() { [[ " $BENCH_TOOLS " == *"-xfs "* ]]; }

# The *-xfs tools write to a second loop filesystem, XFS with reflinks
# (`cp --reflink=auto` shares blocks there), as big as the ext4 one and
# made whatever BENCH_FS says: only when such a tool is selected.
setup_xfs_fs() {
    mkdir -p "$XFS_ROOT"
    if mountpoint -q "$XFS_ROOT"; then umount "$XFS_ROOT"; fi
    wants_xfs || return 0
    ensure_tools mkfs.xfs:xfsprogs xfs_info:xfsprogs filefrag:e2fsprogs
    rm -f "$XFS_FS_IMAGE"
    truncate -s "$BENCH_FS_SIZE" "$XFS_FS_IMAGE"
    mkfs.xfs -q -f -m reflink=1 "$XFS_FS_IMAGE"
    mount -o loop "$XFS_FS_IMAGE" "$XFS_ROOT" || die "cannot loop-mount $XFS_FS_IMAGE"
}

# ---- measuring ----------------------------------------------------------

# Blob downloads the registry has logged so far (HEAD requests excluded)
# from clients whose User-Agent starts with $1 (default: any), so that a
# request of another tool, or of someone else, is not counted against the
# tool being measured.
blob_gets() {
    grep -cE "\"GET /v2/[^ ]*/blobs/[^\"]*\" [0-9]+ [0-9]+ \"[^\"]*\" \"${1:-}" "$REGISTRY_LOG" || true
}

# The User-Agent prefix each tool sends.
agent_of() {
    case "$1" in
        occystrap-*) echo 'occystrap/' ;;
        skopeo-*) echo 'skopeo/' ;;
        py-*) echo 'Mozilla/5.0 [^"]*Occy Strap/' ;;
        naive) echo 'curl/' ;;
    esac
}

# KiB in use on the filesystem holding $1, once written out: with
# reflinks `du` counts shared blocks once per file, `df` as the disk does.
used_kib() {
    settle
    df --output=used "$1" | tail -n 1 | tr -d ' '
}

# Once per run: the extents of the largest file of a store-copy bundle
# ($1) and of the stored layer file it was copied from (in the store, $2),
# as `filefrag -v` shows them ("shared" where the blocks are reflinked),
# and, as a control, of a `cp --reflink=always` of that stored file made
# straight from its layer directory on the same filesystem, no overlay
# between. For the bench log; the last line sums it up.
reflink_proof() {
    local bundle=$1 store=$2 out=$RUN_DIR/reflink-proof.txt rel file copied
    local control=$1.reflink-control
    [ -e "$out" ] && return 0
    rel=$(cd "$bundle/rootfs" && find . -xdev -type f -printf '%s %P\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
    file=$bundle/rootfs/$rel
    copied=$(find "$store" -xdev -type f -path "*/$rel" -size "$(stat -c %s "$file")c" | head -n 1)
    local in_bundle in_control=none
    in_bundle=$(extents_shared "$file")
    {
        printf 'largest file of a store-copy bundle: /%s (%s bytes) on %s\n' "$rel" "$(stat -c %s "$file")" \
            "$(findmnt -no FSTYPE --target "$file") $(xfs_info "$(findmnt -no TARGET --target "$file")" 2>/dev/null |
                grep -o 'reflink=[01]')"
        filefrag -v "$file"
        if [ -n "$copied" ]; then
            printf '\nthe stored layer file it was copied from:\n'
            filefrag -v "$copied"
            printf '\ncontrol: cp --reflink=always of the stored file, from its layer directory, no overlay:\n'
            if cp --reflink=always "$copied" "$control"; then
                filefrag -v "$control" "$copied"
                in_control=$(extents_shared "$control")
            fi
            rm -f "$control"
        fi
        printf 'store-copy bundle: %s extents shared; control reflink: %s extents shared\n' "$in_bundle" "$in_control"
    } >"$out" 2>&1
}

# "N of M" extents of file $1 that filefrag flags as shared.
extents_shared() {
    local listing shared total
    listing=$(filefrag -v "$1" 2>/dev/null)
    shared=$(grep -cE '^ *[0-9]+:.*shared' <<<"$listing" || true)
    total=$(grep -cE '^ *[0-9]+:' <<<"$listing" || true)
    printf '%s of %s\n' "$shared" "$total"
}

# Runs one command under GNU time; appends "wall_s maxrss_kib user_s
# sys_s" to the file named by $1.
timed() {
    local out=$1
    shift
    /usr/bin/time -f '%e %M %U %S' -a -o "$out" "$@"
}

# The commands for one tool, run in $work (fresh and empty). Each timed
# step appends a line to $work/time; the sum of the seconds is the tool's
# time (wall and CPU) and the largest maxrss its peak.
run_tool() {
    local tool=$1 name=$2 work=$3
    local ref=$REGISTRY/bench/$name:latest t=$work/time
    local cache_args=()
    if occystrap_has_cache; then
        cache_args=(--cache "$work/occystrap-cache")
    fi
    case "$tool" in
        occystrap-bundle | occystrap-bundle-link)
            timed "$t" "$OCC" "${cache_args[@]}" bundle "$ref" "$work/bundle" ;;
        occystrap-export)
            timed "$t" "$OCC" "${cache_args[@]}" export "$ref" "$work/image.tar" ;;
        occystrap-bundle-warm | occystrap-bundle-warm-link | occystrap-bundle-warm-xfs)
            # Fill the cache first (untimed), then time a second bundle;
            # the disk space it took is recorded too.
            "$OCC" "${cache_args[@]}" bundle "$ref" "$work/first" &&
                rm -rf "$work/first" && settle &&
                blob_gets "$(agent_of "$tool")" >"$work/gets-before" &&
                used_kib "$work" >"$work/used-before" &&
                timed "$t" "$OCC" "${cache_args[@]}" bundle "$ref" "$work/bundle" &&
                used_kib "$work" >"$work/used-after" ;;
        occystrap-bundle-store-copy | occystrap-bundle-store-copy-xfs)
            # The layers stored first (untimed, that bundle removed): what
            # is timed is a copy bundle made from them, `cp -a
            # --reflink=auto` through a read-only overlay; then its disk
            # space, and once per run which of its extents are shared.
            "$OCC" "${cache_args[@]}" --store "$work/store" bundle --rootfs store-copy "$ref" "$work/first" &&
                rm -rf "$work/first" && settle &&
                blob_gets "$(agent_of "$tool")" >"$work/gets-before" &&
                used_kib "$work" >"$work/used-before" &&
                timed "$t" "$OCC" "${cache_args[@]}" --store "$work/store" bundle --rootfs store-copy \
                    "$ref" "$work/bundle" &&
                used_kib "$work" >"$work/used-after" &&
                if [[ $tool == *-xfs ]]; then reflink_proof "$work/bundle" "$work/store"; fi ;;
        occystrap-bundle-archive)
            # The archive is made first, untimed: what is timed is the
            # air-gapped step, from a tarball with no registry.
            "$OCC" --no-cache export "$ref" "$work/carried.tar" && settle &&
                blob_gets "$(agent_of "$tool")" >"$work/gets-before" &&
                timed "$t" "$OCC" bundle "docker-archive:$work/carried.tar" "$work/bundle" ;;
        occystrap-bundle-oci)
            "$OCC" --no-cache copy "$ref" "oci:$work/layout:bench" && settle &&
                blob_gets "$(agent_of "$tool")" >"$work/gets-before" &&
                timed "$t" "$OCC" bundle "oci:$work/layout:bench" "$work/bundle" ;;
        occystrap-copy-registry)
            start_sink "$work/sink" &&
                timed "$t" "$OCC" "${cache_args[@]}" copy "$ref" "docker://$SINK/bench/$name:latest"
            local status=$?
            stop_sink
            return $status ;;
        skopeo-copy-registry)
            start_sink "$work/sink" &&
                timed "$t" skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
                    "docker://$ref" "docker://$SINK/bench/$name:latest"
            local status=$?
            stop_sink
            return $status ;;
        occystrap-copy-engine)
            docker rmi -f "occystrap-bench-$name:latest" >/dev/null 2>&1
            timed "$t" "$OCC" "${cache_args[@]}" copy "$ref" "docker-daemon:occystrap-bench-$name:latest"
            local status=$?
            docker rmi -f "occystrap-bench-$name:latest" >/dev/null 2>&1
            return $status ;;
        export-docker-load)
            docker rmi -f "$ref" >/dev/null 2>&1
            timed "$t" "$OCC" "${cache_args[@]}" export "$ref" "$work/image.tar" &&
                timed "$t" docker load -q -i "$work/image.tar" >/dev/null
            local status=$?
            docker rmi -f "$ref" >/dev/null 2>&1
            return $status ;;
        occystrap-bundle-overlay-warm | occystrap-bundle-overlay-warm-xfs)
            # The layers stored first (untimed): what is timed is one more
            # container's rootfs, as with containerd's snapshot prepare.
            "$OCC" "${cache_args[@]}" --store "$work/store" bundle --rootfs overlay "$ref" "$work/first" &&
                settle &&
                blob_gets "$(agent_of "$tool")" >"$work/gets-before" &&
                used_kib "$work" >"$work/used-before" &&
                timed "$t" "$OCC" "${cache_args[@]}" --store "$work/store" bundle --rootfs overlay \
                    "$ref" "$work/bundle" &&
                used_kib "$work" >"$work/used-after"
            local status=$?
            "$OCC" --store "$work/store" remove "$work/first" "$work/bundle" 2>/dev/null
            return $status ;;
        occystrap-bundle-overlay-cold)
            # An empty store: every layer unpacked into it, then mounted.
            timed "$t" "$OCC" "${cache_args[@]}" --store "$work/store" bundle --rootfs overlay \
                "$ref" "$work/bundle"
            local status=$?
            "$OCC" --store "$work/store" remove "$work/bundle" 2>/dev/null
            return $status ;;
        containerd-snapshot-warm)
            containerd_snapshot "$ref" "$work"
            return $? ;;
        occystrap-run-warm)
            "$OCC" "${cache_args[@]}" --store "$work/store" run "$ref" -- true && settle &&
                timed "$t" "$OCC" "${cache_args[@]}" --store "$work/store" run "$ref" -- true ;;
        docker-run-warm)
            docker rmi -f "$ref" >/dev/null 2>&1
            "$OCC" export "$ref" "$work/image.tar" && docker load -q -i "$work/image.tar" >/dev/null &&
                docker run --rm --network none "$ref" true && settle &&
                timed "$t" docker run --rm --network none "$ref" true
            local status=$?
            docker rmi -f "$ref" >/dev/null 2>&1
            return $status ;;
        occystrap-check)
            timed "$t" "$OCC" "${cache_args[@]}" check "$ref" >"$work/report" ;;
        occystrap-search)
            timed "$t" "$OCC" "${cache_args[@]}" search "$ref" 'usr/bin/*sh' >"$work/found" ;;
        occystrap-copy-oci)
            timed "$t" "$OCC" "${cache_args[@]}" copy "$ref" "oci:$work/layout:bench" ;;
        skopeo-oci)
            timed "$t" skopeo copy --quiet --src-tls-verify=false \
                "docker://$ref" "oci:$work/layout:bench" ;;
        skopeo-umoci)
            timed "$t" skopeo copy --quiet --src-tls-verify=false \
                "docker://$ref" "oci:$work/layout:bench" &&
                timed "$t" umoci unpack --image "$work/layout:bench" "$work/bundle" >/dev/null ;;
        skopeo-archive)
            timed "$t" skopeo copy --quiet --src-tls-verify=false \
                "docker://$ref" "docker-archive:$work/image.tar:$ref" ;;
        py-oci)
            # --no-verify: its verifier looks for a docker-save manifest.json
            # in the bundle and fails every oci:// run otherwise (0.4.17).
            timed "$t" "$VENV/bin/occystrap" --insecure --no-verify process \
                "registry://$REGISTRY/bench/$name:latest" "oci://$work/bundle" ;;
        py-tar)
            timed "$t" "$VENV/bin/occystrap" --insecure process \
                "registry://$REGISTRY/bench/$name:latest" "tar://$work/image.tar" ;;
        naive)
            timed "$t" bash "$here/naive-pull.sh" "$REGISTRY" "bench/$name" latest "$work/rootfs" ;;
        *) die "unknown tool $tool" ;;
    esac
}

# containerd's warm path, as the issue's bar: a private containerd (root
# and state in $2) pulls and unpacks the image into its overlayfs
# snapshotter, untimed; timed is one new writable snapshot of it,
# prepared and mounted (`ctr snapshots prepare --target`).
containerd_snapshot() {
    local ref=$1 work=$2 dir=$2/containerd status
    mkdir -p "$dir"
    cat >"$dir/config.toml" <<TOML
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/sock"
TOML
    containerd --config "$dir/config.toml" >"$dir/log" 2>&1 &
    local pid=$! _
    for _ in $(seq 100); do [ -S "$dir/sock" ] && break; sleep 0.1; done
    local ctr=(ctr -a "$dir/sock")
    # The top layer's chain ID names the committed snapshot to start from.
    local chain="" diff
    for diff in $("$OCC" --format json inspect "$ref" | python3 -c \
        'import json,sys; print(" ".join(l["diffID"] for l in json.load(sys.stdin)["layers"]))'); do
        if [ -z "$chain" ]; then chain=$diff; else
            chain="sha256:$(printf '%s %s' "$chain" "$diff" | sha256sum | cut -d' ' -f1)"
        fi
    done
    mkdir -p "$work/rootfs"
    "${ctr[@]}" images pull --plain-http "$ref" >/dev/null && settle &&
        timed "$work/time" sh -c 'eval "$("$@")"' prepare-and-mount \
            "${ctr[@]}" snapshots prepare --target "$work/rootfs" bench-rw "$chain"
    status=$?
    umount "$work/rootfs" 2>/dev/null
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    umount -R "$dir/root" 2>/dev/null
    return $status
}

# The loopback registry costs next to nothing to download from, which
# hides what a cache saves. The *-link tools run with the loopback
# interface limited to $BENCH_LINK (tc tbf), like a registry across a
# network.
shape_link() {
    if [ "$1" = on ]; then
        tc qdisc replace dev lo root tbf rate "$BENCH_LINK" burst 512kb latency 100ms
    elif tc qdisc show dev lo 2>/dev/null | grep -q '^qdisc tbf'; then
        tc qdisc del dev lo root
    fi
}

# Wait until the previous run's writes have reached the disk: twice sync,
# since the loop filesystem's writes become the backing file's dirty
# pages, then up to 60 s for what the kernel still counts as dirty.
settle() {
    sync
    sync
    local _
    for _ in $(seq 120); do
        awk '/^(Dirty|Writeback):/ {kb += $2} END {exit !(kb < 32768)}' /proc/meminfo && return 0
        sleep 0.5
    done
}

# One measurement: a cold, empty output dir (and occystrap cache), the
# disk quiet, then the tool; records a line in $RAW.
measure() {
    local tool=$1 name=$2 run=$3
    local work=$OUT_ROOT/$tool
    [[ $tool == *-xfs ]] && work=$XFS_ROOT/$tool
    rm -rf "$work"
    mkdir -p "$work/tmp"
    settle
    local before status=ok agent
    agent=$(agent_of "$tool")
    before=$(blob_gets "$agent")
    [[ $tool == *-link ]] && shape_link on
    if ! TMPDIR=$work/tmp XDG_CACHE_HOME=$work/xdg-cache \
        run_tool "$tool" "$name" "$work" >"$work/stdout" 2>"$work/stderr"; then
        status=failed
        mkdir -p "$RUN_DIR/failures"
        cp "$work/stderr" "$RUN_DIR/failures/$name-$tool-$run.stderr"
        log "$tool on $name (run $run) FAILED: $(grep -v '^Command exited' "$work/stderr" | tail -n 3 | tr '\n' ' ')"
    fi
    shape_link off
    [ -e "$work/gets-before" ] && before=$(cat "$work/gets-before")
    local gets seconds=0 rss=0 cpu=0 used=-
    gets=$(($(blob_gets "$agent") - before))
    # KiB the timed bundle took on its filesystem, where it was measured.
    if [ -s "$work/used-before" ] && [ -s "$work/used-after" ] && [ "$status" = ok ]; then
        used=$(($(cat "$work/used-after") - $(cat "$work/used-before")))
    fi
    if [ -s "$work/time" ]; then
        # Lines that are not numbers are GNU time's "Command exited with ...".
        read -r seconds rss cpu < <(awk '$1 ~ /^[0-9.]+$/ {s += $1; c += $3 + $4; if ($2 > m) m = $2}
            END {printf "%.2f %d %.2f\n", s, m, c}' "$work/time")
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$tool" "$run" "$seconds" "$rss" "$gets" "$status" "$cpu" "$used" >>"$RAW"
    log "$name $tool run $run: ${seconds}s (CPU ${cpu}s), peak RSS $((rss / 1024)) MiB, $gets blob GETs$([ "$used" = - ] || echo ", $((used / 1024)) MiB on disk"), $status"
    rm -rf "$work"
}

benchmark() {
    local name runs run tool
    for name in $BENCH_IMAGES; do
        runs=$BENCH_RUNS
        [ "$name" = big ] && runs=$BENCH_BIG_RUNS
        # Tools interleaved within each round, so slow drifts in the
        # machine's load spread over all of them.
        for run in $(seq 1 "$runs"); do
            for tool in $BENCH_TOOLS; do
                if [[ $tool == occystrap-bundle-warm* ]] && ! occystrap_has_cache; then
                    continue
                fi
                if [[ $tool == *-link ]] && [ "$BENCH_LINK" = none ]; then
                    continue
                fi
                measure "$tool" "$name" "$run"
            done
        done
    done
}

# ---- describing ---------------------------------------------------------

meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

first_line() { "$@" 2>&1 | head -n 1 || true; }

describe_machine() {
    meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
    meta nproc "$(nproc)"
    meta cpu "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
    meta memory "$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    meta kernel "$(uname -sr)"
    meta disk "$(df -hT "$BENCH_WORK" | awk 'NR == 2 {print $2 " on " $1}') ($(findmnt -no OPTIONS --target "$BENCH_WORK"))"
    meta "outputs written to" "$(if [ "$BENCH_FS" = none ]; then echo "$OUT_ROOT, on the disk above"; else echo "a fresh $BENCH_FS_SIZE ext4 (with journal) on a loop device, made for this run"; fi)"
    if wants_xfs; then
        meta "*-xfs rows written to" "a fresh $BENCH_FS_SIZE XFS (mkfs.xfs -m reflink=1, $(first_line mkfs.xfs -V)) on a loop device, made for this run: layer store, cache and bundles"
    fi
    meta "occystrap (this tree)" "$(first_line "$OCC" --version), commit $(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo_root" diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted changes')"
    meta rustc "$(first_line rustc --version)"
    meta "Python occystrap" "$("$VENV/bin/pip" show occystrap 2>/dev/null | awk '/^Version/ {print $2}') on $(first_line "$VENV/bin/python" --version)"
    meta skopeo "$(first_line skopeo --version)"
    meta umoci "$(first_line umoci --version)"
    meta docker-registry "$(dpkg-query -W -f '${Version}' docker-registry 2>/dev/null || echo '?')"
    meta curl "$(first_line curl --version | awk '{print $1, $2}')"
    meta gzip "$(first_line gzip --version)"
    meta tar "$(first_line tar --version)"
}

main() {
    mkdir -p "$BENCH_WORK"
    if mountpoint -q "$OUT_ROOT"; then umount "$OUT_ROOT"; fi
    if mountpoint -q "$XFS_ROOT"; then umount "$XFS_ROOT"; fi
    rm -rf "$RUN_DIR"
    mkdir -p "$RUN_DIR"
    build_images
    setup_output_fs
    setup_xfs_fs
    build_occystrap
    setup_python_occystrap
    ensure_engine
    start_registry
    log "registry on $REGISTRY (storage in $BENCH_WORK/registry)"
    push_images
    describe_machine
    meta "load average before" "$(cut -d' ' -f1-3 /proc/loadavg)"
    benchmark
    if [ -e "$RUN_DIR/reflink-proof.txt" ]; then
        log "reflinks in a store-copy bundle on XFS:"
        sed 's/^/   /' "$RUN_DIR/reflink-proof.txt" >&2
        meta "store-copy on XFS, filefrag -v of its largest file" "$(tail -n 1 "$RUN_DIR/reflink-proof.txt") (the listing: $RUN_DIR/reflink-proof.txt)"
    fi
    meta "load average after" "$(cut -d' ' -f1-3 /proc/loadavg)"
    meta runs "$BENCH_RUNS (debian), $BENCH_BIG_RUNS (big)"
    meta "shaped link" "$(if [ "$BENCH_LINK" = none ]; then echo none; else echo "$BENCH_LINK (tc tbf on lo) for the rows \"over a shaped link\""; fi)"
    meta "occystrap cache" "$(occystrap_has_cache && echo 'yes: cold runs use a fresh --cache dir' || echo 'none yet (no --cache option)')"
    local describe=()
    local name
    for name in $BENCH_IMAGES; do
        describe+=("$name=$BENCH_WORK/images/$name/describe.json")
    done
    python3 "$here/report.py" "$RAW" "$META" "$RUN_DIR/failures" "$BENCH_RESULTS" "${describe[@]}"
    cat "$BENCH_RESULTS"
}

main "$@"
