"""``DFLModel``: the DFL network (encoder + decoupled decoder) with safetensors save/load.

The network takes normalized crops and returns raw tensors (:class:`DFLOutput`); it never
resizes, loads images or moves data between devices. Preparing its input is ``preprocess.py``'s
job, mapping its outputs back to image pixels and 3D ``decode.py``'s.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

import dfl_infer.model.weights as weights_io
from dfl_infer.model.config import DFLConfig
from dfl_infer.model.decoder import Decoder
from dfl_infer.model.encoder import Encoder
from dfl_infer.model.outputs import DFLOutput

logger = logging.getLogger(__name__)


class DFLModel(nn.Module):
    """DFL network. ``forward(images)`` with images (B, 3, S, S) float, normalized with
    ``config.mean``/``config.std`` (``preprocess.normalize``), S = ``config.input_size``.
    Returns a :class:`DFLOutput` (``joints_25d``, ``hand_presence``, ``rel_root_depth``,
    ``segmentation``, ``joints_2d_iter``, ``handedness``; shapes and units documented there).
    """

    def __init__(self, config: DFLConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config, self.encoder.appearance_channels)

    def forward(self, images: torch.Tensor) -> DFLOutput:
        s = self.config.input_size
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-2:] != (s, s):
            raise ValueError(
                f"expected images of shape (B, 3, {s}, {s}), got {tuple(images.shape)}"
            )
        enc = self.encoder(images)
        dec = self.decoder(enc.appearance, enc.position)
        return DFLOutput(
            joints_25d=dec.joints_25d,
            hand_presence=dec.hand_presence,
            rel_root_depth=dec.rel_root_depth,
            segmentation=enc.segmentation,
            joints_2d_iter=dec.joints_2d_iter,
            handedness=dec.handedness,
            init_attention=dec.init_attention,
        )

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- weights ---------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, dtype: torch.dtype | None = None) -> Path:
        """Write ``model.safetensors`` + ``config.json`` into ``directory`` (created if needed).
        ``dtype`` (e.g. torch.float16) converts floating-point tensors to halve the file."""
        return weights_io.save_pretrained(self, self.config, directory, dtype=dtype)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        revision: str | None = None,
        map_location: str | torch.device = "cpu",
    ) -> DFLModel:
        """Load a local folder or a Hugging Face Hub repo id (``org/name``), strictly."""
        config_path, weights_path = weights_io.resolve_files(name_or_path, revision)
        model = cls(DFLConfig.load(config_path))
        weights_io.load_weights(model, weights_path)
        model.to(map_location)
        model.eval()
        logger.info(
            "loaded DFL weights from %s (%s parameters)",
            weights_path.parent,
            f"{model.num_parameters():,}",
        )
        return model

    def push_to_hub(
        self,
        repo_id: str,
        private: bool = False,
        commit_message: str = "Upload DFL model",
        dtype: torch.dtype | None = None,
        token: str | None = None,
    ) -> str:
        """Upload ``model.safetensors`` + ``config.json`` to a Hub model repo; returns its URL."""
        return weights_io.push_to_hub(
            self,
            self.config,
            repo_id,
            private=private,
            commit_message=commit_message,
            dtype=dtype,
            token=token,
        )
