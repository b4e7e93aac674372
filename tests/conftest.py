import pathlib
import sys

# Let the suite run from a source checkout without an install (CI installs the package anyway).
SRC = pathlib.Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
