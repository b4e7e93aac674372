"""The package's layout rules (docs/architecture.md), checked on the source rather than trusted.

* ``core``, ``coding`` and ``imaging`` import nothing of the project but the leaf modules;
* every subpackage imports only the subpackages below it;
* no inference path imports training code (checked statically and at run time);
* no private name is imported from another module.
"""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "neural_collages"
LEAVES = {"errors", "checks", "limits", "jsondoc"}
#: Subpackage -> project subpackages (besides itself and the leaves) it may import.
ALLOWED = {
    "core": set(),
    "coding": set(),
    "imaging": set(),
    "assets": set(),
    "models": {"core", "coding", "imaging", "assets"},
    "codecs": {"core", "coding", "imaging", "models", "assets"},
    "training": {"core", "coding", "imaging", "models", "ifs", "vae", "assets"},
    "fractal_art": {"core", "coding", "imaging", "codecs", "assets"},
    "ifs": {"core", "imaging", "models", "assets"},
    "vae": {"core", "imaging", "models", "assets"},
    "batch": {"coding", "imaging", "codecs"},
    "apps": {"core", "coding", "imaging", "models", "codecs", "training", "fractal_art", "ifs", "vae", "batch",
             "assets"},
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, parts


def _project_imports(path: Path, parts: tuple[str, ...]):
    """(absolute dotted name below neural_collages, imported names) of every project import."""
    package = parts[:-1]  # a module's package; an __init__ is its own package, also parts[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = list(base) + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "neural_collages":
                target = node.module.split(".")[1:]
            else:
                continue
            names = [a.name for a in node.names]
            if not node.module and node.level:  # "from . import x" / "from .. import x"
                for name in names:
                    yield target + [name], []
            else:
                yield target, names
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "neural_collages":
                    yield alias.name.split(".")[1:], []


def test_subpackages_import_only_what_the_layout_allows():
    problems = []
    for path, parts in _modules():
        if len(parts) < 2:
            continue  # top-level modules: the package face and the leaves
        own = parts[0]
        for target, _ in _project_imports(path, parts):
            if not target or target[0] in LEAVES or target[0] == own:
                continue
            if target[0] not in ALLOWED.get(own, set()):
                problems.append(f"{'/'.join(parts)} imports {'.'.join(target)}")
    assert not problems, "\n".join(problems)


def test_leaf_modules_import_nothing_of_the_project_but_errors():
    for name in LEAVES:
        for target, _ in _project_imports(PACKAGE / f"{name}.py", (name,)):
            assert target[:1] == ["errors"], f"{name}.py imports {'.'.join(target)}"


def test_no_private_names_are_imported_across_modules():
    problems = []
    for path, parts in _modules():
        for target, names in _project_imports(path, parts):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                problems.append(f"{'/'.join(parts)} imports {private} from {'.'.join(target)}")
    assert not problems, "\n".join(problems)


def test_inference_never_imports_training_code():
    probe = (
        "import sys\n"
        "from neural_collages import codecs\n"
        "from neural_collages.assets import sample_image_path\n"
        "from neural_collages.imaging.io import load_image\n"
        "x = load_image(sample_image_path())[:, :64, :64]\n"
        "for codec in ('pifs', 'neural'):\n"
        "    codecs.decompress(codecs.compress(x, codec, 1), 2)\n"
        "from neural_collages.vae.files import find_vae, load_vae\n"
        "load_vae(find_vae('mnist-collage'))[0].sample(2, scale=2)\n"
        "print(sorted(m for m in sys.modules if m.startswith('neural_collages.training')))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
