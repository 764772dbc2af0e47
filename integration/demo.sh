#!/usr/bin/env bash
# occystrap end to end on a machine with no network but Debian's archive:
# start a local registry, push a tiny busybox image built here, then
#   occystrap inspect / export → docker load → docker run
#   occystrap bundle → runc run
set -euo pipefail
cd "$(dirname "$0")/.."

# `make demo` installs what this needs first (make deps).
need() { command -v "$1" >/dev/null 2>&1; }
work=$(mktemp -d)
cleanup() {
    [ -n "${registry_pid:-}" ] && kill "$registry_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== building occystrap"
cargo build --release --quiet
occystrap=$PWD/target/release/occystrap

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/storage}}
http: {addr: 127.0.0.1:$port}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
echo "== local registry on 127.0.0.1:$port"

echo "== building a busybox image with umoci and pushing it with skopeo"
umoci init --layout "$work/oci" >/dev/null
umoci new --image "$work/oci:latest" >/dev/null
umoci unpack --image "$work/oci:latest" "$work/build" >/dev/null
mkdir -p "$work/build/rootfs/bin" "$work/build/rootfs/etc"
cp /bin/busybox "$work/build/rootfs/bin/busybox"
for applet in sh echo id cat ls; do ln -s busybox "$work/build/rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\ndemo:x:1000:1000:demo:/home/demo:/bin/sh\n' >"$work/build/rootfs/etc/passwd"
printf 'root:x:0:\ndemo:x:1000:\n' >"$work/build/rootfs/etc/group"
umoci repack --image "$work/oci:latest" "$work/build" >/dev/null
umoci config --image "$work/oci:latest" --config.user demo \
    --config.env PATH=/bin --config.cmd sh --config.cmd -c \
    --config.cmd 'echo "hello from $(id -un) in $(pwd)"' --config.workingdir /tmp >/dev/null
image="127.0.0.1:$port/demo/busybox:latest"
skopeo copy --quiet --dest-tls-verify=false "oci:$work/oci:latest" "docker://$image"

echo
echo "\$ occystrap inspect $image"
"$occystrap" inspect "$image"

echo
echo "\$ occystrap export $image busybox.tar"
"$occystrap" export "$image" "$work/busybox.tar"
if need docker && docker info >/dev/null 2>&1; then
    echo "\$ docker load -i busybox.tar && docker run --rm $image"
    docker load -i "$work/busybox.tar"
    docker run --rm --network none "$image"
    docker rmi -f "$image" >/dev/null
else
    echo "(no running Docker engine: skipping docker load; start one with 'dockerd &')"
fi

echo
echo "\$ occystrap bundle $image bundle && cd bundle && runc run demo-\$\$"
"$occystrap" bundle "$image" "$work/bundle"
(cd "$work/bundle" && runc run "demo-$$")
echo
echo "== done: the bundle's config.json runs as the image's user, in its working directory"
