"""Which backbone the app serves: the requested one, or the bundled demo when it cannot be had."""

from __future__ import annotations

import logging

from trainer.backbone import Backbone, BackboneConfig, BackboneUnavailable, load_demo_backbone

log = logging.getLogger("rankui")


def load_backbone_or_demo(name: str, pretrained: str | None, device: str = "cpu") -> tuple[Backbone, str | None]:
    """Load the requested backbone; if its weights cannot be had, say why in one line and use the demo."""
    try:
        return Backbone(BackboneConfig(name=name, pretrained=pretrained, device=device)), None
    except BackboneUnavailable as err:
        notice = f"{err} Starting on the bundled demo backbone instead."
        log.warning(notice)
        return load_demo_backbone(device=device), notice
