"""Device mesh and layouts: every run trains on a (data, fsdp) mesh, trivial for one device.

Parameters carry logical axis names (see ``model``); ``RULES`` maps them to mesh axes, so the
model code never changes when the mesh does. ``fsdp`` shards parameters and optimizer state
along their model-width axis; the batch is split over both axes (FSDP is data parallelism whose
weights are gathered on use). A dimension that the mesh axis does not divide is left whole.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from scaling import model
from scaling.config import ConfigError, MeshConfig, ModelConfig

BATCH_AXES = ("data", "fsdp")
RULES = (("embed", "fsdp"), ("vocab", None), ("heads", None), ("head_dim", None), ("mlp", None))


def make_mesh(cfg: MeshConfig, devices=None) -> Mesh:
    """A (data, fsdp) mesh with automatic axis types over ``devices`` (default: all visible).

    -1 on one axis takes the devices the other leaves. Raises ConfigError when data x fsdp is
    not the number of devices.
    """
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    fsdp = cfg.fsdp if cfg.fsdp != -1 else n // max(cfg.data, 1)
    data = cfg.data if cfg.data != -1 else n // max(fsdp, 1)
    if data < 1 or fsdp < 1 or data * fsdp != n:
        raise ConfigError(f"mesh.data={cfg.data} x mesh.fsdp={cfg.fsdp} does not fit the {n} visible devices")
    return jax.make_mesh((data, fsdp), ("data", "fsdp"), axis_types=(AxisType.Auto, AxisType.Auto),
                         devices=devices)


def _fit(spec: PartitionSpec, shape: tuple[int, ...], mesh: Mesh) -> PartitionSpec:
    """Drop mesh axes that do not divide their dimension (small models on big meshes)."""
    fitted = []
    for axis, size in zip(spec, shape):
        names = axis if isinstance(axis, tuple) else (axis,) if axis else ()
        ways = int(np.prod([mesh.shape[a] for a in names])) if names else 1
        fitted.append(axis if size % ways == 0 else None)
    return PartitionSpec(*fitted)


def param_shardings(model_cfg: ModelConfig, abstract_params, mesh: Mesh):
    """A NamedSharding per parameter, mapped from its logical axes through ``RULES``.

    ``abstract_params`` (arrays or ShapeDtypeStructs) gives the shapes; a mesh axis that does not
    divide its dimension is dropped, so that dimension stays whole. Same tree as the params.
    """
    logical = model.logical_axes(model_cfg)
    is_spec = lambda x: isinstance(x, PartitionSpec)  # noqa: E731
    return jax.tree.map(
        lambda spec, leaf: NamedSharding(mesh, _fit(nn.logical_to_mesh_axes(spec, RULES), leaf.shape, mesh)),
        logical, abstract_params, is_leaf=is_spec,
    )


def state_shardings(abstract_state, params_sharding, mesh: Mesh):
    """Optimizer moments mirror the parameters' tree and get their layout; scalars are replicated."""
    params_structure = jax.tree.structure(abstract_state["params"])
    replicated = NamedSharding(mesh, PartitionSpec())

    def layout(subtree):
        if jax.tree.structure(subtree) == params_structure:
            return params_sharding
        return replicated

    return jax.tree.map(layout, abstract_state, is_leaf=lambda x: jax.tree.structure(x) == params_structure)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Tokens [microbatches, batch, time]: rows split over every device."""
    return NamedSharding(mesh, PartitionSpec(None, BATCH_AXES, None))
