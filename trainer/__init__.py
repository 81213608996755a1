"""Everything learnable: the open_clip backbone wrapper, the RAC adapter and ordinal heads, losses,
metrics, data, feature cache, training loop, background worker and CLI (`python -m trainer`).

`trainer` never imports `rankui` or `gradio`: the app depends on the trainer, not the reverse.
Training entry points live in `trainer.fit` (`fit`, `run_eval`, `predict`); the package does not
re-export them, so the module name stays the module.
"""

from .backbone import Backbone, BackboneConfig, BackboneUnavailable, load_backbone, load_demo_backbone
from .checkpoint import load_checkpoint, save_checkpoint
from .config import FitConfig, apply_overrides, load_config
from .data import Item, LabelledSet, Pair, PairSource
from .features import FeatureCache
from .method import RankBatch, RankingMethod, RankOutput
from .registry import create_method, list_methods, register_method
from .worker import TrainingWorker, WorkerConfig, WorkerStatus, latest_version

__all__ = ["Backbone", "BackboneConfig", "BackboneUnavailable", "FeatureCache", "FitConfig", "Item", "LabelledSet",
           "Pair", "PairSource", "RankBatch", "RankOutput", "RankingMethod", "TrainingWorker", "WorkerConfig",
           "WorkerStatus", "apply_overrides", "create_method", "latest_version", "list_methods",
           "load_backbone", "load_checkpoint", "load_config", "load_demo_backbone", "register_method",
           "save_checkpoint"]
