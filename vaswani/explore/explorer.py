"""
The attention explorer: a Gradio page (`build_explorer(model_dir)`, `vaswani explore MODEL`, the Space's `app.py`)
where a person types a sentence, sees what a saved Vaswani model makes of it (a continuation, a translation, a
label, filled masks) and picks a kind of attention, a layer and a head to see that head's weights as a heat map over
the tokens.

`Explorer` does the model's side (load, run, draw) without gradio, so it is tested without a browser; gradio is
imported only inside `build_explorer`, so `import vaswani` never needs it.
"""

import os
import threading
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoTokenizer

from ..hub.hub_vaswani import HEADS
from .maps import AttentionMaps, attention_maps


DEMO_MODEL = Path("outputs") / "demo" / "shakespeare-gpt"  # what `make demo` writes (vaswani/demo.py)
NEW_TOKENS = 40  # a causal model's continuation, and the longest translation: a few dozen tokens
KINDS = {  # the kinds of map a model's stacks have, in the order the page offers them
    "encoder-decoder": ("encoder", "decoder", "cross"),
    "encoder-only": ("encoder",),
    "decoder-only": ("decoder",),
}
KIND_LABELS = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention (masked)",
    "cross": "cross-attention (decoder queries, encoder keys)",
}


def app_model(here: Path) -> Path:
    """
    The model an `app.py` in folder `here` serves: `$VASWANI_MODEL`, else the `model/` folder beside it (a Space
    folder), else the demo's model under it (the repository).
    """
    if os.environ.get("VASWANI_MODEL"):
        return Path(os.environ["VASWANI_MODEL"])
    for folder in (Path(here) / "model", Path(here) / DEMO_MODEL):
        if (folder / "config.json").is_file():
            return folder
    raise ValueError(
        f"No model to explore: set VASWANI_MODEL to a saved model folder, put one in {Path(here) / 'model'}, or run "
        f"`make demo` (it writes {Path(here) / DEMO_MODEL})."
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _label(token: str) -> str:
    """A token as an axis label: whitespace made visible."""
    if token.isspace():
        return token.replace(" ", "\u2423").replace("\n", "\\n").replace("\t", "\\t")
    return token.replace("\n", "\\n")


class Explorer:
    """
    A saved Vaswani model folder, loaded through the Auto class of its head (`HEADS`) with its tokenizer, and what
    the page does with it: `run(text)` gives the model's output and the attention maps, `draw(maps, kind, layer,
    head)` one head's map as an image.
    """

    def __init__(self, model_dir):
        folder = Path(model_dir)
        if not (folder / "config.json").is_file():
            raise ValueError(
                f"`model_dir` {folder} holds no model (config.json missing): pass a folder a vaswani command wrote, "
                f"such as `make demo`'s {DEMO_MODEL}."
            )
        try:
            config = AutoConfig.from_pretrained(str(folder))
        except Exception as error:
            raise ValueError(f"Could not read the config in `model_dir` {folder}: {_first_line(error)}") from None
        architecture = (getattr(config, "architectures", None) or ["VaswaniModel"])[0]
        if config.model_type != "vaswani" or architecture not in HEADS:
            raise ValueError(
                f"`model_dir` {folder} holds a {architecture or config.model_type}, not a Vaswani model: convert it "
                f"first (vaswani convert)."
            )
        auto_class = getattr(transformers, HEADS[architecture].facts(config)[0])
        try:
            self.model = auto_class.from_pretrained(str(folder)).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as error:
            raise ValueError(f"Could not load the model and tokenizer in `model_dir` {folder}: "
                             f"{_first_line(error)}") from None
        self.folder, self.architecture = folder, architecture
        self.config = config = self.model.config
        self.kinds = KINDS[config.stacks]
        self.layers = {"encoder": config.num_encoder_layers, "decoder": config.num_decoder_layers,
                       "cross": config.num_decoder_layers}
        self.heads = config.num_heads
        limit = self.tokenizer.model_max_length
        if config.position_embedding_type == "learned":
            limit = min(limit, config.max_position_embeddings)
        self.positions = limit  # the longest sequence the model takes
        self.generates = self.model.can_generate()
        self._running = threading.Lock()  # one run at a time: attention_maps switches the shared model's attention

    def layers_text(self) -> str:
        stacks = [kind for kind in self.kinds if kind != "cross"]
        return ", ".join(f"{self.layers[stack]} in the {stack}" for stack in stacks)

    @property
    def input_label(self) -> str:
        return "Source sentence" if self.config.is_encoder_decoder and self.generates else "Sentence"

    @property
    def output_label(self) -> str:
        if self.architecture == "VaswaniForCausalLM":
            return "Continuation (greedy)"
        if self.generates:
            return "Translation"
        return "Output"

    def _encode(self, text: str, room: int) -> tuple[dict, str]:
        """The model's inputs for `text`, cut to `room` tokens (with a note saying so)."""
        inputs = self.tokenizer(text, return_tensors="pt")
        keep = ["input_ids", "attention_mask"] + (["token_type_ids"] if self.config.type_vocab_size else [])
        inputs = {name: inputs[name] for name in keep if name in inputs}
        length = inputs["input_ids"].shape[1]
        if length <= room:
            return inputs, ""
        inputs = {name: value[:, :room] for name, value in inputs.items()}
        return inputs, f"\n\n(The sentence has {length} tokens; the model saw its first {room}.)"

    @torch.no_grad()
    def run(self, text: str) -> tuple[str, AttentionMaps | None]:
        """What the model makes of `text`, as text, and the attention maps of that run (None when there is none)."""
        if not isinstance(text, str) or not text.strip():
            return "Type a sentence first.", None
        causal = self.architecture == "VaswaniForCausalLM"
        # A continuation needs room after the prompt: the prompt keeps the larger of what is left and half.
        room = max(self.positions - NEW_TOKENS, self.positions // 2, 1) if causal else self.positions
        inputs, note = self._encode(text, room)
        if inputs["input_ids"].shape[1] == 0:
            return "The tokenizer gives no tokens for this sentence: type another.", None
        with self._running:
            if causal:
                output, maps = self._continue(inputs)
            elif self.generates:
                output, maps = self._translate(inputs)
            else:
                output, maps = self._encode_only(inputs)
        return output + note, maps

    def _continue(self, inputs: dict):
        new = min(NEW_TOKENS, self.positions - inputs["input_ids"].shape[1])
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else self.config.eos_token_id
        generated = self.model.generate(**inputs, max_new_tokens=new, do_sample=False, pad_token_id=pad)
        maps = attention_maps(self.model, {"input_ids": generated}, self.tokenizer)
        return self.tokenizer.decode(generated[0], skip_special_tokens=True), maps

    def _translate(self, inputs: dict):
        generated = self.model.generate(**inputs, max_new_tokens=min(NEW_TOKENS, self.positions - 1),
                                        do_sample=False)
        maps = attention_maps(self.model, {**inputs, "decoder_input_ids": generated}, self.tokenizer)
        return self.tokenizer.decode(generated[0], skip_special_tokens=True), maps

    def _encode_only(self, inputs: dict):
        note = ""
        if self.config.is_encoder_decoder:  # the bare model has no target of its own: its decoder reads the sentence
            inputs["decoder_input_ids"] = inputs["input_ids"]
            note = "\n\n(The bare model has no output of its own; its decoder reads the sentence too.)"
        # Multiple choice takes (batch, choices, length): its body shows the sentence's attention alone.
        model = self.model.base_model if self.architecture == "VaswaniForMultipleChoice" else self.model
        return self._prediction(inputs) + note, attention_maps(model, inputs, self.tokenizer)

    def _prediction(self, inputs: dict) -> str:
        """An encoder head's answer in words: filled masks, a label, labels per token; else the tokens."""
        ids = inputs["input_ids"][0]
        tokens = self.tokenizer.convert_ids_to_tokens(ids.tolist())
        if self.architecture in ("VaswaniForMaskedLM", "VaswaniForPreTraining"):
            mask = self.tokenizer.mask_token_id
            outputs = self.model(**inputs)
            logits = outputs.logits if self.architecture == "VaswaniForMaskedLM" else outputs.prediction_logits
            where = (ids == mask).nonzero().flatten().tolist() if mask is not None else []
            if not where:
                hint = "" if mask is None else f" (write {self.tokenizer.mask_token} in the sentence to see it filled)"
                return "Tokens: " + " ".join(tokens) + hint
            filled = ids.clone()
            filled[where] = logits[0, where].argmax(-1)
            return "Filled: " + self.tokenizer.decode(filled, skip_special_tokens=True)
        if self.architecture in ("VaswaniForSequenceClassification", "VaswaniForNextSentencePrediction"):
            logits = self.model(**inputs).logits[0]
            if logits.numel() == 1:
                return f"Score: {logits.item():.4f}"
            return f"Label: {self.config.id2label[int(logits.argmax())]}"
        if self.architecture == "VaswaniForTokenClassification":
            labels = self.model(**inputs).logits[0].argmax(-1).tolist()
            return " ".join(f"{token}/{self.config.id2label[label]}" for token, label in zip(tokens, labels))
        return "Tokens: " + " ".join(tokens)

    def draw(self, maps: AttentionMaps | None, kind: str, layer: int, head: int) -> np.ndarray | None:
        """
        One head's weights as a heat map, an (height, width, 3) uint8 image: keys (attended to) across, queries
        down, each labelled by its token. A layer or head past the model's own is clamped; no maps, no image.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        if maps is None:
            return None
        kind = kind if kind in maps.kinds else maps.kinds[0]
        layer = min(max(int(layer), 0), maps.num_layers[kind] - 1)
        head = min(max(int(head), 0), maps.num_heads - 1)
        weights, rows, columns = maps.head(layer, head, kind)
        longest = max(len(rows), len(columns))
        side = min(max(3.0 + 0.16 * longest, 5.0), 16.0)  # inches: room for each token's label
        figure = Figure(figsize=(side + 1.2, side), dpi=100)  # a Figure with its own Agg canvas: no pyplot state
        canvas = FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        image = axes.imshow(weights.numpy(), cmap="viridis", vmin=0.0, aspect="auto")
        size = 9 if longest <= 24 else max(4, 9 - (longest - 24) // 12)
        axes.set_xticks(range(len(columns)), [_label(token) for token in columns], rotation=90, fontsize=size)
        axes.set_yticks(range(len(rows)), [_label(token) for token in rows], fontsize=size)
        axes.set_xlabel("keys (attended to)")
        axes.set_ylabel("queries (attending)")
        axes.set_title(f"{KIND_LABELS[kind]}: layer {layer}, head {head}")
        figure.colorbar(image, ax=axes, fraction=0.04)
        figure.tight_layout()
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def build_explorer(model_dir, title: str | None = None):
    """
    The explorer page for the saved Vaswani model in `model_dir`, as a `gradio.Blocks` (call `.launch()` on it):
    a sentence box and a button, the model's output, a choice of kind (those the model has), layer and head, and
    that head's heat map. Choosing another layer or head redraws from the maps of the last run, without running
    the model again.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage reports
    try:
        import gradio as gr
    except ImportError:
        raise ImportError("The attention explorer needs gradio: pip install 'vaswani[explore]'.") from None

    explorer = Explorer(model_dir)
    kinds = explorer.kinds
    title = title or f"Attention explorer: {explorer.folder.name}"

    def layer_choices(kind):
        return list(range(explorer.layers.get(kind, 1)))

    def run(text, kind, layer, head):
        output, maps = explorer.run(text)
        return output, maps, explorer.draw(maps, kind, layer, head)

    def pick(maps, kind, layer, head):
        return explorer.draw(maps, kind, layer, head)

    def pick_kind(maps, kind, layer, head):
        layer = min(int(layer), len(layer_choices(kind)) - 1)
        return gr.update(choices=layer_choices(kind), value=layer), explorer.draw(maps, kind, layer, head)

    with gr.Blocks(title=title) as page:
        gr.Markdown(f"# {title}\n{HEADS[explorer.architecture].purpose.capitalize()}: "
                    f"{explorer.architecture}, {explorer.heads} heads, layers: {explorer.layers_text()}. Type a "
                    f"sentence, run the model, then pick the attention, layer and head to see.")
        text = gr.Textbox(label=explorer.input_label, lines=2, placeholder="Type a sentence")
        button = gr.Button("Run", variant="primary")
        output = gr.Textbox(label=explorer.output_label, interactive=False, lines=3)
        with gr.Row():
            kind = gr.Dropdown([(KIND_LABELS[k], k) for k in kinds], value=kinds[0], label="Attention",
                               interactive=len(kinds) > 1)
            layer = gr.Dropdown(layer_choices(kinds[0]), value=0, label="Layer")
            head = gr.Dropdown(list(range(explorer.heads)), value=0, label="Head")
        # png: the picture arrives as drawn (gradio's default webp is lossy)
        heat_map = gr.Image(label="Attention weights", type="numpy", format="png", interactive=False,
                            elem_id="heat-map")
        maps = gr.State(None)
        for event in (button.click, text.submit):
            event(run, [text, kind, layer, head], [output, maps, heat_map])
        kind.input(pick_kind, [maps, kind, layer, head], [layer, heat_map])
        for control in (layer, head):
            control.input(pick, [maps, kind, layer, head], heat_map)
    page.explorer = explorer  # the model side, for tests and callers
    return page
