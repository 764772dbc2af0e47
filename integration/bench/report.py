#!/usr/bin/env python3
"""Turns the raw timings of run.sh into integration/bench/RESULTS.md:
medians, ratios against occystrap, peak RSS, and the issue's targets.

Usage: report.py RAW.tsv META.tsv FAILURES_DIR OUT.md NAME=DESCRIBE.json...
"""

import json
import os
import re
import statistics
import sys

# tool id -> (label, output kind, the occystrap command it competes with)
TOOLS = {
    "occystrap-bundle": ("occystrap bundle", "bundle", "occystrap-bundle"),
    "occystrap-bundle-warm": ("occystrap bundle, warm cache", "bundle", "occystrap-bundle"),
    "occystrap-export": ("occystrap export", "tarball", "occystrap-export"),
    "skopeo-umoci": ("skopeo copy oci: + umoci unpack", "bundle", "occystrap-bundle"),
    "skopeo-archive": ("skopeo copy docker-archive:", "tarball", "occystrap-export"),
    "py-oci": ("Python occystrap process registry:// oci://", "bundle", "occystrap-bundle"),
    "py-tar": ("Python occystrap process registry:// tar://", "tarball", "occystrap-export"),
    "naive": ("curl | gzip -dc | tar -x, layer after layer", "rootfs", "occystrap-bundle"),
    "occystrap-bundle-archive": (
        "occystrap bundle docker-archive: (from our export, no registry)",
        "bundle",
        "occystrap-bundle",
    ),
    "occystrap-bundle-oci": (
        "occystrap bundle oci: (from our copy, no registry)",
        "bundle",
        "occystrap-bundle",
    ),
    "occystrap-copy-oci": ("occystrap copy docker:// oci:", "layout", "occystrap-copy-oci"),
    "occystrap-bundle-overlay-warm": (
        "occystrap bundle --rootfs overlay, layers stored",
        "bundle",
        "occystrap-bundle-overlay-warm",
    ),
    "occystrap-bundle-overlay-cold": (
        "occystrap bundle --rootfs overlay, empty store",
        "bundle",
        "occystrap-bundle",
    ),
    "containerd-snapshot-warm": (
        "ctr snapshots prepare + mount (containerd 1.6, image unpacked)",
        "bundle",
        "occystrap-bundle-overlay-warm",
    ),
    "occystrap-bundle-store-copy": (
        "occystrap bundle --rootfs store-copy, layers stored",
        "bundle",
        "occystrap-bundle-warm",
    ),
    "occystrap-bundle-warm-xfs": (
        "occystrap bundle, warm cache, on XFS",
        "bundle",
        "occystrap-bundle-warm-xfs",
    ),
    "occystrap-bundle-store-copy-xfs": (
        "occystrap bundle --rootfs store-copy, layers stored, on XFS (reflink=1)",
        "bundle",
        "occystrap-bundle-warm-xfs",
    ),
    "occystrap-bundle-overlay-warm-xfs": (
        "occystrap bundle --rootfs overlay, layers stored, on XFS",
        "bundle",
        "occystrap-bundle-warm-xfs",
    ),
    "occystrap-run-warm": ("occystrap run IMAGE -- true, layers stored", "run", "occystrap-run-warm"),
    "docker-run-warm": ("docker run --rm IMAGE true, image loaded", "run", "occystrap-run-warm"),
    "occystrap-check": ("occystrap check (every layer verified and parsed)", "report", "occystrap-export"),
    "occystrap-search": ("occystrap search 'usr/bin/*sh'", "report", "occystrap-export"),
    "occystrap-copy-registry": (
        "occystrap copy docker:// docker:// (another registry)",
        "registry",
        "occystrap-copy-registry",
    ),
    "skopeo-copy-registry": (
        "skopeo copy docker:// docker:// (another registry)",
        "registry",
        "occystrap-copy-registry",
    ),
    "occystrap-copy-engine": ("occystrap copy docker:// docker-daemon:", "engine", "occystrap-copy-engine"),
    "export-docker-load": ("occystrap export + docker load", "engine", "occystrap-copy-engine"),
    "skopeo-oci": ("skopeo copy docker:// oci:", "layout", "occystrap-copy-oci"),
    "occystrap-bundle-link": ("occystrap bundle, over a shaped link", "bundle", "occystrap-bundle-link"),
    "occystrap-bundle-warm-link": (
        "occystrap bundle, warm cache, over a shaped link",
        "bundle",
        "occystrap-bundle-link",
    ),
}

# (description, occystrap tool, other tool, largest allowed ratio)
RATIO_TARGETS = [
    ("bundle ≤ 0.2 × (skopeo copy + umoci unpack)", "occystrap-bundle", "skopeo-umoci", 0.2),
    ("bundle ≤ 0.5 × Python occystrap oci://", "occystrap-bundle", "py-oci", 0.5),
    ("bundle ≤ 0.25 × sequential curl | gzip -dc | tar -x", "occystrap-bundle", "naive", 0.25),
    ("export ≤ 0.3 × skopeo docker-archive:", "occystrap-export", "skopeo-archive", 0.3),
    ("export ≤ 0.5 × Python occystrap tar://", "occystrap-export", "py-tar", 0.5),
    ("bundle from a docker-archive ≤ 1 × from the registry", "occystrap-bundle-archive", "occystrap-bundle", 1.0),
    ("bundle from an OCI layout ≤ 1 × from the registry", "occystrap-bundle-oci", "occystrap-bundle", 1.0),
    ("copy registry → registry ≤ 0.5 × skopeo copy", "occystrap-copy-registry", "skopeo-copy-registry", 0.5),
    ("copy → docker-daemon ≤ 1 × export + docker load", "occystrap-copy-engine", "export-docker-load", 1.0),
    ("check ≤ 1 × export", "occystrap-check", "occystrap-export", 1.0),
    ("run -- true < 1 × docker run --rm", "occystrap-run-warm", "docker-run-warm", 1.0),
    (
        "warm overlay bundle ≤ 2 × containerd snapshot prepare + mount",
        "occystrap-bundle-overlay-warm",
        "containerd-snapshot-warm",
        2.0,
    ),
    ("cold bundle through the store ≤ 1.1 × cold copy bundle", "occystrap-bundle-overlay-cold", "occystrap-bundle", 1.1),
    ("search < 1 × export", "occystrap-search", "occystrap-export", 1.0),
    (
        "warm store-copy bundle ≤ 1 × warm copy bundle, both on XFS",
        "occystrap-bundle-store-copy-xfs",
        "occystrap-bundle-warm-xfs",
        1.0,
    ),
]
# (description, occystrap tool, the tool whose bundle's disk space it is
# held to, largest allowed ratio): reflinked blocks are not written again.
SPACE_TARGETS = [
    (
        "store-copy bundle's new disk space ≤ 0.5 × a copy bundle's, on XFS (blocks shared)",
        "occystrap-bundle-store-copy-xfs",
        "occystrap-bundle-warm-xfs",
        0.5,
    ),
]
RSS_LIMIT_KIB = 64 * 1024
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def load_runs(path):
    """{(image, tool): [(seconds, rss_kib, blob_gets, ok, cpu_seconds, used_kib), ...]}

    used_kib, the disk space the timed output took (df), is None where
    it was not measured ("-", or a raw file from before the column)."""
    runs = {}
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            image, tool, _run, secs, rss, gets, status, cpu = fields[:8]
            used = fields[8] if len(fields) > 8 else "-"
            runs.setdefault((image, tool), []).append(
                (
                    float(secs),
                    int(rss),
                    int(gets),
                    status == "ok",
                    float(cpu),
                    None if used == "-" else int(used),
                )
            )
    return runs


def load_meta(path):
    with open(path) as f:
        return [line.rstrip("\n").split("\t", 1) for line in f if "\t" in line]


class Summary:
    """Medians over the successful runs of one tool on one image."""

    def __init__(self, runs):
        ok = [r for r in runs if r[3]]
        self.total = len(runs)
        self.ok = len(ok)
        self.seconds = statistics.median(r[0] for r in ok) if ok else None
        self.low = min(r[0] for r in ok) if ok else None
        self.high = max(r[0] for r in ok) if ok else None
        self.rss_kib = max(r[1] for r in ok) if ok else None
        self.gets = max(r[2] for r in ok) if ok else None
        self.cpu = statistics.median(r[4] for r in ok) if ok else None
        used = [r[5] for r in ok if r[5] is not None]
        self.used_kib = statistics.median(used) if used else None


def fmt_s(value):
    return "—" if value is None else f"{value:.2f}"


def cell(text):
    """Text that stays inside one Markdown table cell."""
    return text.replace("|", "\\|")


def ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def image_section(name, describe, summaries):
    out = [f"### Image `{name}`", ""]
    layers = describe["layers"]
    history = describe.get("history", [])
    out += [
        "| layer | made by | compressed MB | uncompressed MB | entries |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for i, layer in enumerate(layers):
        made_by = history[i] if i < len(history) else ""
        out.append(
            f"| {i + 1} | {made_by} | {layer['compressed'] / 1e6:.1f} "
            f"| {layer['uncompressed'] / 1e6:.1f} | {layer['entries']} |"
        )
    out.append(
        f"| **all** | {len(layers)} layers, gzip "
        f"| {sum(x['compressed'] for x in layers) / 1e6:.1f} "
        f"| {sum(x['uncompressed'] for x in layers) / 1e6:.1f} "
        f"| {sum(x['entries'] for x in layers)} |"
    )
    out += [
        "",
        "| tool | output | median s | min–max s | × occystrap's time | median CPU s | peak RSS MiB | blob GETs | runs ok |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for tool, (label, kind, rival) in TOOLS.items():
        s = summaries.get(tool)
        if s is None:
            continue
        base = summaries.get(rival)
        r = ratio(s.seconds, base.seconds if base else None)
        spread = "—" if s.low is None else f"{s.low:.2f}–{s.high:.2f}"
        rss = "—" if s.rss_kib is None else f"{s.rss_kib / 1024:.0f}"
        gets = "—" if s.gets is None else str(s.gets)
        shown_ratio = fmt_ratio(r)
        out.append(
            f"| {cell(label)} | {kind} | {fmt_s(s.seconds)} | {spread} | {shown_ratio} "
            f"| {fmt_s(s.cpu)} | {rss} | {gets} | {s.ok}/{s.total} |"
        )
    out.append("")
    out += space_table(summaries)
    return out


def space_table(summaries):
    """The disk space of one bundle, for the tools where it was measured."""
    rows = [(t, s) for t, s in summaries.items() if s.used_kib is not None and t in TOOLS]
    if not rows:
        return []
    out = [
        "Disk space one bundle took on its filesystem: `df --output=used` "
        "before and after it, once written out (`du` counts a reflinked "
        "block once per file).",
        "",
        "| tool | median MiB on disk | × the warm copy bundle's, same filesystem |",
        "| --- | ---: | ---: |",
    ]
    for tool, s in sorted(rows, key=lambda r: list(TOOLS).index(r[0])):
        # The warm copy bundle on the same filesystem.
        base = summaries.get("occystrap-bundle-warm-xfs" if tool.endswith("-xfs") else "occystrap-bundle-warm")
        r = ratio(s.used_kib, base.used_kib if base else None)
        out.append(f"| {cell(TOOLS[tool][0])} | {s.used_kib / 1024:.0f} | {fmt_ratio(r)} |")
    out.append("")
    return out


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}"


def verdict(ok):
    if ok is None:
        return "not measured"
    return "pass" if ok else "**fail**"


def targets_section(images):
    out = [
        "## Targets (issue 6)",
        "",
        "Ratios are occystrap's median time divided by the other tool's, "
        "from the same run.",
        "",
        "| target | image | measured | result |",
        "| --- | --- | ---: | --- |",
    ]
    debian = images.get("debian", {})
    for text, ours, theirs, limit in RATIO_TARGETS:
        a, b = debian.get(ours), debian.get(theirs)
        r = ratio(a.seconds if a else None, b.seconds if b else None)
        measured = fmt_ratio(r)
        out.append(f"| {cell(text)} | debian | {measured} | {verdict(None if r is None else r <= limit)} |")
    for text, ours, theirs, limit in SPACE_TARGETS:
        a, b = debian.get(ours), debian.get(theirs)
        r = ratio(a.used_kib if a else None, b.used_kib if b else None)
        measured = "—" if r is None else f"{r:.2f} ({a.used_kib / 1024:.0f} / {b.used_kib / 1024:.0f} MiB)"
        out.append(f"| {cell(text)} | debian | {measured} | {verdict(None if r is None else r <= limit)} |")
    for name, summaries in images.items():
        for tool in ("occystrap-bundle", "occystrap-export"):
            s = summaries.get(tool)
            rss = s.rss_kib if s else None
            measured = "—" if rss is None else f"{rss / 1024:.0f} MiB"
            ok = None if rss is None else rss <= RSS_LIMIT_KIB
            out.append(f"| {tool.split('-')[1]} peak RSS ≤ 64 MiB | {name} | {measured} | {verdict(ok)} |")
    for name, summaries in images.items():
        for suffix, where in (("", ""), ("-link", ", over a shaped link")):
            out += warm_targets(name, summaries, suffix, where)
    out.append("")
    return out


def warm_targets(name, summaries, suffix, where):
    """The warm-cache rows for one image, cold and warm over one path."""
    warm = summaries.get(f"occystrap-bundle-warm{suffix}")
    cold = summaries.get(f"occystrap-bundle{suffix}")
    if cold is None:
        return []
    if warm is None or warm.gets is None:
        note = "occystrap has no --cache option yet" if warm is None else "warm runs failed"
        return [
            f"| warm cache{where}: no blob requests | {name} | {note} | **fail** |",
            f"| warm cache{where}: bundle ≤ 0.8 × cold | {name} | {note} | **fail** |",
        ]
    r = ratio(warm.seconds, cold.seconds)
    return [
        f"| warm cache{where}: no blob requests | {name} | {warm.gets} blob GETs "
        f"| {verdict(warm.gets == 0)} |",
        f"| warm cache{where}: bundle ≤ 0.8 × cold | {name} | {fmt_ratio(r)} "
        f"| {verdict(None if r is None else r <= 0.8)} |",
    ]


def failures_section(failures_dir):
    if not os.path.isdir(failures_dir):
        return []
    out = ["## Failed runs", ""]
    for entry in sorted(os.listdir(failures_dir)):
        with open(os.path.join(failures_dir, entry), errors="replace") as f:
            # Colour escapes (the Python occystrap's log) do not belong in Markdown.
            lines = [ANSI.sub("", line).rstrip() for line in f if line.strip()]
        tail = "\n".join(lines[-8:])
        out += [f"`{entry.removesuffix('.stderr')}`:", "", "```", tail, "```", ""]
    return out


def main():
    raw, meta_path, failures_dir, out_path = sys.argv[1:5]
    describes = dict(arg.split("=", 1) for arg in sys.argv[5:])
    runs = load_runs(raw)
    images = {}
    for (image, tool), rs in runs.items():
        images.setdefault(image, {})[tool] = Summary(rs)

    out = [
        "# `make bench` results",
        "",
        "Written by `integration/bench/run.sh` (see README.md beside it). "
        "Every tool pulls the same image from a local `docker-registry` on "
        "the loopback interface into a fresh, empty output directory; times "
        "are wall-clock medians, peak RSS is the largest over the runs "
        "(for a pipeline or two-step tool: its largest single process). "
        "Registry blobs sit in the page cache for every tool alike. "
        "Outputs go to a journaled ext4 made for the run (see \"outputs "
        "written to\" below and the README for why). "
        "CPU s is user + system time of all the tool's processes, which "
        "other load on the machine disturbs less than wall time.",
        "",
        "Every tool runs with its defaults, except: the Python occystrap "
        "gets `--insecure` (plain HTTP) and, for `oci://`, `--no-verify`, "
        "since its verifier looks for a docker-save `manifest.json` in the "
        "bundle and fails every `oci://` run otherwise (0.4.17). The "
        "`curl | gzip -dc | tar -x` pipeline applies no whiteouts and "
        "verifies nothing: a lower bound for a naive pull, not a rival.",
        "",
        "**Noise:** this is a shared 2-core VM whose speed drifts (the same "
        "binary's CPU time for the same pull varied by a third within an "
        "hour), so compare tools within this run only (they are "
        "interleaved round by round), and mind the min–max spread and the "
        "load averages below.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
    ]
    out += [f"| {k} | {v} |" for k, v in load_meta(meta_path)]
    out += ["", "## Results", ""]
    for name in describes:
        if name not in images:
            continue
        with open(describes[name]) as f:
            describe = json.load(f)
        out += image_section(name, describe, images[name])
    out += targets_section(images)
    out += failures_section(failures_dir)
    text = "\n".join(out) + "\n"
    with open(out_path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
