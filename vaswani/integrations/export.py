"""
Export of Vaswani models: `torch.export` programs and ONNX graphs (through `torch.onnx.export(..., dynamo=True)`; for
a custom model transformers has no exporter of its own) of every head's forward, and of generation as two graphs, a
prefill and a cached decoding step, with the cache as plain tensors in and out. onnx, onnxscript and onnxruntime are
imported only by the functions that need them.

    export_forward          torch.export of a head's forward (`HeadForward`), batch and lengths dynamic
    export_generation       torch.export of generation: `CausalPrefill` and `CausalDecodeStep`, or `Seq2SeqPrefill`
                            and `Seq2SeqDecodeStep`, each calling the model with a transformers `Cache` rebuilt from
                            the tensors, so that the exported math is the model's own
    to_onnx                 an exported program as an ONNX file
    ExportedGeneration      the two generation graphs as callables: ExportedPrograms or ONNX Runtime sessions
    greedy_generate         greedy decoding with them: the tokens of `model.generate(do_sample=False)`
    export_folder           what `vaswani export` writes: the graphs, config, tokenizer, `export.json`, a README

Graphs are traced with the eager attention (`eager_attention`), batch and lengths dynamic up to
`max_position_embeddings`. The cache of a decoding step, per decoder layer i, each (batch, num_heads, length,
head_dim), is named in ONNX as in Hugging Face Optimum: causal LM `past_key_values.{i}.key` / `.value` in,
`present.{i}.key` / `.value` out (the past and this step); seq2seq `past_key_values.{i}.decoder.*` (self-attention,
grows) and `past_key_values.{i}.encoder.*` (cross-attention over the source, computed once by the prefill) in,
`present.{i}.decoder.*` out. The torch programs take and give them as tuples of (key, value) per layer.

A model that reads pixels (its config has an `image_size`: `source_inputs`) takes `pixel_values` (batch, C, H, W)
where a text model takes `input_ids` and `attention_mask`, of dynamic batch and the config's image size: the image
classifier's forward, the captioner's forward and its prefill (`ImageSeq2SeqPrefill`); the decoding step is the same.
"""
import json
from pathlib import Path

import torch
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

# Traced with eager attention (the paper's formula written out, and the only kind additive scores have): a query
# that may see no key (a padding position of a left-padded prompt) then gives zeros in the graph, as torch's sdpa
# kernel does, where the softmax ONNX decomposes sdpa into would spread it over the masked keys.
from ..explore.maps import eager_attention


# Outputs of a forward that are not graph outputs: the loss needs labels, the cache is the generation graphs' business.
_NOT_OUTPUTS = ("loss", "cache", "past_key_values")


FORWARD_INPUTS = ("input_ids", "pixel_values", "attention_mask", "token_type_ids", "decoder_input_ids")


def source_inputs(config) -> tuple[str, ...]:
    """
    The inputs the encoder (or a causal LM) reads: token ids and their mask, or, when the config has an `image_size`,
    the images (the one place export tells the two apart). An image's size is the config's: only its batch is dynamic.
    """
    return ("pixel_values",) if config.image_size is not None else ("input_ids", "attention_mask")


def _model_inputs(model, inputs: dict) -> dict:
    """The example's tensors, checked: a forward export takes tensors only, and the model must be in eval mode."""
    source = source_inputs(model.config)[0]
    if not isinstance(inputs, dict) or source not in inputs:
        given = f" of {', '.join(inputs)}" if isinstance(inputs, dict) else ""
        raise TypeError(f"`inputs` must be a dict of example tensors with {source} (as `example_inputs(model)` gives "
                        f"them), got {type(inputs).__name__}{given}.")
    for name, value in inputs.items():
        if name not in FORWARD_INPUTS:
            raise ValueError(f"`inputs[{name!r}]`: an exported forward takes {', '.join(FORWARD_INPUTS)}; drop {name}.")
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"`inputs[{name!r}]` must be a tensor, got {type(value).__name__}.")
    if model.training:
        raise ValueError("Export the model in inference mode: call `model.eval()` first (dropout would be traced).")
    return inputs


class HeadForward(nn.Module):
    """
    A head's forward with tensors in and its main outputs (logits, or the bare model's hidden states) out, as a dict
    by name (`output_names`, in order): no cache, no loss, a plain signature for torch.export and ONNX.
    """

    def __init__(self, model: nn.Module, output_names: list[str]):
        super().__init__()
        self.model = model
        self.output_names = list(output_names)

    @classmethod
    def of(cls, model: nn.Module, inputs: dict) -> "HeadForward":
        """The wrapper, with the outputs the model gives for `inputs` (run once eagerly to find them)."""
        with torch.no_grad():
            outputs = model(**inputs, use_cache=False, return_dict=True)
        return cls(model, [name for name, value in outputs.items() if name not in _NOT_OUTPUTS and value is not None])

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, token_type_ids=None,
                decoder_input_ids=None):
        given = {"input_ids": input_ids, "pixel_values": pixel_values, "attention_mask": attention_mask,
                 "token_type_ids": token_type_ids, "decoder_input_ids": decoder_input_ids}
        given = {name: value for name, value in given.items() if value is not None}
        outputs = self.model(**given, use_cache=False, return_dict=True)
        return {name: outputs[name] for name in self.output_names}


def _dims(config):
    """
    The dynamic dimensions: batch, and lengths up to `max_position_embeddings` (learned positions end there, and a
    traced sinusoidal encoding reads its precomputed table, which is that long).
    """
    from torch.export import Dim

    longest = config.max_position_embeddings
    return {
        "batch": Dim("batch"),
        "sequence": Dim("sequence", max=longest),
        "choices": Dim("choices"),
        "target": Dim("target", max=longest),
        "past": Dim("past", max=longest - 1),
    }


def _axes(name: str, dims: dict, rank: int = 2) -> dict:
    """The dynamic axes of the input `name` (of `rank` dimensions): batch, and its lengths (not an image's sides)."""
    if name == "pixel_values":  # (batch, channels, height, width): the config fixes the image's size
        return {0: dims["batch"]}
    if rank == 3:  # multiple choice: (batch, choices, sequence)
        return {0: dims["batch"], 1: dims["choices"], 2: dims["sequence"]}
    return {0: dims["batch"], 1: dims["target" if name.startswith("decoder_") else "sequence"]}


def forward_dynamic_shapes(model, inputs: dict) -> dict:
    """torch.export `dynamic_shapes` for a head's inputs: batch and sequence dimensions (and choices) dynamic."""
    dims = _dims(model.config)
    return {name: _axes(name, dims, value.dim()) for name, value in inputs.items()}


def export_forward(model, inputs: dict, dynamic: bool = True):
    """
    `torch.export` of `model`'s forward on the example `inputs` (a dict of tensors, as the model takes them),
    returning an `ExportedProgram` whose module takes the same tensors (by name) and returns the main outputs
    (logits; the bare model's hidden states) as a dict by name. With `dynamic`, the batch and sequence dimensions
    (and the choices of multiple choice) are dynamic: the program then takes other sizes than the example's, lengths
    up to `max_position_embeddings`; images (`pixel_values`) have the config's size, only their batch is dynamic.
    Every dynamic dimension of the example must be at least 2 then (torch.export specialises sizes 0 and 1).
    """
    inputs = _model_inputs(model, inputs)
    wrapper = HeadForward.of(model, inputs)
    shapes = forward_dynamic_shapes(model, inputs) if dynamic else None
    small = [name for name, axes in (shapes or {}).items() if any(inputs[name].shape[axis] < 2 for axis in axes)]
    if small:
        raise ValueError(
            f"`inputs[{small[0]!r}]` has shape {tuple(inputs[small[0]].shape)}: with dynamic shapes every batch and "
            f"length of the example must be at least 2 (torch.export fixes sizes 0 and 1); pass a larger example or "
            f"`dynamic=False`."
        )
    with torch.no_grad(), eager_attention(model):
        program = torch.export.export(wrapper, (), dict(inputs), dynamic_shapes=shapes, strict=False)
    return program


# -- Generation: a prefill graph and a cached decoding step -----------------------------------------------------------
def _check_generative(model):
    if not (hasattr(model, "can_generate") and model.can_generate()):
        raise TypeError(
            f"Generation export takes a VaswaniForCausalLM or VaswaniForConditionalGeneration, got "
            f"{type(model).__name__}: export its forward with `export_forward` instead."
        )
    if model.training:
        raise ValueError("Export the model in inference mode: call `model.eval()` first (dropout would be traced).")


def _layers_of(cache: DynamicCache) -> tuple:
    """A `DynamicCache`'s tensors as ((key, value), ...) per layer."""
    return tuple((layer.keys, layer.values) for layer in cache.layers)


class _GenerationGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        _check_generative(model)
        self.model = model


class CausalPrefill(_GenerationGraph):
    """
    A causal LM's first step of generation: (input_ids (B, T), attention_mask (B, T)) -> (logits (B, 1, V) of the
    next token, the cache ((key, value), ...) per layer, each (B, h, T, d_k)).
    """

    def forward(self, input_ids, attention_mask):
        # A plain `DynamicCache` (it grows by concatenation): the model's own one writes into a buffer in place.
        output = self.model(
            input_ids=input_ids, attention_mask=attention_mask, cache=DynamicCache(), use_cache=True, logits_to_keep=1
        )
        return output.logits, _layers_of(output.cache)


class CausalDecodeStep(_GenerationGraph):
    """
    A causal LM's cached step: (input_ids (B, 1), attention_mask (B, P + 1), past_key_values ((key, value), ...)
    each (B, h, P, d_k)) -> (logits (B, 1, V), the cache grown to P + 1). The cache is rebuilt as the `DynamicCache`
    the model decodes with, so the step runs the model's own attention, masks and positions (from the mask: learned
    and sinusoidal positions both skip left padding as `generate()` does).
    """

    def forward(self, input_ids, attention_mask, past_key_values):
        output = self.model(
            input_ids=input_ids, attention_mask=attention_mask, cache=DynamicCache(past_key_values), use_cache=True,
            logits_to_keep=1,
        )
        return output.logits, _layers_of(output.cache)


class Seq2SeqPrefill(_GenerationGraph):
    """
    A seq2seq model's first step: (input_ids (B, S), attention_mask (B, S) of the source, decoder_input_ids (B, T))
    -> (logits (B, 1, V), encoder_hidden_states (B, S, d_model), past_key_values (the decoder's self-attention,
    ((key, value), ...) each (B, h, T, d_k)), encoder_key_values (cross-attention over the source, each
    (B, h, S, d_k), computed here once)).
    """

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        return self._prefill(decoder_input_ids, input_ids=input_ids, attention_mask=attention_mask)

    def _prefill(self, decoder_input_ids, **source):
        output = self.model(
            **source, decoder_input_ids=decoder_input_ids,
            cache=EncoderDecoderCache(DynamicCache(), DynamicCache()), use_cache=True, logits_to_keep=1,
        )
        return (
            output.logits,
            output.encoder_last_hidden_state,
            _layers_of(output.cache.self_attention_cache),
            _layers_of(output.cache.cross_attention_cache),
        )


class ImageSeq2SeqPrefill(Seq2SeqPrefill):
    """
    A captioner's first step: (pixel_values (B, C, H, W), decoder_input_ids (B, T)) -> as `Seq2SeqPrefill`, the
    source being the image's S = num_patches + 1 encoder states (no mask: every patch is there).
    """

    def forward(self, pixel_values, decoder_input_ids):
        return self._prefill(decoder_input_ids, pixel_values=pixel_values)


class Seq2SeqDecodeStep(_GenerationGraph):
    """
    A seq2seq model's cached step: (decoder_input_ids (B, 1), attention_mask (B, S) of the source,
    encoder_hidden_states (B, S, d_model), past_key_values (self-attention, each (B, h, P, d_k)),
    encoder_key_values (the prefill's cross-attention)) -> (logits (B, 1, V), past_key_values grown to P + 1).
    The model runs on an `EncoderDecoderCache` rebuilt from the tensors, whose cross-attention part counts as
    computed: the keys and values of the source are not projected again (the encoder output gives the shapes).
    A captioner's step is the same, its mask all ones over the encoder states.
    """

    def forward(self, decoder_input_ids, attention_mask, encoder_hidden_states, past_key_values, encoder_key_values):
        cache = EncoderDecoderCache(DynamicCache(past_key_values), DynamicCache(encoder_key_values))
        output = self.model(
            encoder_outputs=(encoder_hidden_states,), attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids, cache=cache, use_cache=True, logits_to_keep=1,
        )
        return output.logits, _layers_of(output.cache.self_attention_cache)


def generation_graphs(model) -> tuple[nn.Module, nn.Module]:
    """The prefill and decoding-step modules of a generating head (causal LM or seq2seq)."""
    _check_generative(model)
    if model.config.is_encoder_decoder:
        prefill = ImageSeq2SeqPrefill if source_inputs(model.config) == ("pixel_values",) else Seq2SeqPrefill
        return prefill(model), Seq2SeqDecodeStep(model)
    return CausalPrefill(model), CausalDecodeStep(model)


def graph_names(model, graph: str) -> tuple[list[str], list[str]]:
    """
    The flat input and output names of a generation graph ("prefill" or "decode"), in the order of its flattened
    arguments and results: the names of the ONNX graph's inputs and outputs.
    """
    layers = range(model.config.num_decoder_layers)
    seq2seq = model.config.is_encoder_decoder

    def cache(prefix, part=""):
        return [f"{prefix}.{i}{part}.{kind}" for i in layers for kind in ("key", "value")]

    source = list(source_inputs(model.config))
    if graph == "prefill":
        if seq2seq:
            return (source + ["decoder_input_ids"],
                    ["logits", "encoder_hidden_states"] + cache("present", ".decoder") + cache("present", ".encoder"))
        return source, ["logits"] + cache("present")
    if graph == "decode":
        if seq2seq:
            return (["decoder_input_ids", "attention_mask", "encoder_hidden_states"]
                    + cache("past_key_values", ".decoder") + cache("past_key_values", ".encoder"),
                    ["logits"] + cache("present", ".decoder"))
        return ["input_ids", "attention_mask"] + cache("past_key_values"), ["logits"] + cache("present")
    raise ValueError(f"`graph` must be 'prefill' or 'decode', got {graph!r}.")


def _example_ids(config, batch: int, length: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, config.vocab_size, (batch, length), generator=generator)


def _example_source(config, batch: int, length: int) -> dict:
    """Example inputs of the encoder (or a causal LM), by `source_inputs`: `length` tokens and their mask, or images."""
    if source_inputs(config) == ("pixel_values",):
        size = (batch, config.num_channels, config.image_size, config.image_size)
        return {"pixel_values": torch.randn(size, generator=torch.Generator().manual_seed(0))}
    ids = _example_ids(config, batch, length)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def generation_examples(model, batch: int = 2, length: int = 3) -> tuple[tuple, tuple]:
    """
    Example arguments of the prefill and decoding-step graphs: a prompt (a seq2seq model: a source of `length` tokens,
    or images, and a decoder start of 2), then one step after it with the prefill's cache. Sizes of 2 or more, so
    that torch.export keeps each dimension dynamic.
    """
    config = model.config
    prefill, _ = generation_graphs(model)
    source = tuple(_example_source(config, batch, length).values())
    if config.is_encoder_decoder:
        prefill_args = (*source, _example_ids(config, batch, 2))
        with torch.no_grad():
            logits, encoder_states, past, cross = prefill(*prefill_args)
        mask = torch.ones(encoder_states.shape[:2], dtype=torch.long)  # the source's: no padding in the example
        return prefill_args, (logits.argmax(-1), mask, encoder_states, past, cross)
    with torch.no_grad():
        logits, past = prefill(*source)
    mask = source[1]
    return source, (logits.argmax(-1), torch.cat([mask, mask[:, :1]], dim=1), past)


def generation_dynamic_shapes(model) -> tuple[tuple, tuple]:
    """torch.export `dynamic_shapes` of the prefill and decoding-step graphs: batch and every length dynamic."""
    dims = _dims(model.config)
    batch, sequence, target, past = dims["batch"], dims["sequence"], dims["target"], dims["past"]
    layers = model.config.num_decoder_layers

    def cache(length):
        return tuple(({0: batch, 2: length}, {0: batch, 2: length}) for _ in range(layers))

    if model.config.is_encoder_decoder:
        prefill = (*(_axes(name, dims) for name in source_inputs(model.config)), {0: batch, 1: target})
        decode = ({0: batch}, {0: batch, 1: sequence}, {0: batch, 1: sequence}, cache(past), cache(sequence))
        return prefill, decode
    return ({0: batch, 1: sequence}, {0: batch, 1: sequence}), ({0: batch}, {0: batch, 1: past + 1}, cache(past))


def export_generation(model) -> dict:
    """
    `torch.export` of generation: {"prefill": ExportedProgram, "decode": ExportedProgram} (see `CausalPrefill`,
    `CausalDecodeStep`, `Seq2SeqPrefill`, `Seq2SeqDecodeStep` for their arguments and results), batch and lengths
    dynamic up to `max_position_embeddings` (a captioner's prefill takes `pixel_values`, of dynamic batch).
    `greedy_generate` decodes with them.
    """
    graphs = generation_graphs(model)
    examples = generation_examples(model)
    shapes = generation_dynamic_shapes(model)
    programs = {}
    with torch.no_grad(), eager_attention(model):
        for name, graph, example, shape in zip(("prefill", "decode"), graphs, examples, shapes):
            programs[name] = torch.export.export(graph, example, dynamic_shapes=shape, strict=False)
    return programs


# -- ONNX ---------------------------------------------------------------------------------------------------------------
def _axis_specs(dynamic_shapes) -> list:
    """The per-tensor specs ({axis: Dim}) of torch.export `dynamic_shapes`, in the order of the flat inputs."""
    if isinstance(dynamic_shapes, dict) and all(isinstance(key, int) for key in dynamic_shapes):
        return [dynamic_shapes]
    items = dynamic_shapes.values() if isinstance(dynamic_shapes, dict) else dynamic_shapes
    return [spec for item in items for spec in _axis_specs(item)]


def to_onnx(program, path, input_names: list[str], output_names: list[str], dynamic_shapes=None) -> Path:
    """
    Write an `ExportedProgram` (from `export_forward` or `export_generation`) as an ONNX file at `path`, through
    `torch.onnx.export(..., dynamo=True)`, with the given flat input and output names; its dynamic dimensions stay
    dynamic, named after the `Dim`s of `dynamic_shapes` when given ("batch", "sequence", ...). Returns the path.
    """
    import onnx  # noqa: F401  (torch.onnx needs onnx and onnxscript: a plain ImportError here when absent)
    import onnxscript  # noqa: F401

    path = Path(path)
    onnx_program = torch.onnx.export(
        program, (), dynamo=True, input_names=input_names, output_names=output_names, verbose=False
    )
    if dynamic_shapes is not None:
        names = {}
        for value, spec in zip(onnx_program.model.graph.inputs, _axis_specs(dynamic_shapes)):
            for axis, dim in spec.items():
                symbol = getattr(value.shape[axis], "value", None)
                if isinstance(symbol, str) and symbol.isidentifier():  # a plain symbol, not "s0 + 1"
                    names.setdefault(symbol, dim.__name__)
        onnx_program.rename_axes(names)
    onnx_program.save(str(path))
    return path


def onnx_session(path):
    """An ONNX Runtime session of the file at `path`, on the CPU."""
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# -- Greedy decoding with the exported graphs ------------------------------------------------------------------------
def _pairs(flat: list) -> tuple:
    return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


class ExportedGeneration:
    """
    The prefill and decoding-step graphs of one model, as callables with the arguments and results of the modules
    they were exported from (`CausalPrefill`, ...): from `torch.export` programs (`from_programs`) or ONNX Runtime
    sessions (`from_onnx`). `greedy_generate` decodes with one.
    """

    def __init__(self, prefill, decode, is_encoder_decoder: bool, defaults: dict | None = None):
        self.prefill, self.decode, self.is_encoder_decoder = prefill, decode, is_encoder_decoder
        self.defaults = dict(defaults or {})  # eos, pad and decoder start ids `greedy_generate` falls back on

    @classmethod
    def load(cls, folder) -> "ExportedGeneration":
        """The graphs of a folder `export_folder` wrote (either format), with its config's special token ids."""
        folder = Path(folder)
        manifest = _read_manifest(folder)
        if "prefill" not in manifest["graphs"]:
            raise ValueError(f"{folder} holds no generation graphs: it was exported from a {manifest['model']}.")
        files = [folder / manifest["graphs"][name]["file"] for name in ("prefill", "decode")]
        if manifest["format"] == "onnx":
            loaded = cls.from_onnx(*files)
        else:
            loaded = cls.from_programs(*(torch.export.load(str(file)) for file in files), manifest["is_encoder_decoder"])
        loaded.defaults = manifest["generation"]
        return loaded

    @classmethod
    def from_programs(cls, prefill, decode, is_encoder_decoder: bool) -> "ExportedGeneration":
        return cls(prefill.module(), decode.module(), is_encoder_decoder)

    @classmethod
    def from_onnx(cls, prefill_path, decode_path) -> "ExportedGeneration":
        prefill, decode = onnx_session(prefill_path), onnx_session(decode_path)
        seq2seq = "decoder_input_ids" in [i.name for i in prefill.get_inputs()]

        def runner(session, leading: int, groups: int):
            names = [i.name for i in session.get_inputs()]

            def run(*args):
                flat = torch.utils._pytree.tree_leaves(args)
                if len(flat) != len(names):  # the graph's inputs are the flattened arguments, one for one
                    raise ValueError(f"This graph takes {len(names)} tensors ({', '.join(names)}), got {len(flat)}.")
                feeds = dict(zip(names, (t.detach().cpu().numpy() for t in flat)))
                outputs = [torch.from_numpy(array) for array in session.run(None, feeds)]
                head, rest = outputs[:leading], outputs[leading:]
                size = len(rest) // groups
                return (*head, *(_pairs(rest[g * size:(g + 1) * size]) for g in range(groups)))

            return run

        if seq2seq:
            return cls(runner(prefill, 2, 2), runner(decode, 1, 1), True)
        return cls(runner(prefill, 1, 1), runner(decode, 1, 1), False)


def greedy_generate(
    graphs: ExportedGeneration,
    input_ids: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    pixel_values: torch.Tensor | None = None,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    decoder_start_token_id: int | None = None,
) -> torch.Tensor:
    """
    Greedy decoding with exported graphs, as `model.generate(do_sample=False)` does it: the prompt and the new tokens
    (a causal LM), or the decoder start and the new tokens (seq2seq; a captioner's graphs take `pixel_values`, as its
    `generate()` does, instead of `input_ids`). `eos_token_id` ends a sequence (later tokens
    are `pad_token_id`, by default the eos) and all of them ends the loop; before `min_new_tokens` it is never chosen.
    Only these settings: a model's generation config may ask for more (repetition penalties, ...), which this leaves out.
    The token ids not given are those of the exported folder (`ExportedGeneration.load`).
    """
    eos_token_id = graphs.defaults.get("eos_token_id") if eos_token_id is None else eos_token_id
    pad_token_id = graphs.defaults.get("pad_token_id") if pad_token_id is None else pad_token_id
    if decoder_start_token_id is None:
        decoder_start_token_id = graphs.defaults.get("decoder_start_token_id")
    if not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be a whole number, 1 or more, got {max_new_tokens!r}.")
    if (input_ids is None) == (pixel_values is None):
        raise ValueError("Pass the prompt or source as `input_ids`, or a captioner's images as `pixel_values`: one "
                         "of them.")
    if pixel_values is not None and (attention_mask is not None or not graphs.is_encoder_decoder):
        raise ValueError("`pixel_values` go to a captioner's graphs (seq2seq), without an `attention_mask`.")
    if input_ids is not None and attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    eos = [] if eos_token_id is None else [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    pad = pad_token_id if pad_token_id is not None else (eos[0] if eos else None)
    batch = (input_ids if input_ids is not None else pixel_values).shape[0]
    if graphs.is_encoder_decoder:
        if decoder_start_token_id is None:
            raise ValueError("A seq2seq model's decoding starts with `decoder_start_token_id`: pass it.")
        tokens = torch.full((batch, 1), decoder_start_token_id, dtype=torch.long)
        source = (input_ids, attention_mask) if pixel_values is None else (pixel_values,)
        logits, encoder_states, past, cross = graphs.prefill(*source, tokens)
        if pixel_values is not None:  # the decoding step's mask over the image's encoder states: all there
            attention_mask = torch.ones(encoder_states.shape[:2], dtype=torch.long)
    else:
        tokens = input_ids
        logits, past = graphs.prefill(input_ids, attention_mask)
    unfinished = torch.ones(batch, dtype=torch.bool)
    for step in range(max_new_tokens):
        scores = logits[:, -1].float()
        if eos and step < min_new_tokens:
            scores[:, eos] = float("-inf")
        chosen = scores.argmax(-1)
        if pad is not None:
            chosen = torch.where(unfinished, chosen, torch.full_like(chosen, pad))
        tokens = torch.cat([tokens, chosen[:, None].to(tokens.dtype)], dim=1)
        if eos:
            unfinished &= ~torch.isin(chosen, torch.tensor(eos))
        if not unfinished.any() or step == max_new_tokens - 1:
            break
        newest = tokens[:, -1:]
        if graphs.is_encoder_decoder:
            logits, past = graphs.decode(newest, attention_mask, encoder_states, past, cross)
        else:
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch, 1)], dim=1)
            logits, past = graphs.decode(newest, attention_mask, past)
    return tokens


# -- An exported folder: what `vaswani export` writes -----------------------------------------------------------------
FORMATS = ("onnx", "torch")
MANIFEST = "export.json"
_SUFFIX = {"onnx": ".onnx", "torch": ".pt2"}


def example_inputs(model, batch: int = 2, length: int = 4) -> dict:
    """
    Example inputs of a head's forward, as a tokenizer (or the image processor) gives them (sizes of 2 or more keep
    dimensions dynamic).
    """
    config = model.config
    inputs = _example_source(config, batch, length)
    if type(model).__name__ == "VaswaniForMultipleChoice":
        return {name: value[:, None].expand(-1, 2, -1).contiguous() for name, value in inputs.items()}
    if config.stacks == "encoder-only" and config.type_vocab_size > 0 and "input_ids" in inputs:
        inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
    if config.is_encoder_decoder:
        inputs["decoder_input_ids"] = _example_ids(config, batch, 2)
    return inputs


def _shapes(program, dynamic_shapes) -> tuple[list, list]:
    """The flat inputs' and outputs' shapes of `program`, dynamic sizes by the names of their `Dim`s."""
    import re

    user_inputs = set(program.graph_signature.user_inputs)
    placeholders = [node for node in program.graph.nodes if node.op == "placeholder" and node.name in user_inputs]
    names = {}
    for node, spec in zip(placeholders, _axis_specs(dynamic_shapes)):
        for axis, dim in spec.items():
            size = node.meta["val"].shape[axis]
            if str(size).isidentifier():
                names.setdefault(str(size), dim.__name__)

    def describe(node):
        return [
            size if isinstance(size, int) else re.sub(r"[a-z]\d+", lambda m: names.get(m.group(), m.group()), str(size))
            for size in node.meta["val"].shape
        ]

    outputs = torch.utils._pytree.tree_leaves(next(n for n in program.graph.nodes if n.op == "output").args)
    return [describe(node) for node in placeholders], [describe(node) for node in outputs]


def _read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder} is not an exported folder ({MANIFEST} missing): write one with `vaswani export`.")
    return json.loads(path.read_text(encoding="utf-8"))


CHECK_TOLERANCE = 1e-4  # float32: ORT's and torch's kernels sum in other orders (about 1e-7 seen)
CHECK_TOKENS = 4


def run_onnx(path, inputs: dict) -> dict:
    """Run the ONNX graph at `path` in ONNX Runtime on `inputs` (tensors by name): its outputs, tensors by name."""
    session = onnx_session(path)
    names = [output.name for output in session.get_outputs()]
    arrays = session.run(None, {name: value.detach().cpu().numpy() for name, value in inputs.items()})
    return {name: torch.from_numpy(array) for name, array in zip(names, arrays)}


def check_export(model, folder, format: str, programs: dict) -> dict:
    """
    Run the written graphs on inputs of another size than the export example's (batch 3, length 5): the forward's
    outputs against the eager model's (within `CHECK_TOLERANCE`), and, for generation, greedy decoding of
    `CHECK_TOKENS` tokens against `generate()`'s (plain greedy settings). `programs` are the ExportedPrograms that
    were saved (format "torch"); ONNX graphs are read back from `folder`. Returns the figures; a disagreement is a
    `RuntimeError`.
    """
    from transformers import GenerationConfig

    folder = Path(folder)
    inputs = example_inputs(model, batch=3, length=5)
    with torch.no_grad():
        expected = HeadForward.of(model, inputs)(**inputs)
    got = run_onnx(folder / "model.onnx", inputs) if format == "onnx" else programs["model"].module()(**inputs)
    difference = max((got[name] - value).abs().max().item() for name, value in expected.items())
    if not difference <= CHECK_TOLERANCE:  # `not <=`: a NaN fails too
        raise RuntimeError(f"The exported forward differs from the model by {difference:.3g} (more than "
                           f"{CHECK_TOLERANCE}): not written. Please report it with the model's config.")
    checks = {"forward_max_abs_difference": difference}
    if not model.can_generate():
        return checks
    config = model.config
    if format == "onnx":
        graphs = ExportedGeneration.from_onnx(folder / "prefill.onnx", folder / "decode.onnx")
    else:
        graphs = ExportedGeneration.from_programs(programs["prefill"], programs["decode"], config.is_encoder_decoder)
    ids = {name: getattr(config, name) for name in ("eos_token_id", "pad_token_id", "decoder_start_token_id")}
    plain = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=CHECK_TOKENS, min_new_tokens=CHECK_TOKENS,
                             bos_token_id=config.bos_token_id, **ids)
    source = {name: inputs[name] for name in source_inputs(config)}
    with torch.no_grad():
        reference = model.generate(**source, generation_config=plain)
    tokens = greedy_generate(graphs, **source, max_new_tokens=CHECK_TOKENS, min_new_tokens=CHECK_TOKENS, **ids)
    if not torch.equal(tokens, reference):
        raise RuntimeError(f"Greedy decoding with the exported graphs gave {tokens.tolist()}, generate() "
                           f"{reference.tolist()}: not written. Please report it with the model's config.")
    checks["greedy_tokens_as_generate"] = CHECK_TOKENS
    return checks


def write_export(model, folder, format: str, tokenizer=None, image_processor=None) -> dict:
    """
    Export `model` into the existing empty `folder`: its forward as `model.onnx` / `model.pt2`; for a causal LM or
    seq2seq model also `prefill.*` and `decode.*` (generation); the config (and generation config), the tokenizer and
    the image processor (of a model that reads pixels) when given, `export.json` (the graphs' inputs and outputs, by
    name and shape) and a README.md. The written graphs are checked against the model first (`check_export`: a
    `RuntimeError` if they disagree). Returns the manifest.
    """
    if format not in FORMATS:
        raise ValueError(f"`format` must be one of {FORMATS}, got {format!r}.")
    if model.training:
        raise ValueError("Export the model in inference mode: call `model.eval()` first (dropout would be traced).")
    if image_processor is not None and "pixel_values" not in source_inputs(model.config):
        raise ValueError("`image_processor` is for a model that reads pixels (its config has an `image_size`): this "
                         "one reads tokens, drop it.")
    folder = Path(folder)
    graphs = {}
    inputs = example_inputs(model)
    program = export_forward(model, inputs)
    forward_shapes = forward_dynamic_shapes(model, inputs)
    outputs = list(HeadForward.of(model, inputs).output_names)
    exports = [("model", program, list(inputs), outputs, forward_shapes)]
    if model.can_generate():
        programs = export_generation(model)
        for name, shapes in zip(("prefill", "decode"), generation_dynamic_shapes(model)):
            exports.append((name, programs[name], *graph_names(model, name), shapes))
    for name, program, input_names, output_names, shapes in exports:
        file = folder / f"{name}{_SUFFIX[format]}"
        if format == "onnx":
            to_onnx(program, file, input_names, output_names, shapes)
        else:
            torch.export.save(program, str(file))
        input_shapes, output_shapes = _shapes(program, shapes)
        graphs[name] = {
            "file": file.name,
            "inputs": dict(zip(input_names, input_shapes)),
            "outputs": dict(zip(output_names, output_shapes)),
        }
    checks = check_export(model, folder, format, {name: program for name, program, *_ in exports})
    config = model.config
    manifest = {
        "format": format,
        "model": type(model).__name__,
        "is_encoder_decoder": bool(config.is_encoder_decoder),
        "max_position_embeddings": config.max_position_embeddings,
        "vocab_size": config.vocab_size,
        "image_size": config.image_size,
        "generation": {
            name: getattr(config, name, None) for name in ("eos_token_id", "pad_token_id", "decoder_start_token_id")
        },
        "graphs": graphs,
        "checked": checks,
    }
    config.save_pretrained(folder)
    # The folder holds no model code: a config pointing at some (`auto_map`) would have AutoTokenizer ask whether to
    # run it. Without, the config and tokenizer load with plain transformers (the package registers "vaswani").
    saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    saved.pop("auto_map", None)
    (folder / "config.json").write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if model.can_generate() and model.generation_config is not None:
        model.generation_config.save_pretrained(folder)
    for processor in (tokenizer, image_processor):
        if processor is not None:
            processor.save_pretrained(folder)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    readme = export_readme(manifest, tokenizer is not None, image_processor is not None)
    (folder / "README.md").write_text(readme, encoding="utf-8")
    return manifest


def export_folder(
    model, output, format: str = "onnx", tokenizer=None, overwrite: bool = False, image_processor=None
) -> dict:
    """
    `write_export` into the folder `output`, which appears whole or not at all; an existing non-empty `output` is
    refused (`FileExistsError`) unless `overwrite`, before any work. Returns the manifest.
    """
    from ..hub.hub_vaswani import atomic_folder

    output = Path(output)
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output} already exists and is not empty: pass `overwrite=True` or another folder.")
    with atomic_folder(output, overwrite=overwrite) as staging:
        return write_export(model, staging, format, tokenizer, image_processor)


def _example(manifest: dict, has_tokenizer: bool, has_image_processor: bool = False) -> list[str]:
    """
    A few lines that run the folder's forward graph on a batch of two texts (random ids without a tokenizer), or of
    two images through the image processor (random pixels without one).
    """
    onnx = manifest["format"] == "onnx"
    inputs = manifest["graphs"]["model"]["inputs"]
    kind, array = ("np", "np") if onnx else ("pt", "torch")
    lines = ["import numpy as np", "import onnxruntime"] if onnx else ["import torch"]
    if has_image_processor:
        lines += ["from PIL import Image", "from transformers import AutoImageProcessor", "",
                  'processor = AutoImageProcessor.from_pretrained(".")',
                  'images = [Image.new("RGB", (64, 48), "white"), Image.new("RGB", (20, 20), "gray")]  # yours here',
                  f'batch = dict(processor(images, return_tensors="{kind}"))']
    elif "pixel_values" in inputs:  # already resized and normalised as the model's image processor would
        shape = ", ".join(map(str, inputs["pixel_values"][1:]))
        random = f"np.random.rand(2, {shape}).astype(np.float32)" if onnx else f"torch.rand(2, {shape})"
        lines += ["", f"batch = {{'pixel_values': 2 * {random} - 1}}"]
    elif has_tokenizer:
        lines += ["from transformers import AutoTokenizer", "", 'tokenizer = AutoTokenizer.from_pretrained(".")',
                  f'batch = dict(tokenizer(["Hello there", "Hi"], padding=True, return_tensors="{kind}"))']
    else:
        random = "np.random.randint" if onnx else "torch.randint"
        lines += ["", f"ids = {random}(0, {manifest['vocab_size']}, (2, 6))",
                  f"batch = {{'input_ids': ids, 'attention_mask': {array}.ones_like(ids)}}"]
    if "token_type_ids" in inputs:
        lines.append('batch.setdefault("token_type_ids", 0 * batch["input_ids"])')
    if "decoder_input_ids" in inputs:  # the decoder start token, one per example
        start = manifest["generation"]["decoder_start_token_id"]
        size = f'(len(batch["{next(iter(inputs))}"]), 1)'
        lines.append(f'batch["decoder_input_ids"] = {array}.full({size}, {start}, dtype={array}.int64)')
    if manifest["model"] == "VaswaniForMultipleChoice":  # (batch, choices, sequence): each text twice here
        repeat = "np.repeat(v[:, None], 2, axis=1)" if onnx else "v[:, None].repeat(1, 2, 1)"
        lines.append(f"batch = {{k: {repeat} for k, v in batch.items()}}")
    feeds = f"{{name: batch[name] for name in {list(inputs)!r}}}"
    if onnx:
        lines += ['session = onnxruntime.InferenceSession("model.onnx")',
                  f"outputs = session.run(None, {feeds})  # {', '.join(manifest['graphs']['model']['outputs'])}"]
    else:
        lines += ['program = torch.export.load("model.pt2")',
                  f"outputs = program.module()(**{feeds})  # a dict: {', '.join(manifest['graphs']['model']['outputs'])}"]
    return lines + ["```", ""]


def _shape_text(shape: list) -> str:
    return "(" + ", ".join(str(size) for size in shape) + ")"


def _images_text(manifest: dict, has_image_processor: bool) -> list[str]:
    """What the README says of `pixel_values` (a model that reads pixels): their size, and the image processor."""
    if manifest.get("image_size") is None:
        return []
    shape = _shape_text(manifest["graphs"]["model"]["inputs"]["pixel_values"])
    where = ("`preprocessor_config.json` here: `AutoImageProcessor.from_pretrained(folder)`, then "
             "`processor(images, return_tensors=...)`" if has_image_processor else
             "none in this folder: `vaswani.image_processor_for(config)` builds the model's")
    return [f"The images, `pixel_values`, are float32 {shape}: run the image processor on "
            f"yours first ({where}); it resizes, rescales and normalises them as the model was trained. Only their "
            f"batch is dynamic.", ""]


def export_readme(manifest: dict, has_tokenizer: bool, has_image_processor: bool = False) -> str:
    """The README.md of an exported folder: its files, each graph's inputs and outputs, and how to run them."""
    onnx = manifest["format"] == "onnx"
    kind = "ONNX graphs for ONNX Runtime" if onnx else "torch.export programs"
    lines = [
        f"# {manifest['model']}: {kind}",
        "",
        f"Written by `vaswani export --format {manifest['format']}`. Dimensions named below (batch, sequence, ...) are "
        f"dynamic; lengths go up to {manifest['max_position_embeddings']} (`max_position_embeddings`).",
        "",
        *_images_text(manifest, has_image_processor),
        f"Checked when written, on inputs of another size than the export example's: the forward's outputs are the "
        f"model's within {manifest['checked']['forward_max_abs_difference']:.1e} (max abs difference)"
        + (f"; greedy decoding with `prefill` and `decode` gives `generate()`'s {CHECK_TOKENS} tokens exactly."
           if "greedy_tokens_as_generate" in manifest["checked"] else "."),
        "",
        "## Files",
        "",
    ]
    described = {
        "model": "the forward of the model: tensors in, its main outputs out",
        "prefill": "generation, first step: the prompt in, the next token's logits and the whole cache out",
        "decode": "generation, one cached step: the newest token and the cache in, the logits and the grown cache out",
    }
    for name, graph in manifest["graphs"].items():
        lines.append(f"- `{graph['file']}`: {described[name]}")
    lines += [
        "- `config.json`" + (", `generation_config.json`" if "prefill" in manifest["graphs"] else "") + ": the model's "
        "configuration (special token ids, sizes)",
        *(["- tokenizer files (`tokenizer.json`, ...): load with `AutoTokenizer.from_pretrained(folder)`"]
          if has_tokenizer else []),
        *(["- `preprocessor_config.json`: the image processor, images to `pixel_values`: load with "
           "`AutoImageProcessor.from_pretrained(folder)`"] if has_image_processor else []),
        f"- `{MANIFEST}`: the graphs' inputs and outputs, by name and shape (what this README lists)",
        "",
    ]
    for name, graph in manifest["graphs"].items():
        lines += [f"## `{graph['file']}`", "", "| | name | shape |", "|---|---|---|"]
        lines += [f"| input | `{n}` | {_shape_text(shape)} |" for n, shape in graph["inputs"].items()]
        lines += [f"| output | `{n}` | {_shape_text(shape)} |" for n, shape in graph["outputs"].items()]
        lines.append("")
    if onnx:
        lines += [
            "ONNX Runtime takes the inputs by name, int64 ids and masks, float32 pixel_values; a cache tensor is "
            "(batch, num_heads, length, head_dim), per layer i.",
        ]
    else:
        lines += [
            "The programs take the arguments of the modules they were exported from, in the order listed; the cache is "
            "a tuple of (key, value) per layer, each (batch, num_heads, length, head_dim).",
        ]
    lines += ["", "## Running it", "", "```python", *_example(manifest, has_tokenizer, has_image_processor)]
    if "prefill" in manifest["graphs"]:
        source = [name for name in manifest["graphs"]["prefill"]["inputs"] if name != "decoder_input_ids"]
        images = source == ["pixel_values"]
        lines += [
            "Greedy decoding with the prefill and decode graphs (the loop of `vaswani.integrations.export`, with the "
            "package installed: the tokens of `model.generate(do_sample=False)`), on the batch above:",
            "",
            "```python",
            "import torch",
            "from vaswani.integrations.export import ExportedGeneration, greedy_generate",
            "",
            'graphs = ExportedGeneration.load(".")',
            f"source = {{name: torch.as_tensor(batch[name]) for name in {source!r}}}",
            "tokens = greedy_generate(graphs, **source, max_new_tokens=20)",
            *(["from transformers import AutoTokenizer", "",
               'texts = AutoTokenizer.from_pretrained(".").batch_decode(tokens, skip_special_tokens=True)']
              if has_tokenizer else []),
            "```",
            "",
            "By hand: run `prefill` on " + " and ".join(source)
            + (" (the source)" if manifest["is_encoder_decoder"] else "")
            + (" and decoder_input_ids (the decoder start token)" if manifest["is_encoder_decoder"] else "")
            + ", take the argmax of `logits`, then feed it to `decode` with the `present.*` tensors as "
            "`past_key_values.*`"
            + (" (the `present.*.encoder.*` ones stay as they are, with `encoder_hidden_states`"
               + (" and an `attention_mask` of ones over them" if images else "") + ")"
               if manifest["is_encoder_decoder"] else ", the attention mask grown by one 1")
            + ", step by step.",
            "",
        ]
    return "\n".join(lines)

