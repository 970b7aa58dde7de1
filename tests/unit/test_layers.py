"""ARCHITECTURE.md's module map holds: a module imports only from its own layer or the
layers below it, the torch-free layers import no torch, and the map names every module."""

import ast
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "src" / "clpipe"

# ARCHITECTURE.md's layers, top to bottom. "x.*" is every module under x not named on
# its own (so a new method file is in the methods layer without an entry here).
LAYERS = {
    "tools": ["clpipe.reference"],
    "steps": ["clpipe.steps", "clpipe.steps.*"],
    "methods": ["clpipe.methods.*"],
    "training loop": ["clpipe.training", "clpipe.epochs"],
    "method interface": ["clpipe.methods.base"],
    "library": [
        "clpipe.evaluation",
        "clpipe.optim",
        "clpipe.networks",
        "clpipe.networks.*",
        "clpipe.data",
        "clpipe.data.*",
        "clpipe.datasets",
        "clpipe.scenarios",
        "clpipe.metrics",
        "clpipe.stats",
        "clpipe.aggregate",
        "clpipe.results_tables",
        "clpipe.comparisons",
        "clpipe.rendering",
        "clpipe.figures",
        "clpipe.report_page",
        "clpipe.live",
        "clpipe.checkpoints",
        "clpipe.runtime",
    ],
    "planning": [
        "clpipe.config",
        "clpipe.experiment",
        "clpipe.config_input",
        "clpipe.config_model",
        "clpipe.config_train",
        "clpipe.model_settings",
        "clpipe.plan",
        "clpipe.catalog",
        "clpipe.data_checks",
        "clpipe.user_datasets",
        "clpipe.md5_cache",
        "clpipe.transforms",
        "clpipe.plugins",
        "clpipe.fingerprint",
        "clpipe.progress",
        "clpipe.methods",
        "clpipe.methods.traits",
    ],
    "foundations": [
        "clpipe",
        "clpipe.errors",
        "clpipe.layout",
        "clpipe.hashing",
        "clpipe.io",
        "clpipe.receipts",
        "clpipe.logs",
        "clpipe.provenance",
        "clpipe.cpu_isa",
        "clpipe.gpus",
        "clpipe.resources",
        "clpipe.run_folder",
    ],
}
TORCH_FREE = ("planning", "foundations")


def package_modules() -> dict[str, object]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def layer_of(module: str) -> int | None:
    """The index of ``module``'s layer (0: the top): a name listed on its own first, then
    the nearest package listed with ``.*``."""
    names = list(LAYERS)
    for i, name in enumerate(names):
        if module in LAYERS[name]:
            return i
    parts = module.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        for i, name in enumerate(names):
            if ".".join(parts[:cut]) + ".*" in LAYERS[name]:
                return i
    return None


def _type_checking_only(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(path, modules) -> set[str]:
    """The package modules ``path`` imports, at its top or inside a function (both run),
    not those only a type checker reads."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(n)
        for top in ast.walk(tree)
        if isinstance(top, ast.If) and _type_checking_only(top)
        for n in ast.walk(top)
    }
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "clpipe":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "clpipe"}
    return out


def test_every_module_is_in_a_layer():
    unplaced = [m for m in package_modules() if layer_of(m) is None]
    assert not unplaced, f"place these in a layer of ARCHITECTURE.md and of LAYERS here: {unplaced}"


def test_no_module_imports_from_a_layer_above_its_own():
    modules = package_modules()
    names = list(LAYERS)
    upward = []
    for module, path in modules.items():
        mine = layer_of(module)
        for imported in imports_of(path, modules):
            theirs = layer_of(imported)
            if theirs is not None and mine is not None and theirs < mine:
                upward.append(f"{module} ({names[mine]}) imports {imported} ({names[theirs]})")
    assert not upward, "\n".join(upward)


def test_the_torch_free_layers_import_no_torch():
    free = [
        m for m in package_modules() if layer_of(m) is not None and list(LAYERS)[layer_of(m)] in TORCH_FREE
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {free!r}:\n"
        "    importlib.import_module(m)\n"
        "    assert 'torch' not in sys.modules, f'{m} imports torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_architecture_map_names_every_layer_and_module():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    map_ = text[text.index("## Module map") :]
    map_ = map_[: map_.index("\n## ", 4)]
    for module in package_modules():
        short = module.removeprefix("clpipe.").removeprefix("methods.").split(".")[-1]
        if module == "clpipe" or short == "__init__":
            continue
        named = (f"`{short}`", f"`{module}`")
        assert any(name in map_ for name in named), f"ARCHITECTURE.md's module map does not name {module}"
