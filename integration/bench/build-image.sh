#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the benchmark images as OCI layouts under $BENCH_WORK/images, once:
#
#   debian  a debootstrap bookworm minbase rootfs, then layers adding
#           python3+perl, gcc+libc6-dev, python3-numpy+git (four gzip
#           layers, ~900 MB uncompressed, ~16k entries), each cut by
#           `umoci repack` so deletions become proper whiteouts;
#   big     one ~2 GiB layer: 1 GiB of random bytes and 1 GiB of text,
#           to show whether memory stays flat with a large layer.
#
# A finished image is marked with a .done file and never rebuilt; delete
# $BENCH_WORK/images/NAME to rebuild it. Usage: build-image.sh debian|big
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"

[ "$(id -u)" -eq 0 ] || die "building the images needs root (debootstrap, chroot)"

# Filesystems mounted into a chroot, unmounted on any exit so that a
# failed build never leaves /proc of the host inside a work dir.
MOUNTS=()
unmount_all() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTS[$i]}" 2>/dev/null || umount -l "${MOUNTS[$i]}" 2>/dev/null || true
    done
    MOUNTS=()
}
trap unmount_all EXIT
trap 'exit 130' INT TERM

# A work dir must never be removed while something is mounted inside it
# (an interrupted build's /proc or /sys).
remove_dir() {
    local dir=$1
    if awk -v d="$dir/" 'index($2, d) == 1 {found = 1} END {exit !found}' /proc/self/mounts; then
        die "something is still mounted under $dir; unmount it first"
    fi
    rm -rf --one-file-system "$dir"
}

# Runs a shell command inside the rootfs with /proc and /sys mounted,
# services prevented from starting and the host's DNS configuration;
# everything is put back as it was before the layer is cut.
in_chroot() {
    local root=$1 script=$2 resolv_saved=no
    mount -t proc proc "$root/proc"
    MOUNTS+=("$root/proc")
    mount -t sysfs sysfs "$root/sys"
    MOUNTS+=("$root/sys")
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    if [ -e "$root/etc/resolv.conf" ] || [ -L "$root/etc/resolv.conf" ]; then
        mv "$root/etc/resolv.conf" "$root/etc/resolv.conf.bench"
        resolv_saved=yes
    fi
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    local rc=0
    chroot "$root" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
        /bin/sh -ec "$script" || rc=$?
    rm -f "$root/etc/resolv.conf" "$root/usr/sbin/policy-rc.d"
    if [ "$resolv_saved" = yes ]; then
        mv "$root/etc/resolv.conf.bench" "$root/etc/resolv.conf"
    fi
    unmount_all
    mountpoint -q "$root/proc" && die "$root/proc is still mounted"
    [ "$rc" -eq 0 ] || die "chroot step failed ($rc): $script"
}

# apt-get install in the chroot, leaving no package lists or .debs behind
# so each layer holds only what the packages install.
apt_layer() {
    local root=$1
    shift
    in_chroot "$root" "apt-get update -qq
apt-get install -y -qq $* >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt/eipp.log.xz"
}

# Cuts everything changed in the bundle since the last repack as a new
# layer (gzip), and refreshes the bundle so the next layer is a diff.
cut_layer() {
    local dir=$1 comment=$2
    umoci repack --refresh-bundle --history.created_by "$comment" \
        --image "$dir/oci:latest" "$dir/bundle"
}

build_debian() {
    local dir=$1 mirror
    mirror=${BENCH_MIRROR:-$(default_mirror)}
    umoci init --layout "$dir/oci"
    umoci new --image "$dir/oci:latest"
    umoci unpack --image "$dir/oci:latest" "$dir/bundle"
    local root=$dir/bundle/rootfs

    log "debian: debootstrap --variant=minbase bookworm from $mirror"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$dir/debootstrap.log" 2>&1 ||
        die "debootstrap failed; see $dir/debootstrap.log"
    rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* "$root/debootstrap"
    cut_layer "$dir" "debootstrap --variant=minbase bookworm"

    local pkgs
    for pkgs in "python3 perl" "gcc libc6-dev" "python3-numpy git"; do
        log "debian: layer apt-get install $pkgs"
        apt_layer "$root" "$pkgs"
        cut_layer "$dir" "apt-get install $pkgs"
    done

    umoci config --image "$dir/oci:latest" \
        --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --config.env LANG=C.UTF-8 --config.workingdir / --config.cmd /bin/bash
}

build_big() {
    local dir=$1
    umoci init --layout "$dir/oci"
    umoci new --image "$dir/oci:latest"
    umoci unpack --image "$dir/oci:latest" "$dir/bundle"
    local data=$dir/bundle/rootfs/data i
    mkdir -p "$data/random" "$data/text"
    log "big: 1 GiB of random bytes and 1 GiB of text in one layer"
    for i in $(seq 0 7); do
        head -c 128M /dev/urandom >"$data/random/chunk$i.bin"
    done
    # Numbered lines compress about as well as typical text (~4:1).
    for i in $(seq 0 7); do
        { seq -f "line %.0f of a compressible file; the quick brown fox" \
            $((i * 2000000)) $((i * 2000000 + 2400000)) || true; } |
            head -c 128M >"$data/text/chunk$i.txt"
    done
    cut_layer "$dir" "2 GiB of random and text"
    umoci config --image "$dir/oci:latest" --config.cmd /bin/true
}

main() {
    local name=${1:?usage: build-image.sh debian|big}
    local dir=$BENCH_WORK/images/$name
    if [ -e "$dir/.done" ]; then
        log "$name: already built in $dir"
        return 0
    fi
    ensure_tools umoci:umoci debootstrap:debootstrap
    remove_dir "$dir"
    mkdir -p "$dir"
    case "$name" in
        debian) build_debian "$dir" ;;
        big) build_big "$dir" ;;
        *) die "unknown image $name" ;;
    esac
    umoci gc --layout "$dir/oci"
    # The unpacked bundle is only scaffolding; the layout is the image.
    remove_dir "$dir/bundle"
    touch "$dir/.done"
    log "$name: built in $dir/oci"
}

main "$@"
