"""
Task heads on the Vaswani Transformer. Each head is thin: the body (`VaswaniModel`), a head, a loss. Each head knows
the stacks it needs, so one config serves them all:

    encoder-decoder  VaswaniForConditionalGeneration (the paper: translation, summarisation)
    decoder-only     VaswaniForCausalLM (GPT-style)
    encoder-only     VaswaniForMaskedLM, VaswaniForPreTraining (MLM + NSP), VaswaniForPermutationLM (XLNet's
                     two-stream permutation LM), VaswaniForNextSentencePrediction,
                     VaswaniForSequenceClassification, VaswaniForTokenClassification, VaswaniForQuestionAnswering,
                     VaswaniForMultipleChoice (BERT-style)
"""

import contextvars
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import nn
from torch.nn import functional as F
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import (
    BaseModelOutput,
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    ModelOutput,
    MultipleChoiceModelOutput,
    NextSentencePredictorOutput,
    ImageClassifierOutput,
    QuestionAnsweringModelOutput,
    Seq2SeqLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import logging
from transformers.utils.generic import can_return_tuple

from transformers.loss.loss_utils import fixed_cross_entropy

from ..configuration.configuration_vaswani import VaswaniConfig
from ..hub.hub_vaswani import HEADS
from .cache_vaswani import VaswaniDynamicCache, VaswaniSegmentMemory
from .modeling_vaswani import VaswaniModel, VaswaniPreTrainedModel, accepts_past_key_values, activation_function
from .validation_vaswani import (
    check_attention_mask,
    check_batch,
    check_labels,
    check_span_positions,
    decoding_own_tokens,
)

logger = logging.get_logger(__name__)


# -- Losses -------------------------------------------------------------------------------------------------------------
# Keywords of transformers' loss functions that reach a head through `**kwargs` (Trainer passes `num_items_in_batch`;
# sequence- and context-parallel training pass `shift_labels`, the targets already shifted).
LOSS_KWARGS = ("num_items_in_batch", "ignore_index", "shift_labels")


def loss_kwargs_of(kwargs: dict) -> dict:
    """Take the loss keywords out of a forward's `**kwargs` (the rest goes on to the stacks and attention)."""
    return {name: kwargs.pop(name) for name in LOSS_KWARGS if name in kwargs}


def token_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    label_smoothing: float,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """
    Cross-entropy with label smoothing epsilon_ls (paper 5.4) over every position whose target is not
    `ignore_index`, in fp32, reduced as transformers' losses are: summed and divided by `num_items_in_batch`.
    Transformers' own loss functions take no smoothing, so a training step that asks for it comes here.
    """
    logits = logits.float().reshape(-1, logits.shape[-1])
    targets = targets.reshape(-1).to(logits.device)
    total = F.cross_entropy(logits, targets, ignore_index=ignore_index, reduction="sum", label_smoothing=label_smoothing)
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(total.device)
    return total / num_items_in_batch


def shift_tokens_right(labels: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int) -> torch.Tensor:
    """Decoder inputs for teacher forcing: the target shifted one position right, behind the start token."""
    if pad_token_id is None:
        raise ValueError("Shifting labels into decoder inputs needs `config.pad_token_id` (to replace -100).")
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


# -- Head modules -------------------------------------------------------------------------------------------------------
class VaswaniPooler(nn.Module):
    """Sentence representation for classification: the first token's final state through a dense layer and tanh."""

    def __init__(self, config: VaswaniConfig):
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))


class VaswaniMLMHead(nn.Module):
    """Masked-language-model head: dense, activation, LayerNorm, then the projection tied to the input embedding."""

    def __init__(self, config: VaswaniConfig):
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.activation = activation_function(config.activation_function)
        self.layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.d_model, config.vocab_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layer_norm(self.activation(self.dense(hidden_states))))


class _VaswaniHead(VaswaniPreTrainedModel):
    """A body in the shape `stacks` names. Subclasses add their head and loss."""

    stacks: str = "encoder-only"

    def __init__(self, config: VaswaniConfig):
        config = config.with_stacks(self.stacks)  # a copy: the caller's config may serve other heads
        super().__init__(config)
        self.model = VaswaniModel(config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding):
        self.model.set_input_embeddings(value)

    def _token_loss(self, logits, targets, label_smoothing: float = 0.0, name: str = "labels", **loss_kwargs):
        """
        Cross-entropy of token predictions whose `targets` are aligned with `logits` (position i's target at i),
        through transformers' loss for this head (`self.loss_function`) with every keyword it takes. With
        `label_smoothing` (a training setting, paper 5.4, which transformers' losses lack) the same reduction with
        smoothed targets. Without `num_items_in_batch`, the mean over labelled positions (0 when there are none).
        """
        targets = targets.contiguous() if isinstance(targets, torch.Tensor) else targets  # transformers' losses view
        ignore_index = loss_kwargs.setdefault("ignore_index", -100)
        check_labels(targets, logits.shape[-1], ignore_index, name, shape=tuple(logits.shape[:-1]))
        if loss_kwargs.get("num_items_in_batch") is None:
            loss_kwargs["num_items_in_batch"] = (targets != ignore_index).sum().clamp(min=1)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"`smoothing` (label smoothing) must be in [0, 1), got {label_smoothing!r}.")
        if label_smoothing:
            return token_cross_entropy(
                logits, targets, label_smoothing, loss_kwargs["num_items_in_batch"], ignore_index
            )
        if self.loss_type in ("ForCausalLM", "ForConditionalGeneration"):
            loss_kwargs["shift_labels"] = targets.contiguous()  # aligned already: its causal loss would shift again
        return self.loss_function(logits, targets, vocab_size=logits.shape[-1], **loss_kwargs)

    def _class_loss(self, logits, labels, name: str = "labels", **loss_kwargs) -> torch.Tensor:
        """Cross-entropy of one class per example (next sentence, multiple choice): transformers has no loss for them."""
        loss_kwargs.pop("shift_labels", None)
        ignore_index = loss_kwargs.setdefault("ignore_index", -100)
        if isinstance(labels, torch.Tensor) and labels.dim() == 2 and labels.shape[-1] == 1:
            labels = labels.squeeze(-1)  # (batch_size, 1), as some collators make them
        check_labels(labels, logits.shape[-1], ignore_index, name, shape=tuple(logits.shape[:-1]))
        if loss_kwargs.get("num_items_in_batch") is None:  # the mean over labelled examples, 0 when there are none
            loss_kwargs["num_items_in_batch"] = (labels != ignore_index).sum().clamp(min=1)
        return fixed_cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1).to(logits.device), **loss_kwargs)

    def _problem_type(self, labels: torch.Tensor) -> str:
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.config.num_labels == 1:
            return "regression"
        if labels.dtype in (torch.long, torch.int):
            return "single_label_classification"
        return "multi_label_classification"

    def _pooled_loss(self, logits: torch.Tensor, labels: torch.Tensor, loss_kwargs: dict) -> torch.Tensor:
        """The loss of one prediction per example (a sequence, an image), by `config.problem_type` as in BERT."""
        problem_type, batch = self._problem_type(labels), logits.shape[0]
        if problem_type == "single_label_classification":
            if labels.dim() == 2 and labels.shape[-1] == 1:
                labels = labels.squeeze(-1)
            ignore_index = loss_kwargs.setdefault("ignore_index", -100)
            check_labels(labels, self.config.num_labels, ignore_index, shape=(batch,))
            if loss_kwargs.get("num_items_in_batch") is None:  # the mean over labelled rows, 0 when none are
                loss_kwargs["num_items_in_batch"] = (labels != ignore_index).sum().clamp(min=1)
        else:
            expected = (batch, self.config.num_labels)
            if labels.is_complex() or labels.dtype == torch.bool and problem_type == "regression":
                raise ValueError(f"`labels` of a {problem_type} must be numbers, got dtype {labels.dtype}.")
            if labels.numel() != batch * self.config.num_labels or (
                problem_type == "multi_label_classification" and tuple(labels.shape) != expected
            ):
                raise ValueError(
                    f"`labels` has shape {tuple(labels.shape)}; {problem_type} needs {expected} "
                    f"({'one 0/1 per label' if problem_type != 'regression' else 'one target per output'})."
                )
            labels = labels.float()  # regression and multi-label losses compare with float targets
        # transformers' loss writes the problem type it infers into the config it is given: give it this call's,
        # so that one batch's labels do not decide the next one's loss.
        problem = SimpleNamespace(num_labels=self.config.num_labels, problem_type=problem_type)
        return self.loss_function(labels=labels, pooled_logits=logits.float(), config=problem, **loss_kwargs)

    def _labelled_positions(self, hidden_states, labels):
        """With `config.sparse_prediction`, keep only the labelled positions for the vocabulary projection."""
        if labels is None or not self.config.sparse_prediction:
            return hidden_states, labels
        check_labels(labels, self.config.vocab_size, shape=tuple(hidden_states.shape[:2]))
        keep = labels.to(hidden_states.device) != -100  # (B, T)
        return hidden_states[keep], labels[keep]  # (n_labelled, d_model), (n_labelled,)

    def _encode(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs) -> BaseModelOutput:
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )


# Set while a generate() call runs whose length comes from the model's generation config, not from the caller.
_LENGTH_IS_DEFAULT = contextvars.ContextVar("vaswani_length_is_default", default=False)


class _CompiledGeneration:
    """What the two generating heads add to `GenerationMixin` (which they inherit directly, as transformers wants)."""

    def generate(self, *args, **kwargs):
        # The steps after the first feed the model its own tokens: their value checks (a host sync each) are skipped.
        # A length the caller did not ask for (the model's own default) stops at the end of learned positions.
        given = kwargs.get("generation_config", args[1] if len(args) > 1 else None)
        asked = any(kwargs.get(name) is not None or getattr(given, name, None) is not None
                    for name in ("max_length", "max_new_tokens"))
        length_is_default = _LENGTH_IS_DEFAULT.set(not asked)
        try:
            with decoding_own_tokens():
                return super().generate(*args, **kwargs)
        finally:
            _LENGTH_IS_DEFAULT.reset(length_is_default)

    def _prepare_generated_length(self, generation_config, **kwargs):
        generation_config = super()._prepare_generated_length(generation_config, **kwargs)
        if _LENGTH_IS_DEFAULT.get() and self.config.position_embedding_type == "learned":
            # max_length tokens read max_length - 1 positions (the last one made is never read)
            generation_config.max_length = min(generation_config.max_length, self.config.max_position_embeddings + 1)
        return generation_config

    def _validate_generated_length(self, generation_config, input_ids_length, has_default_max_length):
        # Counts transformers leaves unchecked in some modes (a beam width of 0 divides by zero deep in beam search).
        for name in ("num_beams", "num_return_sequences"):
            value = getattr(generation_config, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be a whole number, 1 or more, got {value!r}.")
        # Learned positions end at max_position_embeddings: fail before the first step, not in the middle. The model
        # reads every token but the last one it makes, so max_length tokens need max_length - 1 positions.
        learned, limit = self.config.position_embedding_type == "learned", self.config.max_position_embeddings
        prompt = "decoder prompt" if self.config.is_encoder_decoder else "prompt"
        if learned and input_ids_length > limit:  # before transformers' check, whose advice is a longer max_length
            raise ValueError(
                f"The {prompt} has {input_ids_length} tokens, more than this model's {limit} learned positions "
                f"(`max_position_embeddings`): shorten the {prompt} to at most {limit} tokens."
            )
        super()._validate_generated_length(generation_config, input_ids_length, has_default_max_length)
        longest = generation_config.max_length
        if learned and longest - 1 > limit:
            room = limit + 1 - input_ids_length  # 1 or more: the prompt fits
            raise ValueError(
                f"generate() could make {longest} tokens ({input_ids_length} of the {prompt} and up to "
                f"{longest - input_ids_length} new) and would read up to position {longest - 2}, but this model's "
                f"learned positions stop at {limit - 1} (`max_position_embeddings`): ask for at most {room} new "
                f"tokens (`max_new_tokens={room}`)."
            )

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, generation_mode, batch_size, max_cache_length):
        # Where generate() would make its default `DynamicCache`, make a cache that writes in place instead
        # (`VaswaniDynamicCache`), sized for the longest text this call can produce. A cache the caller passed, or one
        # that `cache_implementation` asks for (static, offloaded, quantized), is generate()'s business as usual.
        if (
            model_kwargs.get("cache") is not None
            or generation_config.use_cache is False
            or generation_config.cache_implementation not in (None, "dynamic")
        ):
            return super()._prepare_cache_for_generation(
                generation_config, model_kwargs, generation_mode, batch_size, max_cache_length
            )
        cache = VaswaniDynamicCache(self.config, capacity=max_cache_length)
        if self.config.is_encoder_decoder:
            cache = EncoderDecoderCache(cache, DynamicCache())  # cross-attention: the encoder output's keys and values
        if getattr(generation_config, "is_assistant", False):  # an assistant model's cache may be rolled back
            cache.activate_past_recording()
        model_kwargs["cache"] = cache

    def compile_generation(self, enable: bool = True):
        """
        Make `generate()` use a static (preallocated) cache and a `torch.compile`d forward, on any device
        (transformers compiles generation by itself only on GPUs). The first call compiles (seconds); later calls
        with the same shapes reuse it. Greedy output is the same as without. `enable=False` undoes it. Returns the
        model.
        """
        from transformers import CompileConfig

        if not enable:
            self.generation_config.cache_implementation = None
            self.generation_config.compile_config = None
            return self
        compile_config = CompileConfig(
            fullgraph=True, dynamic=False, mode="reduce-overhead" if self.device.type == "cuda" else "default"
        )
        compile_config._compile_all_devices = True  # transformers' own switch for compiling off GPUs
        self.generation_config.cache_implementation = "static"
        self.generation_config.compile_config = compile_config
        return self


# -- Encoder-decoder: the paper -----------------------------------------------------------------------------------------
class VaswaniForConditionalGeneration(_VaswaniHead, _CompiledGeneration, GenerationMixin):
    """
    The paper's model: encoder, decoder and a linear projection plus softmax over the target vocabulary (paper 3.4),
    the projection sharing its matrix with both embeddings. The loss compares logits with `labels` position by
    position (no shift: the decoder inputs are the labels shifted right, made from `labels` when not given).
    """

    stacks = "encoder-decoder"
    _tied_weights_keys = {"lm_head.weight": "model.encoder.embeddings.word_embeddings.weight"}

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        if self.config.image_size is not None:
            # A captioner: the encoder reads pixels, so the projection can share only the target embedding's matrix.
            self.main_input_name = "pixel_values"  # what generate() and the pipelines feed the encoder
            self.input_modalities = ("image", "text")
            self._tied_weights_keys = {"lm_head.weight": "model.decoder.embeddings.word_embeddings.weight"}
        self.lm_head = nn.Linear(self.config.d_model, self.config.vocab_size, bias=False)
        if self.config.final_logits_bias:
            # A fixed per-token offset of the logits (Marian's); a buffer, so training leaves it as loaded.
            self.register_buffer("final_logits_bias", torch.zeros(1, self.config.vocab_size))
        self.post_init()

    def resize_token_embeddings(self, new_num_tokens=None, pad_to_multiple_of=None, mean_resizing=True):
        embeddings = super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)
        if self.config.final_logits_bias:
            old = self.final_logits_bias
            new = old.new_zeros(1, embeddings.num_embeddings)
            kept = min(old.shape[-1], new.shape[-1])
            new[:, :kept] = old[:, :kept]  # new tokens get no offset
            self.final_logits_bias = new
        return embeddings

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear):
        self.lm_head = value

    def get_encoder(self, modality=None):
        return self.model.encoder

    def get_decoder(self):
        return self.model.decoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    @accepts_past_key_values
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        decoder_position_ids: torch.LongTensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        smoothing: float = 0.0,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> Seq2SeqLMOutput:
        r"""
        Args:
            input_ids, attention_mask: the source and its padding mask.
            decoder_input_ids (`torch.LongTensor`, *optional*): the target shifted right; made from `labels` if absent.
            labels (`torch.LongTensor` of shape `(batch_size, target_length)`, *optional*): target ids, -100 to ignore.
            logits_to_keep (`int`): if positive, compute logits for the last `logits_to_keep` positions only.
            smoothing (`float`): label smoothing epsilon_ls of the loss (paper 5.4), a training setting (training
                code passes it in training steps); 0 gives the plain loss. Not named `label_*`: Trainer takes such
                arguments for labels.
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`): the
                images a captioner (`image_size` set) reads instead of `input_ids`.
            Other arguments: see [`VaswaniModel.forward`]; `num_items_in_batch` and `ignore_index` reach the loss.
        """
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            if not isinstance(labels, torch.Tensor) or labels.dim() != 2 or labels.shape[1] == 0:
                raise ValueError(
                    f"`labels` must have shape (batch_size, target_length > 0), got "
                    f"{tuple(getattr(labels, 'shape', ()))}: the target token ids, -100 to ignore."
                )
            source = next((x for x in (input_ids, inputs_embeds, pixel_values) if x is not None), None)
            if encoder_outputs is None and isinstance(source, torch.Tensor):
                check_batch(source.shape[0], labels, "labels", "the source")
            check_labels(labels, self.config.vocab_size)  # before they become decoder inputs
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        loss_kwargs = loss_kwargs_of(kwargs)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            decoder_position_ids=decoder_position_ids,
            encoder_outputs=encoder_outputs,
            cache=cache,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            pixel_values=pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = self.lm_head(hidden_states)
        if self.config.final_logits_bias:
            logits = logits + self.final_logits_bias
        loss = None
        if labels is not None:  # the decoder inputs are the shifted labels: logits and labels are aligned
            loss = self._token_loss(logits, labels, smoothing, **loss_kwargs)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )


# -- Decoder-only: GPT-style --------------------------------------------------------------------------------------------
@dataclass
class VaswaniCausalLMOutput(CausalLMOutputWithCrossAttentions):
    """
    A causal LM's output; `memory` is the `VaswaniSegmentMemory` the forward was given, updated in place with this
    segment (None without one).
    """

    memory: VaswaniSegmentMemory | None = None


class VaswaniForCausalLM(_VaswaniHead, _CompiledGeneration, GenerationMixin):
    """
    A decoder-only language model: masked self-attention layers and the softmax projection tied to the embedding.
    As in every Hugging Face causal LM, `labels` may simply be `input_ids`: the loss shifts them so that position i
    predicts token i + 1.
    """

    stacks = "decoder-only"
    _tied_weights_keys = {"lm_head.weight": "model.decoder.embeddings.word_embeddings.weight"}

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.lm_head = nn.Linear(self.config.d_model, self.config.vocab_size, bias=False)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear):
        self.lm_head = value

    def get_decoder(self):
        return self.model.decoder

    def _prepare_position_ids_for_generation(self, inputs_tensor, model_kwargs):
        # generate() derives positions from the mask and then drops an all-ones mask, so the model never sees a
        # mask of the wrong shape: check it here, where the prompt and the mask meet.
        prompt = model_kwargs.get("input_ids", inputs_tensor)
        check_attention_mask(model_kwargs.get("attention_mask"), tuple(prompt.shape[:2]))
        return super()._prepare_position_ids_for_generation(inputs_tensor, model_kwargs)

    @accepts_past_key_values
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        smoothing: float = 0.0,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        memory: VaswaniSegmentMemory | None = None,
        **kwargs,
    ) -> VaswaniCausalLMOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`): token ids.
            attention_mask (`torch.Tensor`, *optional*): 1 for tokens, 0 for padding, covering cached tokens too.
            position_ids (`torch.LongTensor`, *optional*): positions; by default derived from the mask, so a
                left-padded prompt behaves as it does alone.
            cache (`Cache`, *optional*; also accepted as `past_key_values`): keys and values of earlier steps.
            labels (`torch.LongTensor`, *optional*): usually `input_ids`; shifted inside, -100 to ignore.
            shift_labels (`torch.LongTensor`, *optional*, in `kwargs`): targets already shifted (position i's next
                token at i), as sequence- and context-parallel training pass them; they replace `labels`' shift.
            logits_to_keep (`int`): if positive, compute logits for the last `logits_to_keep` positions only.
            smoothing (`float`): label smoothing epsilon_ls of the loss (paper 5.4), a training setting (training
                code passes it in training steps); 0 gives the plain loss. Not named `label_*`: Trainer takes such
                arguments for labels.
            encoder_hidden_states (`torch.Tensor` of shape `(batch_size, source_length, d_model)`, *optional*): states
                to attend over, with `add_cross_attention=True` (a `VisionEncoderDecoderModel` passes its encoder's);
                `encoder_attention_mask` their padding mask (1 for states, 0 for padding).
            memory (`VaswaniSegmentMemory`, *optional*): Transformer-XL's segment memory, with
                `config.memory_length > 0`: the segment (`input_ids`, `attention_mask` its own padding) also attends
                to the memory's keys and values, its positions continuing after them. The memory is then updated in
                place with this segment (its last `memory_length` tokens kept, detached) and returned as
                `output.memory`. Not with a `cache`.
        """
        loss_kwargs = loss_kwargs_of(kwargs)
        if memory is not None:
            self._check_memory(memory, cache)
            reference = input_ids if input_ids is not None else inputs_embeds
            attention_mask = memory.attention_mask_for(attention_mask, *reference.shape[:2], reference.device)
            cache, use_cache = memory, True
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None or loss_kwargs.get("shift_labels") is not None:
            targets, name = loss_kwargs.pop("shift_labels", None), "shift_labels"
            if targets is None:  # position i predicts token i + 1
                check_labels(labels, self.config.vocab_size, loss_kwargs.get("ignore_index", -100),
                             shape=tuple(logits.shape[:-1]))
                targets, name = F.pad(labels, (0, 1), value=loss_kwargs.get("ignore_index", -100))[:, 1:], "labels"
            loss = self._token_loss(logits, targets, smoothing, name, **loss_kwargs)
        if memory is not None:
            memory.end_segment(attention_mask, input_ids, self.model.decoder.rotary_embedding)
        return VaswaniCausalLMOutput(
            loss=loss,
            logits=logits,
            cache=None if memory is not None else outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
            memory=memory,
        )

    def _check_memory(self, memory, cache):
        if not isinstance(memory, VaswaniSegmentMemory):
            raise TypeError(
                f"`memory` must be a VaswaniSegmentMemory (start one with VaswaniSegmentMemory(model.config)), got "
                f"{type(memory).__name__}."
            )
        if self.config.memory_length == 0:
            raise ValueError(
                "`memory` was given, but this model's config has memory_length=0 (no segment memory): set "
                "`model.config.memory_length` (or build it with VaswaniConfig(memory_length=...)), or pass no memory."
            )
        if cache is not None:
            raise ValueError(
                "`memory` and `cache` were both given: a segment memory is the self-attention's cache of earlier "
                "segments. Pass one of them (generate(..., memory=...) decodes on a copy of the memory)."
            )
        if self.training and torch.is_grad_enabled() and self.is_activation_checkpointing:
            raise ValueError(
                "A segment memory cannot be used with gradient checkpointing (a checkpointed layer runs again in "
                "the backward pass and would write its keys and values twice): call "
                "model.gradient_checkpointing_disable(), or pass no memory."
            )

    def generate(self, inputs=None, *args, memory: VaswaniSegmentMemory | None = None, **kwargs):
        """
        `GenerationMixin.generate`; with `memory` (a `VaswaniSegmentMemory` filled by earlier segments), the prompt
        continues the remembered text: the same tokens as generate(remembered tokens + prompt), decoded on a copy of
        the memory (which is left unchanged) and not cropped while decoding. The returned sequences are the prompt
        and the new tokens, without the remembered ones.
        """
        if memory is None:
            return super().generate(inputs, *args, **kwargs)
        prompt = inputs if inputs is not None else kwargs.pop("input_ids", None)
        self._check_memory(memory, kwargs.get("cache", kwargs.get("past_key_values")))
        if prompt is None or memory.mask is None:
            raise ValueError("generate(memory=...) needs a prompt (`input_ids`) and a memory that has read a segment.")
        if memory.token_ids is None:
            raise ValueError(
                "This memory was filled from `inputs_embeds`, so its tokens are unknown: generate(memory=...) needs a "
                "memory filled from `input_ids`."
            )
        config = kwargs.get("generation_config") or self.generation_config
        for name in ("num_beams", "num_return_sequences"):
            if (kwargs.get(name) or getattr(config, name, 1) or 1) != 1:
                raise ValueError(f"generate(memory=...) decodes one sequence per memory row: `{name}` must be 1.")
        remembered = memory.token_ids.to(prompt.device)
        mask = kwargs.pop("attention_mask", None)
        mask = memory.attention_mask_for(mask, *prompt.shape, prompt.device)
        output = super().generate(
            torch.cat((remembered, prompt), dim=-1), *args, attention_mask=mask, cache=memory.to_cache(), **kwargs
        )
        if isinstance(output, torch.Tensor):
            return output[:, remembered.shape[-1]:]
        output.sequences = output.sequences[:, remembered.shape[-1]:]
        return output


# -- Encoder-only: BERT-style -------------------------------------------------------------------------------------------
class VaswaniForMaskedLM(_VaswaniHead):
    """An encoder with a masked-language-model head whose output projection is tied to the input embedding."""

    _tied_weights_keys = {"lm_head.decoder.weight": "model.encoder.embeddings.word_embeddings.weight"}

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.lm_head = VaswaniMLMHead(self.config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, value: nn.Linear):
        self.lm_head.decoder = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        smoothing: float = 0.0,
        **kwargs,
    ) -> MaskedLMOutput:
        r"""
        Args:
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*): the original ids at
                masked positions, -100 elsewhere. With `config.sparse_prediction` only these positions get logits.
            smoothing (`float`): label smoothing epsilon_ls of the loss (paper 5.4), a training setting (training
                code passes it in training steps); 0 gives the plain loss. Not named `label_*`: Trainer takes such
                arguments for labels.
            Other arguments: see [`VaswaniModel.forward`].
        """
        loss_kwargs = loss_kwargs_of(kwargs)
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        hidden_states, labels = self._labelled_positions(outputs.last_hidden_state, labels)
        logits = self.lm_head(hidden_states)
        loss = self._token_loss(logits, labels, smoothing, **loss_kwargs) if labels is not None else None
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


@dataclass
class VaswaniForPreTrainingOutput(ModelOutput):
    """
    Output of [`VaswaniForPreTraining`]: `loss` (MLM plus NSP), `prediction_logits` over the vocabulary,
    `seq_relationship_logits` (index 0: B follows A, 1: B is random), and the optional hidden states and attentions.
    """

    loss: torch.FloatTensor | None = None
    prediction_logits: torch.FloatTensor | None = None
    seq_relationship_logits: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class VaswaniForPreTraining(_VaswaniHead):
    """BERT's pre-training: the masked-language-model head plus next-sentence prediction on the pooled first token."""

    _tied_weights_keys = {"lm_head.decoder.weight": "model.encoder.embeddings.word_embeddings.weight"}

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.lm_head = VaswaniMLMHead(self.config)
        self.pooler = VaswaniPooler(self.config)
        self.nsp_head = nn.Linear(self.config.d_model, 2)
        self.post_init()
        self.loss_type = "ForMaskedLM"  # its token loss is the masked-LM loss (transformers knows no "ForPreTraining")

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, value: nn.Linear):
        self.lm_head.decoder = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        next_sentence_label: torch.LongTensor | None = None,
        smoothing: float = 0.0,
        **kwargs,
    ) -> VaswaniForPreTrainingOutput:
        r"""
        Args:
            labels (`torch.LongTensor`, *optional*): MLM targets, -100 at unmasked positions. With
                `config.sparse_prediction` only the labelled positions get prediction logits.
            next_sentence_label (`torch.LongTensor` of shape `(batch_size,)`, *optional*): 0 if segment B follows
                segment A, 1 if it is random.
            smoothing (`float`): label smoothing epsilon_ls of the masked-LM loss (paper 5.4), a training setting; the
                next-sentence loss is never smoothed.
        """
        loss_kwargs = loss_kwargs_of(kwargs)
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        hidden_states, labels = self._labelled_positions(outputs.last_hidden_state, labels)
        prediction_logits = self.lm_head(hidden_states)
        seq_relationship_logits = self.nsp_head(self.pooler(outputs.last_hidden_state))
        loss = None
        if labels is not None:  # `num_items_in_batch` counts the masked tokens: it divides the MLM loss only
            loss = self._token_loss(prediction_logits, labels, smoothing, **loss_kwargs)
        if next_sentence_label is not None:
            nsp_loss = self._class_loss(seq_relationship_logits, next_sentence_label)
            loss = nsp_loss if loss is None else loss + nsp_loss
        return VaswaniForPreTrainingOutput(
            loss=loss,
            prediction_logits=prediction_logits,
            seq_relationship_logits=seq_relationship_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class VaswaniForPermutationLM(_VaswaniHead):
    """
    XLNet's pre-training (Yang et al. 2019): permutation language modelling with two-stream attention. Each sequence
    gets a factorisation order (`perm_mask`: 1 where token i may not see token j); the predicted tokens
    (`target_mapping`) are read from the query stream, which starts from one learned vector (`query_embedding`,
    XLNet's mask_emb) at the target's position, sees the tokens earlier in the order and never its own. The output
    projection is tied to the input embedding and has a bias, as XLNet's `lm_loss` does (the bias carries the
    tokens' overall frequencies, which a tied matrix would otherwise have to fold into the embeddings; it also keeps
    XLNet's weights convertible). The encoder gains no parameter: a PLM folder fine-tunes into every encoder head.

    No Auto class builds it: XLNetLMHeadModel's two (AutoModelForCausalLM, AutoModelForPreTraining) build
    VaswaniForCausalLM and VaswaniForPreTraining for this config type, transformers 5 has no AutoModelWithLMHead, and
    a tuple registration picks by `config.architectures`, which fails on a fresh config (None) and cannot be written
    into a folder's `auto_map`. Load it by its class (`VaswaniForPermutationLM.from_pretrained`); `AutoModel` on its
    folder loads the encoder.
    """

    _tied_weights_keys = {"lm_head.weight": "model.encoder.embeddings.word_embeddings.weight"}

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        if self.config.image_size is not None:
            raise ValueError("VaswaniForPermutationLM predicts tokens: build it from a config without `image_size`.")
        # XLNet's mask_emb: the query stream's input, one vector for every prediction (it knows no token).
        self.query_embedding = nn.Parameter(torch.empty(self.config.d_model))
        self.lm_head = nn.Linear(self.config.d_model, self.config.vocab_size, bias=True)
        self.post_init()
        self.loss_type = "ForMaskedLM"  # a token loss over labelled predictions (transformers has no PLM loss)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear):
        self.lm_head = value

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        perm_mask: torch.Tensor | None = None,
        target_mapping: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        smoothing: float = 0.0,
        **kwargs,
    ) -> MaskedLMOutput:
        r"""
        Args:
            perm_mask (`torch.Tensor` of shape `(batch_size, sequence_length, sequence_length)`, *optional*): 1 where
                token i may not see token j (j is later in the factorisation order, or j = i for a target), 0 where
                it may; padding is never seen whatever it says (`attention_mask`). None: every token sees every other
                (a prediction then never attends to its own token, but after one layer other tokens carry it).
            target_mapping (`torch.Tensor` of shape `(batch_size, num_predict, sequence_length)`, *optional*): one-hot
                rows, the position of each prediction. Then `logits` are the query stream's, `(batch_size,
                num_predict, vocab_size)`; without it, the content stream's at every position (as XLNet's).
            labels (`torch.LongTensor` of shape `(batch_size, num_predict)`, *optional*): the predicted tokens' ids,
                -100 for predictions to ignore (`(batch_size, sequence_length)` without `target_mapping`).
            smoothing (`float`): label smoothing epsilon_ls of the loss (paper 5.4), a training setting.
            Other arguments: see [`VaswaniModel.forward`].
        """
        loss_kwargs = loss_kwargs_of(kwargs)
        streams = {"perm_mask": perm_mask, "target_mapping": target_mapping}
        if target_mapping is not None:
            reference = input_ids if input_ids is not None else inputs_embeds
            if reference is not None:
                check_batch(reference.shape[0], target_mapping, "target_mapping")
            if isinstance(target_mapping, torch.Tensor) and target_mapping.dim() == 3:
                streams["query_embeds"] = self.query_embedding.expand(*target_mapping.shape[:2], -1)
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs | streams)
        hidden_states = outputs.query_hidden_state if target_mapping is not None else outputs.last_hidden_state
        logits = self.lm_head(hidden_states)
        loss = self._token_loss(logits, labels, smoothing, **loss_kwargs) if labels is not None else None
        return MaskedLMOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class VaswaniForNextSentencePrediction(_VaswaniHead):
    """Next-sentence prediction alone: does segment B follow segment A (0) or is it random (1)?"""

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.pooler = VaswaniPooler(self.config)
        self.nsp_head = nn.Linear(self.config.d_model, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> NextSentencePredictorOutput:
        r"""
        Args:
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): 0 if B follows A, 1 if B is random.
        """
        loss_kwargs = loss_kwargs_of(kwargs)
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        logits = self.nsp_head(self.pooler(outputs.last_hidden_state))
        loss = self._class_loss(logits, labels, **loss_kwargs) if labels is not None else None
        return NextSentencePredictorOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class VaswaniForSequenceClassification(_VaswaniHead):
    """
    Classification or regression of a whole sequence from the pooled first token. `config.problem_type` chooses
    the loss as in BERT: `"regression"` (MSE, `num_labels == 1`), `"single_label_classification"` (cross-entropy)
    or `"multi_label_classification"` (binary cross-entropy per label); inferred from the labels when unset.
    """

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.pooler = VaswaniPooler(self.config)
        self.dropout = nn.Dropout(self.config.dropout)
        self.classifier = nn.Linear(self.config.d_model, self.config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        r"""
        Args:
            labels (`torch.Tensor`, *optional*): class ids `(batch_size,)`, regression targets, or multi-hot
                `(batch_size, num_labels)` floats, depending on the problem type.
        """
        loss_kwargs = loss_kwargs_of(kwargs)
        loss_kwargs.pop("shift_labels", None)
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        logits = self.classifier(self.dropout(self.pooler(outputs.last_hidden_state)))
        loss = None if labels is None else self._pooled_loss(logits, labels, loss_kwargs)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class VaswaniForImageClassification(_VaswaniHead):
    """
    Image classification as in ViT: the encoder over an image's patches (a config with `image_size`), and a linear
    classifier on the final state of the [CLS] token. Losses by `config.problem_type`, as for sequences.
    """

    main_input_name = "pixel_values"
    input_modalities = ("image",)

    def __init__(self, config: VaswaniConfig):
        if config.image_size is None:
            raise ValueError(
                "VaswaniForImageClassification reads images, but the config has no `image_size`: build it with "
                "VaswaniConfig(image_size=..., patch_size=..., num_channels=...)."
            )
        super().__init__(config)
        self.classifier = nn.Linear(self.config.d_model, self.config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> ImageClassifierOutput:
        r"""
        Args:
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, image_size, image_size)`): the
                images, as the model's image processor makes them.
            labels (`torch.Tensor`, *optional*): class ids `(batch_size,)` (or regression / multi-label targets).
            interpolate_pos_encoding (`bool`, defaults to `False`): take images of another size (whole patches).
        """
        loss_kwargs = loss_kwargs_of(kwargs)
        loss_kwargs.pop("shift_labels", None)
        outputs = self.model(pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        logits = self.classifier(outputs.last_hidden_state[:, 0])  # the [CLS] token's final state
        loss = None if labels is None else self._pooled_loss(logits, labels, loss_kwargs)
        return ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class VaswaniForTokenClassification(_VaswaniHead):
    """A label for every token (named entities, parts of speech) from its final state."""

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.dropout = nn.Dropout(self.config.dropout)
        self.classifier = nn.Linear(self.config.d_model, self.config.num_labels)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> TokenClassifierOutput:
        r"""
        Args:
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*): label ids, -100 to
                ignore (padding, continuation sub-words).
        """
        loss_kwargs = loss_kwargs_of(kwargs)
        loss_kwargs.pop("shift_labels", None)
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            ignore_index = loss_kwargs.setdefault("ignore_index", -100)
            check_labels(labels, self.config.num_labels, ignore_index, shape=tuple(logits.shape[:-1]))
            if loss_kwargs.get("num_items_in_batch") is None:  # the mean over labelled tokens, 0 when there are none
                loss_kwargs["num_items_in_batch"] = (labels != ignore_index).sum().clamp(min=1)
            loss = self.loss_function(logits, labels, self.config, **loss_kwargs)
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class VaswaniForQuestionAnswering(_VaswaniHead):
    """Extractive question answering: a start and an end score for every token of the context."""

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.qa_outputs = nn.Linear(self.config.d_model, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.LongTensor | None = None,
        end_positions: torch.LongTensor | None = None,
        **kwargs,
    ) -> QuestionAnsweringModelOutput:
        r"""
        Args:
            start_positions, end_positions (`torch.LongTensor` of shape `(batch_size,)`, *optional*): token indices
                of the answer span; positions outside the sequence are ignored.
        """
        loss_kwargs_of(kwargs)  # transformers' QA loss takes none of them
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).unbind(dim=-1)  # 2 x (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            # An answer outside the window (after truncation) is ignored rather than clamped onto a wrong token, as
            # in transformers' QA loss; unlike it, a batch with no answer in the window gives 0, not NaN (a mean
            # over nothing), and a negative position is an error, not an answer at token 0.
            check_span_positions(start_positions, "start_positions", start_logits.shape[0])
            check_span_positions(end_positions, "end_positions", end_logits.shape[0])
            length = start_logits.shape[1]
            start = start_positions.reshape(-1).masked_fill(start_positions.reshape(-1) >= length, -100)
            end = end_positions.reshape(-1).masked_fill(end_positions.reshape(-1) >= length, -100)
            loss = (self._class_loss(start_logits, start, "start_positions")
                    + self._class_loss(end_logits, end, "end_positions")) / 2
        return QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class VaswaniForMultipleChoice(_VaswaniHead):
    """Multiple choice: each (prompt, choice) pair is encoded and pooled to one score; softmax over the choices."""

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.pooler = VaswaniPooler(self.config)
        self.dropout = nn.Dropout(self.config.dropout)
        self.classifier = nn.Linear(self.config.d_model, 1)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        **kwargs,
    ) -> MultipleChoiceModelOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, num_choices, sequence_length)`): one row per choice;
                `attention_mask`, `token_type_ids` and `position_ids` have the same shape.
            labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*): index of the right choice.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of `input_ids` and `inputs_embeds`.")
        if (input_ids is not None and input_ids.dim() != 3) or (inputs_embeds is not None and inputs_embeds.dim() != 4):
            raise ValueError(
                "Multiple choice needs one row per choice: `input_ids` of shape (batch_size, num_choices, length) "
                "or `inputs_embeds` of shape (batch_size, num_choices, length, d_model)."
            )
        num_choices = (input_ids if input_ids is not None else inputs_embeds).shape[1]

        loss_kwargs = loss_kwargs_of(kwargs)

        def flat(tensor):  # (B, C, T, ...) -> (B * C, T, ...)
            return tensor.flatten(0, 1) if tensor is not None else None

        outputs = self._encode(
            flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids), flat(inputs_embeds), kwargs
        )
        scores = self.classifier(self.dropout(self.pooler(outputs.last_hidden_state)))  # (B * C, 1)
        logits = scores.view(-1, num_choices)  # (B, C)
        loss = self._class_loss(logits, labels, **loss_kwargs) if labels is not None else None
        return MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    *(name for name, head in HEADS.items() if head.module == __name__.rsplit(".", 1)[-1]),  # the heads defined here
    "VaswaniCausalLMOutput",
    "VaswaniForPreTrainingOutput",
    "shift_tokens_right",
    "token_cross_entropy",
]
