"""Everything learnable: the open_clip backbone wrapper, the RAC adapter and ordinal heads, losses,
metrics, data, feature cache, training loop, background worker and CLI.

`trainer` never imports `rankui` or `gradio`: the app depends on the trainer, not the reverse.
"""

from .backbone import Backbone, BackboneConfig, BackboneUnavailable, load_backbone, load_demo_backbone
from .method import RankBatch, RankingMethod, RankOutput
from .registry import create_method, list_methods, register_method

__all__ = ["Backbone", "BackboneConfig", "BackboneUnavailable", "RankBatch", "RankOutput", "RankingMethod",
           "create_method", "list_methods", "load_backbone", "load_demo_backbone", "register_method"]
