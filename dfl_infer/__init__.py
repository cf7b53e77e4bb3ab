"""dfl-infer: 3D joints of one or two interacting hands from a single RGB photo (DFL)."""

from dfl_infer.joints import JOINT_NAMES

__all__ = ["JOINT_NAMES"]
__version__ = "0.1.0"
