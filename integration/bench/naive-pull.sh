#!/usr/bin/env bash
# The naive pipeline a user could write by hand, as a lower bound for
# "just download and untar": fetch the manifest, then for each layer in
# order `curl blob | gzip -dc | tar -x`, one after another. Whiteouts are
# not applied and nothing is verified, so it does less than the real tools.
# Usage: naive-pull.sh HOST:PORT REPO TAG DIR   (plain HTTP)
set -euo pipefail
registry=$1 repo=$2 tag=$3 dir=$4
base=http://$registry/v2/$repo

mkdir -p "$dir"
layers=$(curl -fsS \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "$base/manifests/$tag" |
    python3 -c 'import json, sys; print("\n".join(l["digest"] for l in json.load(sys.stdin)["layers"]))')
for digest in $layers; do
    curl -fsS "$base/blobs/$digest" | gzip -dc | tar -x -C "$dir"
done
