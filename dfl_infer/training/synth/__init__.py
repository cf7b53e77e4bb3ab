"""Synthetic two-hand data engine: exact 3D joints, part masks and images rendered in pure PyTorch.

Training-only; the inference path never imports it. See ``engine.py`` for the batch dict and
``dataset.py`` for the on-disk layout.
"""

from dfl_infer.training.interhand import HAND_TYPES

from .dataset import read_sample, write_dataset
from .engine import EngineConfig, SynthEngine, SynthStream
from .scene import INTERACTIONS, POSE_SHAPES, SceneConfig
from .surface import load_surfaces, procedural_surface

__all__ = [
    "EngineConfig",
    "HAND_TYPES",
    "INTERACTIONS",
    "POSE_SHAPES",
    "SceneConfig",
    "SynthEngine",
    "SynthStream",
    "load_surfaces",
    "procedural_surface",
    "read_sample",
    "write_dataset",
]
