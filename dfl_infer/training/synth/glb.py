"""A small reader for skinned glTF-binary (.glb) meshes, numpy only.

Reads what a rigged hand needs and nothing more: the first skinned mesh primitive's POSITION,
JOINTS_0, WEIGHTS_0 and triangle indices, the skin's joint nodes with their inverse bind matrices,
and every node's world-space rest transform (the node hierarchy composed from its TRS or matrix).
Spec: https://registry.khronos.org/glTF/specs/2.0/glTF-2.0.html (binary container, accessors).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_MAGIC = 0x46546C67  # "glTF"
_CHUNK_JSON = 0x4E4F534A
_CHUNK_BIN = 0x004E4942
_COMPONENT_DTYPES = {
    5120: np.int8,
    5121: np.uint8,
    5122: np.int16,
    5123: np.uint16,
    5125: np.uint32,
    5126: np.float32,
}
_TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}


@dataclass(frozen=True)
class SkinnedMesh:
    """A skinned triangle mesh in its bind (rest) pose.

    ``vertices`` (V, 3) float64 in the file's units (metres for glTF), ``faces`` (F, 3) int64,
    ``joints`` (V, 4) int64 indices into ``joint_names``, ``weights`` (V, 4) float64 rows
    summing to 1, ``joint_names`` the skin's joint node names in skin order, ``joint_positions``
    (J, 3) the rest world position of each skin joint (from the inverse bind matrices).
    """

    vertices: np.ndarray
    faces: np.ndarray
    joints: np.ndarray
    weights: np.ndarray
    joint_names: tuple[str, ...]
    joint_positions: np.ndarray


def _read_chunks(data: bytes, path: Path) -> tuple[dict[str, Any], bytes]:
    if len(data) < 20:
        raise ValueError(f"{path}: too short to be a .glb file")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != _MAGIC or version != 2:
        raise ValueError(
            f"{path}: not a glTF 2.0 binary file (magic {magic:#x}, version {version})"
        )
    if length > len(data):
        raise ValueError(f"{path}: truncated ({len(data)} bytes, header says {length})")
    offset, doc, binary = 12, None, b""
    while offset + 8 <= length:
        chunk_len, chunk_type = struct.unpack_from("<II", data, offset)
        body = data[offset + 8 : offset + 8 + chunk_len]
        if chunk_type == _CHUNK_JSON:
            doc = json.loads(body.decode("utf-8"))
        elif chunk_type == _CHUNK_BIN and not binary:
            binary = body
        offset += 8 + chunk_len
    if doc is None:
        raise ValueError(f"{path}: no JSON chunk")
    return doc, binary


def _accessor(doc: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = np.dtype(_COMPONENT_DTYPES[acc["componentType"]])
    ncomp = _TYPE_SIZES[acc["type"]]
    count = acc["count"]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride", 0) or dtype.itemsize * ncomp
    # Strided views interleave attributes: read each element's bytes at its stride.
    raw = np.frombuffer(
        binary, dtype=np.uint8, count=stride * (count - 1) + dtype.itemsize * ncomp, offset=start
    )
    rows = np.lib.stride_tricks.as_strided(
        raw, shape=(count, dtype.itemsize * ncomp), strides=(stride, 1)
    )
    out = np.ascontiguousarray(rows).view(dtype).reshape(count, ncomp)
    if acc.get("normalized") and dtype.kind in "iu":
        out = out.astype(np.float64) / np.iinfo(dtype.str).max
    return out


def _quat_to_matrix(q: list[float]) -> np.ndarray:
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _node_matrix(node: dict[str, Any]) -> np.ndarray:
    if "matrix" in node:
        matrix: np.ndarray = np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T
        return matrix  # glTF stores it column-major
    m = np.eye(4)
    m[:3, :3] = _quat_to_matrix(node.get("rotation", [0, 0, 0, 1])) * np.array(
        node.get("scale", [1, 1, 1])
    )
    m[:3, 3] = node.get("translation", [0, 0, 0])
    return m


def _world_matrices(doc: dict[str, Any]) -> list[np.ndarray]:
    nodes = doc.get("nodes", [])
    parent = [-1] * len(nodes)
    for i, node in enumerate(nodes):
        for c in node.get("children", []):
            parent[c] = i
    world: list[np.ndarray | None] = [None] * len(nodes)

    def resolve(i: int) -> np.ndarray:
        cached = world[i]
        if cached is None:
            local = _node_matrix(nodes[i])
            cached = local if parent[i] < 0 else resolve(parent[i]) @ local
            world[i] = cached
        return cached

    return [resolve(i) for i in range(len(nodes))]


def read_glb(path: str | Path) -> SkinnedMesh:
    """Read the first skinned triangle primitive of a .glb file (see :class:`SkinnedMesh`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file not found: {path}")
    doc, binary = _read_chunks(path.read_bytes(), path)
    worlds = _world_matrices(doc)
    nodes = doc.get("nodes", [])
    skinned = [i for i, nd in enumerate(nodes) if "mesh" in nd and "skin" in nd]
    if not skinned:
        raise ValueError(f"{path}: no node with both a mesh and a skin")
    node_index = skinned[0]
    node = nodes[node_index]
    prim = doc["meshes"][node["mesh"]]["primitives"][0]
    if prim.get("mode", 4) != 4:
        raise ValueError(f"{path}: primitive mode {prim['mode']} is not TRIANGLES")
    attrs = prim["attributes"]
    missing = [k for k in ("POSITION", "JOINTS_0", "WEIGHTS_0") if k not in attrs]
    if missing or "indices" not in prim:
        raise ValueError(f"{path}: skinned primitive lacks {missing or ['indices']}")
    # The mesh node's own transform places the bind-pose vertices in the world.
    mesh_world = worlds[node_index]
    verts = _accessor(doc, binary, attrs["POSITION"]).astype(np.float64)
    verts = verts @ mesh_world[:3, :3].T + mesh_world[:3, 3]
    faces = _accessor(doc, binary, prim["indices"]).astype(np.int64).reshape(-1, 3)
    joints = _accessor(doc, binary, attrs["JOINTS_0"]).astype(np.int64)
    weights = _accessor(doc, binary, attrs["WEIGHTS_0"]).astype(np.float64)
    weights = weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    skin = doc["skins"][node["skin"]]
    names = tuple(doc["nodes"][j].get("name", f"node{j}") for j in skin["joints"])
    if "inverseBindMatrices" in skin:
        ibm = _accessor(doc, binary, skin["inverseBindMatrices"]).reshape(-1, 4, 4)
        bind = np.linalg.inv(ibm.transpose(0, 2, 1).astype(np.float64))  # column-major storage
        positions = bind[:, :3, 3]
    else:
        positions = np.stack([worlds[j][:3, 3] for j in skin["joints"]])
    if joints.max() >= len(names):
        raise ValueError(f"{path}: JOINTS_0 refers to joint {joints.max()} of {len(names)}")
    return SkinnedMesh(verts, faces, joints, weights, names, positions)
