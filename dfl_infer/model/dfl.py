"""``DFLModel``: the DFL network (encoder + decoupled decoder) with safetensors save/load.

The network takes normalized crops and returns raw tensors; it never resizes, loads images or
moves data between devices. Mapping outputs back to image pixels and 3D is ``lift.py``'s job.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dfl_infer.model.config import DFLConfig
from dfl_infer.model.decoder import Decoder
from dfl_infer.model.encoder import Encoder


class DFLModel(nn.Module):
    """DFL network. ``forward(images)`` with images (B, 3, S, S) float, normalized with
    ``config.mean``/``config.std``, S = ``config.input_size``. Returns a dict:

    - ``joints_25d`` (B, 42, 3): u, v in crop pixels (OpenCV pixel-centre convention) and depth in
      mm relative to each hand's own wrist (positive = farther from the camera); joints 0-20 are
      the right hand, 21-41 the left (``JOINT_NAMES``).
    - ``joints_2d_iter``: list of T (B, 42, 2) crop-pixel predictions, one per iteration.
    - ``segmentation`` (B, 33, S/4, S/4): part-segmentation logits (``SEG_CLASS_NAMES``).
    - ``hand_presence`` (B, 2): logits that the right / left hand is in the crop.
    - ``rel_root_depth`` (B,): depth of the left wrist minus that of the right wrist, mm.
    """

    def __init__(self, config: DFLConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config, self.encoder.appearance_channels)

    def forward(self, images: torch.Tensor) -> dict[str, object]:
        s = self.config.input_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-2:] != (s, s):
            raise ValueError(
                f"expected images of shape (B, 3, {s}, {s}), got {tuple(images.shape)}"
            )
        enc = self.encoder(images)
        out = self.decoder(enc["appearance"], enc["position"])
        out["segmentation"] = enc["segmentation"]
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- weights ---------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into ``directory`` (created if needed).
        ``dtype`` (e.g. torch.float16) converts floating-point tensors to halve the file."""
        from dfl_infer.model.weights import save_pretrained

        return save_pretrained(self, directory, dtype=dtype)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        revision: str | None = None,
        map_location: str | torch.device = "cpu",
    ) -> DFLModel:
        """Load a local folder or a Hugging Face Hub repo id (``org/name``), strictly."""
        from dfl_infer.model.weights import load_pretrained

        return load_pretrained(cls, name_or_path, revision=revision, map_location=map_location)

    def push_to_hub(
        self,
        repo_id: str,
        private: bool = False,
        commit_message: str = "Upload DFL model",
        dtype: torch.dtype | None = None,
        token: str | None = None,
    ) -> str:
        """Upload ``model.safetensors`` + ``config.json`` to a Hub model repo; returns its URL."""
        from dfl_infer.model.weights import push_to_hub

        return push_to_hub(
            self, repo_id, private=private, commit_message=commit_message, dtype=dtype, token=token
        )
