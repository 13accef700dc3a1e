"""Set-ups of an untrained DSFNet for tests that need its image-space path to run (not shipped)."""
from __future__ import annotations


def make_all_visible(model) -> None:
    """Test support: make an untrained DSFNet's image-space path run on any crop.

    He-initialises the image stage's convolutions (so the predicted UV grid varies over the image) and pins the dense
    head's visibility logit to 4 (every pixel visible) and its confidence logit to 0 (conf 0.5 everywhere: exact ties,
    broken by pixel index in the scatter). In place.
    """
    import torch

    for m in model.image_stage.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    heads = model.image_stage.dense_heads.heads  # output channels [grid 2 | seg_logit, conf_logit | depth 1]
    out, (seg_ch, conf_ch) = (heads["all"].out, (2, 3)) if "all" in heads else (heads["seg"].out, (0, 1))
    with torch.no_grad():
        out.weight[[seg_ch, conf_ch]] = 0.0
        out.bias[seg_ch], out.bias[conf_ch] = 4.0, 0.0
