"""
The attention explorer as a Hugging Face Space: `write_space(model_dir, folder)` writes, whole or not at all, a folder
a Space runs as it is: `app.py` (`APP`, also the repository's own app.py), `requirements.txt`, a `README.md` with the
Space's front matter (sdk: gradio), the model's files in `model/`, and the source of the `vaswani` package, which
app.py imports.
"""

import importlib.metadata
import json
import shutil
from pathlib import Path

from packaging.requirements import Requirement


# pyproject.toml's `explore` extra (a test checks they agree): what the page needs beyond the package.
EXPLORE_REQUIREMENTS = ("gradio>=6", "matplotlib>=3.8")
APP = '''"""
The attention explorer (a Gradio page): type a sentence, see the model's output, pick a layer and a head to see its
attention weights. It serves $VASWANI_MODEL, else the `model/` folder beside this file (a Space written by
`vaswani explore MODEL --space DIR`), else the demo's model (`make demo`). Run it with `python app.py`.
"""

from pathlib import Path

from vaswani.explore.explorer import app_model, build_explorer


demo = build_explorer(app_model(Path(__file__).resolve().parent))

if __name__ == "__main__":
    demo.launch()
'''
CARD = """---
title: {title}
emoji: 🔍
colorFrom: indigo
colorTo: blue
sdk: gradio
sdk_version: {gradio_version}
app_file: app.py
pinned: false
---

# The attention explorer of the `vaswani` package (the original Transformer in the Hugging Face ecosystem) on the
model `{model}` ({architecture}): type a sentence, see the model's output, and pick the attention, layer and head to
see its weights as a heat map.

Files: `app.py` (the page), `model/` (the model's weights, config and tokenizer), `vaswani/` (the package's source,
which app.py imports), `requirements.txt`. Run it anywhere with `pip install -r requirements.txt && python app.py`.
"""


def space_requirements() -> list[str]:
    """The package's own requirements (its extras left out) and the explorer's, one per line of requirements.txt."""
    try:
        declared = importlib.metadata.requires("vaswani") or []
    except importlib.metadata.PackageNotFoundError:
        raise ValueError("Writing a Space reads the package's requirements from its installed metadata: install "
                         "vaswani (pip install -e '.[explore]') first.") from None
    runtime = [str(Requirement(line)) for line in declared if Requirement(line).marker is None]
    return runtime + list(EXPLORE_REQUIREMENTS)


def _gradio_version() -> str:
    """The Space's gradio: the one installed here (the page was tried on it), else the least the explorer takes."""
    try:
        return importlib.metadata.version("gradio")
    except importlib.metadata.PackageNotFoundError:
        least = next(Requirement(line) for line in EXPLORE_REQUIREMENTS if line.startswith("gradio"))
        return next(iter(least.specifier)).version


def _package_source() -> Path:
    import vaswani

    return Path(vaswani.__file__).resolve().parent


def write_space(model_dir, folder, overwrite: bool = False) -> dict:
    """
    Write the Space folder `folder` for the saved model in `model_dir` (its files; subfolders such as checkpoints
    are left out) and return what it holds. The folder appears whole or not at all; an existing non-empty one is
    replaced only with `overwrite` (else `FileExistsError`).
    """
    from ..training.run import folder_written_whole
    from .explorer import Explorer

    model_dir, folder = Path(model_dir), Path(folder)
    explorer = Explorer(model_dir)  # the model must load before a Space is written around it
    files = sorted(path for path in model_dir.iterdir() if path.is_file())
    requirements = space_requirements()
    with folder_written_whole(folder, overwrite) as staging:
        (staging / "app.py").write_text(APP, encoding="utf-8")
        (staging / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(
            CARD.format(title=json.dumps(f"Attention explorer: {model_dir.name}"), gradio_version=_gradio_version(),
                        model=model_dir.name, architecture=explorer.architecture),
            encoding="utf-8",
        )
        (staging / "model").mkdir()
        for path in files:
            shutil.copy2(path, staging / "model" / path.name)
        shutil.copytree(_package_source(), staging / "vaswani", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return {"model": f"{model_dir} ({explorer.architecture}), {len(files)} files", "app": "app.py",
            "requirements": ", ".join(requirements)}
