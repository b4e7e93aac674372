"""The fuzz harness (tests/fuzz_harness.py): a CI-sized run finds no bug, the corpus replays
cleanly, and the harness itself reports crashes, hangs and stray exceptions when they happen."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fuzz_harness as fh
from fuzz_harness import CLEAN, CRASH, DECODED, HANG, OTHER, Case

#: Cases of the CI run: ~20 s here on 2 cores (the harness's budget was ~90 s).
CI_CASES = 3000
CI_SEED = 20260

#: Corpus files of bugs not fixed yet: "codec/sha1.clg" -> what goes wrong. Each is an xfail(strict).
KNOWN_BUGS: dict[str, str] = {}

CODECS = ("pifs", "neural", "fractal-art")


@pytest.fixture(scope="module")
def seeds():
    return fh.build_seeds()


def _bugs(summary) -> str:
    return "\n".join(
        f"{f['outcome']}: {f['codec']} / {f['category']} / {f['label']} (scale {f['scale']}): "
        f"{f.get('type')}: {f.get('message', '')}\n{f.get('traceback', f.get('stderr', ''))}"
        for f in summary["failures"][:10]
    )


# ------------------------------------------------------------------------------------- the CI run


@pytest.mark.slow
def test_a_ci_sized_run_over_every_codec_finds_no_bug(tmp_path):
    corpus = tmp_path / "corpus"
    summary = fh.fuzz(CI_CASES, seed=CI_SEED, workers=2, corpus=corpus)
    totals = summary["totals"]
    assert summary["cases"] == totals["cases"] == CI_CASES
    assert (totals["other_exceptions"], totals["hangs"], totals["crashes"]) == (0, 0, 0), (
        f"decoder bugs (inputs saved under {corpus}; copy them to tests/fuzz_corpus/):\n{_bugs(summary)}")
    assert totals["clean_errors"] + totals["decoded"] == CI_CASES
    assert fh.corpus_files(corpus) == []

    # Every codec and every category was exercised, with mostly distinct inputs.
    cells = {(row["codec"], row["category"]): row for row in summary["by_codec_and_category"]}
    assert set(cells) == {(c, k) for c in CODECS for k in fh.CATEGORIES}
    assert all(row["cases"] >= 20 for row in cells.values()), {k: r["cases"] for k, r in cells.items()}
    assert totals["distinct"] > 0.9 * CI_CASES

    # The CRC-fixed categories get past the container to the codecs' own checks and decoders.
    cats = summary["by_category"]
    assert "coding/container.py" not in cats["payload (CRC fixed)"]["raised_in"]
    for name in ("header fields (CRC fixed)", "params (CRC fixed)"):
        cat = cats[name]
        beyond = cat["decoded"] + sum(n for where, n in cat["raised_in"].items() if where != "coding/container.py")
        assert beyond > 0.15 * cat["cases"], (name, cat["raised_in"])
    for codec in CODECS:
        raised = summary["by_codec"][codec]["raised_in"]
        assert any(where.startswith(f"codecs/{codec.replace('-', '_')}/") for where in raised), (codec, raised)
    # ... while the stale-CRC ones stop at the container.
    for name in ("raw flips", "truncation"):
        assert set(cats[name]["raised_in"]) == {"coding/container.py"}, cats[name]["raised_in"]

    # The workers stayed small: well under their address-space limit.
    assert 0 < totals["peak_rss_mb"] < fh.DEFAULT_MEMORY_MB
    assert summary["worker_restarts"] == 0


def test_cases_are_deterministic_hostile_and_spread_over_categories(seeds):
    cases = fh.generate_cases(seeds, 500, seed=7)
    again = fh.generate_cases(seeds, 500, seed=7)
    other = fh.generate_cases(seeds, 500, seed=8)
    assert [(c.label, c.data, c.scale) for c in cases] == [(c.label, c.data, c.scale) for c in again]
    assert [c.data for c in cases] != [c.data for c in other]
    assert len(cases) == 500 and [c.index for c in cases] == list(range(500))
    valid = {s.name: s.data for s in seeds}
    assert all(c.data != valid[c.seed] for c in cases)
    per_seed = {name: sum(c.seed == name for c in cases) for name in valid}
    assert set(per_seed.values()) == {50}
    for category, weight in fh.WEIGHTS.items():
        assert abs(sum(c.category == category for c in cases) - 500 * weight) <= len(seeds)
    assert {c.scale for c in cases} == {1, 2}
    # The CRC-fixed categories really have a valid checksum; the raw flips and truncations almost never.
    fixed = [c for c in cases if "CRC fixed" in c.category and len(c.data) >= 4]
    assert sum(fh.fuzzing.with_fixed_crc(c.data) == c.data for c in fixed) > 0.9 * len(fixed)
    stale = [c for c in cases if c.category in ("raw flips", "truncation") and len(c.data) >= 4]
    assert sum(fh.fuzzing.with_fixed_crc(c.data) == c.data for c in stale) < 0.1 * len(stale)


# ----------------------------------------------------------------------------------- the corpus


def _corpus_params():
    params = []
    for path in fh.corpus_files():
        name = path.relative_to(fh.CORPUS).as_posix()
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])] if name in KNOWN_BUGS else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(scope="module")
def replayed():
    return fh.replay(fh.corpus_files())


@pytest.mark.parametrize("name", _corpus_params())
def test_b_corpus_file_gives_a_clean_error_or_decodes(name, replayed):
    path = str(fh.CORPUS / name)
    for scale in (1, 2):
        result = replayed[(path, scale)]
        assert result["outcome"] in (CLEAN, DECODED), (scale, result)


def test_corpus_readme_lists_exactly_the_files_there():
    readme = (fh.CORPUS / "README.md").read_text(encoding="utf-8")
    assert "## Cases" in readme
    listed = set(re.findall(r"^- `([^`]+\.clg)`", readme, flags=re.M))
    present = {p.relative_to(fh.CORPUS).as_posix() for p in fh.corpus_files()}
    assert listed == present
    assert set(KNOWN_BUGS) <= present
    for name in present:
        codec, file = name.split("/")
        assert codec in CODECS and re.fullmatch(r"[0-9a-f]{40}\.clg", file), name
        assert fh.hashlib.sha1((fh.CORPUS / name).read_bytes()).hexdigest() == file[:-4]


# -------------------------------------------------------------------------- the harness can fail


@pytest.mark.slow
def test_c_the_harness_reports_crashes_hangs_and_stray_exceptions(seeds, tmp_path):
    valid = next(s for s in seeds if s.name == "pifs-q1")
    data = valid.data
    hooks = {0: "crash", 1: "hang", 2: "value-error", 3: "memory", 4: "exit", 5: "bad-output"}
    other_valid = next(s for s in seeds if s.name == "pifs-q4").data  # the bad output needs a valid header
    inputs = [data[:n] for n in (10, 11, 12, 13, 14)] + [other_valid, data[:-1], data]  # distinct bytes
    cases = [Case(i, valid.name, valid.codec, "hooks", f"case {i}", 1, d) for i, d in enumerate(inputs)]
    results, info = fh.run_cases(cases, [valid], workers=1, timeout=2.0, memory_mb=1024, hooks=hooks)

    assert [r["outcome"] for r in results] == [CRASH, HANG, OTHER, CRASH, CRASH, OTHER, CLEAN, DECODED]
    crash, hang, stray, memory, exited, bad, clean, decoded = results
    assert crash["crash"] == "killed by SIGSEGV" and "Segmentation fault" in crash["stderr"]
    assert hang["type"] == "Timeout" and hang["seconds"] >= 2.0 and "fresh worker" in hang["message"]
    assert stray["type"] == "ValueError" and stray["message"] == "injected by the test hook"
    assert "_run_hook" in stray["traceback"] and stray["raised_in"] == "fuzz_worker.py"
    assert memory["type"] == "MemoryError" and "RLIMIT_AS=1024" in memory["crash"]
    assert exited["crash"] == "exited with status 0"
    assert bad["type"] == "InvalidOutput" and "(3, 2, 2)" in bad["message"]
    assert clean["type"] == "FormatError" and clean["raised_in"] == "coding/container.py"
    # A fresh worker after the segfault, two for the hang (and its rerun), one after each death.
    assert info["worker_restarts"] == 5

    summary = fh.summarise(cases, results)
    counts = {k: summary["totals"][k] for k in ("cases", "clean_errors", "decoded", "other_exceptions", "hangs",
                                                  "crashes")}
    assert counts == {"cases": 8, "clean_errors": 1, "decoded": 1, "other_exceptions": 2, "hangs": 1, "crashes": 3}
    assert [f["index"] for f in summary["failures"]] == [0, 1, 2, 3, 4, 5]

    # Every failure goes to the corpus, once, with a README line; replayed without the hooks they
    # give clean errors (prefixes of a valid file) or decode (the valid file).
    corpus = tmp_path / "corpus"
    written = fh.record_corpus(cases, results, corpus)
    fh.record_corpus(cases, results, corpus)
    assert sorted(written) == fh.corpus_files(corpus) and len(written) == 6
    assert all(p.parent.name == "pifs" and p.read_bytes() in inputs[:6] for p in written)
    readme = (corpus / "README.md").read_text(encoding="utf-8")
    assert "(none yet)" not in readme and len(re.findall(r"^- `pifs/[0-9a-f]{40}\.clg`", readme, re.M)) == 6
    assert "crash at scale 1 (killed by SIGSEGV)" in readme and "hang at scale 1" in readme
    back = fh.replay(written, seeds=[valid], workers=1)
    assert len(back) == 12
    for (path, scale), r in back.items():
        assert r["outcome"] == (DECODED if Path(path).read_bytes() == other_valid else CLEAN), (path, scale, r)


@pytest.mark.slow
def test_the_command_line_writes_json_and_the_corpus_and_fails_on_a_bug(tmp_path):
    out, corpus = tmp_path / "fuzz.json", tmp_path / "corpus"
    command = [sys.executable, str(Path(fh.__file__)), "--cases", "40", "--seed", "5", "--workers", "1",
               "--out", str(out), "--corpus", str(corpus), "--test-hook", "3:value-error"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    summary = json.loads(out.read_text())
    assert summary["cases"] == 40 and summary["seed"] == 5 and "--cases 40" in summary["command"]
    totals = summary["totals"]
    assert (totals["other_exceptions"], totals["hangs"], totals["crashes"]) == (1, 0, 0)
    assert totals["clean_errors"] + totals["decoded"] == 39
    (failure,) = summary["failures"]
    assert failure["index"] == 3 and failure["type"] == "ValueError"
    assert summary["corpus_files"] == [f"{failure['codec']}/{failure['sha1']}.clg"]
    assert (corpus / summary["corpus_files"][0]).is_file()
    assert "| **all** | 40 |" in result.stdout

    ok = subprocess.run(command[:-2] + ["--no-corpus"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(out.read_text())["totals"]["other_exceptions"] == 0
