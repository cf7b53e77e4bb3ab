"""``dfl-train fit``: the training loop (Adam, the paper's step decay, bf16 on CUDA, DDP, EMA).

Data sources are mixed per step: every step draws one source with probability proportional to its
weight and takes a whole batch from it (the synthetic stream renders on the training device; the
InterHand-layout folders go through a DataLoader). What a step sees is a pure function of
(seed, rank, step): the source choice, the dataset indices, the augmentation seeds and the
synthetic generator's seed. Resuming at step k therefore replays exactly the batches an
uninterrupted run would have seen, without saving data-loader state.

Outputs (rank 0 only): ``OUT/model.safetensors`` + ``OUT/config.json``
(``DFLModel.save_pretrained``; the EMA weights when EMA is on), ``OUT/metrics.jsonl`` (one JSON
object per logged step) and
``OUT/checkpoint.pt`` (model, EMA, optimizer, scheduler, torch RNG, step; plain tensors and
numbers only, loaded with ``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from dfl_infer._atomic import atomic_path
from dfl_infer.device import autocast
from dfl_infer.joints import NUM_JOINTS
from dfl_infer.model import DFLConfig, DFLModel
from dfl_infer.model.config import PRESET_NAMES
from dfl_infer.preprocess import normalize
from dfl_infer.training import distributed
from dfl_infer.training.losses import PAIR_LOSSES, DFLLoss, LossConfig

if TYPE_CHECKING:
    from dfl_infer.training.data import InterHandDataset

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
BEST_DIR = "best"  # the weights that scored best on the first --val folder
METRICS_NAME = "metrics.jsonl"
# Parts of the MediaPipe trunk that --freeze-trunk early keeps fixed: everything up to stride 8,
# whose high-resolution depthwise convolutions cost most of the backward pass on a CPU.
EARLY_TRUNK = ("stem.", "block0.", "stage1.", "stage2.")
FREEZE_CHOICES = ("none", "early", "all")
# Keys of a batch that the loss reads, with the value a source that lacks them stands for.
# A str default copies that key of the batch; (value, shape) fills a tensor of that per-image
# shape with the value.
LOSS_KEY_DEFAULTS: dict[str, str | tuple[float, tuple[int, ...]]] = {
    "depth_weight": "joint_valid",
    "occluded": (0.0, (NUM_JOINTS,)),
    "seg_valid": (1.0, ()),
    "presence_valid": (1.0, (2,)),
    "root_valid": (1.0, ()),
}
LOSS_KEYS = (
    "image",
    "joints_uvd",
    "joint_valid",
    "seg",
    "hand_valid",
    "rel_root_depth",
    *LOSS_KEY_DEFAULTS,
)
SOURCE_KINDS = ("synth", "interhand", "folder")
# The paper trains 50 epochs and divides the learning rate by 10 at epochs 24 and 35 (§4.2);
# the same fractions of --steps are used here.
PAPER_EPOCHS = 50
PAPER_DECAY_EPOCHS = (24, 35)


@dataclass(frozen=True)
class SourceSpec:
    """One data source: ``kind`` synth / interhand / folder (a pseudo-labelled folder, same
    layout), ``root`` its folder (None for synth), ``weight`` its share of the steps."""

    kind: str
    root: str | None = None
    weight: float = 1.0


def parse_data(spec: str) -> list[SourceSpec]:
    """``synth[@W],interhand:ROOT[@W],folder:ROOT[@W]`` -> sources (weights default to 1)."""
    sources = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        weight = 1.0
        if "@" in part:
            head, _, tail = part.rpartition("@")
            try:
                weight = float(tail)
                part = head
            except ValueError:
                pass  # an '@' inside a path
        kind, _, root = part.partition(":")
        if kind not in SOURCE_KINDS:
            raise ValueError(f"unknown data source {kind!r}; expected one of {SOURCE_KINDS}")
        if kind == "synth" and root:
            raise ValueError("synth takes no folder (use interhand:ROOT for rendered folders)")
        if kind != "synth" and not root:
            raise ValueError(f"{kind} needs a folder: {kind}:ROOT")
        if not weight > 0:
            raise ValueError(f"source weight must be positive, got {weight} for {kind}")
        sources.append(SourceSpec(kind, root or None, weight))
    if not sources:
        raise ValueError("--data names no source")
    return sources


@dataclass(frozen=True)
class FitConfig:
    """Everything ``fit`` needs; the CLI maps its flags onto these fields."""

    out: str  # output folder
    data: str = "synth"  # see parse_data
    config: str = "tiny"  # a PRESET_NAMES name (ignored with init: the init folder's config wins)
    steps: int = 1000  # optimizer steps in total (the schedule is scaled to this)
    batch_size: int = 8  # per process
    lr: float = 1e-4  # Adam, as in the paper
    weight_decay: float = 0.0
    grad_clip: float = 5.0  # max global grad norm (0: off); guards against early spikes
    ema_decay: float = 0.0  # 0: off; e.g. 0.999 for long runs
    device: str = "auto"
    resume: bool = False  # continue from OUT/checkpoint.pt when it exists
    init: str | None = None  # start from these weights (folder or Hub id), fresh optimizer
    split: str = "train"
    seed: int = 0
    num_workers: int = 2
    log_every: int = 10
    save_every: int = 500
    input_size: int | None = None  # override the preset's crop size (quick CPU runs)
    stop_after: int | None = None  # stop (with a checkpoint) after this step: time-limited jobs
    # ... or at the first logged step that ends after this many minutes of the training loop
    stop_after_minutes: float | None = None
    synth_mesh: str | None = None
    synth_backgrounds: str | None = None
    progress: bool = True
    augment: bool = True  # the paper's augmentations on dataset sources (off: overfit checks)
    init_backbone: str | None = None  # "mediapipe" / "imagenet": pretrained encoder trunk
    init_backbone_file: str | None = None  # its file (tflite / .task / state dict); None: default
    freeze_trunk: str = "none"  # none / early (MediaPipe trunk up to stride 8) / all
    mix_batches: bool = False  # every batch takes from every source by weight (not one per step)
    val: tuple[str, ...] = ()  # InterHand-layout folders (ROOT or ROOT:SPLIT) scored at each save
    best_metric: str = "mean_2d_box_pct"  # of the first --val folder, lower is better: OUT/best
    # N:METRIC:MAX: a save becomes OUT/best only while --val folder N (1-based) keeps METRIC <= MAX
    best_guard: tuple[str, ...] = ()
    # Train only on images of these hand types (right / left / interacting) from folder sources;
    # () keeps all. Validation folders are never filtered.
    hand_types: tuple[str, ...] = ()
    # "matched": each image under the cheaper slot assignment, with a handedness head (added to
    # --init weights that lack one); "fixed": the paper's right/left slots (losses.py).
    pair_loss: str = "matched"
    # Crops turned upright (DFLConfig.upright): training crops turned by their labels' hand
    # direction plus a jitter (AugmentConfig.upright_jitter_deg), inference by the detector's.
    upright: bool = False
    attn_loss: float = 0.0  # weight of the initial-attention loss (LossConfig.w_attn); 0: off
    # Weight of the joint terms for joints under another hand (LossConfig.occluded_weight).
    occluded_weight: float = 1.0
    # Share of two-hand images cropped around one of their hands (AugmentConfig.hand_crop_prob),
    # as the predictor's per-hand pass crops them.
    hand_crops: float = 0.0
    # A hand with fewer than this share of its joints inside an augmented crop has no presence
    # label there, with none inside it is absent (AugmentConfig.partial_share); 0: off.
    partial_share: float = 0.5


def lr_factor(step: int, total: int) -> float:
    """Multiplier of the base learning rate after ``step`` optimizer steps (step decay x0.1)."""
    milestones = [round(total * e / PAPER_EPOCHS) for e in PAPER_DECAY_EPOCHS]
    return 0.1 ** sum(step >= m for m in milestones)


class EMA:
    """Exponential moving average of a model's floating-point state (buffers copied as is)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v.detach(), 1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) ^ set(state)
        if missing:
            raise ValueError(f"EMA state keys do not match the model: {sorted(missing)[:5]}")
        for k, v in state.items():
            self.shadow[k].copy_(v)


def choose_source(seed: int, step: int, weights: list[float]) -> int:
    """Index of the source that serves ``step`` (the same on every rank)."""
    if len(weights) == 1:
        return 0
    p = np.asarray(weights, dtype=np.float64)
    return int(np.random.default_rng([seed, 104729, step]).choice(len(p), p=p / p.sum()))


def _steps_of(source: int, seed: int, start: int, weights: list[float]) -> Iterator[int]:
    step = start
    while True:
        if choose_source(seed, step, weights) == source:
            yield step
        step += 1


def _synth_iter(
    cfg: FitConfig, size: int, info: distributed.DistInfo, steps: Iterator[int], batch_size: int
) -> Iterator[dict[str, torch.Tensor]]:
    from dfl_infer.training.synth.engine import EngineConfig, SynthEngine
    from dfl_infer.training.synth.scene import SceneConfig

    engine = SynthEngine(
        info.device,
        mesh=cfg.synth_mesh,
        backgrounds=cfg.synth_backgrounds,
        config=EngineConfig(scene=SceneConfig(image_size=size)),
        seed=cfg.seed,
    )
    g = torch.Generator(device=info.device)
    for step in steps:
        # Seeded per step (and rank) so a resumed run renders the same scenes.
        g.manual_seed(int(np.random.default_rng([cfg.seed, info.rank, step, 7]).integers(2**62)))
        # Yield outside no_grad: a generator suspended inside it would leave grad mode off in
        # the training loop.
        with torch.no_grad():
            batch = engine.sample(batch_size, g)
        yield batch


def _dataset_iter(
    cfg: FitConfig,
    src: SourceSpec,
    model_cfg: DFLConfig,
    info: distributed.DistInfo,
    steps: Iterator[int],
    batch_size: int,
    seed: int,
) -> Iterator[dict[str, torch.Tensor]]:
    from torch.utils.data import DataLoader

    from dfl_infer.training.data import AugmentConfig, InterHandDataset, StepBatchSampler

    assert src.root is not None
    augment = (
        AugmentConfig(hand_crop_prob=cfg.hand_crops, partial_share=cfg.partial_share)
        if cfg.augment
        else None
    )
    size, box_scale, upright = model_cfg.input_size, model_cfg.box_scale, model_cfg.upright
    ds = InterHandDataset(src.root, cfg.split, size, box_scale, augment=augment, upright=upright)
    keep_hand_types(ds, cfg.hand_types)
    sampler = StepBatchSampler(len(ds), batch_size, seed, info.rank, steps=steps)
    loader = DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=cfg.num_workers,
        pin_memory=info.device.type == "cuda",
    )
    yield from loader


def keep_hand_types(ds: InterHandDataset, types: tuple[str, ...]) -> None:
    """Keep only ``ds``'s images of these hand types (all when ``types`` is empty), in place."""
    if not types:
        return
    ds.samples = [s for s in ds.samples if s.hand_type in types]
    if not ds.samples:
        raise ValueError(f"{ds.root}/{ds.split}: no {'/'.join(types)} images to train on")


def split_batch(batch_size: int, weights: list[float]) -> list[int]:
    """Items of each source in a mixed batch: proportional to the weights (largest remainders),
    at least one each."""
    if batch_size < len(weights):
        raise ValueError(f"--mix-batches needs --batch-size >= {len(weights)} (one per source)")
    w = np.asarray(weights, dtype=np.float64)
    exact = 1 + (batch_size - len(w)) * w / w.sum()
    sizes = np.floor(exact).astype(int)
    for i in np.argsort(sizes - exact)[: batch_size - sizes.sum()]:
        sizes[i] += 1
    return [int(v) for v in sizes]


def build_sources(
    cfg: FitConfig, model_cfg: DFLConfig, info: distributed.DistInfo, start_step: int
) -> tuple[list[SourceSpec], list[Iterator[dict[str, torch.Tensor]]]]:
    """One endless batch iterator per source, each yielding only the steps it serves (every step,
    with its share of the batch, under ``mix_batches``)."""
    specs = parse_data(cfg.data)
    weights = [s.weight for s in specs]
    sizes = split_batch(cfg.batch_size, weights) if cfg.mix_batches else None
    iters = []
    for j, src in enumerate(specs):
        steps = (
            itertools.count(start_step) if sizes else _steps_of(j, cfg.seed, start_step, weights)
        )
        n = sizes[j] if sizes else cfg.batch_size
        if src.kind == "synth":
            iters.append(_synth_iter(cfg, model_cfg.input_size, info, steps, n))
        else:
            # Mixed sources draw every step: a seed of their own keeps them uncorrelated.
            seed = cfg.seed + 7919 * (j + 1) if sizes else cfg.seed
            iters.append(_dataset_iter(cfg, src, model_cfg, info, steps, n, seed))
    return specs, iters


def loss_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The loss's keys of a batch, with the defaults of ``LOSS_KEY_DEFAULTS`` filled in, so that
    batches of different sources can be concatenated."""
    out = {}
    for key in LOSS_KEYS:
        if key in batch:
            out[key] = batch[key]
            continue
        default = LOSS_KEY_DEFAULTS[key]
        if isinstance(default, str):
            out[key] = batch[default].clone()
        else:
            value, shape = default
            b = batch["image"].shape[0]
            out[key] = torch.full((b, *shape), value, device=batch["image"].device)
    return out


def next_batch(
    cfg: FitConfig,
    step: int,
    iters: list[Iterator[dict[str, torch.Tensor]]],
    weights: list[float],
    device: torch.device,
) -> tuple[dict[str, torch.Tensor], int]:
    """The batch of ``step`` on ``device`` and the index of its source (-1: mixed from all)."""
    if not cfg.mix_batches:
        j = choose_source(cfg.seed, step, weights)
        return {k: v.to(device, non_blocking=True) for k, v in next(iters[j]).items()}, j
    parts = [
        loss_batch({k: v.to(device, non_blocking=True) for k, v in next(it).items()})
        for it in iters
    ]
    return {k: torch.cat([p[k] for p in parts]) for k in LOSS_KEYS}, -1


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, loaded without unpickling arbitrary objects."""
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state


def _trim_metrics(path: Path, last_step: int) -> None:
    """Drop logged steps after ``last_step`` (they will be logged again by the resumed run)."""
    if not path.is_file():
        return
    keep = [
        ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= last_step
    ]
    path.write_text("".join(ln + "\n" for ln in keep))


def build_model(cfg: FitConfig) -> DFLModel:
    if cfg.init:
        model = DFLModel.from_pretrained(cfg.init, map_location="cpu")
        logger.info("initialised from %s (%s)", cfg.init, model.config.backbone)
    else:
        if cfg.config not in PRESET_NAMES:
            raise ValueError(f"unknown --config {cfg.config!r}; expected one of {PRESET_NAMES}")
        overrides: dict[str, Any] = {"input_size": cfg.input_size} if cfg.input_size else {}
        if cfg.pair_loss == "matched":
            overrides["handedness_head"] = True
        if cfg.upright:
            overrides["upright"] = True
        model = DFLModel(getattr(DFLConfig, cfg.config)(**overrides))
    if cfg.init_backbone:
        from dfl_infer.training.init_backbone import init_backbone

        init_backbone(model, cfg.init_backbone, cfg.init_backbone_file)
    changes: dict[str, Any] = {}
    if cfg.input_size and model.config.input_size != cfg.input_size:
        changes["input_size"] = cfg.input_size
    if cfg.upright and not model.config.upright:
        changes["upright"] = True
    if cfg.pair_loss == "matched" and not model.config.handedness_head:
        changes["handedness_head"] = True
    if changes:
        model = rebuilt(model, changes)
    freeze_trunk(model, cfg.freeze_trunk)
    return model.train()


def rebuilt(model: DFLModel, changes: dict[str, Any]) -> DFLModel:
    """``model`` rebuilt with its config changed by ``changes``, every weight carried over.
    ``input_size`` and ``upright`` change no weight's shape (the position features are computed,
    not stored); ``handedness_head`` adds the head's weights, freshly initialised. Any other
    difference between the two state dicts is an error."""
    grown = DFLModel(dataclasses.replace(model.config, **changes))
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    new_head = "decoder.handedness." if changes.get("handedness_head") else None
    if unexpected or any(new_head is None or not k.startswith(new_head) for k in missing):
        raise ValueError(
            f"cannot rebuild with {changes}: missing {missing}, unexpected {unexpected}"
        )
    logger.info("init weights rebuilt with %s", changes)
    return grown.train(model.training)


def freeze_trunk(model: DFLModel, which: str) -> None:
    """Keep (part of) the pretrained MediaPipe trunk fixed: ``early`` (up to stride 8) or
    ``all``. Frozen layers get no gradient, and no backward pass runs through them."""
    if which not in FREEZE_CHOICES:
        raise ValueError(f"--freeze-trunk must be one of {FREEZE_CHOICES}, got {which!r}")
    if which == "none":
        return
    trunk = model.encoder.trunk
    if trunk is None:
        raise ValueError("--freeze-trunk applies to the MediaPipe trunk (the mphand preset)")
    prefixes = ("",) if which == "all" else EARLY_TRUNK
    frozen = 0
    for name, p in trunk.named_parameters():
        if name.startswith(prefixes):
            p.requires_grad_(False)
            frozen += p.numel()
    logger.info("froze %d trunk parameters (%s)", frozen, which)


def keep_freed_memory() -> None:
    """Stop glibc from returning freed memory to the OS after every step: on CPU, mapping and
    faulting in the same buffers again slowed training steps down. No-op where
    the C library is not glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_max = -1, -4
    mallopt(m_mmap_max, 0)
    mallopt(m_trim_threshold, 2**30)


def check_config(cfg: FitConfig) -> None:
    """Fail on settings no run can use, before any process group starts or data loads."""
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ValueError("--steps and --batch-size must be >= 1")
    if not 0.0 <= cfg.hand_crops <= 1.0:  # also rejects NaN
        raise ValueError(f"--hand-crops must be a share in [0, 1], got {cfg.hand_crops!r}")
    if not 0.0 <= cfg.partial_share <= 1.0:
        raise ValueError(f"--partial-share must be a share in [0, 1], got {cfg.partial_share!r}")
    if not cfg.occluded_weight > 0:  # also rejects NaN
        raise ValueError(f"--occluded-weight must be > 0, got {cfg.occluded_weight}")
    if cfg.stop_after_minutes is not None and not cfg.stop_after_minutes > 0:
        raise ValueError(f"--stop-after-minutes must be > 0, got {cfg.stop_after_minutes}")
    for guard in cfg.best_guard:
        parse_guard(guard, len(cfg.val))
    parse_data(cfg.data)


def fit(cfg: FitConfig) -> Path:
    """Train as ``cfg`` says; returns the output folder. Launch under torchrun for DDP."""
    check_config(cfg)
    info = distributed.setup(cfg.device)
    try:
        out = _fit(cfg, info)
        # Every rank waits for the others (rank 0 saves last) before the group is torn down: a
        # rank that tears it down and exits while another still talks to it can abort that one.
        distributed.barrier(info)
        return out
    finally:
        distributed.cleanup()


@dataclass
class _Trainer:
    """What a training run holds from one step to the next."""

    cfg: FitConfig
    info: distributed.DistInfo
    model: DFLModel
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: EMA | None
    validator: Validator | None

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)


def _fit(cfg: FitConfig, info: distributed.DistInfo) -> Path:
    out = Path(cfg.out)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    trainer = _build_trainer(cfg, info)
    start = _resume(trainer)
    if info.is_main:
        _reset_metrics(out / METRICS_NAME, start)
    _train(trainer, start)
    return out


def _build_trainer(cfg: FitConfig, info: distributed.DistInfo) -> _Trainer:
    """The seeded model on its device, the optimizer, the schedule, EMA and the validator."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    cuda = info.device.type == "cuda"
    if not cuda:
        keep_freed_memory()
    validator = Validator(cfg, model.config) if cfg.val and info.is_main else None
    model.to(info.device)
    if cuda:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.steps))
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    return _Trainer(cfg, info, model, optimizer, scheduler, ema, validator)


def _resume(t: _Trainer) -> int:
    """With ``--resume``, restore the checkpoint's state into ``t``; returns the step to continue
    after (0: from scratch)."""
    ckpt_path = t.out / CHECKPOINT_NAME
    if not t.cfg.resume:
        return 0
    if not ckpt_path.is_file():
        logger.info("no %s yet: starting from scratch", ckpt_path)
        return 0
    state = load_checkpoint(ckpt_path)
    saved_cfg = DFLConfig.from_dict(state["model_config"], source=str(ckpt_path))
    model_cfg = t.model.config
    if dataclasses.replace(saved_cfg, metadata={}) != dataclasses.replace(model_cfg, metadata={}):
        raise ValueError(f"{ckpt_path} was trained with another architecture: {saved_cfg}")
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    if t.ema is not None:
        if state.get("ema") is None:
            t.ema = EMA(t.model, t.cfg.ema_decay)
        else:
            t.ema.load_state_dict(state["ema"])
    _set_rng_state(state["rng"][min(t.info.rank, len(state["rng"]) - 1)])
    start = int(state["step"])
    if t.validator is not None:
        t.validator.best = state.get("best")
    logger.info("resumed from %s at step %d", ckpt_path, start)
    return start


def _reset_metrics(path: Path, start: int) -> None:
    """A fresh run starts a new metrics.jsonl; a resumed one drops the steps it will redo."""
    if start == 0:
        path.unlink(missing_ok=True)
    else:
        _trim_metrics(path, start)


def _train(t: _Trainer, start: int) -> None:
    """Steps ``start + 1`` .. the last one, logging and saving on their schedules."""
    from tqdm import tqdm

    cfg, info, model = t.cfg, t.info, t.model
    dev = info.device
    net: nn.Module = model
    if info.distributed:
        cuda = dev.type == "cuda"
        net = nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if cuda else None)
    loss_cfg = LossConfig(
        pair_loss=cfg.pair_loss, w_attn=cfg.attn_loss, occluded_weight=cfg.occluded_weight
    )
    loss_fn = DFLLoss(loss_cfg, input_size=model.config.input_size)
    specs, iters = build_sources(cfg, model.config, info, start + 1)
    weights = [s.weight for s in specs]
    end = min(cfg.steps, cfg.stop_after) if cfg.stop_after else cfg.steps
    minutes = cfg.stop_after_minutes
    deadline = time.monotonic() + 60.0 * minutes if minutes else None
    bar = tqdm(
        total=cfg.steps,
        initial=start,
        disable=not (info.is_main and cfg.progress),
        desc="fit",
        dynamic_ncols=True,
    )
    rate = _StepRate()
    for step in range(start + 1, end + 1):
        batch, j = next_batch(cfg, step, iters, weights, dev)
        if batch["image"].shape[-1] != model.config.input_size:
            raise ValueError(
                f"{specs[j].kind} gives {batch['image'].shape[-1]}px images; the model takes "
                f"{model.config.input_size}px"
            )
        losses, grad_norm = _train_step(t, net, loss_fn, batch)
        rate.steps += 1
        bar.update(1)
        last = step == end
        if deadline is not None and not last and step % cfg.log_every == 0:
            # Looked at on logged steps only (the log syncs the device anyway): every rank stops
            # at the same step, the first logged one at which any rank is past the time.
            last = distributed.any_rank(time.monotonic() >= deadline, info)
            if last:
                logger.info("stopping at step %d: %g minutes are up", step, minutes)
        if step % cfg.log_every == 0 or last:
            source = specs[j].kind if j >= 0 else "mix"
            loss = _log_step(t, step, losses, grad_norm, source, rate)
            bar.set_postfix(loss=f"{loss:.3g}")
        if step % cfg.save_every == 0 or last:
            _save(cfg, info, model, t.ema, t.optimizer, t.scheduler, step, t.validator)
        if last:
            break
    bar.close()
    if start >= end and info.is_main:
        logger.info("nothing to do: the checkpoint is already at step %d", start)


def _train_step(
    t: _Trainer, net: nn.Module, loss_fn: DFLLoss, batch: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One optimizer step on ``batch``; returns the loss terms and the gradient norm."""
    cuda = t.info.device.type == "cuda"
    x = normalize(batch["image"], t.model.config, channels_last=cuda)
    with autocast(t.info.device):
        outputs = net(x)
    losses = loss_fn(outputs, batch)  # float32 outside autocast
    t.optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    grad_norm = (
        torch.nn.utils.clip_grad_norm_(t.model.parameters(), t.cfg.grad_clip)
        if t.cfg.grad_clip > 0
        else torch.tensor(float("nan"))
    )
    t.optimizer.step()
    t.scheduler.step()
    if t.ema is not None:
        t.ema.update(t.model)
    return losses, grad_norm


@dataclass
class _StepRate:
    """Optimizer steps since the last log line, and when that was."""

    steps: int = 0
    since: float = field(default_factory=time.perf_counter)

    def per_second(self) -> float:
        now = time.perf_counter()
        rate = self.steps / max(now - self.since, 1e-9)
        self.steps, self.since = 0, now
        return rate


def _log_step(
    t: _Trainer,
    step: int,
    losses: dict[str, torch.Tensor],
    grad_norm: torch.Tensor,
    source: str,
    rate: _StepRate,
) -> float:
    """Average the loss terms over ranks, refuse a non-finite loss and append the step's record
    to metrics.jsonl (rank 0); returns the loss."""
    values = {k: float(v.detach()) for k, v in losses.items()}
    values = distributed.mean_over_ranks(values, t.info)
    record = {
        "step": step,
        **values,
        "lr": t.optimizer.param_groups[0]["lr"],
        "grad_norm": float(grad_norm),
        "source": source,
        "steps_per_s": rate.per_second(),
    }
    if not math.isfinite(values["loss"]):
        raise FloatingPointError(f"loss is {values['loss']} at step {step}")
    if t.info.is_main:
        with (t.out / METRICS_NAME).open("a") as f:
            f.write(json.dumps(record) + "\n")
    return values["loss"]


def _save(
    cfg: FitConfig,
    info: distributed.DistInfo,
    model: DFLModel,
    ema: EMA | None,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    step: int,
    validator: Validator | None,
) -> None:
    # Every rank's RNG state goes into the checkpoint so each can resume its own stream.
    rng = _rng_state()
    if info.distributed:
        gathered: list[Any] = [None] * info.world_size
        torch.distributed.all_gather_object(gathered, rng)
        rngs = gathered
    else:
        rngs = [rng]
    if not info.is_main:
        return
    out = Path(cfg.out)
    meta = {"trained_steps": step, "data": cfg.data, "batch_size": cfg.batch_size * info.world_size}
    # The init weights' notes carry over, except how they were selected: that was about them.
    kept = {k: v for k, v in model.config.metadata.items() if k != "selected_by"}
    if cfg.init:
        meta["init"] = str(cfg.init)
    export = DFLModel(dataclasses.replace(model.config, metadata={**kept, **meta}))
    export.load_state_dict(ema.state_dict() if ema is not None else model.state_dict())
    export.save_pretrained(out)
    if validator is not None:
        validator(export, step, out)
    state = {
        "step": step,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "ema": None if ema is None else {k: v.cpu() for k, v in ema.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": rngs,
        "model_config": model.config.to_dict(),
        "fit_config": dataclasses.asdict(cfg),
        "best": None if validator is None else validator.best,
    }
    _atomic_save(state, out / CHECKPOINT_NAME)
    logger.debug("checkpoint at step %d", step)


class Validator:
    """Scores the weights at every save on the ``--val`` folders (no augmentation, GT-box crops,
    ``dfl-train evaluate``'s metrics), logs them to metrics.jsonl and keeps the weights with the
    lowest ``best_metric`` of the first folder in ``OUT/best``."""

    def __init__(self, cfg: FitConfig, model_cfg: DFLConfig) -> None:
        from dfl_infer.training.data import InterHandDataset

        self.metric = cfg.best_metric
        self.best: float | None = None
        self.guards = [parse_guard(g, len(cfg.val)) for g in cfg.best_guard]
        self.datasets: dict[str, InterHandDataset] = {}
        for spec in cfg.val:
            root, split = parse_val(spec)
            name = f"{Path(root).name or root}:{split}"
            if name in self.datasets:
                raise ValueError(f"--val {spec!r}: {name} is already a --val folder")
            self.datasets[name] = InterHandDataset(
                root,
                split,
                model_cfg.input_size,
                model_cfg.box_scale,
                augment=None,
                upright=model_cfg.upright,
            )

    def __call__(self, model: DFLModel, step: int, out: Path) -> dict[str, dict[str, float]]:
        from dfl_infer.training.evaluate import evaluate_predictions, predict_dataset

        results = {}
        for name, ds in self.datasets.items():
            pred = predict_dataset(model, ds, batch_size=16)
            results[name] = evaluate_predictions(
                ds, pred.joints_25d, pred.hand_presence, pred.rel_root_depth
            )
        model.train()
        first = next(iter(results.values()))
        value = first.get(self.metric)
        if value is None:
            raise ValueError(f"--best-metric {self.metric!r} is not one of {sorted(first)}")
        improved = math.isfinite(value) and (self.best is None or value < self.best)
        scores = list(results.values())
        for index, metric, limit, at_least in self.guards:
            guarded = scores[index].get(metric)
            if guarded is None:
                raise ValueError(f"--best-guard: {metric!r} is not one of {sorted(scores[index])}")
            within = guarded >= limit if at_least else guarded <= limit
            if not (math.isfinite(guarded) and within):
                if improved:
                    side = "<" if at_least else ">"
                    logger.info(
                        "step %d: %s = %.4g %s %g, not kept", step, metric, guarded, side, limit
                    )
                improved = False
        with (out / METRICS_NAME).open("a") as f:
            f.write(json.dumps({"step": step, "val": results, "best": improved}) + "\n")
        logger.info("step %d: %s = %.4g%s", step, self.metric, value, " (best)" if improved else "")
        if improved:
            self.best = float(value)
            model.save_pretrained(out / BEST_DIR)
        return results


def parse_guard(spec: str, n_val: int) -> tuple[int, str, float, bool]:
    """``N:METRIC:MAX`` or ``N:METRIC:>=MIN`` -> (0-based --val index, metric, limit, whether the
    limit is a minimum); ValueError names what is wrong."""
    malformed = ValueError(
        f"--best-guard {spec!r}: not N:METRIC:MAX or N:METRIC:>=MIN "
        "(e.g. 2:mean_2d_box_pct:4, 2:both_found:>=0.95)"
    )
    parts = spec.split(":")
    try:
        bound = parts[2]
        at_least = bound.startswith(">=")
        index, metric, limit = int(parts[0]) - 1, parts[1], float(bound.removeprefix(">="))
    except (ValueError, IndexError):
        raise malformed from None
    if len(parts) != 3 or not metric or not math.isfinite(limit):
        raise malformed
    if not 0 <= index < n_val:
        raise ValueError(f"--best-guard {spec!r}: there are {n_val} --val folders")
    return index, metric, limit, at_least


def parse_val(spec: str) -> tuple[str, str]:
    """``ROOT`` or ``ROOT:SPLIT`` (default split: test)."""
    root, sep, split = spec.rpartition(":")
    if not sep or "/" in split or not split:
        return spec, "test"
    return root, split


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "fit",
        help="train a DFL model",
        description="Train a DFL model on synthetic and/or InterHand-layout data.",
    )
    p.add_argument("--config", default="tiny", choices=PRESET_NAMES)
    p.add_argument(
        "--data",
        default="synth",
        help="comma-separated sources: synth, interhand:ROOT, folder:ROOT, each with an "
        "optional @WEIGHT (share of the steps), e.g. synth@3,interhand:/ih@1",
    )
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=8, help="per process")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--init", default=None, help="start from these weights (folder or Hub id)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--grad-clip", type=float, default=5.0)
    p.add_argument("--ema", type=float, default=0.0, help="EMA decay (0: off)")
    p.add_argument("--split", default="train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--stop-after", type=int, default=None)
    p.add_argument(
        "--stop-after-minutes",
        type=float,
        default=None,
        metavar="M",
        help="stop, with a save, at the first logged step (--log-every) that ends M minutes "
        "after training started (time-limited jobs; the schedule keeps the full --steps "
        "horizon, as with --stop-after)",
    )
    p.add_argument("--synth-mesh", default=None)
    p.add_argument("--synth-backgrounds", default=None)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-augment", action="store_true", help="no augmentation of dataset sources")
    p.add_argument(
        "--init-backbone",
        choices=("mediapipe", "imagenet"),
        default=None,
        help="pretrained encoder trunk: mediapipe (MediaPipe's hand-landmark network, mphand "
        "preset; read from the detector bundle) or imagenet (torchvision's ResNet weights)",
    )
    p.add_argument(
        "--init-backbone-file",
        default=None,
        help="its file instead of the default: a .tflite / .task / mediapipe wheel, or a ResNet "
        "state dict (.pth / .safetensors)",
    )
    p.add_argument(
        "--freeze-trunk",
        choices=FREEZE_CHOICES,
        default="none",
        help="keep the MediaPipe trunk fixed: early (up to stride 8) or all",
    )
    p.add_argument(
        "--mix-batches",
        action="store_true",
        help="every batch takes items from every source, in proportion to the weights",
    )
    p.add_argument(
        "--val",
        action="append",
        default=[],
        metavar="ROOT[:SPLIT]",
        help="InterHand-layout folder scored at every save (repeatable; split "
        "default test); the first one picks OUT/best",
    )
    p.add_argument(
        "--best-metric",
        default="mean_2d_box_pct",
        help="metric of the first --val folder that picks OUT/best (lower is better)",
    )
    p.add_argument(
        "--best-guard",
        action="append",
        default=[],
        metavar="N:METRIC:MAX",
        help="a save becomes OUT/best only while --val folder N (1-based) has METRIC <= MAX, "
        "or METRIC >= MIN when written N:METRIC:>=MIN (repeatable), e.g. 2:mean_2d_box_pct:4 "
        "keeps the real-photo error in bounds, 2:both_found:>=0.95 the two-hand recall",
    )
    p.add_argument(
        "--hand-types",
        default="",
        metavar="TYPES",
        help="train only on images of these comma-separated hand types (right, left, "
        "interacting), e.g. right,left for single hands; validation folders are not filtered",
    )
    p.add_argument(
        "--pair-loss",
        choices=PAIR_LOSSES,
        default="matched",
        help="matched (default): each image scored under the cheaper of the two slot "
        "assignments, with a handedness output per slot (added to --init weights without one); "
        "fixed: the paper's slots, 0-20 the right hand and 21-41 the left",
    )
    p.add_argument(
        "--upright",
        action="store_true",
        help="train (and save) a model whose crops are turned upright by the hand's direction "
        "(DFLConfig.upright); with --init, the init weights get the new crop contract",
    )
    p.add_argument(
        "--attn-loss",
        type=float,
        default=0.0,
        metavar="W",
        help="weight of the cross-entropy between each joint query's initial attention and a "
        "Gaussian at its labelled joint (0: off, the paper's loss)",
    )
    p.add_argument(
        "--occluded-weight",
        type=float,
        default=1.0,
        metavar="W",
        help="weight of the 2D joint terms for joints under another hand (the composites' "
        "joint_occluded labels; 1: like any other joint)",
    )
    p.add_argument(
        "--hand-crops",
        type=float,
        default=0.0,
        metavar="P",
        help="share of two-hand images (folder / InterHand sources) cropped around one of their "
        "hands, as the predictor's per-hand pass sees them (default 0)",
    )
    p.add_argument(
        "--partial-share",
        type=float,
        default=0.5,
        metavar="S",
        help="presence labels follow the augmented crop: a hand with none of its joints inside "
        "is absent, one with fewer than this share inside has no presence label (default 0.5; "
        "0: every annotated hand present)",
    )
    p.set_defaults(func=_run)


def _hand_types(spec: str) -> tuple[str, ...]:
    types = tuple(t.strip() for t in spec.split(",") if t.strip())
    bad = [t for t in types if t not in ("right", "left", "interacting")]
    if bad:
        raise ValueError(f"--hand-types takes right, left and interacting, got {', '.join(bad)}")
    return types


def _run(args: argparse.Namespace) -> int:
    cfg = FitConfig(
        out=args.out,
        data=args.data,
        config=args.config,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        grad_clip=args.grad_clip,
        ema_decay=args.ema,
        device=args.device,
        resume=args.resume,
        init=args.init,
        split=args.split,
        seed=args.seed,
        num_workers=args.num_workers,
        log_every=args.log_every,
        save_every=args.save_every,
        input_size=args.input_size,
        stop_after=args.stop_after,
        stop_after_minutes=args.stop_after_minutes,
        synth_mesh=args.synth_mesh,
        synth_backgrounds=args.synth_backgrounds,
        progress=not args.no_progress,
        augment=not args.no_augment,
        init_backbone=args.init_backbone,
        init_backbone_file=args.init_backbone_file,
        freeze_trunk=args.freeze_trunk,
        mix_batches=args.mix_batches,
        val=tuple(args.val),
        best_metric=args.best_metric,
        best_guard=tuple(args.best_guard),
        hand_types=_hand_types(args.hand_types),
        pair_loss=args.pair_loss,
        upright=args.upright,
        attn_loss=args.attn_loss,
        occluded_weight=args.occluded_weight,
        hand_crops=args.hand_crops,
        partial_share=args.partial_share,
    )
    fit(cfg)  # check_config fails on bad settings before any process group starts
    return 0
