"""``dfl-train composite``: two-hand training images made of real, pseudo-labelled hands.

Real two-hand photos with labels for both hands are what the package lacks most (the
pseudo-labelled ``real-hands`` photos hold one interacting annotation in 1,471). A composite takes
a photo with one labelled hand (the *base*) and a hand cut out of another photo (the *donor*),
and pastes the donor over or beside the base hand:

- **Cut-out.** The donor's mask comes from its landmarks: GrabCut (OpenCV) seeded with the
  skeleton drawn thick and the palm polygon as sure foreground, the dilated convex hull of the
  joints as probable foreground and everything farther as background; the largest component that
  holds the skeleton is kept and its edge feathered.
- **Placement.** The donor is scaled to the base hand's size (x0.8-1.15), turned by up to
  +-40 degrees, mirrored when it has the base hand's side (so the pair is a right and a left
  hand), and its centre put at a random distance of 0.25-0.9 hand sizes from the base hand's
  centre, in a random direction: from heavy overlap to side by side. In ``behind_prob`` of the
  composites the base hand is then pasted back on top with its own mask, so the donor is the
  covered one. The base photo's other labelled hands (a photo may hold two hands that do not
  touch, each its own annotation) must stay out of the square the pair's crop can cover
  (``clear_margin`` times the pair's box, the evaluation crop turned to any angle); a draw that
  would leave one of them there, unlabelled beside the labelled pair, is drawn again.
- **Labels.** Both hands' 2D joints (the covered hand's covered joints stay labels, as in
  InterHand2.6M), relative depths from the sources (mirroring keeps z; the in-plane turn and the
  mirror move the metric x, y the same way as the pixels), each hand's wrist depth fitted to its
  new 2D size as ``pseudolabel`` does (``hand_camera_joints``), so the 3D joints reproject exactly
  onto the 2D labels. The depth between the two hands is unknown: ``root_depth_valid`` 0.
  ``depth_confidence`` is the sources' (MediaPipe's depths: 0.5). No part masks are written (the
  segmentation loss is masked for these images). ``joint_occluded`` (42) marks the covered
  hand's joints that lie under the covering hand's pasted mask (``fit --occluded-weight``).

Written once, with a fixed seed, in the InterHand layout the loaders read (``hand_type``
"interacting", ``source`` "composite", and the file names of both source photos). Made from a
training folder it is training data; made from the held-out photos' folder (``dfl-train
pseudolabel --subset holdout``) it is the held-out composite split, which never meets training.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import logging
import multiprocessing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfl_infer.crop import points_box
from dfl_infer.joints import HAND_BONES, NUM_HAND_JOINTS, NUM_JOINTS, WRIST
from dfl_infer.lift import Intrinsics
from dfl_infer.training.data import Sample, load_samples
from dfl_infer.training.interhand import AnnotationWriter, camera_fields, images_dir
from dfl_infer.training.pseudolabel import hand_camera_joints

logger = logging.getLogger(__name__)

# The palm polygon of one hand, in InterHand's per-hand order: wrist, thumb CMC, then the MCP
# joints of the index, middle, ring and little fingers.
PALM = (WRIST, 3, 7, 11, 15, 19)
DEFAULT_SEED = 5
JPEG_QUALITY = 92
GRABCUT_SIDE = 128  # pixels across the window GrabCut runs on


@dataclass(frozen=True)
class CompositeConfig:
    """Ranges of the random placement (see the module docstring)."""

    scale: tuple[float, float] = (0.8, 1.15)  # donor size / base hand size
    max_turn_deg: float = 40.0
    distance: tuple[float, float] = (0.25, 0.9)  # centre to centre, in base hand sizes
    behind_prob: float = 0.35  # the base hand pasted back over the donor
    min_hand_px: float = 24.0  # smaller source hands are not used
    # The base photo's other hands stay outside a square of this many times the pair's box side
    # around its centre: the crop (x1.25 of the box) turned to any angle (upright crops) is
    # within 1.25 * sqrt(2) = 1.77 of it.
    clear_margin: float = 1.8
    max_draws: int = 50  # draws of (base, donor, placement) per composite before giving up


@dataclass(frozen=True)
class Hand:
    """One labelled hand of a source annotation: its photo, side (0 right, 1 left), 2D joints
    (21, 2) pixels, camera-frame joints (21, 3) mm, depth weights (21,), and the boxes (k, 4:
    x0, y0, x1, y1 pixels) of the other labelled hands in its photo."""

    image_path: Path
    side: int
    uv: np.ndarray
    xyz: np.ndarray
    depth_weight: np.ndarray
    others: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))

    @property
    def size(self) -> float:
        box = points_box(self.uv)
        return float(max(box[2] - box[0], box[3] - box[1]))


def single_hands(samples: list[Sample], min_px: float) -> list[Hand]:
    """The hands of the single-hand annotations whose 21 joints are all labelled, whose side is
    sure (``hand_type_valid``) and whose box is at least ``min_px`` pixels; each knows the boxes
    of the other labelled hands (any annotation) of its photo."""
    boxes: dict[Path, list[tuple[int, np.ndarray]]] = {}
    for k, s in enumerate(samples):
        for h in np.flatnonzero(s.hand_valid):
            sl = slice(h * NUM_HAND_JOINTS, (h + 1) * NUM_HAND_JOINTS)
            uv = s.joints_img[sl][s.joint_valid[sl]]
            boxes.setdefault(s.image_path, []).append((k, points_box(uv)))
    hands = []
    for k, s in enumerate(samples):
        if s.hand_type not in ("right", "left") or not s.hand_type_valid:
            continue
        side = 0 if s.hand_type == "right" else 1
        sl = slice(side * NUM_HAND_JOINTS, (side + 1) * NUM_HAND_JOINTS)
        if not s.joint_valid[sl].all():
            continue
        others = [box for j, box in boxes.get(s.image_path, []) if j != k]
        hand = Hand(
            s.image_path,
            side,
            s.joints_img[sl],
            s.joints_cam[sl],
            s.depth_weight[sl],
            np.array(others, dtype=np.float64).reshape(-1, 4),
        )
        if hand.size >= min_px:
            hands.append(hand)
    return hands


def hand_mask(image: np.ndarray, uv: np.ndarray, iterations: int = 3) -> np.ndarray:
    """(H, W) float32 alpha in [0, 1] of the hand whose joints are ``uv`` (21, 2) pixels in the RGB
    ``image``: GrabCut seeded by the skeleton (module docstring), computed in a window around the
    hand, feathered at the edge."""
    import cv2

    h, w = image.shape[:2]
    box = points_box(uv)
    size = max(box[2] - box[0], box[3] - box[1], 1.0)
    pad = 0.45 * size
    x0, y0 = int(max(box[0] - pad, 0)), int(max(box[1] - pad, 0))
    x1, y1 = int(min(box[2] + pad, w)), int(min(box[3] + pad, h))
    alpha = np.zeros((h, w), np.float32)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return alpha
    win = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])  # GrabCut wants BGR
    pts = np.round(uv - [x0, y0]).astype(np.int32)
    thick = max(2, int(round(0.07 * size)))
    mask: np.ndarray = np.full(win.shape[:2], cv2.GC_BGD, np.uint8)
    hull = cv2.convexHull(pts)
    near: np.ndarray = np.zeros_like(mask)
    cv2.fillConvexPoly(near, hull, 1)
    near = cv2.dilate(near, np.ones((3, 3), np.uint8), iterations=max(1, int(0.12 * size)))
    mask[near > 0] = cv2.GC_PR_FGD
    sure = np.zeros_like(mask)
    for child, parent in HAND_BONES:
        cv2.line(sure, tuple(map(int, pts[child])), tuple(map(int, pts[parent])), 1, thick)
    cv2.fillPoly(sure, [pts[list(PALM)]], 1)
    mask[sure > 0] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    # GrabCut at most GRABCUT_SIDE pixels across (its cost grows with the area); the mask is
    # scaled back and its edge feathered below anyway.
    f = min(1.0, GRABCUT_SIDE / max(win.shape[:2]))
    small = (max(1, round(win.shape[1] * f)), max(1, round(win.shape[0] * f)))
    win_s = cv2.resize(win, small, interpolation=cv2.INTER_AREA) if f < 1 else win
    mask_s = cv2.resize(mask, small, interpolation=cv2.INTER_NEAREST) if f < 1 else mask
    try:
        # No rectangle with GC_INIT_WITH_MASK (OpenCV takes None; its stubs do not say so).
        cv2.grabCut(win_s, mask_s, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
    except cv2.error:  # a degenerate window (e.g. one colour): keep the seeds
        pass
    if f < 1:
        size_full = (win.shape[1], win.shape[0])
        mask = cv2.resize(mask_s, size_full, interpolation=cv2.INTER_NEAREST)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    fg |= sure
    # The component that holds the skeleton: GrabCut's stray background blobs are dropped.
    n, labels = cv2.connectedComponents(fg)
    if n > 2:
        keep = np.bincount(labels[sure > 0].ravel(), minlength=n)
        keep[0] = 0
        fg = (labels == int(keep.argmax())).astype(np.uint8)
    k = max(3, int(0.04 * size) | 1)
    soft = cv2.GaussianBlur(fg.astype(np.float32), (k, k), 0)
    alpha[y0:y1, x0:x1] = np.clip(soft, 0.0, 1.0)
    return alpha


def placement(
    base: Hand, donor: Hand, rng: np.random.Generator, cfg: CompositeConfig
) -> tuple[np.ndarray, bool]:
    """The (2, 3) affine from the donor's photo to the base photo, and whether it mirrors."""
    mirror = donor.side == base.side
    scale = rng.uniform(*cfg.scale) * base.size / donor.size
    turn = np.deg2rad(rng.uniform(-cfg.max_turn_deg, cfg.max_turn_deg))
    c, s = np.cos(turn), np.sin(turn)
    linear = scale * np.array([[c, -s], [s, c]]) @ np.diag([-1.0 if mirror else 1.0, 1.0])
    angle = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(*cfg.distance) * base.size * np.array([np.cos(angle), np.sin(angle)])
    target = base.uv.mean(0) + offset
    shift = target - linear @ donor.uv.mean(0)
    return np.column_stack([linear, shift]), mirror


def clear_of_others(base: Hand, donor: Hand, affine: np.ndarray, cfg: CompositeConfig) -> bool:
    """Whether every other labelled hand of the base photo stays outside the square of side
    ``cfg.clear_margin`` x the pair's box side around the pair's box centre (the pasted donor at
    ``affine``)."""
    if not len(base.others):
        return True
    pair = np.vstack([base.uv, donor.uv @ affine[:, :2].T + affine[:, 2]])
    box = points_box(pair)
    centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2
    half = cfg.clear_margin * max(box[2] - box[0], box[3] - box[1]) / 2
    lo, hi = centre - half, centre + half
    o = base.others
    overlaps = (o[:, 0] < hi[0]) & (o[:, 2] > lo[0]) & (o[:, 1] < hi[1]) & (o[:, 3] > lo[1])
    return not bool(overlaps.any())


def moved_hand(donor: Hand, affine: np.ndarray, mirror: bool, intr: Intrinsics) -> np.ndarray:
    """(21, 3) camera-frame mm joints of the donor after ``affine`` in a photo with ``intr``:
    its metric offsets from the wrist turned and mirrored as the pixels were (z kept), the wrist
    depth fitted to the new 2D size; they reproject exactly onto the moved 2D joints."""
    uv = donor.uv @ affine[:, :2].T + affine[:, 2]
    linear = affine[:, :2] / np.sqrt(abs(np.linalg.det(affine[:, :2])))  # rotation (x mirror)
    rel = donor.xyz - donor.xyz[WRIST]
    xy = rel[:, :2] @ linear.T
    world = np.column_stack([xy, rel[:, 2]]) / 1000.0  # metres, as MediaPipe's world landmarks
    xyz, _ = hand_camera_joints(uv, world, intr)
    return xyz


def _read(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read {path}")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def draw(
    hands: list[Hand], rng: np.random.Generator, cfg: CompositeConfig, counts: dict[str, int]
) -> tuple[Hand, Hand, np.ndarray, bool]:
    """A base hand, a donor from another photo and the donor's placement (:func:`placement`)
    that leaves the base photo's other hands out of the pair's crop; ``counts["redrawn"]`` counts
    the draws thrown away."""
    for _ in range(cfg.max_draws):
        base = hands[int(rng.integers(len(hands)))]
        donor = base
        while donor.image_path == base.image_path:
            donor = hands[int(rng.integers(len(hands)))]
        affine, mirror = placement(base, donor, rng, cfg)
        if clear_of_others(base, donor, affine, cfg):
            return base, donor, affine, mirror
        counts["redrawn"] += 1
    raise ValueError(
        f"no composite in {cfg.max_draws} draws leaves the base photo's other hands out of the "
        "crop: too few photos with room around their hand"
    )


def compose(
    base: Hand, donor: Hand, affine: np.ndarray, mirror: bool, behind: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One composite of ``donor`` pasted at ``affine`` (``mirror``: it was mirrored) into the
    base photo, under the base hand when ``behind``: (RGB image, (42, 3) camera-frame joints
    right then left, (42,) depth weights, (42,) bool: the covered hand's joints that lie under
    the covering hand's pasted mask). The camera is the base photo's default."""
    import cv2

    image = _read(base.image_path)
    h, w = image.shape[:2]
    donor_image = _read(donor.image_path)
    alpha = hand_mask(donor_image, donor.uv)
    warped = cv2.warpAffine(donor_image, affine, (w, h), flags=cv2.INTER_LINEAR)
    a = cv2.warpAffine(alpha, affine, (w, h), flags=cv2.INTER_LINEAR)[..., None]
    # The donor's brightness matched to the photo it lands in (its own light would give it away).
    inside = a[..., 0] > 0.5
    if inside.sum() > 16:
        gain = image[inside].mean(0) / np.maximum(warped[inside].mean(0), 1.0)
        gain = np.clip(1.0 + 0.5 * (gain - 1.0), 0.7, 1.4)  # halfway: the hands' skins differ
        warped = np.clip(warped * gain, 0, 255)
    out = a * warped + (1 - a) * image
    covering = a[..., 0]
    if behind:
        base_alpha = hand_mask(image, base.uv)[..., None]
        out = base_alpha * image + (1 - base_alpha) * out
        covering = base_alpha[..., 0]
    intr = Intrinsics.default(w, h)
    base_xyz, _ = hand_camera_joints(base.uv, (base.xyz - base.xyz[WRIST]) / 1000.0, intr)
    donor_xyz = moved_hand(donor, affine, mirror, intr)
    xyz = np.zeros((NUM_JOINTS, 3))
    dw = np.zeros(NUM_JOINTS)
    occluded = np.zeros(NUM_JOINTS, dtype=bool)
    for side, hand_xyz, weight, covered in (
        (base.side, base_xyz, base.depth_weight, not behind),
        (1 - base.side, donor_xyz, donor.depth_weight, behind),
    ):
        sl = slice(side * NUM_HAND_JOINTS, (side + 1) * NUM_HAND_JOINTS)
        xyz[sl], dw[sl] = hand_xyz, weight
        if covered:
            occluded[sl] = covered_joints(intr.project(hand_xyz), covering)
    return np.clip(out, 0, 255).astype(np.uint8), xyz, dw, occluded


@dataclass(frozen=True)
class _Plan:
    """One composite, drawn: what :func:`compose` pastes where, and the file it goes to."""

    name: str
    base: Hand
    donor: Hand
    affine: np.ndarray
    mirror: bool
    behind: bool
    # OpenCV's random generator (GrabCut's) is seeded with this before composing, or, when None,
    # runs on from the previous composite in the same process (the one-process stream).
    cv_seed: int | None = None


def _compose_and_write(
    plan: _Plan, img_dir: Path
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray]:
    """Compose ``plan``, write its JPEG into ``img_dir``; (width, height, joints, depth weights,
    occluded joints) for its annotation. Runs in a worker process with ``--workers``."""
    import cv2

    if plan.cv_seed is not None:
        cv2.setRNGSeed(plan.cv_seed)
    image, xyz, dw, occluded = compose(plan.base, plan.donor, plan.affine, plan.mirror, plan.behind)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    if not cv2.imwrite(str(img_dir / plan.name), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"cannot write {img_dir / plan.name}")
    return image.shape[1], image.shape[0], xyz, dw, occluded


def covered_joints(uv: np.ndarray, covering: np.ndarray) -> np.ndarray:
    """(N,) bool: which of the joints ``uv`` (N, 2) image pixels lie where the covering hand's
    pasted mask ``covering`` (H, W, in [0, 1]) is over one half (outside the image: not covered)."""
    h, w = covering.shape
    px = np.round(uv).astype(np.int64)
    inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    out = np.zeros(len(uv), dtype=bool)
    out[inside] = covering[px[inside, 1], px[inside, 0]] > 0.5
    return out


def _annotate(
    writer: AnnotationWriter,
    plans: list[_Plan],
    results: Iterable[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]],
    counts: dict[str, int],
) -> None:
    """Each written composite's annotation, in the plans' order, and the counts."""
    for i, (plan, (w, h, xyz, dw, occluded)) in enumerate(zip(plans, results)):
        base, donor, behind, name = plan.base, plan.donor, plan.behind, plan.name
        intr = Intrinsics.default(w, h)
        uv = intr.project(xyz)
        box = points_box(uv)
        writer.add(
            file_name=name,
            width=w,
            height=h,
            capture=0,
            camera_name=str(writer.next_id),
            camera=camera_fields(intr),
            world_coord=xyz.round(3).tolist(),
            joint_valid=[1] * NUM_JOINTS,
            hand_type="interacting",
            hand_type_valid=1,
            bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
            extra={
                # The sources' depth weight (their depth_confidence: MediaPipe's 0.5).
                "depth_confidence": round(float(dw.max()), 3),
                "depth_valid": [int(v > 0) for v in dw],
                "root_depth_valid": 0,
                "source": "composite",
                "sources": [base.image_path.name, donor.image_path.name],
                "donor_behind": int(behind),
                "joint_occluded": [int(v) for v in occluded],
            },
        )
        counts["composites"] += 1
        counts["mirrored"] += int(donor.side == base.side)
        counts["donor_behind"] += int(behind)
        if (i + 1) % 200 == 0:
            logger.info("%d / %d composites", i + 1, len(plans))


def make_composites(
    root: str | Path,
    split: str,
    out: str | Path,
    n: int,
    out_split: str | None = None,
    seed: int = DEFAULT_SEED,
    config: CompositeConfig | None = None,
    workers: int = 1,
) -> dict[str, int]:
    """Write ``n`` composites of the single hands of ``root``/``split`` into ``out`` (split
    ``out_split``, default the same); returns counts. Every composite is drawn first, in order,
    from the one seeded generator, then composed and written: in this process (``workers`` 1),
    where GrabCut's cut-outs draw on OpenCV's generator as it runs on from composite to
    composite (how every set of the model card was made), or in ``workers`` > 1 processes, where
    that generator is seeded per composite: the same files for any number of workers above 1,
    but not byte for byte those of one process."""
    cfg = config or CompositeConfig()
    hands = single_hands(load_samples(root, split), cfg.min_hand_px)
    photos = {h.image_path for h in hands}
    if len(photos) < 2:
        raise ValueError(f"{root}/{split}: composites need single hands from two photos or more")
    out_split = out_split or split
    img_dir = images_dir(out, out_split)
    img_dir.mkdir(parents=True, exist_ok=True)
    writer = AnnotationWriter()
    rng = np.random.default_rng(seed)
    counts = {"composites": 0, "mirrored": 0, "donor_behind": 0, "redrawn": 0}
    plans = []
    for i in range(n):
        base, donor, affine, mirror = draw(hands, rng, cfg, counts)
        behind = bool(rng.random() < cfg.behind_prob)
        cv_seed = (seed * 1_000_003 + i) % 2**31 if workers > 1 else None
        plans.append(_Plan(f"comp_{i:06d}.jpg", base, donor, affine, mirror, behind, cv_seed))
    job = functools.partial(_compose_and_write, img_dir=img_dir)
    with contextlib.ExitStack() as stack:
        results: Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]] = map(job, plans)
        if workers > 1:
            # Fresh interpreters: a forked child of a process whose OpenCV or PyTorch threads
            # already ran could inherit a held lock.
            spawn = multiprocessing.get_context("spawn")
            pool = stack.enter_context(
                concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn)
            )
            results = pool.map(job, plans, chunksize=8)
        _annotate(writer, plans, results, counts)
    info = {"source": "dfl-train composite", "from": f"{root}:{split}", "seed": seed, "n": n}
    writer.write(out, out_split, info=info)
    logger.info("composites: %s (%d single hands of %d photos)", counts, len(hands), len(photos))
    return counts


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "composite",
        help="two-hand images pasted together from pseudo-labelled single hands",
        description="Paste a real hand cut out of one photo over or beside the labelled hand of "
        "another (mirrored to the other side when needed) and write both hands' labels in "
        "InterHand2.6M's layout.",
    )
    p.add_argument("--data", required=True, help="InterHand-layout folder of single hands")
    p.add_argument("--split", default="train", help="its split (default train)")
    p.add_argument("--out", required=True, help="output root")
    p.add_argument("--out-split", default=None, help="split written (default: --split)")
    p.add_argument("--n", type=int, required=True, help="number of composites")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes that compose and write (default 1; any number above 1 writes the same "
        "files, which differ from one process's in GrabCut's random start)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ValueError("--n must be >= 1")
    if args.workers < 1:
        raise ValueError("--workers must be >= 1")
    make_composites(
        args.data, args.split, args.out, args.n, args.out_split, args.seed, workers=args.workers
    )
    return 0
