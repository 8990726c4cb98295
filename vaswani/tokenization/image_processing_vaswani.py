"""
The image processor of a model that reads pixels: transformers' own ViT processor (resize, rescale to [0, 1],
normalise, RGB), set to the model's `image_size`, so `AutoImageProcessor.from_pretrained(folder)` loads it from a saved
folder with or without this package. Nothing here resizes by hand.
"""

from transformers import ViTImageProcessorPil


def image_processor_for(config, **overrides) -> ViTImageProcessorPil:
    """
    The image processor for a Vaswani config with `image_size`: images resized to image_size x image_size, bytes
    rescaled to [0, 1] and normalised to [-1, 1] per channel (mean 0.5, std 0.5, as ViT's), colour images converted to
    RGB (the image pipelines convert every image to RGB). `overrides` go to the processor (`image_mean`, ...).
    """
    size = getattr(config, "image_size", None)
    if size is None:
        raise ValueError("An image processor is for a model that reads pixels: the config has no `image_size`.")
    if config.num_channels != 3 and overrides.get("do_convert_rgb", True):
        raise ValueError(
            f"The config has num_channels={config.num_channels}, but transformers' image pipelines turn every image "
            f"into RGB (3 channels): build the model with num_channels=3 (copy grey images into three channels), or "
            f"pass do_convert_rgb=False and feed the processor arrays of {config.num_channels} channels yourself."
        )
    settings = dict(
        do_resize=True, size={"height": size, "width": size}, do_rescale=True, do_normalize=True,
        image_mean=[0.5] * config.num_channels, image_std=[0.5] * config.num_channels, do_convert_rgb=True,
    )
    settings.update(overrides)
    return ViTImageProcessorPil(**settings)
