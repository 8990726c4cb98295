from .convert_vaswani import (
    ARCHITECTURES,
    ConversionError,
    config_from_bert,
    config_from_bloom,
    config_from_gpt2,
    config_from_gpt_neox,
    config_from_marian,
    config_from_t5,
    convert,
    convert_torch_transformer,
    copy_sentence_transformers_modules,
    sentence_transformers_modules,
)


__all__ = [
    "ARCHITECTURES",
    "ConversionError",
    "config_from_bert",
    "config_from_bloom",
    "config_from_gpt2",
    "config_from_gpt_neox",
    "config_from_marian",
    "config_from_t5",
    "convert",
    "convert_torch_transformer",
    "copy_sentence_transformers_modules",
    "sentence_transformers_modules",
]
