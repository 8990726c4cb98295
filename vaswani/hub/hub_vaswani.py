"""
Self-contained Hub folders. `save_pretrained` of every Vaswani model calls `write_hub_files`, which adds to the
weights and config what a folder needs to be loaded anywhere with `trust_remote_code=True`:

- the remote code: the package's modules as flat siblings (transformers copies only single-dot imports), so the
  folder imports nothing of `vaswani` and nothing beyond torch and transformers;
- `auto_map` naming every Auto class of the family, and `custom_pipelines` declaring the package's pipelines;
- `README.md`, the model card rendered from `hub_card.md` with this model's facts.

This module is itself one of the flat files, so a model loaded from a folder saves a complete folder too. It uses
only the standard library.
"""

import json
import re
from pathlib import Path


# The Auto classes and the head each one builds (module.Class inside the saved folder).
AUTO_MAP = {
    "AutoConfig": "configuration_vaswani.VaswaniConfig",
    "AutoModel": "modeling_vaswani.VaswaniModel",
    "AutoModelForSeq2SeqLM": "modeling_vaswani_heads.VaswaniForConditionalGeneration",
    "AutoModelForCausalLM": "modeling_vaswani_heads.VaswaniForCausalLM",
    "AutoModelForMaskedLM": "modeling_vaswani_heads.VaswaniForMaskedLM",
    "AutoModelForPreTraining": "modeling_vaswani_heads.VaswaniForPreTraining",
    "AutoModelForNextSentencePrediction": "modeling_vaswani_heads.VaswaniForNextSentencePrediction",
    "AutoModelForSequenceClassification": "modeling_vaswani_heads.VaswaniForSequenceClassification",
    "AutoModelForTokenClassification": "modeling_vaswani_heads.VaswaniForTokenClassification",
    "AutoModelForQuestionAnswering": "modeling_vaswani_heads.VaswaniForQuestionAnswering",
    "AutoModelForMultipleChoice": "modeling_vaswani_heads.VaswaniForMultipleChoice",
}

# The pipelines transformers 5 removed, brought back for this family under its own task names.
CUSTOM_PIPELINES = {
    "vaswani-text2text": {
        "impl": "pipeline_vaswani.VaswaniText2TextPipeline",
        "pt": ["AutoModelForSeq2SeqLM"],
        "tf": [],
        "type": "text",
    },
    "vaswani-question-answering": {
        "impl": "pipeline_vaswani.VaswaniQuestionAnsweringPipeline",
        "pt": ["AutoModelForQuestionAnswering"],
        "tf": [],
        "type": "text",
    },
}

# Pipeline tag and a short description of each head, for the card.
HEAD_FACTS = {
    "VaswaniModel": ("feature-extraction", "the bare Transformer (hidden states)"),
    "VaswaniForConditionalGeneration": (
        "text2text-generation",
        "sequence-to-sequence generation (translation, summarisation)",
    ),
    "VaswaniForCausalLM": ("text-generation", "causal language modelling and text generation"),
    "VaswaniForMaskedLM": ("fill-mask", "masked language modelling"),
    "VaswaniForPreTraining": ("fill-mask", "BERT-style pre-training (masked LM and next-sentence prediction)"),
    "VaswaniForNextSentencePrediction": ("text-classification", "next-sentence prediction"),
    "VaswaniForSequenceClassification": ("text-classification", "sequence classification or regression"),
    "VaswaniForTokenClassification": ("token-classification", "token classification (e.g. named entities)"),
    "VaswaniForQuestionAnswering": ("question-answering", "extractive question answering"),
    "VaswaniForMultipleChoice": ("multiple-choice", "multiple choice"),
}

_IMPORT = re.compile(r"^(\s*)from \.\.(\w+)\.(\w+) import", re.MULTILINE)


def remote_code() -> dict[str, str]:
    """
    The flat remote-code files, name -> source, with `from ..sub.module import` made `from .module import`. The
    modules are found through imports (not paths), which transformers also follows to copy them with a folder.
    """
    import inspect

    from ..configuration.configuration_vaswani import VaswaniConfig
    from ..modeling.modeling_vaswani import VaswaniModel
    from ..modeling.modeling_vaswani_heads import VaswaniForCausalLM
    from ..pipelines.pipeline_vaswani import VaswaniText2TextPipeline

    modules = {
        "configuration_vaswani.py": inspect.getsourcefile(VaswaniConfig),
        "modeling_vaswani.py": inspect.getsourcefile(VaswaniModel),
        "modeling_vaswani_heads.py": inspect.getsourcefile(VaswaniForCausalLM),
        "pipeline_vaswani.py": inspect.getsourcefile(VaswaniText2TextPipeline),
        "hub_vaswani.py": __file__,
    }
    files = {}
    for name, path in modules.items():
        source = _IMPORT.sub(r"\1from .\3 import", Path(path).read_text(encoding="utf-8"))
        if name == "hub_vaswani.py":
            # The card template travels inside the flat module, so a folder can render cards without the package.
            source = re.sub(r"\n_EMBEDDED_CARD_TEMPLATE = .*\Z", "", source, flags=re.DOTALL)
            source += f"\n_EMBEDDED_CARD_TEMPLATE = {card_template()!r}\n"
        files[name] = source
    return files


def card_template() -> str:
    """The model card template: `hub_card.md` shipped with the package, or the copy embedded in a flat module."""
    embedded = globals().get("_EMBEDDED_CARD_TEMPLATE")
    if embedded is not None:
        return embedded
    return (Path(__file__).resolve().parent / "hub_card.md").read_text(encoding="utf-8")


def _yaml_list(values) -> str:
    return json.dumps(list(values), ensure_ascii=False)  # a YAML flow sequence


def card_facts(model) -> dict[str, str]:
    """The facts about `model` that the card template names, as strings."""
    config = model.config
    head = type(model).__name__
    pipeline_tag, purpose = HEAD_FACTS.get(head, ("", "a Vaswani model"))
    data = dict(getattr(config, "model_card_data", None) or {})
    datasets = data.get("datasets", [])
    results = data.get("results", [])  # [{"task", "dataset", "split", "metric", "value"}]
    parameters = sum(p.numel() for p in model.parameters())
    stacks = {
        "encoder-decoder": f"encoder-decoder, {config.num_encoder_layers} + {config.num_decoder_layers} layers",
        "encoder-only": f"encoder-only, {config.num_encoder_layers} layers",
        "decoder-only": f"decoder-only, {config.num_decoder_layers} layers",
    }[config.stacks]
    if results:
        rows = "\n".join(
            f"| {r.get('task', '')} | {r.get('dataset', '')} | {r.get('split', '')} | {r.get('metric', '')} | "
            f"{r.get('value', '')} |"
            for r in results
        )
        results_table = "| task | dataset | split | metric | value |\n| --- | --- | --- | --- | --- |\n" + rows
        model_index = "model-index:\n- name: {name}\n  results:\n".format(name=data.get("name", head)) + "".join(
            f"  - task:\n      type: {r.get('task_type', pipeline_tag)}\n    dataset:\n      name: {r.get('dataset', '')}\n"
            f"      type: {r.get('dataset', '')}\n      split: {r.get('split', '')}\n    metrics:\n"
            f"    - type: {r.get('metric', '')}\n      value: {r.get('value', '')}\n"
            for r in results
        )
    else:
        results_table = "No evaluation results were recorded for this model."
        model_index = ""
    metrics = sorted({str(r.get("metric")) for r in results if r.get("metric")})
    tags = list(dict.fromkeys(["vaswani", "transformer", "attention-is-all-you-need", "custom_code", *data.get("tags", [])]))
    return {
        "model_name": data.get("name", head),
        "head": head,
        "purpose": purpose,
        "pipeline_tag": data.get("pipeline_tag", pipeline_tag),
        "auto_class": next((auto for auto, ref in AUTO_MAP.items() if ref.endswith("." + head)), "AutoModel"),
        "license": data.get("license", "apache-2.0"),
        "tags_yaml": _yaml_list(tags),
        "datasets_yaml": _yaml_list(datasets),
        "metrics_yaml": _yaml_list(metrics),
        "model_index_yaml": model_index,
        "stacks": stacks,
        "d_model": str(config.d_model),
        "num_heads": str(config.num_heads),
        "d_ff": str(config.d_ff),
        "vocab_size": f"{config.vocab_size:,}",
        "parameters": f"{parameters:,}",
        "positions": (
            f"learned, at most {config.max_position_embeddings}"
            if config.position_embedding_type == "learned"
            else f"sinusoidal (table of {config.max_position_embeddings}, extended past it on the fly)"
        ),
        "normalisation": _normalisation(config),
        "architecture": _architecture(config, head),
        "max_length": (
            f"{config.max_position_embeddings} tokens (learned positions stop there)"
            if config.position_embedding_type == "learned"
            else f"the lengths it was trained on (sinusoids extend past {config.max_position_embeddings} tokens, "
            "quality need not)"
        ),
        "activation": config.activation_function,
        "dropout": str(config.dropout),
        "label_smoothing": str(config.label_smoothing),
        "training_data": data.get("training_data", "Not recorded: this folder was saved without training facts."),
        "training_procedure": data.get("training_procedure", "Not recorded."),
        "results_table": results_table,
    }


def _normalisation(config) -> str:
    parts = ["pre-LN (LayerNorm before each sub-layer)" if config.norm_first else "post-LN, as in the paper"]
    if config.final_layer_norm:
        parts.append("a final LayerNorm after each stack")
    if config.embedding_layer_norm:
        parts.append("a LayerNorm on the embeddings")
    return ", ".join(parts)


def _architecture(config, head: str) -> str:
    """The model in words: its stacks and their sub-layers, and where it departs from the paper."""
    encoder = (
        f"an encoder of {config.num_encoder_layers} layers (multi-head self-attention, then a position-wise "
        f"feed-forward network)"
    )
    decoder = f"a decoder of {config.num_decoder_layers} layers (masked multi-head self-attention, "
    stacks = {
        "encoder-decoder": f"The paper's encoder-decoder: {encoder} and {decoder}attention over the encoder output, "
        "then the feed-forward network).",
        "encoder-only": f"Encoder-only (BERT-style): {encoder}; every token attends to every other.",
        "decoder-only": f"Decoder-only (GPT-style): {decoder}then the feed-forward network); a token attends only "
        "to the tokens before it.",
    }[config.stacks]
    positions = (
        "learned position embeddings"
        if config.position_embedding_type == "learned"
        else f"the paper's sinusoidal position encodings ({config.sinusoidal_layout})"
    )
    scale = " multiplied by sqrt(d_model)" if config.scale_embedding else ""
    return (
        f"{stacks} Inputs are token embeddings{scale} plus {positions}. Each of the {config.num_heads} attention "
        f"heads works in {config.d_model // config.num_heads} dimensions (d_model / h, paper 3.2.2); the "
        f"feed-forward network is {config.d_model} -> {config.d_ff} -> {config.d_model} with "
        f"{config.activation_function}. "
        + (
            "This is the bare model: it returns hidden states, with no task head."
            if head == "VaswaniModel"
            else f"`{head}` puts the head for {HEAD_FACTS.get(head, ('', 'its task'))[1]} on top."
        )
    )


def render_model_card(model) -> str:
    """The model card for `model`: the template with every `{{ name }}` replaced by the model's facts."""
    facts = card_facts(model)

    def fill(match):
        key = match.group(1)
        if key not in facts:
            raise KeyError(f"The card template names `{key}`, which the renderer does not know.")
        return facts[key]

    card = re.sub(r"\{\{\s*(\w+)\s*\}\}", fill, card_template())
    return re.sub(r"\n{3,}", "\n\n", card)  # empty optional blocks leave no gaps


def write_hub_files(model, folder) -> None:
    """Complete a folder `save_pretrained` wrote: remote code, auto_map and custom_pipelines, and the card."""
    folder = Path(folder)
    for name, source in remote_code().items():
        (folder / name).write_text(source, encoding="utf-8")
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["auto_map"] = AUTO_MAP
    config["custom_pipelines"] = CUSTOM_PIPELINES
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(render_model_card(model), encoding="utf-8")
