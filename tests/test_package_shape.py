"""The package's shape: imports run one way (no cycle, lazy imports included) and no module
grows past 800 lines. Both are read from the source with ``ast``, so a cycle hidden in a
function-level import fails here as it would at the first unlucky call order."""

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

PKG = Path(__file__).resolve().parents[1] / "cifrenet_edge"
MAX_LINES = 800


def _modules() -> Dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if p.name == "__init__.py" else parts)] = p
    return mods


def import_graph() -> Dict[str, Set[str]]:
    """module -> the package modules it imports anywhere in its body (a module importing its
    own parent package is no edge: the parent is already loading)."""
    mods = _modules()
    edges: Dict[str, Set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".")
                    base = base[: len(base) - node.level + (1 if p.name == "__init__.py" else 0)]
                    head = ".".join(base + ([node.module] if node.module else []))
                else:
                    head = node.module or ""
                names = [head] + [head + "." + a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            edges[m] |= {n for n in names if n in mods and n != m and not m.startswith(n + ".")}
    return edges


def find_cycle(edges: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle as a path of modules, or None."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    stack: List[str] = []

    def visit(m: str) -> Optional[List[str]]:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_find_cycle_sees_a_lazy_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_runtime_never_imports_the_toolkit_stages():
    """The robot's part (runtime, trt, the shared core) imports nothing from the stages that
    need PyTorch or ONNX (model, export, quantize, bench, serve, cli), except where the import
    is the optional extra itself."""
    heavy = ("model", "export", "quantize", "bench", "serve", "cli", "accuracy")
    optional = {
        # the PyTorch backend opens checkpoints: it exists only where torch does
        ("cifrenet_edge.runtime.backends.torch", "cifrenet_edge.model.weights"),
        # an FP16 build for a strongly typed target converts the ONNX when onnx is installed
        ("cifrenet_edge.trt.build", "cifrenet_edge.quantize.fp16"),
    }
    edges = import_graph()
    bad = [
        (m, n)
        for m, targets in edges.items()
        if m.split(".")[1:2] in (["runtime"], ["trt"])
        for n in targets
        if n.split(".")[1:2] and n.split(".")[1] in heavy and (m, n) not in optional
    ]
    assert bad == []


def test_no_module_past_800_lines():
    big = {
        str(p.relative_to(PKG.parent)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert big == {}


def _names_a_manifest(node: ast.AST) -> bool:
    """``manifest``, ``self._manifest``, ``model_manifest``, ``seg.manifest``, ``man`` ..."""
    ident = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return "manifest" in ident.lower() or ident in ("man", "m8")


def string_key_lookups(tree: ast.AST) -> List[int]:
    """Lines that read a manifest by string key: ``x["k"]`` or ``x.get("k")`` on a name that
    says manifest."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _names_a_manifest(node.value):
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                found.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and _names_a_manifest(node.func.value)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(node.lineno)
    return found


def test_the_lookup_finder_sees_each_form():
    code = "a = manifest['k']\nb = self._manifest.get('k')\nc = model_manifest['k']\nd = m.k"
    assert string_key_lookups(ast.parse(code)) == [1, 2, 3]


def test_the_package_reads_manifests_through_their_type():
    """Manifest fields are attributes (``m.precision``, ``m.variant(name)``): a string-key
    lookup outside ``manifest.py`` would bring back the silent ``.get`` default a misspelt
    key gives."""
    found = [
        f"{p.relative_to(PKG.parent)}:{line}"
        for p in PKG.rglob("*.py")
        if p.name != "manifest.py"
        for line in string_key_lookups(ast.parse(p.read_text()))
    ]
    assert found == []


def test_no_test_module_imports_another():
    """Shared cases live in tests/support (fixtures registered by conftest), so a test
    module runs alone and no test module's import side effects leak into another."""
    tests = Path(__file__).resolve().parent
    bad = []
    for p in list(tests.glob("*.py")) + list((tests / "support").glob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            bad += [f"{p.name} imports {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert bad == []
