"""``DFLConfig``: the architecture and the preprocessing contract of a DFL model.

The config is saved as ``config.json`` beside ``model.safetensors`` and used to rebuild the
network, so weights and architecture cannot drift apart. Unknown keys are an error.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Bumped when the meaning of a saved config changes; loading a newer format is refused.
CONFIG_FORMAT = 1
# Names of the preset builders (``DFLConfig.<name>()``), for command-line choices.
PRESET_NAMES = ("r50", "r18", "mphand", "tiny")
# Keys a saved config may lack: added after format 1 began, with defaults that reproduce what
# older files meant. Any other missing key is an error (a hand-edited file lost it).
OPTIONAL_KEYS = frozenset({"metadata", "position_xy", "handedness_head", "upright"})
# Lower bounds of the numeric fields: (minimum, whether the minimum itself is allowed).
_BOUNDS: dict[str, tuple[float, bool]] = {
    "fpn_channels": (1, True),
    "seg_channels": (1, True),
    "pos_channels": (1, True),
    "attn_dim": (1, True),
    "num_heads": (1, True),
    "ffn_ratio": (0.0, False),
    "gcn_layers": (0, True),
    "dropout": (0.0, True),
    "num_hand_joints": (1, True),
    "input_size": (32, True),
    "box_scale": (0.0, False),
    "depth_range_mm": (0.0, False),
    "root_depth_range_mm": (0.0, False),
}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_fields(cfg: DFLConfig) -> None:
    """Types and ranges of every field: a ValueError naming the field, before any module sees it
    (a string "128" or a 0 would otherwise fail deep inside the network)."""
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if kind == "str" and not (isinstance(v, str) and v):
            raise ValueError(f"config {f.name}: expected a non-empty string, got {v!r}")
        if kind == "bool" and not isinstance(v, bool):
            raise ValueError(f"config {f.name}: expected true or false, got {v!r}")
        if kind == "int" and not (isinstance(v, int) and not isinstance(v, bool)):
            raise ValueError(f"config {f.name}: expected an integer, got {v!r}")
        if kind == "float" and not _is_number(v):
            raise ValueError(f"config {f.name}: expected a finite number, got {v!r}")
        if kind.startswith("tuple") and not (
            isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_number(x) for x in v)
        ):
            raise ValueError(f"config {f.name}: expected 3 finite numbers (R, G, B), got {v!r}")
        if kind.startswith("dict") and not isinstance(v, dict):
            raise ValueError(f"config {f.name}: expected a JSON object, got {v!r}")
        if f.name in _BOUNDS:
            low, inclusive = _BOUNDS[f.name]
            if v < low or (v == low and not inclusive):
                sign = ">=" if inclusive else ">"
                raise ValueError(f"config {f.name}: must be {sign} {low}, got {v!r}")
    if not cfg.dropout < 1:
        raise ValueError(f"config dropout: must be < 1, got {cfg.dropout!r}")
    if not all(x > 0 for x in cfg.std):
        raise ValueError(f"config std: must be positive, got {list(cfg.std)!r}")


@dataclass(frozen=True)
class DFLConfig:
    """Architecture of the DFL network plus what its input and output mean."""

    # --- encoder ---------------------------------------------------------------------------
    # torchvision-layout ResNet: resnet10 (1 block per stage) / 18 / 34 / 50 / 101, or
    # "mediapipe_hand": MediaPipe's hand-landmark trunk (model/mediapipe_hand.py)
    backbone: str = "resnet50"
    fpn_channels: int = 256  # C_F, channels of every FPN level
    seg_channels: int = 256  # hidden channels of the part-segmentation head
    num_seg_classes: int = 33  # C_S: 16 parts per hand + background (joints.SEG_CLASS_NAMES)
    pos_channels: int = 256  # C_P, channels of the position features
    # Append each pixel's normalized x, y to the sinusoidal encoding: a linear term, so that an
    # attention-weighted average of position features holds the expected position linearly and
    # the 2.5D head can read it without first learning to invert the sinusoids.
    position_xy: bool = False
    # --- decoder ---------------------------------------------------------------------------
    attn_dim: int = 256  # width of the query/key/value projections inside every attention
    num_heads: int = 8
    ffn_ratio: float = 4.0  # hidden width of the feed-forward blocks, relative to their input
    num_iterations: int = 3  # T = N - 1 for the 4 FPN scales (strides 32, 16, 8, 4)
    gcn_layers: int = 2  # graph-convolution layers of the spatial position refinement
    dropout: float = 0.0
    num_hand_joints: int = 21
    # A right/left logit per hand slot (trained with the matched pair loss, where either slot may
    # hold either hand). False: the paper's fixed slots, 0-20 always the right hand, 21-41 the
    # left (the saved files of older versions, which lack the key, mean this).
    handedness_head: bool = False
    # --- preprocessing contract ------------------------------------------------------------
    input_size: int = 256  # square crop side in pixels
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # RGB in [0, 1]
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    box_scale: float = 1.25  # the square box around the hands is widened by this factor
    # Crops turned so that the hand's wrist-to-middle-MCP direction points up
    # (crop.upright_rotation; two hands: their mean direction when they agree), as MediaPipe's
    # landmark model sees its crops; not turned where no landmarks are known (a given box, a
    # whole-image first look).
    upright: bool = False
    # --- output scaling --------------------------------------------------------------------
    depth_range_mm: float = 400.0  # relative joint depths are regressed in +-depth_range_mm / 2
    root_depth_range_mm: float = 400.0  # left-wrist minus right-wrist depth, same convention
    # Free-form provenance (training data, steps, ...), saved and loaded unchanged.
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.attn_dim % self.num_heads != 0:
            raise ValueError(
                f"attn_dim {self.attn_dim} is not divisible by num_heads {self.num_heads}"
            )
        if self.num_iterations < 1 or self.num_iterations > 3:
            raise ValueError("num_iterations must be 1..3 (the FPN has 4 scales)")
        if self.input_size % 32 != 0:
            raise ValueError(f"input_size must be a multiple of 32, got {self.input_size}")
        if self.num_seg_classes != 1 + 2 * 16:
            raise ValueError("num_seg_classes must be 33 (16 parts per hand + background)")
        # JSON turns tuples into lists; keep the frozen dataclass hashable and comparable.
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def num_joints(self) -> int:
        return 2 * self.num_hand_joints

    # --- presets ---------------------------------------------------------------------------
    @classmethod
    def r50(cls, **overrides: Any) -> DFLConfig:
        """The paper's model: ResNet-50 FPN, C_F = 256, 3 iterations (36.9 M parameters; the paper
        reports 42 M)."""
        return cls(**overrides)

    @classmethod
    def r18(cls, **overrides: Any) -> DFLConfig:
        """Small and fast: ResNet-18 FPN at 128 channels (14.5 M parameters). Its segmentation
        head has 64 hidden channels: its two 3x3 convolutions at stride 4 were the costliest
        layers of the network; halving them took r18 from 9.75 to 8.22 GFLOP per crop and made
        it 11% faster on our 2-core CPU (docs/performance.md)."""
        base: dict[str, Any] = dict(
            backbone="resnet18",
            fpn_channels=128,
            seg_channels=64,
            pos_channels=128,
            attn_dim=128,
            num_heads=4,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def mphand(cls, **overrides: Any) -> DFLConfig:
        """The default model: MediaPipe's hand-landmark trunk (2.33 M parameters, trained by
        Google on real hands; the starting point of ``dfl-train fit --init-backbone mediapipe``)
        with a 64-channel FPN and the same DFL decoder at 64 channels. Its input is RGB in
        [0, 1] unnormalised, as MediaPipe's."""
        base: dict[str, Any] = dict(
            backbone="mediapipe_hand",
            fpn_channels=64,
            seg_channels=32,
            pos_channels=64,
            attn_dim=64,
            num_heads=4,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            position_xy=True,
        )
        base.update(overrides)
        return cls(**base)

    @classmethod
    def tiny(cls, **overrides: Any) -> DFLConfig:
        """A few-million-parameter model for CPU training tests and smoke runs."""
        base: dict[str, Any] = dict(
            backbone="resnet10",
            fpn_channels=32,
            seg_channels=32,
            pos_channels=32,
            attn_dim=32,
            num_heads=2,
            ffn_ratio=2.0,
            gcn_layers=1,
        )
        base.update(overrides)
        return cls(**base)

    # --- (de)serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return {"format": CONFIG_FORMAT, "model_type": "dfl", **d}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> DFLConfig:
        data = dict(data)
        fmt = data.pop("format", CONFIG_FORMAT)
        model_type = data.pop("model_type", "dfl")
        if model_type != "dfl":
            raise ValueError(f"{source}: model_type is {model_type!r}, expected 'dfl'")
        if not isinstance(fmt, int) or fmt > CONFIG_FORMAT:
            raise ValueError(
                f"{source}: config format {fmt!r} is newer than this dfl-infer understands "
                f"({CONFIG_FORMAT}); upgrade dfl-infer"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown config keys {unknown}")
        missing = sorted(known - OPTIONAL_KEYS - set(data))
        if missing:
            raise ValueError(f"{source}: config keys missing: {missing}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: invalid config: {exc}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DFLConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"config file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return cls.from_dict(data, source=str(path))
