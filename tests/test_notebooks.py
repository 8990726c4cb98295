"""
The tutorial notebooks in notebooks/: each runs top to bottom in its quick setting (VASWANI_NOTEBOOK_FAST=1,
offline), and the committed copies are the generator's cells with the outputs of a real full run.
"""

import importlib.util
from pathlib import Path

import nbformat
import pytest


ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NAMES = ["01_quickstart", "02_bert_style", "03_gpt_style", "04_translation", "05_inside_attention", "06_sharing",
         "07_vision"]
WITH_FIGURES = {"02_bert_style", "03_gpt_style", "04_translation", "05_inside_attention", "07_vision"}


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOK_DIR / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _committed(name: str):
    return nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)


def _outputs(notebook):
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def test_the_notebooks_are_there_and_the_generator_knows_them():
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == NAMES
    assert list(_builder().NOTEBOOKS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_the_fast_setting(name, tmp_path, monkeypatch):
    """Every cell runs without an error (nbclient raises CellExecutionError naming the cell otherwise)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    builder = _builder()
    notebook = builder.execute(builder.build(name), fast=True, output_dir=tmp_path, timeout=600)
    assert not [o for o in _outputs(notebook) if o.output_type == "error"]
    assert "FAST = True" in "".join(o.get("text", "") for o in notebook.cells[1].outputs)
    assert (tmp_path / name).is_dir(), "the notebook wrote outside VASWANI_NOTEBOOK_OUTPUT"


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_a_full_run_of_the_generator_cells(name):
    committed = _committed(name)
    built = _builder().build(name)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in built.cells], (
        f"{name}.ipynb differs from build_notebooks.py: run `python notebooks/build_notebooks.py --execute --only {name}`"
    )
    assert committed.metadata.get("vaswani", {}).get("fast") is False, "commit the outputs of a full run"
    code_cells = [c for c in committed.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code_cells] == list(range(1, len(code_cells) + 1)), "run top to bottom"
    assert all(c.outputs for c in code_cells), "every code cell shows something"
    outputs = _outputs(committed)
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr" and "Traceback" in o.text]
    assert "FAST = False" in "".join(o.get("text", "") for o in code_cells[0].outputs)
    images = [o for o in outputs if o.output_type in ("display_data", "execute_result") and "image/png" in o.data]
    if name in WITH_FIGURES:
        assert images, f"{name} draws figures: they must be embedded as PNG"
    # Local paths of the machine that ran them do not belong in committed outputs.
    assert str(ROOT) not in nbformat.writes(committed)
