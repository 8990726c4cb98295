"""
The attention explorer (a Gradio page): type a sentence, see the model's output, pick a layer and a head to see its
attention weights. It serves $VASWANI_MODEL, else the `model/` folder beside this file (a Space written by
`vaswani explore MODEL --space DIR`), else the demo's model (`make demo`). Run it with `python app.py`.
"""

from pathlib import Path

from vaswani.explore.explorer import app_model, build_explorer


demo = build_explorer(app_model(Path(__file__).resolve().parent))

if __name__ == "__main__":
    demo.launch()
