import pathlib
import sys

# Let the suite run from a source checkout without an install (CI installs the package anyway),
# and let tests of the benchmark adapters import ``benchmarks`` from the repository root.
ROOT = pathlib.Path(__file__).resolve().parents[1]
for path in (ROOT / "src", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
