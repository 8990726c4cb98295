"""
Configuration of the Vaswani model family ("Attention Is All You Need", Vaswani et al. 2017): `VaswaniConfig`, the one
source of truth for a model's architecture and the one place it is validated, with the constants its fields take
(`STACKS`, `ACTIVATIONS`, `POSITION_EMBEDDING_TYPES`, `SINUSOIDAL_LAYOUTS`, `ATTENTION_SCORES`,
`ENCODER_OVERRIDES`) and named `PRESETS`.
Training settings (learning rate, label smoothing, ...) are not architecture and live with the training code
(`vaswani.training`).
"""

import copy
import json
import math
from typing import ClassVar

import transformers
from transformers import PreTrainedConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.utils import logging


logger = logging.get_logger(__name__)

# The cache is called `cache` (argument and output field) from transformers 5.24 on; this family uses that name.
# A saved folder loaded with trust_remote_code on an older transformers stops here, with the fix, not deep in generate().
MINIMUM_TRANSFORMERS = "5.24.0"
if tuple(int(part) for part in transformers.__version__.split(".")[:2]) < (5, 24):
    raise ImportError(
        f"Vaswani models need transformers >= {MINIMUM_TRANSFORMERS}, found {transformers.__version__}: "
        f"pip install -U 'transformers>={MINIMUM_TRANSFORMERS}'."
    )


STACKS = ("encoder-decoder", "encoder-only", "decoder-only")
# ReLU is the paper's (eq. 2); the GELU variants are BERT's and GPT-2's, swish (SiLU) Marian's.
# The settings in which an encoder may depart from the rest of the model (`encoder_overrides`).
ENCODER_OVERRIDES = ("activation_function", "layer_norm_eps")
ACTIVATIONS = ("relu", "gelu", "gelu_new", "gelu_pytorch_tanh", "swish", "silu")
# The paper's fixed sinusoids (3.5) and learned positions (BERT, GPT-2) are added to the embeddings; the paper's
# descendants put position into attention: rotary (RoPE: GPT-NeoX, Llama), alibi (BLOOM, MPT) and relative (T5's
# bucketed bias).
POSITION_EMBEDDING_TYPES = ("sinusoidal", "learned", "rotary", "alibi", "relative")
ATTENTION_POSITIONS = ("rotary", "alibi", "relative")
SINUSOIDAL_LAYOUTS = ("interleaved", "concatenated")
# The compatibility functions of paper 3.2.1: its scaled dot-product q.k / sqrt(d_k); the unscaled dot product
# (Luong et al. 2015), which 3.2.1 says additive attention beats for large d_k; and additive attention
# v^T tanh(W_q q + W_k k) (Bahdanau et al. 2015).
ATTENTION_SCORES = ("scaled_dot_product", "dot_product", "additive")
# RoPE types whose frequencies change with the length of the text: a segment memory's keys, rotated once, would
# disagree with later queries.
LENGTH_DEPENDENT_ROPE_TYPES = ("dynamic", "longrope")

# The paper's Table 3 (base and big), the two shapes that made its encoder and decoder famous alone, and the small
# shape the command line trains when no preset or width is given (sized for a CPU).
PRESETS: dict[str, dict] = {
    "transformer-base": dict(
        stacks="encoder-decoder", vocab_size=37000, d_model=512, num_heads=8, d_ff=2048,
        num_encoder_layers=6, num_decoder_layers=6, dropout=0.1,
    ),
    "transformer-big": dict(
        stacks="encoder-decoder", vocab_size=37000, d_model=1024, num_heads=16, d_ff=4096,
        num_encoder_layers=6, num_decoder_layers=6, dropout=0.3,
    ),
    "bert-base": dict(
        stacks="encoder-only", vocab_size=30522, d_model=768, num_heads=12, d_ff=3072,
        num_encoder_layers=12, num_decoder_layers=0, dropout=0.1, attention_dropout=0.1,
        activation_function="gelu", position_embedding_type="learned", max_position_embeddings=512,
        type_vocab_size=2, scale_embedding=False, embedding_layer_norm=True, layer_norm_eps=1e-12,
        pad_token_id=0, bos_token_id=None, eos_token_id=None, decoder_start_token_id=None,
    ),
    "gpt2-small": dict(
        stacks="decoder-only", vocab_size=50257, d_model=768, num_heads=12, d_ff=3072,
        num_encoder_layers=0, num_decoder_layers=12, dropout=0.1, attention_dropout=0.1,
        activation_function="gelu_new", position_embedding_type="learned", max_position_embeddings=1024,
        norm_first=True, scale_embedding=False,
        pad_token_id=None, bos_token_id=50256, eos_token_id=50256, decoder_start_token_id=None,
    ),
    # T5 (Raffel et al. 2020) at its small size: relative position bias, RMS norm, pre-LN, no projection biases.
    "t5-small": dict(
        stacks="encoder-decoder", vocab_size=32128, d_model=512, num_heads=8, d_ff=2048,
        num_encoder_layers=6, num_decoder_layers=6, dropout=0.1, activation_function="relu",
        position_embedding_type="relative", relative_attention_num_buckets=32, relative_attention_max_distance=128,
        rms_norm=True, projection_bias=False, norm_first=True, final_layer_norm=True, scale_embedding=False,
        layer_norm_eps=1e-6, pad_token_id=0, eos_token_id=1, bos_token_id=None, decoder_start_token_id=0,
    ),
    # Pythia-160M (GPT-NeoX): rotary positions on a quarter of each head, attention and MLP in parallel.
    "pythia-160m": dict(
        stacks="decoder-only", vocab_size=50304, d_model=768, num_heads=12, d_ff=3072,
        num_encoder_layers=0, num_decoder_layers=12, dropout=0.0, activation_function="gelu",
        position_embedding_type="rotary", rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
        "partial_rotary_factor": 0.25}, max_position_embeddings=2048, norm_first=True, parallel_residual=True,
        scale_embedding=False, tie_word_embeddings=False,
        pad_token_id=None, bos_token_id=0, eos_token_id=0, decoder_start_token_id=None,
    ),
    "vaswani-small": dict(
        d_model=256, num_heads=4, d_ff=1024, num_encoder_layers=4, num_decoder_layers=4, dropout=0.1,
    ),
}


# The fields that shape the computation: every config.json this package writes has them (see `from_dict`).
ARCHITECTURE_FIELDS = (
    "stacks", "vocab_size", "d_model", "num_heads", "d_ff", "num_encoder_layers", "num_decoder_layers",
    "activation_function", "max_position_embeddings", "position_embedding_type", "norm_first", "final_layer_norm",
    "embedding_layer_norm", "layer_norm_eps", "scale_embedding", "tie_word_embeddings", "type_vocab_size",
)


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pipelines_registered(tasks) -> bool:
    from transformers.pipelines import PIPELINE_REGISTRY

    return all(task in PIPELINE_REGISTRY.get_supported_tasks() for task in tasks)


class VaswaniConfig(PreTrainedConfig):
    r"""
    Configuration of a Vaswani model: the Transformer of "Attention Is All You Need" in one of three shapes.

    The defaults are the paper's base model (Table 3) with a 37,000-token shared vocabulary. Hugging Face's usual
    names are accepted as arguments and attributes: `hidden_size` (`d_model`), `num_attention_heads` (`num_heads`),
    `intermediate_size` (`d_ff`) and `num_hidden_layers` (sets both stacks unless they are given). Heads choose the
    stacks they need themselves, so one config serves every head.

    Args:
        vocab_size (`int`, defaults to 37000): size of the (shared) vocabulary.
        d_model (`int`, defaults to 512): width of every sub-layer output and of the embeddings (paper 3.1).
        num_heads (`int`, defaults to 8): attention heads h; each has d_k = d_v = d_model / h (paper 3.2.2).
        d_ff (`int`, defaults to 2048): inner width of the position-wise feed-forward network (paper 3.3).
        num_encoder_layers (`int`, defaults to 6): N for the encoder stack.
        num_decoder_layers (`int`, defaults to 6): N for the decoder stack.
        dropout (`float`, defaults to 0.1): P_drop, on each sub-layer output and on the embedding sums (paper 5.4).
        attention_dropout (`float`, defaults to 0.0): dropout on attention probabilities (not in the paper).
        activation_function (`str`, defaults to `"relu"`): `"relu"` (paper eq. 2), `"gelu"` (exact, BERT),
            `"gelu_new"` or `"gelu_pytorch_tanh"` (the tanh approximation, GPT-2), `"swish"` / `"silu"` (Marian).
        max_position_embeddings (`int`, defaults to 512): rows of the position table. Learned positions cannot go
            past it; sinusoidal positions can (the table is extended on the fly).
        position_embedding_type (`str`, defaults to `"sinusoidal"`): how the model knows where a token is.
            Added to the embeddings: `"sinusoidal"` (paper 3.5) or `"learned"` (BERT, GPT-2). Inside attention,
            in every self-attention (cross-attention, as in T5, gets none): `"rotary"` (queries and keys rotated by
            position, RoPE: GPT-NeoX, Llama), `"alibi"` (a penalty linear in the distance, fixed per head: BLOOM,
            MPT) or `"relative"` (T5's learned bias per bucket of the distance).
        rope_parameters (`dict`, *optional*): with `"rotary"` positions, transformers' RoPE parameters:
            `rope_theta` (defaults to 10000.0), `rope_type` (`"default"`, `"linear"`, `"dynamic"`, `"yarn"`,
            `"longrope"`, `"llama3"`, with their own keys), `partial_rotary_factor` (the fraction of each head that
            rotates, defaults to 1.0; GPT-NeoX 0.25). Only rotary positions take it.
        relative_attention_num_buckets (`int`, defaults to 32): with `"relative"` positions, buckets of the
            distance (T5).
        relative_attention_max_distance (`int`, defaults to 128): with `"relative"` positions, the distance from
            which every distance shares the last bucket (T5).
        attention_scores (`str`, defaults to `"scaled_dot_product"`): the compatibility function of every attention
            (paper 3.2.1): `"scaled_dot_product"`, q.k / sqrt(d_k) (the paper's, eq. 1); `"dot_product"`, q.k
            unscaled; `"additive"`, v^T tanh(W_q q + W_k k) per head, where W_q q and W_k k are the head's query
            and key projections and v (`score_vector`, d_k numbers per head) is the one extra parameter. Additive
            scores run on their own attention implementation, `"additive"` (the model picks it; sdpa, flash and
            flex compute dot products only).
        image_size (`int`, *optional*): the encoder reads pixels, not tokens: square images of `image_size` x
            `image_size` pixels cut into `patch_size` x `patch_size` patches, each projected to d_model, with a
            learned [CLS] token in front (ViT, Dosovitskiy et al. 2021). None (the default): the encoder reads
            tokens. The decoder, if any, always reads tokens (a captioner).
        patch_size (`int`, defaults to 16): P, the side of a patch; it must divide `image_size`.
        num_channels (`int`, defaults to 3): colour channels of the images.
        memory_length (`int`, defaults to 0): Transformer-XL's segment memory (Dai et al. 2019, 3.2): a decoder-only
            language model reading a long text segment by segment also attends to the last `memory_length` tokens
            of the earlier segments, as extra keys and values (`forward(..., memory=VaswaniSegmentMemory(config))`);
            0 = none. The memory holds each layer's keys and values, not the hidden states the paper keeps and
            re-projects: for fixed weights (evaluation) the two give the same numbers; in training the memory's
            keys and values are one optimizer step old and no gradient reaches W^K, W^V through memory positions.
            Memory and segment would share absolute positions, so it needs positions inside attention whose
            frequencies do not depend on the length (`"rotary"` with any rope_type but `"dynamic"` and
            `"longrope"`, `"alibi"`, `"relative"`); decoder-only stacks without cross-attention.
        add_cross_attention (`bool`, defaults to `False`): a decoder-only stack also gets the decoder's
            encoder-decoder attention (paper 3.2.3), over `encoder_hidden_states` given by the caller, as
            `VisionEncoderDecoderModel` and `EncoderDecoderModel` give them (Hugging Face's name, as in GPT-2 and
            BERT). An encoder-decoder model always has it; an encoder-only one has no decoder to give it to.
        encoder_overrides (`dict`, *optional*): settings in which the encoder stack departs from the rest of the
            model, any of `ENCODER_OVERRIDES` (`activation_function`, `layer_norm_eps`): for a captioner whose image
            encoder and text decoder were trained apart (a converted ViT + GPT-2: gelu and 1e-12 against gelu_new
            and 1e-5). None (the paper): one setting for every stack.
        sinusoidal_layout (`str`, defaults to `"interleaved"`): where the sines and cosines sit in the encoding:
            `"interleaved"` is the paper's formula (sin at 2i, cos at 2i+1); `"concatenated"` puts all sines first,
            then all cosines (tensor2tensor and Marian). The same information, in another order.
        norm_first (`bool`, defaults to `False`): `False` is the paper's post-LN, `LayerNorm(x + Sublayer(x))`;
            `True` is pre-LN, `x + Sublayer(LayerNorm(x))` (GPT-2).
        final_layer_norm (`bool`, *optional*): a LayerNorm after the last layer of each stack. Defaults to
            `norm_first` (pre-LN leaves the residual stream un-normalised; GPT-2 has it), `torch.nn.Transformer`
            has it with post-LN too.
        embedding_layer_norm (`bool`, defaults to `False`): a LayerNorm over the summed embeddings, before dropout
            (BERT).
        layer_norm_eps (`float`, defaults to 1e-5): epsilon of every LayerNorm.
        rms_norm (`bool`, defaults to `False`): every LayerNorm is an RMS norm instead: no mean subtracted and no
            bias, x / RMS(x) * g (Zhang and Sennrich 2019; T5, Llama).
        projection_bias (`bool`, defaults to `True`): the attention projections (W^Q, W^K, W^V, W^O) and the
            feed-forward's (W_1, W_2) have biases, as in the paper's eq. 2; T5 has none.
        parallel_residual (`bool`, defaults to `False`): with `norm_first`, self-attention and the feed-forward
            network read the same input and both add to the residual, x + Attn(LN_1(x)) + FFN(LN_2(x)) (GPT-J,
            GPT-NeoX); one-stack models only.
        scale_embedding (`bool`, defaults to `True`): multiply token embeddings by sqrt(d_model) (paper 3.4).
        tie_word_embeddings (`bool`, defaults to `True`): one matrix for source embedding, target embedding and the
            pre-softmax projection (paper 3.4).
        type_vocab_size (`int`, defaults to 0): number of segment (token type) embeddings; 0 means none.
        final_logits_bias (`bool`, defaults to `False`): a fixed bias (a buffer, not trained) added to the
            sequence-to-sequence logits, as Marian has.
        sparse_prediction (`bool`, defaults to `False`): masked-language-model heads given `labels` project only
            the labelled positions to the vocabulary (about 15% of them in BERT's recipe), so their `logits` have
            shape `(number of labelled positions, vocab_size)`, in order. The loss is the same; a training step is
            faster and lighter. Without `labels` the logits cover every position. (ModernBERT's option.)
        init_std (`float`, defaults to 0.02): standard deviation of the normal initialisation.
        pad_token_id, bos_token_id, eos_token_id, decoder_start_token_id (`int`): special tokens; the decoder
            start defaults to `bos_token_id`.
        use_cache (`bool`, defaults to `True`): return key/value caches for fast decoding.
        stacks (`str`, defaults to `"encoder-decoder"`): which stacks `VaswaniModel` holds: `"encoder-decoder"`
            (the paper), `"encoder-only"` (BERT-style) or `"decoder-only"` (GPT-style). Heads set it themselves.
        model_card_data (`dict`, *optional*): facts for the model card a saved folder carries (`name`,
            `datasets`, `results`, `training_data`, `training_procedure`, `license`, `tags`); the training command
            fills it.

    Example:

    ```python
    >>> from vaswani import VaswaniConfig, VaswaniForConditionalGeneration
    >>> config = VaswaniConfig.from_preset("transformer-base")
    >>> model = VaswaniForConditionalGeneration(config)
    ```
    """

    model_type = "vaswani"
    keys_to_ignore_at_inference = ["cache", "memory"]
    attribute_map: ClassVar[dict[str, str]] = {
        "hidden_size": "d_model",
        "num_attention_heads": "num_heads",
        "intermediate_size": "d_ff",
    }

    vocab_size: int = 37000
    d_model: int = 512
    num_heads: int = 8
    d_ff: int = 2048
    num_encoder_layers: int | None = None
    num_decoder_layers: int | None = None
    dropout: float | int = 0.1
    attention_dropout: float | int = 0.0
    activation_function: str = "relu"
    max_position_embeddings: int = 512
    position_embedding_type: str = "sinusoidal"
    rope_parameters: dict | None = None
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    attention_scores: str = "scaled_dot_product"
    image_size: int | None = None
    patch_size: int = 16
    num_channels: int = 3
    memory_length: int = 0
    add_cross_attention: bool = False
    encoder_overrides: dict | None = None
    sinusoidal_layout: str = "interleaved"
    norm_first: bool = False
    final_layer_norm: bool | None = None
    embedding_layer_norm: bool = False
    layer_norm_eps: float = 1e-5
    rms_norm: bool = False
    projection_bias: bool = True
    parallel_residual: bool = False
    scale_embedding: bool = True
    tie_word_embeddings: bool = True
    type_vocab_size: int = 0
    final_logits_bias: bool = False
    sparse_prediction: bool = False
    init_std: float = 0.02
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    decoder_start_token_id: int | None = None
    use_cache: bool = True
    stacks: str = "encoder-decoder"
    is_decoder: bool = False
    model_card_data: dict | None = None

    def __post_init__(self, **kwargs):
        # Hugging Face's name and the paper's for one field (hidden_size and d_model, ...) must not disagree.
        for alias, field in self.attribute_map.items():
            if alias in kwargs:
                ours, default = getattr(self, field), getattr(type(self), field)
                if ours != default and kwargs[alias] != ours:
                    raise ValueError(
                        f"`{alias}={kwargs[alias]!r}` and `{field}={ours!r}` name the same setting: pass one of them."
                    )
        # `num_hidden_layers` is Hugging Face's name for the depth: it sets both stacks unless they are given.
        num_hidden_layers = kwargs.pop("num_hidden_layers", None)
        default_depth = 6 if num_hidden_layers is None else num_hidden_layers
        if self.num_encoder_layers is None:
            self.num_encoder_layers = default_depth
        if self.num_decoder_layers is None:
            self.num_decoder_layers = default_depth
        if self.decoder_start_token_id is None:
            self.decoder_start_token_id = self.bos_token_id
        if self.final_layer_norm is None:
            self.final_layer_norm = self.norm_first
        # A saved folder declares the package's pipelines for where the package is not installed; where it is
        # (`import vaswani` registered them), the registered pipelines serve and need no remote code.
        custom_pipelines = kwargs.pop("custom_pipelines", None)
        # Folders saved before label smoothing became a training setting carry it here; it never changes a loss now.
        if kwargs.pop("label_smoothing", None):
            logger.info(
                "Ignoring `label_smoothing` in the config: it is a training setting (the training commands' "
                "--label-smoothing, or `smoothing=` of a token-prediction head's forward)."
            )
        if custom_pipelines and not _pipelines_registered(custom_pipelines):
            kwargs["custom_pipelines"] = custom_pipelines
        super().__post_init__(**kwargs)
        self._set_stack_flags()
        self.check()

    def convert_rope_params_to_dict(self, **kwargs):
        """
        transformers' RoPE standardisation (defaults, the legacy `rope_scaling` / `rope_theta` names), for rotary
        positions only: any other kind has no RoPE parameters, and is told so when given some.
        """
        if self.position_embedding_type == "rotary":
            return super().convert_rope_params_to_dict(**kwargs)
        given = [name for name in ("rope_scaling", "rope_theta", "partial_rotary_factor") if kwargs.get(name) is not None]
        if self.rope_parameters is not None:
            given.insert(0, "rope_parameters")
        if given:
            raise ValueError(
                f"`{given[0]}` applies to rotary positions, but `position_embedding_type` is "
                f"{self.position_embedding_type!r}: set position_embedding_type='rotary' or drop `{given[0]}`."
            )
        for name in ("rope_scaling", "rope_theta", "partial_rotary_factor"):
            kwargs.pop(name, None)
        return kwargs

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs):
        """
        A config from a saved `config.json` (as `from_pretrained` reads it). Every such file this package writes
        names each field that shapes the computation; one that lacks any of them would silently take the defaults
        and compute other numbers, so it is refused, naming the fields.
        """
        if config_dict.get("model_type") == cls.model_type:
            aliases = {field: alias for alias, field in cls.attribute_map.items()}
            missing = [
                name for name in ARCHITECTURE_FIELDS
                if name not in config_dict and aliases.get(name) not in config_dict
                and not (name.endswith("_layers") and "num_hidden_layers" in config_dict)
            ]
            if missing:
                defaults = ", ".join(f'"{name}": {json.dumps(getattr(cls, name))}' for name in missing)
                raise ValueError(
                    f"This Vaswani config.json lacks {', '.join(missing)}, which shape the computation: defaults would "
                    f"give other numbers than the model was trained with. Add them to config.json (the defaults are "
                    f"{defaults}), or save the model again with save_pretrained."
                )
        return super().from_dict(config_dict, **kwargs)

    # -- Hugging Face's name for the depth -------------------------------------------------------------------------
    @property
    def num_hidden_layers(self) -> int:
        """Depth of the stack that caches and hidden states refer to: the decoder when there is one."""
        return self.num_decoder_layers if self.stacks != "encoder-only" else self.num_encoder_layers

    @num_hidden_layers.setter
    def num_hidden_layers(self, value: int):
        self.num_encoder_layers = value
        self.num_decoder_layers = value

    @property
    def has_encoder(self) -> bool:
        return self.stacks in ("encoder-decoder", "encoder-only")

    @property
    def has_decoder(self) -> bool:
        return self.stacks in ("encoder-decoder", "decoder-only")

    def _set_stack_flags(self):
        # generate() and the caches read these two flags; they follow from `stacks` and are never set by hand.
        self.is_encoder_decoder = self.stacks == "encoder-decoder"
        self.is_decoder = self.stacks == "decoder-only"

    def with_stacks(self, stacks: str) -> "VaswaniConfig":
        """A copy of this config for the given stacks; the original is left untouched (heads call this)."""
        config = copy.deepcopy(self)
        config.stacks = stacks
        config._set_stack_flags()
        config.check_stacks()
        return config

    # -- Validation: the one place where a config is judged -----------------------------------------------------
    def check(self):
        """Raise a `ValueError` naming the field when a value is impossible (run on every construction)."""
        for name in ("vocab_size", "d_model", "num_heads", "d_ff", "max_position_embeddings"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        for name in ("num_encoder_layers", "num_decoder_layers", "type_vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be a non-negative integer, got {value!r}.")
        if self.d_model % self.num_heads != 0:
            raise ValueError(
                f"`d_model` ({self.d_model}) must be divisible by `num_heads` ({self.num_heads}): each head gets "
                f"d_model / num_heads dimensions (paper 3.2.2). Choose, e.g., num_heads="
                f"{max(h for h in range(1, self.num_heads + 1) if self.d_model % h == 0)}."
            )
        if self.stacks not in STACKS:
            raise ValueError(f"`stacks` must be one of {STACKS}, got {self.stacks!r}.")
        if self.activation_function not in ACTIVATIONS:
            raise ValueError(
                f"`activation_function` must be one of {ACTIVATIONS}, got {self.activation_function!r}."
            )
        if self.position_embedding_type not in POSITION_EMBEDDING_TYPES:
            raise ValueError(
                f"`position_embedding_type` must be one of {POSITION_EMBEDDING_TYPES}, "
                f"got {self.position_embedding_type!r}."
            )
        if self.sinusoidal_layout not in SINUSOIDAL_LAYOUTS:
            raise ValueError(
                f"`sinusoidal_layout` must be one of {SINUSOIDAL_LAYOUTS}, got {self.sinusoidal_layout!r}."
            )
        if self.attention_scores not in ATTENTION_SCORES:
            raise ValueError(f"`attention_scores` must be one of {ATTENTION_SCORES}, got {self.attention_scores!r}.")
        if self.attention_scores == "additive" and self.position_embedding_type == "rotary":
            raise ValueError(
                "Rotary positions make q.k depend on the distance between two tokens only through the dot product; "
                "additive scores, v^T tanh(q + k), lose that: use position_embedding_type='sinusoidal', 'learned', "
                "'alibi' or 'relative' with attention_scores='additive', or a dot-product score with rotary."
            )
        self._check_positions()
        self._check_memory()
        self._check_pixels()
        self._check_encoder_overrides()
        for name in (
            "norm_first", "final_layer_norm", "embedding_layer_norm", "final_logits_bias", "scale_embedding",
            "sparse_prediction", "tie_word_embeddings", "use_cache", "rms_norm", "projection_bias",
            "parallel_residual", "add_cross_attention",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"`{name}` must be True or False, got {getattr(self, name)!r}.")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if not _is_real(value) or not 0.0 <= value < 1.0:
                raise ValueError(f"`{name}` must be a number in [0, 1), got {value!r}.")
        for name in ("layer_norm_eps", "init_std"):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"`{name}` must be a positive finite number, got {value!r}.")
        for name in ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id"):
            value = getattr(self, name)
            for token_id in value if isinstance(value, list) else [value]:
                if token_id is not None and (isinstance(token_id, bool) or not isinstance(token_id, int)):
                    raise ValueError(f"`{name}` must be an integer token id or None, got {token_id!r}.")
                if token_id is not None and not 0 <= token_id < self.vocab_size:
                    raise ValueError(
                        f"`{name}` ({token_id}) is outside the vocabulary [0, {self.vocab_size}): "
                        f"set it to an id below `vocab_size` or to None."
                    )

    def _check_positions(self):
        kind = self.position_embedding_type
        if kind == "rotary":
            if not isinstance(self.rope_parameters, dict) or "rope_type" not in self.rope_parameters:
                raise ValueError(
                    f"Rotary positions need `rope_parameters` (a dict with `rope_type` and `rope_theta`), got "
                    f"{self.rope_parameters!r}: pass e.g. rope_parameters={{'rope_type': 'default', 'rope_theta': 10000.0}}."
                )
            rope_type = self.rope_parameters["rope_type"]
            if rope_type != "default" and rope_type not in ROPE_INIT_FUNCTIONS:
                raise ValueError(
                    f"`rope_type` in `rope_parameters` must be 'default' or one of {sorted(ROPE_INIT_FUNCTIONS)}, got "
                    f"{rope_type!r}."
                )
            try:
                self.validate_rope()
            except KeyError as error:  # transformers' word for a missing key: here, a bad argument
                raise ValueError(f"{error.args[0]}: add them to `rope_parameters`.") from error
            factor = self.rope_parameters.get("partial_rotary_factor", 1.0)
            head_dim = self.d_model // self.num_heads
            if not _is_real(factor) or not 0 < factor <= 1:
                raise ValueError(f"`rope_parameters['partial_rotary_factor']` must be in (0, 1], got {factor!r}.")
            if int(head_dim * factor) < 2 or int(head_dim * factor) % 2:
                raise ValueError(
                    f"Rotary positions turn pairs of features: {factor} of a head's {head_dim} features is "
                    f"{int(head_dim * factor)}, which must be even and at least 2: change `partial_rotary_factor`, "
                    f"`d_model` or `num_heads`."
                )
        elif self.rope_parameters is not None:
            raise ValueError(
                f"`rope_parameters` applies to rotary positions, but `position_embedding_type` is {kind!r}: set "
                f"position_embedding_type='rotary' or rope_parameters=None."
            )
        for name in ("relative_attention_num_buckets", "relative_attention_max_distance"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if kind == "relative":
            if self.relative_attention_num_buckets < 4:
                raise ValueError(
                    f"`relative_attention_num_buckets` must be at least 4 (half for each direction, half of those "
                    f"exact), got {self.relative_attention_num_buckets}."
                )
            if self.relative_attention_max_distance <= self.relative_attention_num_buckets // 2:
                raise ValueError(
                    f"`relative_attention_max_distance` ({self.relative_attention_max_distance}) must exceed half the "
                    f"buckets ({self.relative_attention_num_buckets // 2}): distances below that are exact, the "
                    f"buckets beyond grow up to it (T5 uses 32 buckets and 128)."
                )

    def _check_memory(self):
        length = self.memory_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"`memory_length` must be a non-negative integer (tokens; 0 = no memory), got {length!r}.")
        if length == 0:
            return
        kind = self.position_embedding_type
        if kind not in ATTENTION_POSITIONS:
            raise ValueError(
                f"`memory_length={length}` needs positions inside attention, one of {ATTENTION_POSITIONS}, but "
                f"`position_embedding_type` is {kind!r}: with absolute positions (sinusoidal, learned) the memory "
                f"and the segment would share positions. Set position_embedding_type='rotary', 'alibi' or "
                f"'relative', or memory_length=0."
            )
        rope_type = (self.rope_parameters or {}).get("rope_type")
        if kind == "rotary" and rope_type in LENGTH_DEPENDENT_ROPE_TYPES:
            raise ValueError(
                f"`memory_length={length}` with rope_type {rope_type!r}, whose frequencies change with the length "
                f"of the text: the memory's rotated keys would disagree with later queries. Use another rope_type "
                f"(e.g. 'default', 'linear', 'yarn', 'llama3') or memory_length=0."
            )

    def _check_pixels(self):
        for name in ("patch_size", "num_channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        size = self.image_size
        if size is None:
            return
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"`image_size` must be a positive integer (pixels per side) or None, got {size!r}.")
        if size % self.patch_size:
            raise ValueError(
                f"`patch_size` ({self.patch_size}) must divide `image_size` ({size}): an image is cut into whole "
                f"patches. Choose, e.g., patch_size={max(p for p in range(1, self.patch_size + 1) if size % p == 0)}."
            )

    def _check_encoder_overrides(self):
        overrides = self.encoder_overrides
        if overrides is None:
            return
        if not isinstance(overrides, dict) or not overrides:
            raise ValueError(f"`encoder_overrides` must be None or a non-empty dict, got {overrides!r}.")
        unknown = sorted(set(overrides) - set(ENCODER_OVERRIDES))
        if unknown:
            raise ValueError(
                f"`encoder_overrides` may set {ENCODER_OVERRIDES} only, got {unknown}: every other setting is the "
                f"model's own."
            )
        try:
            self.for_encoder()  # the encoder's settings pass the same checks as the model's
        except ValueError as error:
            raise ValueError(f"`encoder_overrides`: {error}") from None

    def for_encoder(self) -> "VaswaniConfig":
        """The config the encoder stack is built from: this one, or a copy with `encoder_overrides` applied."""
        if not self.encoder_overrides:
            return self
        config = copy.deepcopy(self)
        for name, value in self.encoder_overrides.items():
            setattr(config, name, value)
        config.encoder_overrides = None
        config.check()
        return config

    @property
    def num_patches(self) -> int | None:
        """(image_size / patch_size)^2, the patches an image becomes; None for a model that reads tokens."""
        return None if self.image_size is None else (self.image_size // self.patch_size) ** 2

    def check_stacks(self):
        """Raise a `ValueError` when the stacks this config names cannot be built (heads call this for their shape)."""
        self.check()
        if self.has_encoder and self.num_encoder_layers == 0:
            raise ValueError(
                f"`stacks={self.stacks!r}` needs an encoder, but `num_encoder_layers` is 0: set it to at least 1."
            )
        if self.has_decoder and self.num_decoder_layers == 0:
            raise ValueError(
                f"`stacks={self.stacks!r}` needs a decoder, but `num_decoder_layers` is 0: set it to at least 1."
            )
        if self.parallel_residual and not self.norm_first:
            raise ValueError(
                "`parallel_residual=True` sums attention and feed-forward over one normalised input: it needs "
                "`norm_first=True` (pre-LN, as GPT-J and GPT-NeoX)."
            )
        if self.parallel_residual and (self.is_encoder_decoder or self.add_cross_attention and self.has_decoder):
            raise ValueError(
                "`parallel_residual=True` is a one-stack layout (GPT-J, GPT-NeoX): a decoder layer with "
                "encoder-decoder attention has no parallel form. Use it with decoder-only or encoder-only heads "
                "(and add_cross_attention=False)."
            )
        if self.memory_length and (self.stacks != "decoder-only" or self.add_cross_attention):
            raise ValueError(
                f"`memory_length={self.memory_length}` is a decoder-only language model's memory "
                f"(VaswaniForCausalLM), but this model has `stacks={self.stacks!r}`"
                f"{' with cross-attention' if self.add_cross_attention and self.stacks == 'decoder-only' else ''}: "
                f"set memory_length=0, or use VaswaniForCausalLM without add_cross_attention."
            )
        if self.image_size is not None and not self.has_encoder:
            raise ValueError(
                f"`image_size` makes the encoder read pixels, but `stacks={self.stacks!r}` has no encoder: use an "
                f"encoder-only head (VaswaniForImageClassification) or an encoder-decoder one (a captioner)."
            )
        if self.is_encoder_decoder and self.decoder_start_token_id is None:
            raise ValueError(
                "An encoder-decoder model needs `decoder_start_token_id` (or `bos_token_id`) to start decoding."
            )

    # -- Presets -----------------------------------------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "VaswaniConfig":
        """
        A config from a named preset, with any field overridden.

        Presets: `"transformer-base"` and `"transformer-big"` (paper, Table 3), `"bert-base"`, `"gpt2-small"`,
        `"t5-small"`, `"pythia-160m"` and `"vaswani-small"` (the command line's default shape for a new model).
        """
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})


__all__ = ["VaswaniConfig", "PRESETS"]
