"""Fuzz cases: valid seed files of every codec and the hostile mutations made from them.

Part of the fuzz harness (``tests/fuzz_harness.py``, which runs them): :func:`build_seeds` makes
the seeds, :func:`generate_cases` the cases in the five :data:`CATEGORIES`, deterministically in
their seed, with the generators of ``tests/fuzzing.py``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import random
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

HERE = Path(__file__).resolve().parent
for _path in (HERE, HERE.parent / "src"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import fuzzing  # noqa: E402  (the mutation generators, tests/fuzzing.py)

CATEGORIES = (
    "raw flips",
    "truncation",
    "header fields (CRC fixed)",
    "params (CRC fixed)",
    "payload (CRC fixed)",
)
#: Share of each seed's cases per category (the CRC-fixed ones reach the codecs' own decoders).
WEIGHTS = {
    "raw flips": 0.15,
    "truncation": 0.10,
    "header fields (CRC fixed)": 0.20,
    "params (CRC fixed)": 0.15,
    "payload (CRC fixed)": 0.40,
}
SCALE2_FRACTION = 0.1


class HarnessError(RuntimeError):
    """The harness itself cannot run (a worker that never starts, a seed that does not decode)."""


# ------------------------------------------------------------------------------------------ seeds


@dataclass(frozen=True)
class Seed:
    name: str
    codec: str
    data: bytes


def build_seeds(names: list[str] | None = None) -> list[Seed]:
    """Valid files of every codec from 48x40 crops of the bundled sample (about a second)."""
    import torch

    torch.set_num_threads(1)
    from neural_collages import codecs
    from neural_collages.assets import sample_image_path
    from neural_collages.codecs.fractal_art import encode_art
    from neural_collages.fractal_art import FractalizeOptions, fractalize
    from neural_collages.imaging.io import load_image

    rgb = load_image(sample_image_path())[:, 40:80, 60:108].contiguous()
    grey = load_image(sample_image_path(), mode="grey")[:, 40:80, 60:108].contiguous()

    def art(image, **options):
        return lambda: encode_art(fractalize(image, FractalizeOptions(steps=3, **options))[0])

    def coded(image, codec, quality, model=None):
        return lambda: codecs.compress(image, codec, quality, model=model)

    makers = {
        "pifs-q1": ("pifs", coded(rgb, "pifs", 1)),
        "pifs-q4": ("pifs", coded(rgb, "pifs", 4)),
        "pifs-q8": ("pifs", coded(rgb, "pifs", 8)),  # with a residual layer
        "pifs-q4-grey": ("pifs", coded(grey, "pifs", 4)),
        "neural-photo-q1": ("neural", coded(rgb, "neural", 1, "photo")),
        "neural-photo-q1-grey": ("neural", coded(grey, "neural", 1, "photo")),
        "neural-aerial-q1": ("neural", coded(rgb, "neural", 1, "aerial")),
        "fractal-art": ("fractal-art", art(rgb)),
        "fractal-art-grey": ("fractal-art", art(grey)),
        "fractal-art-shared-aux": ("fractal-art", art(rgb, aux=2, channel_maps="shared", isometries=(0, 3),
                                                      range_size=4)),
    }
    chosen = list(makers) if names is None else names
    unknown = [n for n in chosen if n not in makers]
    if unknown:
        raise HarnessError(f"unknown seeds {unknown}; choose from {list(makers)}")
    return [Seed(name, makers[name][0], bytes(makers[name][1]())) for name in chosen]


# ------------------------------------------------------------------------------------------ cases


@dataclass
class Case:
    index: int
    seed: str
    codec: str
    category: str
    label: str
    scale: int
    data: bytes


def _canonical(params: dict) -> bytes:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _params_of(data: bytes) -> dict:
    lay = fuzzing.layout(data)
    return json.loads(data[lay["params_at"] : lay["params_at"] + lay["params_len"]])


def _with_payload(data: bytes, payload: bytes) -> bytes:
    """``data`` with its payload replaced, the payload length and CRC made consistent."""
    lay = fuzzing.layout(data)
    body = data[: lay["payload_len_at"]] + struct.pack("<I", len(payload)) + payload + b"\0\0\0\0"
    return fuzzing.with_fixed_crc(body)


def _mutations_where(data: bytes, rng: random.Random, prefixes: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    """The variants of :func:`fuzzing.mutations` whose label starts with one of ``prefixes``."""
    while True:
        for label, mutated in fuzzing.mutations(data, 10_000, seed=rng.randrange(2**31)):
            if label.startswith(prefixes):
                yield label, mutated


def _raw_flips(seed: Seed, rng: random.Random, _pool) -> Iterator[tuple[str, bytes]]:
    yield from _mutations_where(seed.data, rng, ("flip", "overwrite"))


def _truncations(seed: Seed, rng: random.Random, _pool) -> Iterator[tuple[str, bytes]]:
    yield from _mutations_where(seed.data, rng, ("truncate", "append"))


_TYPE_MAX = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}


def _field_value(rng: random.Random, name: str, old: int, fmt: str, size: tuple[int, int]) -> int:
    top = _TYPE_MAX[fmt]
    choices = [old + 1, old - 1, old * 2, old // 2, 0, 1, top, rng.randrange(256), rng.randrange(top + 1)]
    if name == "codec":
        choices += [1, 2, 3] * 3  # another codec's decoder on this payload
    if name == "channels":
        choices += [1, 3] * 3
    if name in ("width", "height"):
        w, h = size
        choices += [w, h, old + 16, old + 32, max(old - 8, 1), rng.randint(1, 256), rng.randint(1, 1024)] * 2
    return rng.choice(choices) & top


def _header_fields(seed: Seed, rng: random.Random, _pool) -> Iterator[tuple[str, bytes]]:
    data = seed.data
    crafted = [(f"crafted {label}", m) for label, m in fuzzing.crafted(data) if not label.startswith("params:")]
    yield from _alternate(crafted, _random_header_edits(data, rng))


def _alternate(finite: list, endless: Iterator) -> Iterator:
    """One of ``finite``, one of ``endless``, ... then only ``endless``."""
    for item in finite:
        yield item
        yield next(endless)
    yield from endless


def _random_header_edits(data: bytes, rng: random.Random) -> Iterator[tuple[str, bytes]]:
    lay = fuzzing.layout(data)
    fields = [  # (name, offset, format, weight); the ones the container lets through weigh most
        ("version", fuzzing.VERSION_AT, "B", 0.5), ("codec", fuzzing.CODEC_AT, "B", 3),
        ("flags", fuzzing.FLAGS_AT, "H", 0.5), ("width", fuzzing.WIDTH_AT, "I", 4),
        ("height", fuzzing.HEIGHT_AT, "I", 4), ("channels", fuzzing.CHANNELS_AT, "B", 3),
        ("params_len", fuzzing.PARAMS_LEN_AT, "H", 0.5), ("payload_len", lay["payload_len_at"], "I", 0.5),
    ]
    weights = [f[3] for f in fields]
    size = struct.unpack_from("<II", data, fuzzing.WIDTH_AT)
    while True:
        mutated, labels = data, []
        for _ in range(1 if rng.random() < 0.6 else 2):
            name, offset, fmt, _w = rng.choices(fields, weights)[0]
            (old,) = struct.unpack_from("<" + fmt, mutated, offset)
            value = _field_value(rng, name, old, fmt, size)
            mutated = fuzzing.with_field(mutated, offset, fmt, value)
            labels.append(f"{name}={value}")
        yield " ".join(labels) + " (CRC fixed)", mutated


def _value_variants(rng: random.Random, value, borrowed: list) -> list:
    out = [None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63), 10**6, 0.5, -0.0, 1e308, "", "x" * 200, "é",
           [], [0], [1] * 64]
    out += borrowed * 3
    if type(value) is int:
        out += [value + 1, value - 1, value * 2, value // 2, -value, value + rng.randint(2, 100), float(value)]
    elif type(value) is float:
        out += [value * 2, value / 2, -value, 1.0, 0.999999, 1.0000001, 5e-324, float(round(value))]
    elif type(value) is str:
        out += [value[:-1], value + "0", value.upper(), value[::-1], "0" * len(value), value + "/../x"]
    elif type(value) is list:
        out += [value[:-1], value + value[-1:], value[::-1], [str(v) for v in value], [0] * len(value),
                [v + 1 if type(v) is int else v for v in value], [[v] for v in value]]
    return out


def _params_edits(seed: Seed, rng: random.Random, pool: dict) -> Iterator[tuple[str, bytes]]:
    data = seed.data
    crafted = [(f"crafted {label}", m) for label, m in fuzzing.crafted(data) if label.startswith("params:")]
    yield from _alternate(crafted, _random_params_edits(data, rng, pool))


def _random_params_edits(data: bytes, rng: random.Random, pool: dict) -> Iterator[tuple[str, bytes]]:
    params = _params_of(data)
    keys = sorted(params)
    while True:
        edited, labels = dict(params), []
        for _ in range(1 if rng.random() < 0.75 else 2):
            action = rng.random()
            if action < 0.08:
                key = rng.choice(keys)
                edited.pop(key, None)
                labels.append(f"drop {key}")
                continue
            if action < 0.14:
                key = rng.choice(["extra", "v2", "model", "steps", "quality", "padded"] + sorted(pool))
            else:
                key = rng.choice(keys)
            value = rng.choice(_value_variants(rng, params.get(key), pool.get(key, [])))
            edited[key] = value
            labels.append(f"{key}={json.dumps(value)[:40]}")
        try:
            raw = _canonical(edited)
        except (ValueError, TypeError):  # pragma: no cover - every variant above is JSON-able
            continue
        yield "params " + ", ".join(labels) + " (CRC fixed)", fuzzing.with_params(data, raw)


def _payload_edits(seed: Seed, rng: random.Random, _pool) -> Iterator[tuple[str, bytes]]:
    data = seed.data
    payload = data[fuzzing.layout(data)["payload_at"] : fuzzing.layout(data)["crc_at"]]
    n = len(payload)
    while True:
        kind = rng.random()
        if kind < 0.5:
            yield from fuzzing.payload_flips(data, 16, seed=rng.randrange(2**31))
            continue
        buf = bytearray(payload)
        if kind < 0.65:
            k = rng.randint(1, 8)
            for _ in range(k):
                buf[rng.randrange(n)] = rng.randrange(256)
            label = f"payload: {k} random bytes"
        elif kind < 0.75:
            at, length, byte = rng.randrange(n), rng.randint(1, 32), rng.choice([0, 0xFF])
            buf[at : at + length] = bytes([byte]) * len(buf[at : at + length])
            label = f"payload: run of {length} x 0x{byte:02x} at {at}"
        elif kind < 0.87:
            cut = rng.choice([0, 1, n // 2, n - 1, n - 4, rng.randrange(n)])
            buf = buf[: max(cut, 0)]
            label = f"payload: truncated to {len(buf)} of {n} bytes"
        elif kind < 0.95:
            extra = rng.choice([b"\0" * rng.randint(1, 16), rng.randbytes(rng.randint(1, 64)), payload[-8:]])
            buf += extra
            label = f"payload: {len(extra)} bytes appended"
        else:
            a, b = sorted(rng.sample(range(n + 1), 2))
            b2 = min(n, b + (b - a))
            buf[a:b2] = payload[b:b2] + payload[a:b]
            label = f"payload: bytes {a}:{b} and {b}:{b2} swapped"
        yield label + " (CRC fixed)", _with_payload(data, bytes(buf))


_GENERATORS = {
    "raw flips": _raw_flips,
    "truncation": _truncations,
    "header fields (CRC fixed)": _header_fields,
    "params (CRC fixed)": _params_edits,
    "payload (CRC fixed)": _payload_edits,
}


def _split(total: int, weights: list[float]) -> list[int]:
    """``total`` split in proportion to ``weights`` (largest remainders), summing exactly to ``total``."""
    raw = [total * w / sum(weights) for w in weights]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])[: total - sum(counts)]:
        counts[i] += 1
    return counts


_MAX_MISSES = 64


def generate_cases(seeds: list[Seed], count: int, seed: int = 0,
                   scale2_fraction: float = SCALE2_FRACTION) -> list[Case]:
    """``count`` hostile variants of ``seeds``, spread evenly over seeds and by :data:`WEIGHTS`
    over categories, in a shuffled (deterministic) order; none is byte-identical to its seed, and
    an input repeats within a (seed, category) only once the generator has failed to find a new one
    many times in a row."""
    pool: dict[str, list] = collections.defaultdict(list)
    for s in seeds:
        for key, value in _params_of(s.data).items():
            if value not in pool[key]:
                pool[key].append(value)
    per_seed = _split(count, [1.0] * len(seeds))
    cases: list[Case] = []
    for s, n in zip(seeds, per_seed):
        for category, k in zip(CATEGORIES, _split(n, [WEIGHTS[c] for c in CATEGORIES])):
            rng = random.Random(f"{seed}/{s.name}/{category}")
            made, seen, misses = 0, {hashlib.sha1(s.data).digest()}, 0
            for label, mutated in _GENERATORS[category](s, rng, pool):
                if made >= k:
                    break
                digest = hashlib.sha1(mutated).digest()
                if digest in seen and (mutated == s.data or misses < _MAX_MISSES):
                    misses += 1  # a repeat: try for a new input a few times, then take it
                    continue
                seen.add(digest)
                misses = 0
                scale = 2 if rng.random() < scale2_fraction else 1
                cases.append(Case(-1, s.name, s.codec, category, label, scale, mutated))
                made += 1
    random.Random(f"{seed}/order").shuffle(cases)
    for i, case in enumerate(cases):
        case.index = i
    return cases

