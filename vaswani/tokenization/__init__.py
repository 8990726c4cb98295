"""What turns raw inputs into model inputs: tokenizers (`tokenization_vaswani.py`) and the image processor of a model
that reads pixels (`image_processing_vaswani.py`)."""

from .image_processing_vaswani import image_processor_for
from .tokenization_vaswani import KINDS, check_tokenizer_fits, config_from_tokenizer, iterate_texts, train_tokenizer


__all__ = [
    "KINDS", "check_tokenizer_fits", "config_from_tokenizer", "image_processor_for", "iterate_texts", "train_tokenizer",
]
