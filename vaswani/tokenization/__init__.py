from .tokenization_vaswani import KINDS, check_tokenizer_fits, config_from_tokenizer, iterate_texts, train_tokenizer


__all__ = ["KINDS", "check_tokenizer_fits", "config_from_tokenizer", "iterate_texts", "train_tokenizer"]
