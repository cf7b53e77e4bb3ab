"""Looks for the synthetic engine: backgrounds, skin, lights and camera effects (batched torch).

Backgrounds are procedural (smooth colour fields with noise, random shapes, stripes and checks) or
patches of real photos (:class:`PhotoPool`). A photo folder laid out like ``real-hands/``
(``images/`` plus ``boxes.csv`` with filename,x0,y0,x1,y1,...) gives patches cut away from every
labelled hand box, so no unlabelled hand appears, and skin patches cut from inside the boxes, whose
colours and fine texture dress the rendered skin. A folder of plain photos (no ``boxes.csv``) is
taken to be free of hands. Skin tones span the whole human range (very light to very dark, with
red and yellow undertones); palms are lighter than the back of the hand; nails are pale pink.
Camera effects: motion blur, defocus, colour jitter, sensor noise and JPEG blocking (an 8x8 DCT
quantiser in torch, so it runs on the GPU too).
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dfl_infer.image import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

_SKIN_PALETTE = torch.tensor(
    [
        [0.97, 0.84, 0.76],
        [0.93, 0.76, 0.64],
        [0.85, 0.64, 0.50],
        [0.74, 0.52, 0.38],
        [0.60, 0.40, 0.27],
        [0.45, 0.29, 0.19],
        [0.32, 0.20, 0.13],
        [0.22, 0.14, 0.10],
    ]
)


def _u(
    g: torch.Generator, shape: tuple[int, ...], lo: float, hi: float, device: torch.device
) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g, device=device)


def _to_nchw(patches: list[np.ndarray]) -> torch.Tensor:
    """HWC uint8 patches of one size -> (N, C, H, W)."""
    return torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).contiguous()


@dataclass(frozen=True)
class PhotoPool:
    """Real-photo material: ``backgrounds`` (N, 3, S, S) uint8 hand-free patches, ``skin``
    (M, 3, 32, 32) uint8 patches from inside hand boxes (M may be 0)."""

    backgrounds: torch.Tensor
    skin: torch.Tensor

    @classmethod
    def from_folder(
        cls, folder: str | Path, size: int = 256, max_patches: int = 400, seed: int = 0
    ) -> PhotoPool:
        """Cut up to ``max_patches`` background patches (and as many skin patches) from photos."""
        import cv2

        root = Path(folder)
        if not root.is_dir():
            raise NotADirectoryError(f"backgrounds folder not found: {root}")
        images_dir = root / "images" if (root / "images").is_dir() else root
        boxes: dict[str, list[tuple[float, float, float, float]]] | None = None
        if (root / "boxes.csv").is_file():
            boxes = {}
            with open(root / "boxes.csv", newline="") as fh:
                for row in csv.DictReader(fh):
                    x0, y0, x1, y1 = (float(row[k]) for k in ("x0", "y0", "x1", "y1"))
                    boxes.setdefault(row["filename"], []).append((x0, y0, x1, y1))
            # Photos without a box row may still show hands: only labelled photos are used.
            names = sorted(boxes)
        else:
            names = sorted(
                p.name for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
        if not names:
            raise FileNotFoundError(f"no photos in {images_dir}")
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(names))
        bgs: list[np.ndarray] = []
        skins: list[np.ndarray] = []
        for i in order:
            if len(bgs) >= max_patches:
                break
            img = cv2.imread(str(images_dir / names[i]), cv2.IMREAD_COLOR)
            if img is None:
                continue
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            h, w = img.shape[:2]
            own = np.array(boxes.get(names[i], []) if boxes is not None else []).reshape(-1, 4)
            for _ in range(30):
                side = rng.uniform(0.25, 0.9) * min(h, w)
                x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
                clear = np.all(
                    (own[:, 0] >= x0 + side)
                    | (own[:, 2] <= x0)
                    | (own[:, 1] >= y0 + side)
                    | (own[:, 3] <= y0)
                )
                if clear and side >= 48:
                    patch = img[int(y0) : int(y0 + side), int(x0) : int(x0 + side)]
                    bgs.append(cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA))
                    break
            for x0, y0, x1, y1 in own:
                # The middle of a hand box is mostly skin (palm or back of the hand).
                cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, 0.15 * min(x1 - x0, y1 - y0)
                if r >= 6:
                    patch = img[int(cy - r) : int(cy + r), int(cx - r) : int(cx + r)]
                    if patch.size:
                        skins.append(cv2.resize(patch, (32, 32), interpolation=cv2.INTER_AREA))
        if not bgs:
            raise ValueError(f"could not cut any hand-free patch from the photos in {images_dir}")
        logger.info(
            "photo pool: %d background patches, %d skin patches from %s",
            len(bgs),
            len(skins),
            images_dir,
        )
        skin_t = _to_nchw(skins) if skins else torch.zeros(0, 3, 32, 32, dtype=torch.uint8)
        return cls(_to_nchw(bgs), skin_t)

    def to(self, device: torch.device) -> PhotoPool:
        return PhotoPool(self.backgrounds.to(device), self.skin.to(device))


# ----------------------------------------------------------------------------- backgrounds
def _smooth_noise(
    g: torch.Generator, b: int, c: int, size: int, cells: int, device: torch.device
) -> torch.Tensor:
    low = torch.rand((b, c, cells, cells), generator=g, device=device)
    return F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)


def procedural_backgrounds(
    g: torch.Generator, b: int, size: int, device: torch.device
) -> torch.Tensor:
    """(b, 3, size, size) float in [0, 1]: colour fields, shapes, stripes/checks, mixed.

    Drawn at half resolution and upsampled: backgrounds need no finer detail than the camera
    effects leave, and this is a quarter of the work."""
    full, size = size, max(size // 2, 8)
    base = torch.rand((b, 3, 1, 1), generator=g, device=device)
    img = base * 0.6 + 0.4 * _smooth_noise(g, b, 3, size, 3, device)
    img = img + 0.25 * (_smooth_noise(g, b, 3, size, 16, device) - 0.5)
    img = img + 0.08 * (_smooth_noise(g, b, 1, size, 64, device) - 0.5)
    ys, xs = torch.meshgrid(
        torch.linspace(0, 1, size, device=device),
        torch.linspace(0, 1, size, device=device),
        indexing="ij",
    )
    kind = torch.randint(0, 3, (b,), generator=g, device=device)
    # Shapes: a few ellipses and rectangles of flat colour.
    k = 5
    cx, cy = _u(g, (b, k, 1, 1), -0.1, 1.1, device), _u(g, (b, k, 1, 1), -0.1, 1.1, device)
    rx, ry = _u(g, (b, k, 1, 1), 0.05, 0.4, device), _u(g, (b, k, 1, 1), 0.05, 0.4, device)
    dx, dy = (xs - cx) / rx, (ys - cy) / ry
    ellipse = torch.rand((b, k, 1, 1), generator=g, device=device) < 0.5
    inside = torch.where(ellipse, dx**2 + dy**2 < 1, (dx.abs() < 1) & (dy.abs() < 1))
    colours = torch.rand((b, k, 3), generator=g, device=device)
    shapes = img.clone()
    for i in range(k):
        shapes = torch.where(inside[:, i : i + 1], colours[:, i, :, None, None], shapes)
    # Stripes or checks at a random angle and pitch.
    ang = _u(g, (b, 1, 1), 0, math.pi, device)
    freq = _u(g, (b, 1, 1), 4, 30, device)
    s1 = torch.sin(2 * math.pi * freq * (xs * torch.cos(ang) + ys * torch.sin(ang)))
    s2 = torch.sin(2 * math.pi * freq * (-xs * torch.sin(ang) + ys * torch.cos(ang)))
    check = torch.rand((b, 1, 1), generator=g, device=device) < 0.5
    pattern = torch.where(check, (s1 * s2 > 0).float(), (s1 > 0).float())[:, None]
    c2 = torch.rand((b, 3, 1, 1), generator=g, device=device)
    stripes = img * (1 - pattern) + (0.5 * img + 0.5 * c2) * pattern
    out = torch.where((kind == 1)[:, None, None, None], shapes, img)
    out = torch.where((kind == 2)[:, None, None, None], stripes, out)
    out = F.interpolate(out, size=(full, full), mode="bilinear", align_corners=False)
    return out.clamp(0, 1)


def photo_backgrounds(g: torch.Generator, pool: PhotoPool, b: int, size: int) -> torch.Tensor:
    """(b, 3, size, size) float: random pool patches, flipped and re-lit at random."""
    device = pool.backgrounds.device
    idx = torch.randint(0, len(pool.backgrounds), (b,), generator=g, device=device)
    img = pool.backgrounds[idx].float() / 255.0
    if img.shape[-1] != size:
        img = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)
    flip = torch.rand((b, 1, 1, 1), generator=g, device=device) < 0.5
    img = torch.where(flip, img.flip(-1), img)
    return (img * _u(g, (b, 1, 1, 1), 0.7, 1.2, device)).clamp(0, 1)


# ----------------------------------------------------------------------------- skin & light
def skin_tones(g: torch.Generator, b: int, device: torch.device) -> torch.Tensor:
    """(b, 3) skin albedo spanning the human range, light to dark, with undertone jitter."""
    pal = _SKIN_PALETTE.to(device)
    t = torch.rand(b, generator=g, device=device) * (len(pal) - 1)
    i = t.floor().long().clamp(max=len(pal) - 2)
    f = (t - i)[:, None]
    tone = pal[i] * (1 - f) + pal[i + 1] * f
    red = _u(g, (b, 1), -0.04, 0.05, device) * torch.tensor([1.0, -0.3, -0.5], device=device)
    yellow = _u(g, (b, 1), -0.03, 0.04, device) * torch.tensor([0.5, 0.6, -1.0], device=device)
    return (tone + red + yellow).clamp(0.03, 1)


def vertex_albedo(
    g: torch.Generator,
    skin: torch.Tensor,
    rest: torch.Tensor,
    nail: torch.Tensor,
    palmar: torch.Tensor,
    forearm: torch.Tensor,
) -> torch.Tensor:
    """Per-vertex albedo (B, V, 3): ``skin`` (B, 3) mottled by low-frequency noise over the rest
    positions ``rest`` (V, 3) mm, lighter palms, pale nails, and a sleeve on part of the forearm
    (``forearm`` (V,) mm from the wrist) for most samples."""
    b, device = skin.shape[0], skin.device
    freq = torch.randn((b, 3, 3), generator=g, device=device) / 25.0
    phase = _u(g, (b, 1, 3), 0, 2 * math.pi, device)
    mottle = 1 + 0.05 * torch.sin(rest[None] @ freq + phase)  # (B, V, 3)
    base = skin[:, None] * mottle
    palm = skin + (torch.tensor([0.92, 0.74, 0.64], device=device) - skin) * 0.55
    base = base + (palm[:, None] - base) * (palmar[None, :, None] ** 1.5) * 0.8
    nail_col = 0.45 * skin + 0.55 * torch.tensor([0.96, 0.82, 0.80], device=device)
    base = base + (nail_col[:, None] - base) * nail[None, :, None]
    sleeve_on = torch.rand((b, 1), generator=g, device=device) < 0.65
    start = _u(g, (b, 1), 10.0, 140.0, device)
    sleeve = sleeve_on & (forearm[None] > start)
    cloth = torch.rand((b, 3), generator=g, device=device) ** 1.5
    cloth_tex = cloth[:, None] * (1 + 0.06 * torch.sin(rest[None, :, 1:2] * 0.9 + phase[..., :1]))
    return torch.where(sleeve[..., None], cloth_tex, base).clamp(0, 1)


def shade(
    g: torch.Generator, albedo: torch.Tensor, normals: torch.Tensor, points: torch.Tensor
) -> torch.Tensor:
    """Per-vertex colour (B, V, 3): hemisphere ambient, 1-3 coloured directional lights with a
    wrapped Lambert term (soft, skin-like falloff) and a weak Blinn-Phong highlight. ``normals``
    and ``points`` (B, V, 3) in the camera frame (y down, z forward)."""
    b, device = albedo.shape[0], albedo.device
    up = torch.tensor([0.0, -1.0, 0.0], device=device)
    sky = _u(g, (b, 1, 3), 0.15, 0.35, device)
    ground = sky * _u(g, (b, 1, 1), 0.3, 0.8, device)
    hemi = 0.5 * (1 + (normals * up).sum(-1, keepdim=True))
    light = ground + (sky - ground) * hemi
    view = -points / points.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    spec = torch.zeros_like(albedo)
    nl = 3
    dirs = torch.randn((b, nl, 3), generator=g, device=device)
    dirs = dirs + torch.tensor([0.0, -0.4, -1.3], device=device)  # lights mostly in front, above
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    on = torch.rand((b, nl), generator=g, device=device) < torch.tensor(
        [1.0, 0.6, 0.3], device=device
    )
    strength = _u(g, (b, nl), 0.35, 0.95, device) * on
    warm = _u(g, (b, nl, 1), -1, 1, device)
    colour = 1 + warm * torch.tensor([0.12, 0.0, -0.15], device=device)
    ks = _u(g, (b, 1, 1), 0.02, 0.12, device)
    shin = _u(g, (b, 1, 1), 8.0, 40.0, device)
    wrap = 0.3
    for i in range(nl):
        d = dirs[:, i, None]
        ndl = (normals * d).sum(-1, keepdim=True)
        diff = ((ndl + wrap) / (1 + wrap)).clamp(min=0)
        light = light + diff * strength[:, i, None, None] * colour[:, i, None]
        half = d + view
        half = half / half.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        s = (normals * half).sum(-1, keepdim=True).clamp(min=0) ** shin
        spec = spec + ks * s * strength[:, i, None, None] * (ndl > 0)
    return albedo * light + spec


# ----------------------------------------------------------------------------- camera effects
def _grouped_blur(img: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each image (n, 3, H, W) with its own kernel (n, k, k)."""
    n, c, h, w = img.shape
    k = kernels.shape[-1]
    weight = kernels[:, None].repeat_interleave(c, 0)
    out = F.conv2d(
        F.pad(img.reshape(1, n * c, h, w), (k // 2,) * 4, mode="replicate"), weight, groups=n * c
    )
    return out.view(n, c, h, w)


def motion_kernels(g: torch.Generator, n: int, k: int, device: torch.device) -> torch.Tensor:
    """(n, k, k) line kernels of random length (2..k px) and angle."""
    ang = _u(g, (n, 1, 1), 0, math.pi, device)
    length = _u(g, (n, 1, 1), 2.0, float(k), device)
    r = torch.arange(k, device=device, dtype=torch.float32) - k // 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    along = xx * torch.cos(ang) + yy * torch.sin(ang)
    across = -xx * torch.sin(ang) + yy * torch.cos(ang)
    kern = (along.abs() <= length / 2).float() * (1 - across.abs()).clamp(min=0)
    return kern / kern.sum((1, 2), keepdim=True).clamp_min(1e-6)


def _separable_blur(img: torch.Tensor, sigma: torch.Tensor, k: int) -> torch.Tensor:
    """Gaussian blur of each image (n, 3, H, W) with its own ``sigma`` (n,), as two 1D passes."""
    n, c, h, w = img.shape
    r = torch.arange(k, device=sigma.device, dtype=torch.float32) - k // 2
    g1 = torch.exp(-(r[None] ** 2) / (2 * sigma[:, None] ** 2))
    g1 = (g1 / g1.sum(1, keepdim=True)).repeat_interleave(c, 0)
    x = F.pad(img.reshape(1, n * c, h, w), (k // 2,) * 4, mode="replicate")
    x = F.conv2d(x, g1[:, None, None, :], groups=n * c)
    x = F.conv2d(x, g1[:, None, :, None], groups=n * c)
    return x.view(n, c, h, w)


_JPEG_LUMA = torch.tensor(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=torch.float32,
)
_JPEG_CHROMA = torch.full((8, 8), 99.0)
_JPEG_CHROMA[:4, :4] = torch.tensor(
    [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]], dtype=torch.float32
)


def jpeg_artefacts(img: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Simulate JPEG at ``quality`` (n,) 1..100 on (n, 3, H, W) in [0, 1], H and W multiples of 8:
    YCbCr, 2x chroma subsampling, 8x8 DCT quantised with the standard tables (IJG scaling)."""
    n, _, h, w = img.shape
    device = img.device
    m = torch.tensor(
        [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
        device=device,
    )
    ycc = torch.einsum("ij,njhw->nihw", m, img * 255.0)
    ycc[:, 0] -= 128.0
    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    k = torch.arange(8, device=device, dtype=torch.float32)
    dct = torch.cos((2 * k[None] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    dct[0] /= math.sqrt(2)
    q = quality.clamp(1, 100)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)[:, None, None, None, None, None] / 100.0

    # The 2D DCT of a block, D B D^T, is one (64 x 64) product with kron(D, D) on the flattened
    # block: a single large matrix product instead of many batched 8x8 ones (about 4x faster).
    kron = torch.kron(dct, dct)

    def roundtrip(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        c, hh, ww = x.shape[1:]
        blocks = x.reshape(n, c, hh // 8, 8, ww // 8, 8).transpose(3, 4)
        flat = blocks.reshape(n, c, hh // 8, ww // 8, 64)
        coef = flat @ kron.T
        step = (table.to(device) * scale).clamp(min=1).reshape(n, 1, 1, 1, 64)
        coef = torch.round(coef / step) * step
        back = (coef @ kron).reshape(n, c, hh // 8, ww // 8, 8, 8)
        return back.transpose(3, 4).reshape(n, c, hh, ww)

    y = roundtrip(ycc[:, :1], _JPEG_LUMA)
    ch = roundtrip(chroma, _JPEG_CHROMA) if chroma.shape[-1] % 8 == 0 else chroma
    ch = F.interpolate(ch, scale_factor=2, mode="nearest")
    ycc = torch.cat([y + 128.0, ch], 1)
    rgb = torch.einsum("ij,njhw->nihw", torch.linalg.inv(m), ycc)
    return (rgb / 255.0).clamp(0, 1)


# Unit Gaussian noise images drawn once per (device, size) with a fixed seed; each sample takes one
# of them. Drawing fresh Gaussian noise for every pixel of every batch was the
# single largest cost of the camera effects on CPU.
_NOISE_BANK_SIZE = 64
_noise_banks: dict[tuple[str, int, int], torch.Tensor] = {}


def _sensor_noise(g: torch.Generator, shape: torch.Size, device: torch.device) -> torch.Tensor:
    b, c, h, w = shape
    key = (str(device), h, w)
    bank = _noise_banks.get(key)
    if bank is None:
        bank_gen = torch.Generator(device=device).manual_seed(20240)
        bank = torch.randn((_NOISE_BANK_SIZE, c, h, w), generator=bank_gen, device=device)
        _noise_banks[key] = bank
    idx = torch.randint(0, _NOISE_BANK_SIZE, (b,), generator=g, device=device)
    return bank[idx]


def camera_effects(g: torch.Generator, img: torch.Tensor) -> torch.Tensor:
    """Motion blur, defocus, colour jitter, sensor noise and JPEG artefacts on (B, 3, H, W)."""
    b, device = img.shape[0], img.device
    blur = torch.rand(b, generator=g, device=device) < 0.15
    kern = motion_kernels(g, b, 9, device)
    if bool(blur.any()):
        idx = blur.nonzero()[:, 0]
        img = img.index_copy(0, idx, _grouped_blur(img[idx], kern[idx]))
    soft = torch.rand(b, generator=g, device=device) < 0.4
    sigma = _u(g, (b,), 0.4, 1.4, device)
    if bool(soft.any()):
        idx = soft.nonzero()[:, 0]
        img = img.index_copy(0, idx, _separable_blur(img[idx], sigma[idx], 7))
    gain = _u(g, (b, 3), 0.9, 1.1, device) * _u(g, (b, 1), 0.7, 1.3, device)
    sat = _u(g, (b, 1, 1), 0.6, 1.4, device)
    con = _u(g, (b, 1, 1), 0.75, 1.25, device)
    # Gain, saturation (towards the pixel's grey) and contrast (towards the image mean) are all
    # linear: fold them into one 3x3 matrix and offset per image, one pass over the pixels.
    eye = torch.eye(3, device=device)
    colour = (sat * eye + (1 - sat) / 3) * gain[:, None, :]  # saturation after gain
    mean = (colour @ img.mean((2, 3))[:, :, None]).mean(1, keepdim=True)  # (b, 1, 1)
    colour = con * colour
    offset = (1 - con) * mean  # (b, 1, 1), the same for the three channels
    img = torch.baddbmm(offset, colour, img.reshape(b, 3, -1)).view_as(img)
    img = img.clamp(0, 1) ** _u(g, (b, 1, 1, 1), 0.8, 1.25, device)
    noise = _sensor_noise(g, img.shape, device)
    sigma_n = _u(g, (b, 1, 1, 1), 0.0, 0.025, device) + _u(g, (b, 1, 1, 1), 0.0, 0.03, device) * (
        img.clamp_min(0).sqrt()
    )
    img = (img + noise * sigma_n).clamp(0, 1)
    jpeg = torch.rand(b, generator=g, device=device) < 0.5
    quality = _u(g, (b,), 25.0, 90.0, device)
    if bool(jpeg.any()) and img.shape[-1] % 16 == 0 and img.shape[-2] % 16 == 0:
        idx = jpeg.nonzero()[:, 0]
        img = img.index_copy(0, idx, jpeg_artefacts(img[idx], quality[idx]))
    return img
