"""Sharding as data: a device mesh from the config and (regex, strategy) rules over names.

`config.mesh` is a sequence of (axis name, size) pairs, e.g. (('data', -1), ('fsdp', 1)); one
size may be -1 (all remaining devices). The batch is split over every mesh axis (data
parallelism over the whole mesh). `config.sharding_rules` is a sequence of
(regex, strategy) pairs matched with re.search against the '/'-joined path of each leaf of the
train state (e.g. 'params/encoder/block03/mlp/fc1/kernel', 'opt_state/0/mu/...'); the first
match wins, unmatched leaves are replicated. Strategies:
- 'replicate': a full copy on every device.
- 'fsdp': split the largest dimension divisible by the size of the 'fsdp' axis over that axis
  (ZeRO-3 style: parameters, optimizer moments and EMA split; XLA inserts the all-gathers).
  Leaves of at most `config.min_size_to_shard_mb` MiB (big_vision `big_vision/sharding.py`
  fsdp(min_size_to_shard_mb=4): gathering a small leaf costs more than keeping a copy) and
  leaves with no such dimension are replicated.
`plan_leaves` says where each leaf goes and why; the run logs it once (`describe`).
"""

import dataclasses
import functools
import re

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

MESH_AXES = ('data', 'fsdp')
STRATEGIES = ('replicate', 'fsdp')


def mesh_shape(mesh_cfg, num_devices):
  """Resolves the -1 entry of `config.mesh`; errors name config.mesh."""
  names = tuple(name for name, _ in mesh_cfg)
  sizes = [int(size) for _, size in mesh_cfg]
  for name in names:
    if name not in MESH_AXES:
      raise ValueError(f'config.mesh: unknown axis {name!r}; axes are {MESH_AXES}.')
  if len(set(names)) != len(names):
    raise ValueError(f'config.mesh: repeated axis in {names}.')
  if sizes.count(-1) > 1:
    raise ValueError('config.mesh: at most one axis size may be -1.')
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if num_devices % known:
      raise ValueError(
        f'config.mesh={tuple(mesh_cfg)}: {num_devices} devices are not divisible by {known}.'
      )
    sizes[sizes.index(-1)] = num_devices // known
  if int(np.prod(sizes)) != num_devices:
    raise ValueError(
      f'config.mesh={tuple(mesh_cfg)} needs {int(np.prod(sizes))} devices, there are {num_devices}.'
    )
  return names, tuple(sizes)


def make_mesh(mesh_cfg, devices=None):
  """The mesh of `config.mesh` over `devices` (default: all devices of all processes).

  Axes are `Auto` (the compiler propagates shardings from the jit in/out shardings), which is
  what the rules above need; jax.make_mesh would default to `Explicit` axes.
  """
  devices = jax.devices() if devices is None else list(devices)
  names, sizes = mesh_shape(mesh_cfg, len(devices))
  auto = (jax.sharding.AxisType.Auto,) * len(names)
  return jax.make_mesh(sizes, names, axis_types=auto, devices=devices)


def check_rules(rules):
  for i, rule in enumerate(rules):
    if len(rule) != 2:
      raise ValueError(f'config.sharding_rules[{i}] must be (regex, strategy), got {rule!r}.')
    pattern, strategy = rule
    try:
      re.compile(pattern)
    except re.error as e:
      raise ValueError(f'config.sharding_rules[{i}]: bad regex {pattern!r}: {e}') from e
    if strategy not in STRATEGIES:
      raise ValueError(
        f'config.sharding_rules[{i}]: strategy {strategy!r} is not one of {STRATEGIES}.'
      )


def path_name(path):
  parts = []
  for k in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return '/'.join(parts)


# Why a leaf is replicated, as the run's log says it.
BY_RULE = "by rule ('replicate' or no rule matched)"
NO_FSDP_AXIS = 'the fsdp axis has size 1'
SMALL = 'at most min_size_to_shard_mb'
INDIVISIBLE = 'no dimension divisible by the fsdp axis size'


@dataclasses.dataclass(frozen=True)
class LeafPlan:
  """Where one leaf of the state lives: `spec` over the mesh, and why it is replicated if it is."""

  name: str
  shape: tuple[int, ...]
  nbytes: int
  spec: P
  replicated_because: str | None  # None: split over the fsdp axis


def _plan(name, strategy, leaf, mesh, min_size_to_shard_mb):
  shape = tuple(np.shape(leaf))
  nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(leaf.dtype).itemsize
  replicated = functools.partial(LeafPlan, name, shape, nbytes, P())
  n = mesh.shape.get('fsdp', 1)
  if strategy != 'fsdp':
    return replicated(BY_RULE)
  if n == 1:
    return replicated(NO_FSDP_AXIS)
  if nbytes <= min_size_to_shard_mb * 2**20:
    return replicated(SMALL)
  for axis in np.argsort(shape)[::-1]:
    if shape[axis] % n == 0 and shape[axis] >= n:
      spec = [None] * len(shape)
      spec[axis] = 'fsdp'
      return LeafPlan(name, shape, nbytes, P(*spec), None)
  return replicated(INDIVISIBLE)


def plan_leaves(abstract_tree, mesh, rules, *, min_size_to_shard_mb):
  """A LeafPlan for every leaf of `abstract_tree` (arrays or ShapeDtypeStructs), same structure."""
  compiled = [(re.compile(p), s) for p, s in rules]

  def one(path, leaf):
    name = path_name(path)
    strategy = next((s for r, s in compiled if r.search(name)), 'replicate')
    return _plan(name, strategy, leaf, mesh, min_size_to_shard_mb)

  return jax.tree_util.tree_map_with_path(one, abstract_tree)


def _is_plan(x):
  return isinstance(x, LeafPlan)


def shardings_of(plans, mesh):
  """The NamedSharding tree of a `plan_leaves` tree."""
  return jax.tree_util.tree_map(lambda p: NamedSharding(mesh, p.spec), plans, is_leaf=_is_plan)


def tree_shardings(abstract_tree, mesh, rules, *, min_size_to_shard_mb):
  """NamedSharding for every leaf of `abstract_tree` (arrays or ShapeDtypeStructs)."""
  plans = plan_leaves(abstract_tree, mesh, rules, min_size_to_shard_mb=min_size_to_shard_mb)
  return shardings_of(plans, mesh)


def describe(plans, mesh, *, min_size_to_shard_mb):
  """The lines the run logs once: which leaves were split over which axis, which could not be."""
  leaves = jax.tree_util.tree_leaves(plans, is_leaf=_is_plan)
  groups = {}
  for p in leaves:
    groups.setdefault(p.replicated_because, []).append(p)

  def count(ps):
    noun = 'leaf' if len(ps) == 1 else 'leaves'
    return f'{len(ps)} {noun} ({sum(p.nbytes for p in ps) / 2**20:.2f} MiB)'

  split = groups.pop(None, [])
  reasons = '; '.join(
    f'{count(ps)} {why}' + (f'={min_size_to_shard_mb:g}' if why == SMALL else '')
    for why, ps in groups.items()
  )
  lines = [
    f'Train state over mesh {dict(mesh.shape)}: {count(split)} split over fsdp'
    + (f'; replicated: {reasons}' if reasons else '')
    + '.'
  ]
  for p in split:
    dim = list(p.spec).index('fsdp')
    lines.append(f'  split over fsdp along dimension {dim}: {p.name} {p.shape}')
  for p in groups.get(INDIVISIBLE, []):
    size = mesh.shape['fsdp']
    lines.append(f'  could not be split (no dimension divisible by {size}): {p.name} {p.shape}')
  return lines


def batch_sharding(mesh):
  """Leading (batch) axis split over every mesh axis."""
  return NamedSharding(mesh, P(mesh.axis_names))


def global_batch(local_batch, sharding):
  """Per-process numpy batch -> global jax.Arrays (each process holds its rows)."""
  return jax.tree_util.tree_map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch
  )
