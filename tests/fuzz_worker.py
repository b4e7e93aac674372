"""The fuzz worker: a subprocess that decodes hostile files sent over a pipe and classifies each.

Part of the fuzz harness (``tests/fuzz_harness.py`` spawns it as ``python tests/fuzz_harness.py
--worker``). Frames in: ``(meta JSON, data)``; out: one result JSON per frame, with an outcome
of :data:`OUTCOMES`. Test hooks (:data:`HOOKS`) misbehave on purpose in place of a decode.
"""

from __future__ import annotations

import json
import os
import resource
import select
import struct
import sys
import time
import traceback
from pathlib import Path

from fuzz_cases import HarnessError

CLEAN, DECODED, OTHER, HANG, CRASH = "clean_error", "decoded", "other_exception", "hang", "crash"
OUTCOMES = (CLEAN, DECODED, OTHER, HANG, CRASH)
#: Outcomes that are bugs (recorded in the corpus, fail the CI test).
FAILURES = (OTHER, HANG, CRASH)
#: Hooks a test can put in place of the decode of one case (see :func:`_run_hook`).
HOOKS = ("crash", "hang", "value-error", "memory", "exit", "bad-output")
#: Frame headers of the pipe protocol: (meta length, data length) in, result length out.
HEADER = struct.Struct("<II")
LENGTH = struct.Struct("<I")


def send(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """``n`` bytes from ``fd``; ``None`` at end of file; :class:`TimeoutError` past ``deadline``."""
    chunks, have = [], 0
    while have < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, n - have)
        if not chunk:
            return None
        chunks.append(chunk)
        have += len(chunk)
    return b"".join(chunks)


def _run_hook(name: str, memory_mb: int):
    """Deliberate misbehaviour in place of a decode, so the tests can see the harness report it."""
    if name == "crash":
        import ctypes

        ctypes.string_at(0)  # SIGSEGV
    if name == "hang":
        time.sleep(3600)
    if name == "value-error":
        raise ValueError("injected by the test hook")
    if name == "memory":  # just past the address-space limit, never far past it if the limit fails
        hold = []
        for _ in range(memory_mb // 64 + 8):
            hold.append(bytearray(64 << 20))
        return None
    if name == "exit":
        os._exit(0)
    if name == "bad-output":
        import torch

        return torch.full((3, 2, 2), float("nan"))
    raise HarnessError(f"unknown hook {name!r}")


def _raised_in(exc: BaseException) -> str:
    """The project module (or other file) of the innermost frame of ``exc``'s traceback."""
    tb = exc.__traceback__
    where = "?"
    while tb is not None:
        where = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    marker = os.sep + "neural_collages" + os.sep
    if marker in where:
        return where.split(marker, 1)[1].replace(os.sep, "/")
    return Path(where).name


def _format_traceback(exc: BaseException, limit: int = 3000) -> str:
    text = "".join(traceback.format_exception(exc))
    return text if len(text) <= limit else text[:800] + "\n[...]\n" + text[-(limit - 800):]


def _check_output(image, data: bytes, scale: int) -> str | None:
    """Why a decode's return value is wrong, or ``None``."""
    import torch

    from neural_collages.coding.container import unpack
    from neural_collages.errors import CollageError

    try:
        header, _ = unpack(data)
    except CollageError as exc:
        return f"returned normally for a file the container rejects ({exc})"
    expected = (header.channels, header.height * scale, header.width * scale)
    if not isinstance(image, torch.Tensor):
        return f"returned {type(image).__name__}, not a tensor"
    if tuple(image.shape) != expected or image.dtype != torch.float32:
        return f"returned {image.dtype} {tuple(image.shape)}, expected float32 {expected}"
    if not bool(torch.isfinite(image).all()) or float(image.min()) < 0 or float(image.max()) > 1:
        return "returned values that are not finite or outside [0, 1]"
    return None


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "std::bad_alloc" in text)


def worker_main(memory_mb: int) -> None:
    """The worker loop: frames ``(meta JSON, data)`` in on stdin, one result JSON out per frame."""
    import torch

    torch.set_num_threads(1)
    inp = sys.stdin.buffer.fileno()
    out = os.dup(1)
    os.dup2(2, 1)  # anything the library prints goes to stderr, not into the result pipe
    from neural_collages import codecs
    from neural_collages.errors import CollageError

    send(out, LENGTH.pack(2) + b"{}")  # ready
    while True:
        head = read_exact(inp, HEADER.size, None)
        if head is None:
            return
        meta_len, data_len = HEADER.unpack(head)
        meta = json.loads(read_exact(inp, meta_len, None))
        data = read_exact(inp, data_len, None) if data_len else b""
        scale = meta["scale"]
        result: dict = {"index": meta["index"]}
        start = time.perf_counter()
        fatal = False
        try:
            if meta.get("hook"):
                image = _run_hook(meta["hook"], memory_mb)
            else:
                image = codecs.decompress(data, scale, max_pixels=meta["max_pixels"])
            problem = _check_output(image, data, scale)
            if problem is None:
                result["outcome"] = DECODED
            else:
                result.update(outcome=OTHER, type="InvalidOutput", message=problem)
            del image
        except CollageError as exc:
            result.update(outcome=CLEAN, type=type(exc).__name__, raised_in=_raised_in(exc))
        except (Exception, SystemExit, GeneratorExit) as exc:  # noqa: BLE001 - classifying is the point
            fatal = _is_out_of_memory(exc)
            result.update(outcome=CRASH if fatal else OTHER, type=type(exc).__name__, message=str(exc)[:500],
                          raised_in=_raised_in(exc), traceback=_format_traceback(exc))
            if fatal:
                result["crash"] = f"out of memory under RLIMIT_AS={memory_mb} MiB: {type(exc).__name__}"
        result["seconds"] = time.perf_counter() - start
        result["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        message = json.dumps(result).encode()
        send(out, LENGTH.pack(len(message)) + message)
        if fatal:  # the heap may be in a strange state: start afresh
            os._exit(3)
