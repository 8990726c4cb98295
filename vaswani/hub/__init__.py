from .hub_vaswani import (
    AUTO_MAP,
    CUSTOM_PIPELINES,
    HEADS,
    Head,
    RemoteCodeError,
    VaswaniHubMixin,
    remote_code,
    render_model_card,
    write_hub_files,
)


__all__ = [
    "AUTO_MAP",
    "CUSTOM_PIPELINES",
    "HEADS",
    "Head",
    "RemoteCodeError",
    "VaswaniHubMixin",
    "remote_code",
    "render_model_card",
    "write_hub_files",
]
