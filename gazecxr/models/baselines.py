"""Saliency baselines: a standard UNet (segmentation-models-pytorch).

The other baseline, the Res-SE UNet without the DenseNet branch, is ``ResSEUNet(aux_channels=0)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
from torch import Tensor, nn

from .factory import register_model


@register_model("standard_unet")
class StandardUNet(nn.Module):
    """smp ``Unet`` (random init, 1 input channel, 1 logit map) with the Res-SE UNet output contract.

    Any smp encoder name works (e.g. ``resnet34``, or ``tu-<timm model>``); no pretrained encoder
    weights are used. Input sizes are checked by smp (an encoder-dependent divisibility rule).
    """

    aux_channels = 0

    def __init__(
        self,
        encoder_name: str = "resnet34",
        encoder_depth: int = 5,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        self.unet = smp.Unet(
            encoder_name=encoder_name,
            encoder_depth=encoder_depth,
            encoder_weights=None,
            decoder_channels=tuple(decoder_channels),
            in_channels=in_channels,
            classes=1,
        )
        self.decoder_channels = decoder_channels[-1]

    def forward(self, x: Tensor, aux: Tensor | None = None) -> dict[str, Tensor]:
        """``logits`` (N, 1, H, W) and the last ``decoder`` feature map (N, decoder_channels[-1], H, W)."""
        if aux is not None:
            raise ValueError("the standard UNet takes no auxiliary feature")
        self.unet.check_input_shape(x)
        decoder = self.unet.decoder(self.unet.encoder(x))
        return {"logits": self.unet.segmentation_head(decoder), "decoder": decoder}
