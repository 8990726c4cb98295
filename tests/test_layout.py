"""
The house: one room per concern. The package's import graph has no circle; the remote code a folder carries is made
from the modules' own import statements, and an import it cannot place stops the save before anything is written;
the paper's modeling file holds the paper alone.
"""

import ast
import shutil
from pathlib import Path

import pytest

import vaswani
from helpers import tiny_config
from vaswani import VaswaniForCausalLM
from vaswani.hub import RemoteCodeError, hub_vaswani


PACKAGE = Path(vaswani.__file__).resolve().parent


# -- The import graph ---------------------------------------------------------------------------------------------------
def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package modules `path` imports anywhere in it (module level or inside functions), as dotted names."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            # `from x import y` imports the module x.y when there is one, else the names of x.
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known}
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    files = {_module_name(path): path for path in root.rglob("*.py")}
    return {name: _imported_modules(path, set(files)) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A circle of imports as [a, b, ..., a], or None (depth-first search with colours)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "vaswani.hub.hub_vaswani" in graph["vaswani.modeling.modeling_vaswani"]  # module level, relative
    assert "vaswani.training.run" in graph["vaswani.cli"]  # inside a function
    assert "vaswani.modeling.cache_vaswani" in graph["vaswani.modeling.modeling_vaswani_heads"]


def test_the_package_imports_have_no_circle():
    """Modeling imports the hub (saving); the hub must not import modeling back, lazily or not."""
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_modeling_file_holds_the_paper_alone():
    """Cache, kernels, validation, version shims and Hub I/O live in modules of their own."""
    source = (PACKAGE / "modeling" / "modeling_vaswani.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    defined = {node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}
    assert {"VaswaniCacheLayer", "VaswaniDynamicCache", "VaswaniLinear", "validate_inputs", "check_attention_mask",
            "onednn_linear_applies", "save_pretrained", "push_to_hub"}.isdisjoint(defined)
    assert {"VaswaniEmbeddings", "VaswaniAttention", "VaswaniFeedForward", "VaswaniEncoderLayer", "VaswaniDecoderLayer",
            "VaswaniEncoder", "VaswaniDecoder", "VaswaniModel"} <= defined
    assert "CACHE_NAME" not in source and "/proc/cpuinfo" not in source and "tempfile" not in source


# -- The remote code, from the modules' own imports ---------------------------------------------------------------------
@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    """A copy of the package's sources that the remote-code builder reads instead of the installed ones."""
    copy = tmp_path / "vaswani"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "data", "*.md"))
    monkeypatch.setattr(hub_vaswani, "_source_root", lambda: (copy, False))
    return copy


def _append_import(path: Path, line: str):
    source = path.read_text(encoding="utf-8")
    marker = "\nfrom .cache_vaswani import"
    assert marker in source
    path.write_text(source.replace(marker, f"\n{line}{marker}", 1), encoding="utf-8")


@pytest.mark.parametrize(
    "line, says",
    [
        ("import numpy", "imports 'numpy'"),
        ("from safetensors.torch import load_file", "imports 'safetensors.torch'"),
        ("from vaswani.training import data", "imports 'vaswani.training'"),
        ("from ..training import data", "data.py:.* imports 'datasets'"),  # a module that itself cannot travel
        ("from ..modeling import VaswaniModel", "imports from the package 'modeling' itself"),
        ("from .no_such_module import thing", "names no module of the package"),
    ],
)
def test_an_import_the_folder_cannot_carry_stops_the_save(package_copy, tmp_path, line, says):
    _append_import(package_copy / "modeling" / "modeling_vaswani.py", line)
    folder = tmp_path / "saved"
    with pytest.raises(RemoteCodeError, match=says):
        VaswaniForCausalLM(tiny_config()).save_pretrained(folder)
    assert not folder.exists() or not any(folder.iterdir()), "nothing may be written"


def test_a_new_module_reaches_the_folder_through_its_import(package_copy, tmp_path):
    (package_copy / "modeling" / "rotary_vaswani.py").write_text('"""A new concern."""\n\nimport torch\n\nANSWER = 42\n')
    _append_import(package_copy / "modeling" / "modeling_vaswani.py", "from .rotary_vaswani import ANSWER")
    files = hub_vaswani.remote_code()
    assert "rotary_vaswani.py" in files
    assert "from .rotary_vaswani import ANSWER" in files["modeling_vaswani.py"]


def test_package_imports_are_made_flat(tmp_path):
    files = hub_vaswani.remote_code()
    for name, source in files.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and f"{node.module}.py" in files, f"{name}: {ast.unparse(node)}"
    assert "from .configuration_vaswani import VaswaniConfig" in files["modeling_vaswani.py"]


def test_flat_module_names_are_unique_in_the_package():
    """A saved folder is flat: two modules of one name would overwrite each other."""
    names = [path.name for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


# -- The README says what lives where -----------------------------------------------------------------------------------
def test_the_readme_layout_section_names_every_module():
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Layout"):]
    section = section[: section.index("\n## ", 4)] if "\n## " in section[4:] else section
    modules = [path for path in PACKAGE.rglob("*.py") if path.name != "__init__.py" and "metrics" not in path.parts]
    missing = [str(path.relative_to(PACKAGE)) for path in modules if path.name not in section]
    assert not missing, f"README's layout section does not name {missing}"


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent in (PACKAGE, PACKAGE / "modeling"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_module_says_what_lives_in_it(path):
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    assert docstring and len(docstring) > 40, f"{path.relative_to(PACKAGE)} has no module docstring"

