"""
Images as sequences (ViT, Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"): the encoder's input when the
config has an `image_size`. The stack after it is the paper's encoder, unchanged.

    VaswaniPatchEmbeddings   P x P patches, each linearly projected to d_model (a convolution with kernel and
                             stride P), a learned [CLS] token in front, plus positions (learned or sinusoidal;
                             none when positions act inside attention)
    interpolate_positions    a learned table of patch positions resized to another grid (ViT's bicubic resize)
"""

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ..configuration.configuration_vaswani import VaswaniConfig


def interpolate_positions(table: torch.Tensor, rows: int, columns: int) -> torch.Tensor:
    """
    A learned position table `(1 + grid^2, d_model)` for images of another size: the [CLS] row as it is, the patch
    rows seen as a grid x grid image of d_model channels and resized bicubically to rows x columns (as ViT does).
    """
    grid = math.isqrt(table.shape[0] - 1)
    if rows == grid and columns == grid:
        return table
    patches = table[1:].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)  # (1, d_model, grid, grid)
    patches = F.interpolate(patches.float(), size=(rows, columns), mode="bicubic", align_corners=False)
    patches = patches.to(table.dtype).permute(0, 2, 3, 1).reshape(rows * columns, -1)  # (rows x columns, d_model)
    return torch.cat((table[:1], patches))


class VaswaniPatchEmbeddings(nn.Module):
    """
    The encoder's input embedding for images: an image (B, C, H, W) cut into P x P patches read row by row, each
    projected to d_model by one shared linear map (a convolution with kernel and stride P is exactly that), a
    learned [CLS] token in front (the classifier reads it), times sqrt(d_model) with `scale_embedding` (paper 3.4),
    plus the positions of the config (learned, one row per patch and one for [CLS], resized for other image sizes
    when asked; or the paper's sinusoids), then the optional LayerNorm and dropout, as for tokens.
    """

    def __init__(self, config: VaswaniConfig, sinusoids: Callable | None = None):
        r"""sinusoids: the paper's encoding, `sinusoidal_positions(positions, d_model, layout)` (3.5), for
        sinusoidal positions (passed in by the encoder: this module does not import the paper's file)."""
        super().__init__()
        self.config = config
        self.sinusoids = sinusoids
        self.patch_size = config.patch_size
        self.projection = nn.Conv2d(config.num_channels, config.d_model, config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.d_model))
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        if config.position_embedding_type == "learned":
            self.position_embeddings = nn.Embedding(config.num_patches + 1, config.d_model)
        if config.embedding_layer_norm:
            self.layer_norm = (nn.RMSNorm if config.rms_norm else nn.LayerNorm)(config.d_model, eps=config.layer_norm_eps)
        self.dropout = config.dropout

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        batch, _, height, width = pixel_values.shape
        patches = self.projection(pixel_values).flatten(2).transpose(1, 2)  # (B, C', H/P, W/P) -> (B, N, d_model)
        embeddings = torch.cat((self.cls_token.expand(batch, -1, -1), patches), dim=1)  # (B, 1 + N, d_model)
        if self.embed_scale != 1.0:
            embeddings = embeddings * self.embed_scale
        kind = self.config.position_embedding_type
        if kind == "learned":
            table = self.position_embeddings.weight
            if interpolate_pos_encoding:
                table = interpolate_positions(table, height // self.patch_size, width // self.patch_size)
            embeddings = embeddings + table.to(embeddings.dtype)
        elif kind == "sinusoidal":  # any number of patches: the sinusoids of positions 0 ([CLS]) to N
            positions = torch.arange(embeddings.shape[1], device=embeddings.device)
            table = self.sinusoids(positions, self.config.d_model, self.config.sinusoidal_layout)
            embeddings = embeddings + table.to(embeddings.dtype)
        if self.config.embedding_layer_norm:
            embeddings = self.layer_norm(embeddings)
        return F.dropout(embeddings, p=self.dropout, training=self.training)


__all__ = ["VaswaniPatchEmbeddings", "interpolate_positions"]
