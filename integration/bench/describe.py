#!/usr/bin/env python3
"""Describes an OCI image layout for the results: per layer its compressed
and uncompressed size and tar entry count, read by streaming each blob.

Usage: describe.py LAYOUT_DIR OUT.json
"""

import gzip
import json
import os
import sys
import tarfile


def blob_path(layout, digest):
    algo, hexdigest = digest.split(":", 1)
    return os.path.join(layout, "blobs", algo, hexdigest)


class CountingReader:
    """Counts the bytes read through it (the uncompressed layer size)."""

    def __init__(self, inner):
        self.inner = inner
        self.count = 0

    def read(self, size=-1):
        data = self.inner.read(size)
        self.count += len(data)
        return data


def describe_layer(layout, descriptor):
    with open(blob_path(layout, descriptor["digest"]), "rb") as raw:
        counter = CountingReader(gzip.GzipFile(fileobj=raw))
        entries = 0
        with tarfile.open(fileobj=counter, mode="r|") as tar:
            for _ in tar:
                entries += 1
        # Drain the end-of-archive padding so the size is the whole tar.
        while counter.read(1 << 20):
            pass
    return {
        "digest": descriptor["digest"],
        "compressed": descriptor["size"],
        "uncompressed": counter.count,
        "entries": entries,
    }


def main():
    layout, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    with open(blob_path(layout, index["manifests"][0]["digest"])) as f:
        manifest = json.load(f)
    layers = [describe_layer(layout, d) for d in manifest["layers"]]
    with open(blob_path(layout, manifest["config"]["digest"])) as f:
        history = [
            h.get("created_by", "")
            for h in json.load(f).get("history", [])
            if not h.get("empty_layer")
        ]
    with open(out, "w") as f:
        json.dump({"layers": layers, "history": history}, f, indent=1)


if __name__ == "__main__":
    main()
