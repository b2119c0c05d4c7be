"""Content hashing: ``provstore.core.digests.hash_file`` beside the BLAKE3 library floor.

For each file size, on the same bytes: provstore's ``hash_file(path)``; the floor
``blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(path)``; and ``hashlib.sha256``
streamed in 1 MiB reads, for context.  The file is read once first (page cache warm), then the
three methods alternate, in rotating order, over several repeats; small files are hashed many
times per sample so a sample lasts tens of milliseconds.  GB/s is 10^9 bytes per second of
the fastest sample (the medians are in the note).  Files live in ``ctx.work``, deleted after.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import blake3

from benchmarks.harness import Context, Row

DESCRIPTION = "hash_file vs blake3 update_mmap (AUTO threads) and sha256, GB/s, warm page cache"

TARGET = 0.9  # hash_file >= 90% of the floor's GB/s
MiB = 1 << 20
_BLOCK = 4 * MiB


def _make_file(path: Path, size: int, seed: int) -> None:
    """``size`` pseudo-random bytes (a random 4 MiB block repeated; BLAKE3 is data-blind)."""
    block = hashlib.shake_256(seed.to_bytes(8, "little")).digest(_BLOCK)
    with open(path, "wb") as handle:
        left = size
        while left:
            n = min(left, _BLOCK)
            handle.write(block[:n])
            left -= n


def _warm(path: Path) -> None:
    buf = bytearray(_BLOCK)
    with open(path, "rb", buffering=0) as handle:
        while handle.readinto(buf):
            pass


def _floor(path: str) -> bytes:
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    hasher.update_mmap(path)
    return hasher.digest()


def _sha256(path: str) -> bytes:
    hasher = hashlib.sha256()
    buf = bytearray(MiB)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buf):
            hasher.update(view[:n])
    return hasher.digest()


def _measure(path: Path, size: int, repeat: int) -> dict[str, list[float]]:
    from provstore.core.digests import hash_file

    name = str(path)
    methods: dict[str, Callable[[], object]] = {
        "provstore": lambda: hash_file(name),
        "floor": lambda: _floor(name),
        "sha256": lambda: _sha256(name),
    }
    got, want = hash_file(name), _floor(name)
    if got != (want, size):
        raise RuntimeError(f"hash_file gave {got[0].hex()}/{got[1]}, blake3 {want.hex()}/{size}")
    inner = max(1, (32 * MiB) // size)  # calls per sample: a sample hashes >= 32 MiB
    labels = list(methods)
    seconds: dict[str, list[float]] = {label: [] for label in labels}
    for rep in range(repeat + 1):  # the first round is a warm-up (threads, code paths)
        shift = rep % len(labels)
        for label in labels[shift:] + labels[:shift]:
            func = methods[label]
            start = time.perf_counter()
            for _ in range(inner):
                func()
            elapsed = (time.perf_counter() - start) / inner
            if rep:
                seconds[label].append(elapsed)
    return seconds


def _size_label(size: int) -> str:
    return f"{size // (1 << 30)} GiB" if size >= 1 << 30 else f"{size // MiB} MiB"


def run(ctx: Context) -> list[Row]:
    sizes = ctx.pick((MiB, 64 * MiB), (MiB, 100 * MiB, 1 << 30))
    repeat = ctx.pick(11, 9)
    rows = []
    for size in sizes:
        path = ctx.work / f"hashing-{size}.bin"
        try:
            _make_file(path, size, ctx.seed)
            _warm(path)
            seconds = _measure(path, size, repeat)
        finally:
            path.unlink(missing_ok=True)
        # Best sample: on a shared machine other processes only ever slow a sample down, so
        # the fastest of the alternated samples is the cleanest view of each method.
        gbps = {label: size / min(values) / 1e9 for label, values in seconds.items()}
        medians = ", ".join(
            f"{label} {size / statistics.median(v) / 1e9:.2f}" for label, v in seconds.items()
        )
        note = (
            f"best of {repeat} alternated samples; medians GB/s: {medians}; {os.cpu_count()} cpus"
        )
        label = _size_label(size)
        floor_label = "blake3 update_mmap, AUTO threads"
        rows.append(Row(
            "hashing", f"hash_file, {label} file", gbps["provstore"], "GB/s",
            baseline=gbps["floor"], baseline_label=floor_label,
            target=f">= {TARGET:.0%} of the floor",
            met=gbps["provstore"] >= TARGET * gbps["floor"],
            note=note,
        ))  # fmt: skip
        rows.append(Row(
            "hashing", f"sha256 streamed (context), {label} file", gbps["sha256"], "GB/s",
            baseline=gbps["floor"], baseline_label=floor_label, note=note,
        ))  # fmt: skip
    return rows
