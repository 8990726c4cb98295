"""
vaswani: the Transformer of "Attention Is All You Need" (Vaswani et al., 2017) as a Hugging Face model family.

Importing the package registers `VaswaniConfig` and every head with the Auto classes, so
`AutoModelForCausalLM.from_pretrained(folder)` and friends work on any folder a Vaswani model was saved to.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForMultipleChoice,
    AutoModelForNextSentencePrediction,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
)

from transformers.pipelines import PIPELINE_REGISTRY

from .configuration import PRESETS, VaswaniConfig
from .modeling import (
    VaswaniAttention,
    VaswaniDecoder,
    VaswaniDecoderLayer,
    VaswaniEmbeddings,
    VaswaniEncoder,
    VaswaniEncoderLayer,
    VaswaniFeedForward,
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
    VaswaniForMultipleChoice,
    VaswaniForNextSentencePrediction,
    VaswaniForPreTraining,
    VaswaniForPreTrainingOutput,
    VaswaniForQuestionAnswering,
    VaswaniForSequenceClassification,
    VaswaniForTokenClassification,
    VaswaniLinear,
    VaswaniModel,
    VaswaniPreTrainedModel,
)

from .pipelines import VaswaniQuestionAnsweringPipeline, VaswaniText2TextPipeline
from .tokenization import check_tokenizer_fits, config_from_tokenizer, train_tokenizer

__version__ = "0.1.0"

# Every Auto class the family serves, with the head it builds.
AUTO_CLASSES = {
    AutoModel: VaswaniModel,
    AutoModelForSeq2SeqLM: VaswaniForConditionalGeneration,
    AutoModelForCausalLM: VaswaniForCausalLM,
    AutoModelForMaskedLM: VaswaniForMaskedLM,
    AutoModelForPreTraining: VaswaniForPreTraining,
    AutoModelForNextSentencePrediction: VaswaniForNextSentencePrediction,
    AutoModelForSequenceClassification: VaswaniForSequenceClassification,
    AutoModelForTokenClassification: VaswaniForTokenClassification,
    AutoModelForQuestionAnswering: VaswaniForQuestionAnswering,
    AutoModelForMultipleChoice: VaswaniForMultipleChoice,
}

AutoConfig.register(VaswaniConfig.model_type, VaswaniConfig, exist_ok=True)
for _auto_class, _model_class in AUTO_CLASSES.items():
    _auto_class.register(VaswaniConfig, _model_class, exist_ok=True)

# The pipelines transformers 5 removed, under the family's own task names.
PIPELINE_REGISTRY.register_pipeline(
    "vaswani-text2text", pipeline_class=VaswaniText2TextPipeline, pt_model=AutoModelForSeq2SeqLM, type="text"
)
PIPELINE_REGISTRY.register_pipeline(
    "vaswani-question-answering",
    pipeline_class=VaswaniQuestionAnsweringPipeline,
    pt_model=AutoModelForQuestionAnswering,
    type="text",
)

__all__ = [
    "AUTO_CLASSES",
    "PRESETS",
    "VaswaniAttention",
    "VaswaniConfig",
    "VaswaniDecoder",
    "VaswaniDecoderLayer",
    "VaswaniEmbeddings",
    "VaswaniEncoder",
    "VaswaniEncoderLayer",
    "VaswaniFeedForward",
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
    "VaswaniLinear",
    "VaswaniModel",
    "VaswaniPreTrainedModel",
    "VaswaniQuestionAnsweringPipeline",
    "VaswaniText2TextPipeline",
    "check_tokenizer_fits",
    "config_from_tokenizer",
    "train_tokenizer",
]
