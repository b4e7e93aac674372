#!/usr/bin/env python
"""Fuzz harness for the ``.clg`` decoders: hostile files of every codec, decoded in a sandboxed worker.

Run it::

    python tests/fuzz_harness.py --cases 100000 --seed 1 --out fuzz.json

What it does:

1. **Seeds** (``tests/fuzz_cases.py``). Valid files of every codec made from 48x40 crops of the bundled sample image
   (:func:`build_seeds`, about a second): ``pifs`` at qualities 1, 4, 8 and a greyscale one,
   ``neural`` with the photo model (quality 1, colour and grey) and the aerial model, and
   ``fractal-art`` (colour, grey, and one with shared maps, aux patches and 4-px ranges).
2. **Cases.** Each seed is mutated with the generators of ``tests/fuzzing.py`` in five named
   categories (:data:`CATEGORIES`): ``raw flips`` (bit flips and byte overwrites, CRC left
   stale), ``truncation`` (truncations at field boundaries and random lengths, appended bytes),
   ``header fields (CRC fixed)`` (``crafted`` edits and random edits of the fixed header fields,
   codec ids swapped between codecs), ``params (CRC fixed)`` (``crafted`` params edits and
   random canonical-JSON edits of the params values, with values borrowed from the other
   seeds), ``payload (CRC fixed)`` (``payload_flips`` and payload byte overwrites, runs,
   truncations and extensions with the payload length kept consistent). Generation is
   deterministic in ``--seed``. About one case in ten decodes at scale 2, the rest at scale 1,
   always with ``max_pixels`` (default 65536) bounding the output.
3. **Workers.** ``--workers`` persistent subprocesses (``python tests/fuzz_harness.py
   --worker``, the loop of ``tests/fuzz_worker.py``) read cases over a pipe and call ``neural_collages.codecs.decompress(data, scale,
   max_pixels=...)``. Each runs with ``RLIMIT_AS`` = ``--memory-mb`` MiB, no core dumps and one
   torch thread, and decodes every seed once before its first case (models loaded, caches warm).
   A worker that does not answer within ``--timeout`` seconds is killed and restarted and the
   case run once more in a fresh worker (so that a starved machine is not reported as a hang);
   a worker that dies is restarted.
4. **Outcomes.** ``clean_error`` (a ``CollageError``), ``decoded`` (returned a finite float32
   image of the header's size times the scale, in [0, 1]), ``other_exception`` (any other
   exception, or a decode that returned something else: a bug), ``hang`` (timed out twice),
   ``crash`` (the worker died: a signal, an exit, ``MemoryError`` or torch's allocation error
   under the address-space limit).
5. **Report.** A JSON summary per codec and category (cases, distinct inputs, each outcome,
   the clean errors' types and the modules that raised them, peak worker RSS as ``ru_maxrss``,
   decode seconds), every non-clean case in full, and every non-clean input written to
   ``tests/fuzz_corpus/<codec>/<sha1>.clg`` with a line in ``tests/fuzz_corpus/README.md``
   (``--no-corpus`` to skip). Exit status 1 when any case was not clean.

The test file ``tests/test_fuzz_harness.py`` runs a few thousand cases in CI, replays the
corpus, and checks that this harness reports crashes, hangs and stray exceptions (through the
hidden ``--test-hook INDEX:NAME`` option / the ``hooks`` argument of :func:`run_cases`).
"""


from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (HERE, ROOT / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import fuzzing  # noqa: E402,F401  (the mutation generators, tests/fuzzing.py; tests reach them as fh.fuzzing)
from fuzz_cases import (CATEGORIES, SCALE2_FRACTION, WEIGHTS, Case, HarnessError, Seed,  # noqa: E402,F401
                        build_seeds, generate_cases)
from fuzz_worker import (CLEAN, CRASH, DECODED, FAILURES, HANG, HEADER, HOOKS, LENGTH, OTHER,  # noqa: E402,F401
                         read_exact, send, worker_main)

CORPUS = HERE / "fuzz_corpus"
DEFAULT_TIMEOUT = 10.0
DEFAULT_MEMORY_MB = 1024
DEFAULT_MAX_PIXELS = 1 << 16
_STARTUP_TIMEOUT = 120.0


def _limits(memory_mb: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if memory_mb > 0:
            limit = memory_mb << 20
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _close_pipes(proc: subprocess.Popen) -> None:
    for stream in (proc.stdin, proc.stdout):
        try:
            stream.close()
        except OSError:
            pass


class Worker:
    """One decoding subprocess, restarted whenever it hangs or dies."""

    def __init__(self, seeds: list[Seed], timeout: float, memory_mb: int, max_pixels: int):
        self.seeds, self.timeout, self.memory_mb, self.max_pixels = seeds, timeout, memory_mb, max_pixels
        self.proc: subprocess.Popen | None = None
        self.stderr = tempfile.TemporaryFile()
        self.restarts = -1
        self.startup_seconds = 0.0
        self.spawned_at = 0.0
        self.ready = False

    def spawn(self) -> None:
        """Start the process (it imports torch and the library meanwhile); :meth:`start` finishes."""
        self.stop()
        self.spawned_at = time.monotonic()
        self.stderr.seek(0)
        self.stderr.truncate()
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", "--memory-mb", str(self.memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, env=env,
            preexec_fn=_limits(self.memory_mb), bufsize=0,
        )
        self.restarts += 1
        self.ready = False

    def start(self) -> None:
        """Wait for the worker to be ready and warm it up on the seeds (spawning it if needed)."""
        if self.proc is None:
            self.spawn()
        started = self.spawned_at
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        try:
            if self._receive(deadline) is None:
                raise HarnessError(f"fuzz worker exited during start-up: {self.stderr_tail()}")
            for s in self.seeds:  # warm up: models loaded, and the seeds must decode
                reply = self._exchange({"index": -1, "scale": 1, "max_pixels": self.max_pixels}, s.data, deadline)
                if reply is None or reply["outcome"] != DECODED:
                    raise HarnessError(f"seed {s.name} does not decode in the worker: {reply} {self.stderr_tail()}")
        except TimeoutError:
            self._kill()
            raise HarnessError(f"fuzz worker did not start within {_STARTUP_TIMEOUT:.0f} s") from None
        self.ready = True
        self.startup_seconds += time.monotonic() - started

    def stderr_tail(self, size: int = 1500) -> str:
        self.stderr.flush()
        self.stderr.seek(0, os.SEEK_END)
        end = self.stderr.tell()
        self.stderr.seek(max(0, end - size))
        return self.stderr.read().decode("utf-8", "replace").strip()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        _close_pipes(proc)  # the worker exits at the end of its input
        if proc.poll() is None:
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()

    def close(self) -> None:
        self.stop()
        self.stderr.close()

    def _receive(self, deadline: float) -> dict | None:
        head = read_exact(self.proc.stdout.fileno(), LENGTH.size, deadline)
        if head is None:
            return None
        body = read_exact(self.proc.stdout.fileno(), LENGTH.unpack(head)[0], deadline)
        return None if body is None else json.loads(body)

    def _exchange(self, meta: dict, data: bytes, deadline: float) -> dict | None:
        blob = json.dumps(meta).encode()
        try:
            send(self.proc.stdin.fileno(), HEADER.pack(len(blob), len(data)) + blob + data)
        except (BrokenPipeError, ConnectionResetError):
            return None
        return self._receive(deadline)

    def _death(self) -> str:
        proc = self.proc
        self.proc = None
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        _close_pipes(proc)
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        proc.kill()
        proc.wait()
        _close_pipes(proc)

    def run(self, case: Case, hook: str | None = None, retry_hang: bool = True) -> dict:
        """Decode ``case`` in the worker; the result dict has ``outcome`` and the details."""
        if self.proc is None or not self.ready:
            self.start()
        meta = {"index": case.index, "scale": case.scale, "max_pixels": self.max_pixels, "hook": hook}
        started = time.monotonic()
        cpu_before = _cpu_seconds(self.proc.pid)
        try:
            reply = self._exchange(meta, case.data, started + self.timeout)
        except TimeoutError:
            cpu_after = _cpu_seconds(self.proc.pid)
            self._kill()
            if retry_hang:
                again = self.run(case, hook, retry_hang=False)
                if again["outcome"] != HANG:
                    again["retried_after_timeout"] = True
                    return again
            cpu = None if cpu_before is None or cpu_after is None else round(cpu_after - cpu_before, 3)
            twice = ", also when rerun in a fresh worker" if retry_hang else ""
            return {"outcome": HANG, "type": "Timeout", "seconds": time.monotonic() - started, "cpu_seconds": cpu,
                    "message": f"no answer within {self.timeout:g} s{twice}"}
        if reply is None:
            seconds = time.monotonic() - started
            tail = self.stderr_tail()
            how = self._death()
            return {"outcome": CRASH, "type": "WorkerDied", "crash": how, "message": how, "stderr": tail,
                    "seconds": seconds}
        if reply["outcome"] == CRASH:  # out of memory: the worker exits by itself
            reply["stderr"] = self.stderr_tail()
            self._death()
        return reply


# ------------------------------------------------------------------------------------------ running


def run_cases(cases: list[Case], seeds: list[Seed], workers: int = 2, timeout: float = DEFAULT_TIMEOUT,
              memory_mb: int = DEFAULT_MEMORY_MB, max_pixels: int = DEFAULT_MAX_PIXELS,
              hooks: dict[int, str] | None = None, progress: bool = False,
              pool: list[Worker] | None = None) -> tuple[list[dict], dict]:
    """Decode every case in ``workers`` sandboxed subprocesses; returns (results by case, run info).

    ``hooks`` maps a case index to a name in :data:`HOOKS`: that case runs the hook instead of
    the decode (for the harness's own tests).
    """
    hooks = hooks or {}
    results: list[dict | None] = [None] * len(cases)
    lock = threading.Lock()
    position = iter(range(len(cases)))
    if pool is None:
        pool = [Worker(seeds, timeout, memory_mb, max_pixels) for _ in range(max(1, min(workers, len(cases) or 1)))]
    for worker in pool:
        worker.seeds = seeds
    errors: list[BaseException] = []
    done = [0]
    start = time.monotonic()

    def drive(worker: Worker) -> None:
        try:
            while not errors:
                with lock:
                    i = next(position, None)
                if i is None:
                    return
                results[i] = worker.run(cases[i], hooks.get(cases[i].index))
                with lock:
                    done[0] += 1
                    if progress and done[0] % 500 == 0:
                        rate = done[0] / (time.monotonic() - start)
                        print(f"fuzz: {done[0]}/{len(cases)} cases, {rate:.0f}/s", file=sys.stderr, flush=True)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)
        finally:
            worker.stop()

    threads = [threading.Thread(target=drive, args=(w,), daemon=True) for w in pool]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for w in pool:
            w.close()
    if errors:
        raise errors[0]
    info = {"workers": len(pool), "worker_restarts": sum(w.restarts for w in pool),
            "worker_startup_seconds": round(sum(w.startup_seconds for w in pool), 2)}
    return results, info  # type: ignore[return-value]


def _bucket() -> dict:
    return {"cases": 0, "distinct": set(), "clean_errors": 0, "decoded": 0, "other_exceptions": 0, "hangs": 0,
            "crashes": 0, "clean_error_types": collections.Counter(), "raised_in": collections.Counter(),
            "peak_rss_mb": 0.0, "seconds": 0.0}


_COUNT_KEY = {CLEAN: "clean_errors", DECODED: "decoded", OTHER: "other_exceptions", HANG: "hangs", CRASH: "crashes"}


def summarise(cases: list[Case], results: list[dict]) -> dict:
    """Counts per (codec, category), per codec, per category and in total, plus every failure."""
    groups: dict[tuple[str, str], dict] = collections.defaultdict(_bucket)
    failures = []
    for case, res in zip(cases, results):
        for key in ((case.codec, case.category), (case.codec, "*"), ("*", case.category), ("*", "*")):
            b = groups[key]
            b["cases"] += 1
            b["distinct"].add(hashlib.sha1(case.data).digest())
            b[_COUNT_KEY[res["outcome"]]] += 1
            if res["outcome"] == CLEAN:
                b["clean_error_types"][res["type"]] += 1
                b["raised_in"][res.get("raised_in", "?")] += 1
            if "maxrss_kb" in res:
                b["peak_rss_mb"] = max(b["peak_rss_mb"], res["maxrss_kb"] / 1024)
            b["seconds"] += res.get("seconds", 0.0)
        if res["outcome"] in FAILURES:
            failures.append({
                "index": case.index, "seed": case.seed, "codec": case.codec, "category": case.category,
                "label": case.label, "scale": case.scale, "sha1": hashlib.sha1(case.data).hexdigest(),
                "bytes": len(case.data), **{k: v for k, v in res.items() if k not in ("index", "maxrss_kb")},
            })

    def plain(b: dict) -> dict:
        out = dict(b)
        out["distinct"] = len(b["distinct"])
        out["clean_error_types"] = dict(b["clean_error_types"].most_common())
        out["raised_in"] = dict(b["raised_in"].most_common())
        out["peak_rss_mb"] = round(b["peak_rss_mb"], 1)
        out["seconds"] = round(b["seconds"], 2)
        return out

    codecs_seen = sorted({c.codec for c in cases})
    return {
        "totals": plain(groups[("*", "*")]) if cases else plain(_bucket()),
        "by_codec": {c: plain(groups[(c, "*")]) for c in codecs_seen},
        "by_category": {k: plain(groups[("*", k)]) for k in CATEGORIES if ("*", k) in groups},
        "by_codec_and_category": [
            {"codec": c, "category": k, **plain(groups[(c, k)])}
            for c in codecs_seen for k in CATEGORIES if (c, k) in groups
        ],
        "failures": failures,
    }


def record_corpus(cases: list[Case], results: list[dict], corpus: Path, note: str = "") -> list[Path]:
    """Write every non-clean case to ``corpus/<codec>/<sha1>.clg`` and list it in the README."""
    readme = corpus / "README.md"
    ensure_corpus_readme(corpus)
    text = readme.read_text(encoding="utf-8")
    written = []
    for case, res in zip(cases, results):
        if res["outcome"] not in FAILURES:
            continue
        name = f"{case.codec}/{hashlib.sha1(case.data).hexdigest()}.clg"
        path = corpus / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_bytes(case.data)
        written.append(path)
        if f"`{name}`" not in text:
            what = res.get("crash") or f"{res.get('type', '?')}: {res.get('message', '')}"
            what = " ".join(str(what).split())[:200]
            line = (f"- `{name}` -- {res['outcome']} at scale {case.scale} ({what}); {case.category}, "
                    f"seed {case.seed}, `{case.label}`{note}\n")
            text = text.replace(_NONE_YET, "")
            text = text if text.endswith("\n") else text + "\n"
            text += line
    readme.write_text(text, encoding="utf-8")
    return written


_NONE_YET = "(none yet)\n"
_README = """# Fuzz corpus

Inputs that made a `.clg` decoder misbehave -- raise an exception that is not a
`neural_collages.errors.CollageError`, hang, or crash its process -- found by the fuzz harness
(`python tests/fuzz_harness.py`, see the "Fuzzing" section of `docs/format.md`). The harness writes
each one here as `<codec>/<sha1 of the bytes>.clg` and adds a line below; `tests/test_fuzz_harness.py`
replays every file (at scales 1 and 2, in a sandboxed worker) and requires a clean error or a
normal decode. A file whose bug is not fixed yet is marked `xfail(strict=True)` there, so the fix
shows up as an unexpected pass. Keep the files once fixed: they are regression tests.

Each line below reads: file -- outcome at the scale it was found at (what happened); the mutation
category, the seed file it was made from, the mutation, and the `--seed` of the run.

## Cases

(none yet)
"""


def ensure_corpus_readme(corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    if not (corpus / "README.md").exists():
        (corpus / "README.md").write_text(_README, encoding="utf-8")


def corpus_files(corpus: Path = CORPUS) -> list[Path]:
    return sorted(corpus.glob("*/*.clg"))


def replay(paths: list[Path], scales=(1, 2), **options) -> dict[tuple[str, int], dict]:
    """Decode every file at every scale in the sandboxed workers: ``{(path, scale): result}``."""
    cases = [Case(i, Path(p).name, Path(p).parent.name, "corpus", str(p), scale, Path(p).read_bytes())
             for i, (p, scale) in enumerate((p, s) for p in paths for s in scales)]
    if not cases:
        return {}
    seeds = options.pop("seeds", None) or build_seeds(["pifs-q1"])
    results, _ = run_cases(cases, seeds, **options)
    return {(c.label, c.scale): r for c, r in zip(cases, results)}


def fuzz(count: int, seed: int = 0, workers: int = 2, timeout: float = DEFAULT_TIMEOUT,
         memory_mb: int = DEFAULT_MEMORY_MB, max_pixels: int = DEFAULT_MAX_PIXELS, corpus: Path | None = CORPUS,
         hooks: dict[int, str] | None = None, seed_names: list[str] | None = None, progress: bool = False) -> dict:
    """Build the seeds, generate ``count`` cases, decode them all, write the corpus; the summary."""
    start = time.monotonic()
    pool = [Worker([], timeout, memory_mb, max_pixels) for _ in range(max(1, min(workers, count or 1)))]
    try:
        for worker in pool:  # they import torch while the seeds are made here
            worker.spawn()
        seeds = build_seeds(seed_names)
        seed_seconds = time.monotonic() - start
        cases = generate_cases(seeds, count, seed)
    except BaseException:
        for worker in pool:
            worker.close()
        raise
    generated = time.monotonic()
    results, info = run_cases(cases, seeds, workers, timeout, memory_mb, max_pixels, hooks, progress, pool)
    decoded = time.monotonic()
    summary = summarise(cases, results)
    written = record_corpus(cases, results, corpus, f" (`--seed {seed}`)") if corpus is not None else []
    import torch

    return {
        "cases": len(cases),
        "seed": seed,
        "settings": {"timeout_s": timeout, "memory_mb": memory_mb, "max_pixels": max_pixels,
                     "scale2_fraction": SCALE2_FRACTION, "weights": WEIGHTS},
        "seeds": [{"name": s.name, "codec": s.codec, "bytes": len(s.data), "sha1": hashlib.sha1(s.data).hexdigest()}
                  for s in seeds],
        "seconds": {"total": round(time.monotonic() - start, 2), "seeds": round(seed_seconds, 2),
                    "generate": round(generated - start - seed_seconds, 2), "decode": round(decoded - generated, 2)},
        **info,
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "platform": platform.platform(), "cpus": os.cpu_count()},
        **summary,
        "corpus_files": sorted({str(p.relative_to(corpus)) for p in written}) if corpus is not None else [],
    }


def markdown_table(summary: dict) -> str:
    """The per-category (all codecs) and per-codec table of a summary, as in docs/format.md."""
    rows = ["| category | cases | distinct | clean errors | decoded | other exceptions | hangs | crashes "
            "| peak RSS | decode s |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    entries = [(k, v) for k, v in summary["by_category"].items()]
    entries += [(f"all, {c}", v) for c, v in summary["by_codec"].items()] + [("**all**", summary["totals"])]
    for name, b in entries:
        rows.append(f"| {name} | {b['cases']:,} | {b['distinct']:,} | {b['clean_errors']:,} | {b['decoded']:,} "
                    f"| {b['other_exceptions']} | {b['hangs']} | {b['crashes']} | {b['peak_rss_mb']:.0f} MiB "
                    f"| {b['seconds']:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", type=int, default=3000, help="number of hostile files (default 3000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the mutations (default 0)")
    parser.add_argument("--out", type=Path, help="write the JSON summary here")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per decode (default 10)")
    parser.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB,
                        help="RLIMIT_AS of each worker in MiB (default 1024; 0 = none)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="decoding processes")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="decompress(max_pixels=...)")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="where non-clean cases go")
    parser.add_argument("--no-corpus", action="store_true", help="do not write non-clean cases anywhere")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--test-hook", action="append", default=[], metavar="INDEX:NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(args.memory_mb)
        return 0
    if args.cases < 0 or args.workers < 1 or args.timeout <= 0:
        parser.error("--cases must be >= 0, --workers >= 1 and --timeout > 0")
    hooks = {}
    for spec in args.test_hook:
        index, _, name = spec.partition(":")
        if name not in HOOKS or not index.isdigit():
            parser.error(f"--test-hook takes INDEX:NAME with NAME in {HOOKS}, got {spec!r}")
        hooks[int(index)] = name
    summary = fuzz(args.cases, args.seed, args.workers, args.timeout, args.memory_mb, args.max_pixels,
                   None if args.no_corpus else args.corpus, hooks, progress=True)
    command = ["python", "tests/fuzz_harness.py"] + (sys.argv[1:] if argv is None else list(argv))
    summary = {"command": " ".join(command), **summary}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(markdown_table(summary))
    t = summary["totals"]
    print(f"\n{summary['cases']} cases in {summary['seconds']['total']} s: {t['other_exceptions']} other exceptions, "
          f"{t['hangs']} hangs, {t['crashes']} crashes")
    for f in summary["failures"][:20]:
        print(f"  {f['outcome']}: {f['codec']} {f['category']} `{f['label']}` scale {f['scale']}: "
              f"{f.get('type')}: {f.get('message', '')}", file=sys.stderr)
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
