"""
vaswani: the Transformer of "Attention Is All You Need" (Vaswani et al., 2017) as a Hugging Face model family.

Importing the package registers `VaswaniConfig` and every head with the Auto classes, so
`AutoModelForCausalLM.from_pretrained(folder)` and friends work on any folder a Vaswani model was saved to. The heads,
their Auto classes and their exports come from one table, `vaswani.hub.HEADS`.

Where things live: `configuration/` (the config, its constants and presets), `modeling/` (the paper in
`modeling_vaswani.py`, the heads in `modeling_vaswani_heads.py`, and a module each for the cache and
input validation), `hub/` (self-contained folders, the model card, the Hub, and the table of heads),
`tokenization/`, `pipelines/`, `training/` (data, the table of tasks, the paper's recipe, runs, metrics), `convert/`,
`metrics/`, and `cli.py` (the `vaswani` command).
"""

import logging

import torch


# Lines other packages log on every import that mean nothing here, by logger: transformers imports torchao when it is
# installed (the `tools` extra), which on a CPU build of torch cannot load its CUDA-only libraries, and registers enums
# torch no longer needs registered; peft imports bitsandbytes, whose CPU backend looks for a kernel on the Hub.
_IMPORT_NOISE = {
    "torchao": "Failed to load",
    "torch.utils._pytree": "<enum ",
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community",
}


class _ImportNoise(logging.Filter):
    """Drops the records of one logger that begin with one text (`_IMPORT_NOISE`); every other record passes."""

    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


for _name, _prefix in _IMPORT_NOISE.items():
    if _name != "torchao" or (torch.version.cuda is None and torch.version.hip is None):  # on a GPU build it matters
        logging.getLogger(_name).addFilter(_ImportNoise(_prefix))

import transformers  # noqa: E402
from transformers import AutoConfig  # noqa: E402
from transformers.pipelines import PIPELINE_REGISTRY  # noqa: E402

from . import modeling  # noqa: E402
from .configuration import PRESETS, VaswaniConfig
from .explore import AttentionMaps, attention_maps
from .hub import HEADS
from .integrations import adapters
from .modeling import *  # noqa: F403  (the paper's classes and every head: `modeling.__all__`)
from .pipelines import VaswaniImageToTextPipeline, VaswaniQuestionAnsweringPipeline, VaswaniText2TextPipeline
from .tokenization import check_tokenizer_fits, config_from_tokenizer, image_processor_for, train_tokenizer

__version__ = "0.1.0"

# Every Auto class the family serves, with the class it builds: read from the table of heads.
AUTO_CLASSES = {getattr(transformers, head.auto_class): getattr(modeling, name) for name, head in HEADS.items()
                if head.auto_class}
AUTO_CLASSES |= {getattr(transformers, head.images[0]): getattr(modeling, name) for name, head in HEADS.items() if head.images}

AutoConfig.register(VaswaniConfig.model_type, VaswaniConfig, exist_ok=True)
for _auto_class, _model_class in AUTO_CLASSES.items():
    _auto_class.register(VaswaniConfig, _model_class, exist_ok=True)

adapters.install()  # peft's default target modules for model_type "vaswani", once peft is imported (not here)

# The pipelines transformers 5 removed, under the family's own task names.
PIPELINE_REGISTRY.register_pipeline(
    "vaswani-text2text", pipeline_class=VaswaniText2TextPipeline, pt_model=transformers.AutoModelForSeq2SeqLM, type="text"
)
PIPELINE_REGISTRY.register_pipeline(
    "vaswani-question-answering",
    pipeline_class=VaswaniQuestionAnsweringPipeline,
    pt_model=transformers.AutoModelForQuestionAnswering,
    type="text",
)
PIPELINE_REGISTRY.register_pipeline(
    "vaswani-image-to-text",
    pipeline_class=VaswaniImageToTextPipeline,
    pt_model=transformers.AutoModelForImageTextToText,
    type="multimodal",
)

__all__ = [
    "AUTO_CLASSES",
    "AttentionMaps",
    "HEADS",
    "PRESETS",
    "VaswaniConfig",
    "VaswaniImageToTextPipeline",
    "VaswaniQuestionAnsweringPipeline",
    "VaswaniText2TextPipeline",
    "attention_maps",
    "check_tokenizer_fits",
    "image_processor_for",
    "config_from_tokenizer",
    "train_tokenizer",
    *modeling.__all__,
]
