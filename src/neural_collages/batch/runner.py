"""The driver loop every batch shares: plan, skip what is done, run the rest, write, record.

For each item (an input file, or a tile of a large image) the driver reads its bytes, hashes
them, and skips it when the manifest has an ``ok`` line with the same input size and digest and
the same settings, and the output on disk still has the recorded size and digest. Otherwise
the item goes to the engine; its result is written atomically and only then recorded. An
existing output is replaced only with ``force`` or when the manifest proves this tool wrote it
(its digest matches the recorded one): a rerun refreshes its own stale outputs but never
overwrites a file it did not make.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from tqdm import tqdm

from ..errors import CollageError, OutputExistsError
from ..imaging.atomic import atomic_write_bytes
from .engine import crash_message
from .manifest import MANIFEST_NAME, ManifestRecord, ManifestWriter, file_sha256, now, sha256

#: Largest input file read into memory for one job.
MAX_INPUT_BYTES = 1 << 29


@dataclass(frozen=True)
class Item:
    """One unit of work: ``read()`` gives (the bytes that identify the input, the job's payload)."""

    path: str
    output: str
    read: Callable[[], tuple[bytes, Any]]
    problem: str = ""  #: set when the item is known to fail before it is read (e.g. a name clash)


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did: counts, the manifest, the failed inputs with their messages."""

    total: int
    done: int
    skipped: int
    failed: int
    seconds: float
    manifest: Path
    failures: tuple[tuple[str, str], ...]

    @property
    def ok(self) -> bool:
        return self.failed == 0


def run_batch(items: list[Item], dst: Path, settings: dict, fn: Callable, job: Callable[[Item, Any], tuple[tuple, dict]],
              record: Callable[[dict, int], dict], engine, force: bool = False, progress: bool = True,
              unit: str = "file", warm_up: tuple | None = None) -> BatchSummary:
    """Run ``fn`` on every item not already done; ``job(item, payload)`` gives its arguments and
    ``record(result, input_bytes)`` the manifest fields of a successful result (besides the output's).
    ``warm_up`` (a function and its arguments) runs on every worker before the first job, if any."""
    t0 = time.perf_counter()
    counts = {"done": 0, "skipped": 0, "failed": 0}
    failures: list[tuple[str, str]] = []
    writer = ManifestWriter(dst / MANIFEST_NAME)
    bar = tqdm(total=len(items), unit=unit, disable=not progress, desc="batch")

    def fail(item: Item, size: int, digest: str, message: str) -> None:
        # An output this tool wrote earlier stays on disk, and stays known as ours.
        previous = writer.records.get(item.path)
        kept = {"output_bytes": previous.output_bytes, "output_sha256": previous.output_sha256} \
            if previous is not None and previous.output == item.output else {}
        writer.append(ManifestRecord(item.path, item.output, "failed", size, digest, settings, message=message,
                                     finished=now(), **kept))
        counts["failed"] += 1
        failures.append((item.path, message))
        bar.update()
        bar.set_postfix(failed=counts["failed"])

    def planned() -> Iterable:
        nonlocal warm_up
        for item in items:
            if item.problem:
                fail(item, 0, "", item.problem)
                continue
            try:
                identity, payload = item.read()
            except (OSError, CollageError) as exc:
                fail(item, 0, "", f"cannot read the input ({exc})")
                continue
            size, digest = len(identity), sha256(identity)
            out = dst / item.output
            previous = writer.records.get(item.path)
            ours = previous is not None and previous.output_sha256 is not None and out.is_file() \
                and out.stat().st_size == previous.output_bytes and file_sha256(out) == previous.output_sha256
            if ours and previous.status in ("ok", "pending") and previous.input_bytes == size \
                    and previous.input_sha256 == digest and previous.settings == settings:
                if previous.status == "pending":  # written, then killed before the "ok" line
                    writer.append(dataclasses.replace(previous, status="ok"))
                counts["skipped"] += 1
                bar.update()
                continue
            if out.exists() and not (force or ours):
                fail(item, size, digest, f"{item.output} exists and is not in the manifest; refusing to overwrite it "
                                         "(force=True replaces it)")
                continue
            if warm_up is not None:
                engine.prepare(*warm_up)
                warm_up = None
            args, kwargs = job(item, payload)
            yield (item, size, digest, force or ours), args, kwargs

    try:
        for (item, size, digest, replace), result in engine.run(fn, planned()):
            if isinstance(result, BaseException):
                fail(item, size, digest, crash_message(result))
                continue
            if "error" in result:
                fail(item, size, digest, result["error"])
                continue
            data = result["output"]
            out = dst / item.output
            # "pending" first: a run killed between the write and the "ok" line still knows the file is ours.
            done = ManifestRecord(item.path, item.output, "pending", size, digest, settings, output_bytes=len(data),
                                  output_sha256=sha256(data), finished=now(), **record(result, size))
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                writer.append(done)
                atomic_write_bytes(out, data, force=replace)
            except (OSError, OutputExistsError, CollageError) as exc:
                fail(item, size, digest, f"cannot write {item.output} ({exc})")
                continue
            writer.append(dataclasses.replace(done, status="ok"))
            counts["done"] += 1
            bar.update()
        writer.compact()
    finally:
        writer.close()
        bar.close()
    return BatchSummary(len(items), counts["done"], counts["skipped"], counts["failed"],
                        time.perf_counter() - t0, dst / MANIFEST_NAME, tuple(failures))


def read_input(path: Path) -> bytes:
    """The bytes of an input file, refusing files too large to hold for one job."""
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise CollageError(f"{size:,} bytes, more than the {MAX_INPUT_BYTES:,} a batch job reads")
    return path.read_bytes()
