"""
Hub I/O: what makes a saved folder self-contained and how it reaches the Hub. `save_pretrained` of every Vaswani model
(`VaswaniHubMixin`) adds to the weights and config what a folder needs to be loaded anywhere with
`trust_remote_code=True`:

- the remote code: the package's modules as flat siblings (transformers copies only single-dot imports), found by
  parsing the import statements of the modules that `auto_map` and `custom_pipelines` name, so the folder imports
  nothing of `vaswani` and nothing beyond torch, transformers and the standard library; an import that cannot be
  placed stops the save with a `RemoteCodeError`;
- `auto_map` naming every Auto class of the family (from `HEADS`, the one table of heads), and `custom_pipelines`;
- `README.md`, the model card rendered from `hub_card.md` with this model's facts.

`HEADS` is the family's one list of heads: the package's exports, its Auto registration, `auto_map`, the card's facts
and the tests' list of heads are all read from it. This module is itself one of the flat files, so a model loaded
from a folder saves a complete folder too. Of the package it imports only the pipelines (the modeling code imports
this module, so it must not import the modeling code).
"""

import ast
import contextlib
import ctypes
import errno
import glob
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from ..pipelines.pipeline_vaswani import (
    VaswaniImageToTextPipeline,
    VaswaniQuestionAnsweringPipeline,
    VaswaniText2TextPipeline,
)


class Head(NamedTuple):
    """
    One model class of the family: the Auto class that builds it, its module, its pipeline tag, its purpose, and
    what its encoder reads (`"text"`, or `"image"` for a config with `image_size`). `images` is, for a class that
    reads either, its Auto class, pipeline tag and purpose when the config's encoder reads images.
    """

    auto_class: str | None  # None: no Auto class fits (the class itself loads it)
    module: str
    pipeline_tag: str
    purpose: str
    reads: str = "text"
    images: tuple[str, str, str] | None = None

    def facts(self, config) -> tuple[str, str, str]:
        """(Auto class, pipeline tag, purpose) of this head for `config` (what its encoder reads decides)."""
        if self.images is not None and getattr(config, "image_size", None) is not None:
            return self.images
        return self.auto_class or "AutoModel", self.pipeline_tag, self.purpose  # AutoModel: at least the body loads


# Every model class of the family, in the order the documentation presents them.
HEADS: dict[str, Head] = {
    "VaswaniModel": Head("AutoModel", "modeling_vaswani", "feature-extraction", "the bare Transformer (hidden states)"),
    "VaswaniForConditionalGeneration": Head(
        "AutoModelForSeq2SeqLM", "modeling_vaswani_heads", "text2text-generation",
        "sequence-to-sequence generation (translation, summarisation)",
        images=("AutoModelForImageTextToText", "image-to-text", "image captioning (a text decoder attending to patches)"),
    ),
    "VaswaniForCausalLM": Head(
        "AutoModelForCausalLM", "modeling_vaswani_heads", "text-generation",
        "causal language modelling and text generation",
    ),
    "VaswaniForMaskedLM": Head("AutoModelForMaskedLM", "modeling_vaswani_heads", "fill-mask", "masked language modelling"),
    "VaswaniForPreTraining": Head(
        "AutoModelForPreTraining", "modeling_vaswani_heads", "fill-mask",
        "BERT-style pre-training (masked LM and next-sentence prediction)",
    ),
    "VaswaniForPermutationLM": Head(
        None, "modeling_vaswani_heads", "feature-extraction",
        "XLNet-style permutation language modelling (two-stream attention); no Auto class builds this head: "
        "AutoModel loads its encoder, VaswaniForPermutationLM.from_pretrained the whole",
    ),
    "VaswaniForNextSentencePrediction": Head(
        "AutoModelForNextSentencePrediction", "modeling_vaswani_heads", "text-classification",
        "next-sentence prediction",
    ),
    "VaswaniForSequenceClassification": Head(
        "AutoModelForSequenceClassification", "modeling_vaswani_heads", "text-classification",
        "sequence classification or regression",
    ),
    "VaswaniForTokenClassification": Head(
        "AutoModelForTokenClassification", "modeling_vaswani_heads", "token-classification",
        "token classification (e.g. named entities)",
    ),
    "VaswaniForQuestionAnswering": Head(
        "AutoModelForQuestionAnswering", "modeling_vaswani_heads", "question-answering", "extractive question answering"
    ),
    "VaswaniForMultipleChoice": Head(
        "AutoModelForMultipleChoice", "modeling_vaswani_heads", "multiple-choice", "multiple choice"
    ),
    "VaswaniForImageClassification": Head(
        "AutoModelForImageClassification", "modeling_vaswani_heads", "image-classification",
        "image classification (ViT: patches, [CLS])", reads="image",
    ),
}

# The Auto classes and the class each one builds (module.Class inside the saved folder).
AUTO_MAP = {
    "AutoConfig": "configuration_vaswani.VaswaniConfig",
    **{head.auto_class: f"{head.module}.{name}" for name, head in HEADS.items() if head.auto_class},
    **{head.images[0]: f"{head.module}.{name}" for name, head in HEADS.items() if head.images},
}

# The pipelines transformers 5 removed, brought back for this family under its own task names. (Imported, not named
# as strings: a folder loaded with remote code then carries their module too, since transformers copies the modules
# that the model's modules import.)
CUSTOM_PIPELINES = {
    task: {"impl": f"{pipeline.__module__.rsplit('.', 1)[-1]}.{pipeline.__name__}", "pt": [auto_class], "tf": [],
           "type": "multimodal" if "image" in task else "text"}
    for task, pipeline, auto_class in (
        ("vaswani-text2text", VaswaniText2TextPipeline, "AutoModelForSeq2SeqLM"),
        ("vaswani-question-answering", VaswaniQuestionAnsweringPipeline, "AutoModelForQuestionAnswering"),
        ("vaswani-image-to-text", VaswaniImageToTextPipeline, "AutoModelForImageTextToText"),
    )
}


logger = logging.getLogger(__name__)


# -- Folders that appear whole or not at all ----------------------------------------------------------------------------
_RENAME_EXCHANGE = 2  # renameat2's flag (Linux): swap two paths in one step


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not on this file system or kernel
        return False
    raise OSError(error, os.strerror(error), str(first))


def staging_folder(target) -> Path:
    """
    A new, empty folder beside `target` (same file system, so it can be renamed into place), hidden by its dot and
    named for the process that writes it. Staging folders of `target` left by processes that no longer run (killed
    mid-save) are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.partial-*"):
        pid = stale.name.rsplit(".partial-", 1)[1].split("-")[0]
        if pid.isdigit() and not _process_runs(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    staging = target.parent / f".{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    return staging


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def replace_folder(staging, target, overwrite: bool = True) -> None:
    """
    Put the finished folder `staging` at `target` in one step, so that `target` is always the old folder or the
    new one, whole: a rename when `target` does not exist, else (with `overwrite`) an atomic exchange of the two,
    after which the old folder is deleted. Where the system cannot exchange, the old folder is renamed aside first
    (then, for an instant, there is no `target`). Without `overwrite`, an existing non-empty `target` is a
    `FileExistsError` and `staging` is left as it is.
    """
    staging, target = Path(staging), Path(target)
    if target.is_file() or target.is_symlink():
        raise FileExistsError(f"{target} is a file, not a folder: choose another path.")
    for _ in range(100):  # a concurrent writer may create, swap or remove `target` between two of these steps
        try:
            os.rename(staging, target)  # succeeds when `target` is absent or an empty folder
            return
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        if not overwrite:
            raise FileExistsError(f"{target} already exists and is not empty.")
        try:
            exchanged = _exchange(staging, target)
        except FileNotFoundError:
            continue
        if exchanged:
            shutil.rmtree(staging, ignore_errors=True)  # `staging` now holds the old folder
            return
        aside = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(target, aside)
        except FileNotFoundError:
            continue
        try:
            os.rename(staging, target)
        except OSError:
            os.rename(aside, target)  # put the old one back
            raise
        shutil.rmtree(aside, ignore_errors=True)
        return
    raise OSError(f"Could not put {staging} at {target}: other writers kept replacing it.")


@contextlib.contextmanager
def atomic_folder(target, overwrite: bool = True, keep: Callable[[str], bool] | None = None):
    """
    Write a folder whole or not at all: yields a staging folder beside `target`; when the block ends without an
    error, the staging folder replaces `target` (`replace_folder`); on an error or an interrupt it is deleted and
    `target` is untouched. `keep(name)` says which files of an existing `target` that the block did not write are
    copied in first (a tokenizer saved there before, say), so that replacing the folder loses none of them.
    """
    target = Path(target)
    staging = staging_folder(target)
    try:
        yield staging
        if keep is not None and target.is_dir():
            for old in target.iterdir():
                new = staging / old.name
                if old.is_file() and not (new.exists() or new.is_symlink()) and keep(old.name):
                    shutil.copy2(old, new)
        replace_folder(staging, target, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# Files a save writes afresh: the old folder's ones are not carried over (stale weight shards would mislead a load).
_SAVED_BY_EVERY_SAVE = re.compile(
    r"^(model|pytorch_model|adapter_model)(-\d+-of-\d+)?\.(safetensors|bin)(\.index\.json)?$|^config\.json$"
    r"|^generation_config\.json$"
)


def _carried_over(name: str) -> bool:
    return not _SAVED_BY_EVERY_SAVE.match(name)


# -- The remote code ----------------------------------------------------------------------------------------------------
class RemoteCodeError(ValueError):
    """A module of the remote code imports something a saved folder cannot carry (raised before anything is written)."""


# What a flat remote-code module may import besides its siblings: what every user of the folder already has.
_ALLOWED_IMPORTS = frozenset({"torch", "transformers", "__future__", *sys.stdlib_module_names})


def _source_root() -> tuple[Path, bool]:
    """Where the modules are: the package root, or (in a saved folder) this module's own folder. True when flat."""
    here = Path(__file__).resolve().parent
    if (here / "configuration_vaswani.py").is_file():
        return here, True
    return here.parent, False


def _entry_file(stem: str, root: Path, flat: bool) -> Path:
    """The file of a module that `auto_map` or `custom_pipelines` names (flat names are unique in the package)."""
    found = [root / f"{stem}.py"] if flat else sorted(root.rglob(f"{stem}.py"))
    found = [path for path in found if path.is_file()]
    if len(found) != 1:
        raise RemoteCodeError(f"The remote code needs one module named {stem!r} under {root}, found {len(found)}.")
    return found[0]


def _placed_import(node: ast.ImportFrom, path: Path, root: Path) -> list[Path]:
    """The package files a relative import names, or a `RemoteCodeError` saying why it cannot be placed."""
    base = path.parent
    for _ in range(node.level - 1):
        base = base.parent
    target = base.joinpath(*node.module.split(".")) if node.module else base
    where = f"{path.relative_to(root)}:{node.lineno}"
    if target.with_suffix(".py").is_file():
        return [target.with_suffix(".py")]
    if (target / "__init__.py").is_file():
        modules = [target / f"{alias.name}.py" for alias in node.names]
        if all(module.is_file() for module in modules):
            return modules
        raise RemoteCodeError(
            f"{where} imports from the package {target.name!r} itself; a saved folder has no packages: import from "
            f"the module that defines the names (from .{target.name}.<module> import ...)."
        )
    raise RemoteCodeError(f"{where}: the relative import of {node.module!r} names no module of the package.")


def _flatten(path: Path, root: Path) -> tuple[str, list[Path]]:
    """One module's source with its relative imports made flat (`from ..sub.module import` -> `from .module import`),
    and the package files it imports. Every import is checked: siblings, torch, transformers or the standard library."""
    source = path.read_text(encoding="utf-8").removeprefix(CODE_MARKER + "\n")  # a saved folder's copy has it
    lines = source.splitlines(keepends=True)
    imported = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
            for name in names:
                if name.split(".")[0] not in _ALLOWED_IMPORTS:
                    raise RemoteCodeError(
                        f"{path.relative_to(root)}:{node.lineno} imports {name!r}: the remote code of a saved folder "
                        f"may import only torch, transformers, the standard library and its sibling modules (relative "
                        f"imports). Move this code out of the modules a folder carries, or import it relatively."
                    )
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        files = _placed_import(node, path, root)
        imported += files
        line = lines[node.lineno - 1]
        flat = f"from .{files[0].stem} import" if node.module and len(files) == 1 and files[0].stem == node.module.split(".")[-1] else "from . import"
        rewritten, count = re.subn(r"from\s+\.+[\w.]*\s+import", flat, line[node.col_offset :], count=1)
        if count != 1:
            raise RemoteCodeError(f"{path.relative_to(root)}:{node.lineno}: cannot rewrite this import form: {line.strip()}")
        lines[node.lineno - 1] = line[: node.col_offset] + rewritten
    return "".join(lines), imported


def remote_code() -> dict[str, str]:
    """
    The flat remote-code files, name -> source: the modules `auto_map` and `custom_pipelines` name and everything they
    import from the package (followed through their import statements), with relative imports made flat.
    """
    root, flat = _source_root()
    entries = {ref.split(".")[0] for ref in AUTO_MAP.values()}
    entries |= {spec["impl"].split(".")[0] for spec in CUSTOM_PIPELINES.values()}
    entries.add(Path(__file__).stem)  # this module, which renders cards from a saved folder
    pending = [_entry_file(stem, root, flat) for stem in sorted(entries)]
    files, paths = {}, {}
    while pending:
        path = pending.pop(0)
        name = path.name
        if name in files:
            if paths[name] != path:
                raise RemoteCodeError(f"Two modules would both be {name} in a saved folder: {paths[name]} and {path}.")
            continue
        source, imported = _flatten(path, root)
        if name == Path(__file__).name:
            # The card template travels inside the flat module, so a folder can render cards without the package.
            source = re.sub(r"\n_EMBEDDED_CARD_TEMPLATE = .*\Z", "", source, flags=re.DOTALL)
            source += f"\n_EMBEDDED_CARD_TEMPLATE = {card_template()!r}\n"
        files[name], paths[name] = source, path
        pending += imported
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
    known = HEADS.get(head)
    auto_class, pipeline_tag, purpose = known.facts(config) if known else ("AutoModel", "", "a Vaswani model")
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
        "auto_class": auto_class,
        "license": data.get("license", "apache-2.0"),
        "tags_yaml": _yaml_list(tags),
        "datasets_yaml": _yaml_list(datasets),
        "metrics_yaml": _yaml_list(metrics),
        "model_index_yaml": model_index,
        "stacks": stacks,
        "d_model": str(config.d_model),
        "num_heads": str(config.num_heads),
        "d_ff": str(config.d_ff),
        "vocab_size": f"{config.vocab_size:,}" if config.has_decoder or config.image_size is None else (
            "none: it reads images"
        ),
        **_preprocessor(config),
        "parameters": f"{parameters:,}",
        "positions": _positions(config),
        "normalisation": _normalisation(config),
        "architecture": _architecture(config, head),
        "max_length": (
            f"images of another size than {config.image_size}x{config.image_size} pixels, unless resized or passed "
            f"with interpolate_pos_encoding=True (learned patch positions resized; quality need not follow)"
            if config.image_size is not None and not config.has_decoder
            else f"{config.max_position_embeddings} tokens (learned positions stop there)"
            if config.position_embedding_type == "learned"
            else f"the lengths it was trained on (sinusoids extend past {config.max_position_embeddings} tokens, "
            "quality need not)"
            if config.position_embedding_type == "sinusoidal"
            else "the lengths it was trained on (positions inside attention take any length, quality need not)"
        ),
        "activation": config.activation_function,
        "dropout": str(config.dropout),
        "training_data": data.get("training_data", "Not recorded: this folder was saved without training facts."),
        "training_procedure": data.get("training_procedure", "Not recorded."),
        "results_table": results_table,
    }


def _preprocessor(config) -> dict[str, str]:
    """What turns raw inputs into the model's: its tokenizer, or for a model that reads only images its processor."""
    if config.image_size is not None:
        words = " (the tokenizer, AutoTokenizer, turns the generated ids into words)" if config.has_decoder else ""
        return {"preprocessor_class": "AutoImageProcessor", "preprocessor": "image_processor",
                "preprocessor_comment": f"# The image processor is transformers' own ViT processor, saved beside the "
                                        f"model{words}."}
    return {"preprocessor_class": "AutoTokenizer", "preprocessor": "tokenizer",
            "preprocessor_comment": "# The tokenizer is plain transformers; the flag only lets AutoTokenizer read this "
                                    "repo's config."}


def _positions(config) -> str:
    kind = config.position_embedding_type
    if kind == "learned" and config.image_size is not None and not config.has_decoder:
        return f"learned, one per patch and one for [CLS] ({config.num_patches + 1})"
    if kind == "learned":
        return f"learned, at most {config.max_position_embeddings}"
    if kind == "sinusoidal":
        return f"sinusoidal (table of {config.max_position_embeddings}, extended past it on the fly)"
    if kind == "rotary":
        rope = config.rope_parameters
        factor = rope.get("partial_rotary_factor", 1.0)
        share = "every feature" if factor == 1 else f"a fraction {factor:g} of the features"
        return f"rotary (RoPE, {rope['rope_type']}, theta {rope['rope_theta']:g}, on {share} of each head), in self-attention"
    if kind == "alibi":
        return "ALiBi (a penalty linear in the distance, one slope per head), in self-attention"
    return (
        f"T5's relative bias ({config.relative_attention_num_buckets} buckets up to distance "
        f"{config.relative_attention_max_distance}), in self-attention"
    )


def _normalisation(config) -> str:
    norm = "RMSNorm" if config.rms_norm else "LayerNorm"
    parts = [f"pre-LN ({norm} before each sub-layer)" if config.norm_first else f"post-LN ({norm}), as in the paper"]
    if config.parallel_residual:
        parts.append("attention and feed-forward in parallel on one residual (GPT-NeoX)")
    if config.final_layer_norm:
        parts.append(f"a final {norm} after each stack")
    if config.embedding_layer_norm:
        parts.append(f"a {norm} on the embeddings")
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
    kind = config.position_embedding_type
    positions = {
        "learned": " plus learned position embeddings",
        "sinusoidal": f" plus the paper's sinusoidal position encodings ({config.sinusoidal_layout})",
        "rotary": "; positions rotate the queries and keys of self-attention (RoPE)",
        "alibi": "; positions enter self-attention as ALiBi's distance penalty",
        "relative": "; positions enter self-attention as T5's learned relative bias",
    }[kind]
    scale = " multiplied by sqrt(d_model)" if config.scale_embedding else ""
    # Only the compatibility functions the paper set aside are named (3.2.1): its own scaled dot product goes unsaid.
    scores = {
        "scaled_dot_product": "",
        "dot_product": ", with unscaled dot-product scores q.k (not q.k / sqrt(d_k))",
        "additive": ", with additive scores v^T tanh(W_q q + W_k k) (Bahdanau et al.), not dot products",
    }[config.attention_scores]
    inputs = f"Inputs are token embeddings{scale}{positions}."
    if config.image_size is not None:
        size, patch = config.image_size, config.patch_size
        inputs = (
            f"The encoder reads images of {size}x{size} pixels ({config.num_channels} channels) as {config.num_patches} "
            f"patches of {patch}x{patch}, each projected to d_model, after a learned [CLS] token{scale}{positions} "
            f"(ViT)." + (" The decoder's inputs are token embeddings." if config.has_decoder else "")
        )
    if config.encoder_overrides:
        own = ", ".join(f"{name} {value}" for name, value in sorted(config.encoder_overrides.items()))
        inputs += f" The encoder has its own {own} (the rest of the model: the settings below)."
    return (
        f"{stacks} {inputs} Each of the {config.num_heads} attention "
        f"heads works in {config.d_model // config.num_heads} dimensions (d_model / h, paper 3.2.2){scores}; the "
        f"feed-forward network is {config.d_model} -> {config.d_ff} -> {config.d_model} with "
        f"{config.activation_function}. "
        + (
            "This is the bare model: it returns hidden states, with no task head."
            if head == "VaswaniModel"
            else f"`{head}` puts the head for {HEADS[head].facts(config)[2] if head in HEADS else 'its task'} on top."
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
    card = re.sub(r"\n{3,}", "\n\n", card)  # empty optional blocks leave no gaps
    return card.rstrip("\n") + f"\n\n{CARD_MARKER}\n"


# The last line of every card `save_pretrained` writes: a later save replaces such a card, and keeps any other.
CARD_MARKER = "<!-- model card written by vaswani's save_pretrained: a later save_pretrained rewrites it -->"
# The first line of every remote-code file: a later save replaces such a file, and refuses to drop any other.
CODE_MARKER = "# Remote code of the Vaswani model family, written by its save_pretrained."


def _written_by_vaswani(path: Path) -> bool:
    """Whether a README.md or remote-code file in a folder is one this package wrote (this or an earlier version)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.name == "README.md":
        return CARD_MARKER in text or ("attention-is-all-you-need" in text and "vaswani" in text)
    return text.startswith(CODE_MARKER) or "Vaswani" in text


def write_hub_files(model, folder, code: dict[str, str] | None = None, card: bool = True) -> None:
    """Complete a folder `save_pretrained` wrote: remote code, auto_map and custom_pipelines, and the card."""
    folder = Path(folder)
    for name, source in (code if code is not None else remote_code()).items():
        (folder / name).write_text(f"{CODE_MARKER}\n{source}", encoding="utf-8")
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["auto_map"] = AUTO_MAP
    config["custom_pipelines"] = CUSTOM_PIPELINES
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if card:
        (folder / "README.md").write_text(render_model_card(model), encoding="utf-8")


class VaswaniHubMixin:
    """`save_pretrained` and `push_to_hub` of every Vaswani model: the folder transformers writes, made self-contained."""

    def save_pretrained(
        self,
        save_directory,
        is_main_process: bool = True,
        push_to_hub: bool = False,
        replace_user_files: bool = False,
        **kwargs,
    ):
        """
        Save as every Hugging Face model does (weights, config, generation config), plus what makes the folder
        self-contained: the remote code, an `auto_map` naming every Auto class of the family, `custom_pipelines`,
        and `README.md`, the model card rendered from `hub_card.md`. With `push_to_hub=True` the folder is then
        uploaded as it is (`repo_id` defaults to the folder's name).

        The folder appears whole or not at all: everything is written to a staging folder beside it, which then
        replaces it in one step (an interrupted or failed save leaves the old folder as it was; concurrent saves
        leave one of them, whole). Files of an existing folder that a save does not write (a tokenizer, say) are
        kept. An existing `README.md` that this package did not write is kept, and no card is written (a warning
        says so); a file of a remote-code module's name that this package did not write stops the save. With
        `replace_user_files=True` both are replaced.
        """
        code = remote_code()  # first: an import the folder could not carry stops the save before anything is written
        hub = {key: kwargs.pop(key) for key in ("repo_id", "commit_message", "create_pr", "private") if key in kwargs}
        target = Path(save_directory)
        if not self.should_save_on_this_rank(is_main_process):
            return super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        if target.exists() and not target.is_dir():
            raise ValueError(f"`save_directory` {target} is a file: pass a folder (new or existing).")
        user_card = False
        if target.is_dir() and not replace_user_files:
            theirs = [name for name in code if (target / name).is_file() and not _written_by_vaswani(target / name)]
            if theirs:
                raise ValueError(
                    f"{target} holds {', '.join(theirs)}, not written by vaswani, and a saved model needs files of "
                    f"these names (its remote code): save elsewhere, or pass `replace_user_files=True` to replace them."
                )
            readme = target / "README.md"
            user_card = readme.is_file() and not _written_by_vaswani(readme)
            if user_card:
                logger.warning(
                    "%s is not a card vaswani wrote: it is kept, and the generated model card is not written "
                    "(pass `replace_user_files=True` to replace it).", readme,
                )
        generation = getattr(self, "generation_config", None)
        compiled = generation is not None and generation.compile_config is not None
        if compiled:  # `compile_generation()` is a choice for this process, not a property of the saved model
            cache_implementation, generation.cache_implementation = generation.cache_implementation, None
        try:
            with atomic_folder(target, keep=_carried_over) as staging:
                super().save_pretrained(staging, is_main_process=is_main_process, **kwargs)
                write_hub_files(self, staging, code, card=not user_card)
        finally:
            if compiled:
                generation.cache_implementation = cache_implementation
        if push_to_hub:
            repo_id = hub.pop("repo_id", os.path.basename(os.path.normpath(save_directory)))
            self._upload_folder(save_directory, repo_id, token=kwargs.get("token"), **hub)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        tags: list[str] | None = None,
    ):
        """
        Upload to the Hugging Face Hub exactly the folder `save_pretrained` writes, model card included (the
        generic `push_to_hub` would replace the card with an empty one). `tags` are added to the card.
        """
        if tags:
            card = dict(self.config.model_card_data or {})
            card["tags"] = list(dict.fromkeys([*card.get("tags", []), *([tags] if isinstance(tags, str) else tags)]))
            self.config.model_card_data = card
        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(folder, max_shard_size=max_shard_size)
            return self._upload_folder(
                folder,
                repo_id,
                token=token,
                private=private,
                commit_message=commit_message,
                commit_description=commit_description,
                revision=revision,
                create_pr=create_pr,
            )

    def _upload_folder(self, folder, repo_id, token=None, private=None, **commit):
        from transformers.utils.hub import hf_api

        repo_id = hf_api().create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        return self._upload_modified_files(folder, repo_id, files_timestamps={}, token=token, **commit)
