from .configuration_vaswani import PRESETS, VaswaniConfig


__all__ = ["PRESETS", "VaswaniConfig"]
