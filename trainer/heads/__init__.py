"""Ordinal heads over an ordered list of class names; importing this package registers them.

"zeroshot" (zero-shot CLIP), "coop", "ordinalclip", "numclip" and "l2rclip", all behind
`trainer.method.RankingMethod` and built by name with `trainer.registry.create_method`.
"""

from . import coop, l2rclip, numclip, ordinalclip, zeroshot  # noqa: F401

__all__ = ["coop", "l2rclip", "numclip", "ordinalclip", "zeroshot"]
