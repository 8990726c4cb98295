"""
Task heads on the Vaswani Transformer. Each head is thin: the body (`VaswaniModel`), a head, a loss. Each head knows
the stacks it needs, so one config serves them all:

    encoder-decoder  VaswaniForConditionalGeneration (the paper: translation, summarisation)
    decoder-only     VaswaniForCausalLM (GPT-style)
    encoder-only     VaswaniForMaskedLM, VaswaniForPreTraining (MLM + NSP), VaswaniForNextSentencePrediction,
                     VaswaniForSequenceClassification, VaswaniForTokenClassification, VaswaniForQuestionAnswering,
                     VaswaniForMultipleChoice (BERT-style)
"""

from dataclasses import dataclass

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
    QuestionAnsweringModelOutput,
    Seq2SeqLMOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import logging
from transformers.utils.generic import can_return_tuple

from ..configuration.configuration_vaswani import VaswaniConfig
from .modeling_vaswani import (
    _ONEDNN_LINEAR,
    CACHE_NAME,
    VaswaniDynamicCache,
    VaswaniLinear,
    VaswaniModel,
    VaswaniPreTrainedModel,
    accepts_past_key_values,
    activation_function,
    check_attention_mask,
)

logger = logging.get_logger(__name__)


# -- Losses -------------------------------------------------------------------------------------------------------------
def token_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_smoothing: float = 0.0,
    num_items_in_batch: torch.Tensor | int | None = None,
    ignore_index: int = -100,
) -> torch.Tensor:
    """
    Cross-entropy over every labelled position (labels equal to `ignore_index` are skipped), in fp32, with label
    smoothing epsilon_ls (paper 5.4). Summed and divided by `num_items_in_batch` when Trainer passes it (gradient
    accumulation), else by the number of labelled positions; a batch with no labels gives 0, not NaN.
    """
    logits = logits.float().reshape(-1, logits.shape[-1])
    labels = labels.reshape(-1).to(logits.device)
    if not torch.compiler.is_compiling() and labels.numel() > 0:
        valid = (labels == ignore_index) | ((labels >= 0) & (labels < logits.shape[-1]))
        if not bool(valid.all()):
            bad = int(labels[~valid][0])
            raise ValueError(
                f"`labels` contains {bad}, outside the vocabulary / label set [0, {logits.shape[-1]}): use ids below "
                f"{logits.shape[-1]}, or {ignore_index} for positions the loss should ignore."
            )
    total = F.cross_entropy(
        logits, labels, ignore_index=ignore_index, reduction="sum", label_smoothing=label_smoothing
    )
    if num_items_in_batch is None:
        num_items_in_batch = (labels != ignore_index).sum().clamp(min=1)
    elif torch.is_tensor(num_items_in_batch):
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
        self.dense = VaswaniLinear(config.d_model, config.d_model)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))


class VaswaniMLMHead(nn.Module):
    """Masked-language-model head: dense, activation, LayerNorm, then the projection tied to the input embedding."""

    def __init__(self, config: VaswaniConfig):
        super().__init__()
        self.dense = VaswaniLinear(config.d_model, config.d_model)
        self.activation = activation_function(config.activation_function)
        self.layer_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.decoder = VaswaniLinear(config.d_model, config.vocab_size)

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

    def _loss(self, logits, labels, **kwargs):
        return token_cross_entropy(
            logits,
            labels,
            label_smoothing=self.config.label_smoothing,
            num_items_in_batch=kwargs.get("num_items_in_batch"),
        )

    def _labelled_positions(self, hidden_states, labels):
        """With `config.sparse_prediction`, keep only the labelled positions for the vocabulary projection."""
        if labels is None or not self.config.sparse_prediction:
            return hidden_states, labels
        if labels.shape != hidden_states.shape[:2]:
            raise ValueError(
                f"`labels` has shape {tuple(labels.shape)}, but the input has {tuple(hidden_states.shape[:2])}: pass "
                f"one label per token (-100 where there is nothing to predict)."
            )
        keep = labels.to(hidden_states.device) != -100  # (B, T)
        return hidden_states[keep], labels[keep]  # (n_labelled, d_model), (n_labelled,)

    def _encode(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs) -> BaseModelOutput:
        kwargs.pop("num_items_in_batch", None)
        return self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )


class _CompiledGeneration:
    """What the two generating heads add to `GenerationMixin` (which they inherit directly, as transformers wants)."""

    def _prepare_cache_for_generation(self, generation_config, model_kwargs, generation_mode, batch_size, max_cache_length):
        # Where generate() would make its default `DynamicCache`, make a cache that writes in place instead
        # (`VaswaniDynamicCache`), sized for the longest text this call can produce. A cache the caller passed, or one
        # that `cache_implementation` asks for (static, offloaded, quantized), is generate()'s business as usual.
        if (
            model_kwargs.get(CACHE_NAME) is not None
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
        model_kwargs[CACHE_NAME] = cache

    def compile_generation(self, enable: bool = True):
        """
        Make `generate()` use a static (preallocated) cache and a `torch.compile`d forward, on any device
        (transformers compiles generation by itself only on GPUs). The first call compiles (seconds); later calls
        with the same shapes reuse it. Greedy output is the same as without. `enable=False` undoes it. Returns the
        model.

        On CPUs where `VaswaniLinear` multiplies through oneDNN (AMD), the compiled forward uses PyTorch's default
        products instead (inductor lowers oneDNN's only for frozen weights), and uncompiled generation is the faster:
        0.7-0.9x measured (benchmarks/README.md, findings 4 and 10). A warning says so.
        """
        from transformers import CompileConfig

        if not enable:
            self.generation_config.cache_implementation = None
            self.generation_config.compile_config = None
            return self
        if self.device.type == "cpu" and _ONEDNN_LINEAR:
            logger.warning_once(
                "compile_generation(): on this CPU the uncompiled generate() multiplies through oneDNN, which the "
                "compiled forward cannot; it measured 0.7-0.9x as fast as uncompiled (benchmarks/README.md)."
            )
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
        self.lm_head = VaswaniLinear(self.config.d_model, self.config.vocab_size, bias=False)
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
        **kwargs,
    ) -> Seq2SeqLMOutput:
        r"""
        Args:
            input_ids, attention_mask: the source and its padding mask.
            decoder_input_ids (`torch.LongTensor`, *optional*): the target shifted right; made from `labels` if absent.
            labels (`torch.LongTensor` of shape `(batch_size, target_length)`, *optional*): target ids, -100 to ignore.
            logits_to_keep (`int`): if positive, compute logits for the last `logits_to_keep` positions only.
            Other arguments: see [`VaswaniModel.forward`].
        """
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
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
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = self.lm_head(hidden_states)
        if self.config.final_logits_bias:
            logits = logits + self.final_logits_bias
        loss = None
        if labels is not None:
            loss = self._loss(logits, labels, num_items_in_batch=num_items_in_batch)
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )


# -- Decoder-only: GPT-style --------------------------------------------------------------------------------------------
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
        self.lm_head = VaswaniLinear(self.config.d_model, self.config.vocab_size, bias=False)
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
        **kwargs,
    ) -> CausalLMOutputWithCrossAttentions:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`): token ids.
            attention_mask (`torch.Tensor`, *optional*): 1 for tokens, 0 for padding, covering cached tokens too.
            position_ids (`torch.LongTensor`, *optional*): positions; by default derived from the mask, so a
                left-padded prompt behaves as it does alone.
            cache (`Cache`, *optional*; also accepted as `past_key_values`): keys and values of earlier steps.
            labels (`torch.LongTensor`, *optional*): usually `input_ids`; shifted inside, -100 to ignore.
            logits_to_keep (`int`): if positive, compute logits for the last `logits_to_keep` positions only.
        """
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        if logits_to_keep:
            hidden_states = hidden_states[:, -logits_to_keep:]
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            shifted = F.pad(labels, (0, 1), value=-100)[:, 1:]  # position i predicts token i + 1
            loss = self._loss(logits, shifted, num_items_in_batch=num_items_in_batch)
        return CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            **{CACHE_NAME: getattr(outputs, CACHE_NAME)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


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
        **kwargs,
    ) -> MaskedLMOutput:
        r"""
        Args:
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*): the original ids at
                masked positions, -100 elsewhere. With `config.sparse_prediction` only these positions get logits.
            Other arguments: see [`VaswaniModel.forward`].
        """
        num_items_in_batch = kwargs.get("num_items_in_batch")
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        hidden_states, labels = self._labelled_positions(outputs.last_hidden_state, labels)
        logits = self.lm_head(hidden_states)
        loss = self._loss(logits, labels, num_items_in_batch=num_items_in_batch) if labels is not None else None
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
        self.nsp_head = VaswaniLinear(self.config.d_model, 2)
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
        next_sentence_label: torch.LongTensor | None = None,
        **kwargs,
    ) -> VaswaniForPreTrainingOutput:
        r"""
        Args:
            labels (`torch.LongTensor`, *optional*): MLM targets, -100 at unmasked positions. With
                `config.sparse_prediction` only the labelled positions get prediction logits.
            next_sentence_label (`torch.LongTensor` of shape `(batch_size,)`, *optional*): 0 if segment B follows
                segment A, 1 if it is random.
        """
        num_items_in_batch = kwargs.get("num_items_in_batch")
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        hidden_states, labels = self._labelled_positions(outputs.last_hidden_state, labels)
        prediction_logits = self.lm_head(hidden_states)
        seq_relationship_logits = self.nsp_head(self.pooler(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = self._loss(prediction_logits, labels, num_items_in_batch=num_items_in_batch)
        if next_sentence_label is not None:
            nsp_loss = self._loss(seq_relationship_logits, next_sentence_label)
            loss = nsp_loss if loss is None else loss + nsp_loss
        return VaswaniForPreTrainingOutput(
            loss=loss,
            prediction_logits=prediction_logits,
            seq_relationship_logits=seq_relationship_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


class VaswaniForNextSentencePrediction(_VaswaniHead):
    """Next-sentence prediction alone: does segment B follow segment A (0) or is it random (1)?"""

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.pooler = VaswaniPooler(self.config)
        self.nsp_head = VaswaniLinear(self.config.d_model, 2)
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
        num_items_in_batch = kwargs.get("num_items_in_batch")
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        logits = self.nsp_head(self.pooler(outputs.last_hidden_state))
        loss = self._loss(logits, labels, num_items_in_batch=num_items_in_batch) if labels is not None else None
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
        self.classifier = VaswaniLinear(self.config.d_model, self.config.num_labels)
        self.post_init()

    def _problem_type(self, labels: torch.Tensor) -> str:
        if self.config.problem_type is not None:
            return self.config.problem_type
        if self.config.num_labels == 1:
            return "regression"
        if labels.dtype in (torch.long, torch.int):
            return "single_label_classification"
        return "multi_label_classification"

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
        num_items_in_batch = kwargs.get("num_items_in_batch")
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        logits = self.classifier(self.dropout(self.pooler(outputs.last_hidden_state)))
        loss = None
        if labels is not None:
            problem_type = self._problem_type(labels)
            if problem_type == "regression":
                loss = F.mse_loss(logits.squeeze(-1).float(), labels.squeeze(-1).float())
            elif problem_type == "single_label_classification":
                loss = self._loss(logits, labels, num_items_in_batch=num_items_in_batch)
            else:
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float())
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class VaswaniForTokenClassification(_VaswaniHead):
    """A label for every token (named entities, parts of speech) from its final state."""

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.dropout = nn.Dropout(self.config.dropout)
        self.classifier = VaswaniLinear(self.config.d_model, self.config.num_labels)
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
        num_items_in_batch = kwargs.get("num_items_in_batch")
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = self._loss(logits, labels, num_items_in_batch=num_items_in_batch) if labels is not None else None
        return TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class VaswaniForQuestionAnswering(_VaswaniHead):
    """Extractive question answering: a start and an end score for every token of the context."""

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.qa_outputs = VaswaniLinear(self.config.d_model, 2)
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
        outputs = self._encode(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, kwargs)
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).unbind(dim=-1)  # 2 x (B, T)
        loss = None
        if start_positions is not None and end_positions is not None:
            length = start_logits.shape[1]
            # An answer outside the window (after truncation) is ignored rather than clamped onto a wrong token.
            start = start_positions.reshape(-1).masked_fill((start_positions.reshape(-1) >= length), -100)
            end = end_positions.reshape(-1).masked_fill((end_positions.reshape(-1) >= length), -100)
            loss = (self._loss(start_logits, start) + self._loss(end_logits, end)) / 2
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
        self.classifier = VaswaniLinear(self.config.d_model, 1)
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

        num_items_in_batch = kwargs.get("num_items_in_batch")

        def flat(tensor):  # (B, C, T, ...) -> (B * C, T, ...)
            return tensor.flatten(0, 1) if tensor is not None else None

        outputs = self._encode(
            flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids), flat(inputs_embeds), kwargs
        )
        scores = self.classifier(self.dropout(self.pooler(outputs.last_hidden_state)))  # (B * C, 1)
        logits = scores.view(-1, num_choices)  # (B, C)
        loss = self._loss(logits, labels, num_items_in_batch=num_items_in_batch) if labels is not None else None
        return MultipleChoiceModelOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


__all__ = [
    "VaswaniForCausalLM",
    "VaswaniForConditionalGeneration",
    "VaswaniForMaskedLM",
    "VaswaniForMultipleChoice",
    "VaswaniForNextSentencePrediction",
    "VaswaniForPreTraining",
    "VaswaniForPreTrainingOutput",
    "VaswaniForQuestionAnswering",
    "VaswaniForSequenceClassification",
    "VaswaniForTokenClassification",
    "shift_tokens_right",
    "token_cross_entropy",
]
