"""What one benchmark run measures: named models, plus the pairs that P1's and P2's claims compare.

A `Case` is one row of the table: a ModelSpec and the attention path. Besides the models asked
for, a run can add
  * the equal-GF patchify twin of a conv-stem model (`--twins`): P1 removes one transformer block
    when it adds the conv stem (ViT_C-4GF = 11 blocks vs ViT_P-4GF = 12, P1 Table 1), so the
    twin is the same spec with a patchify stem and one block more; for the registered models it
    is exactly the registered vit_p / convit model of the same size. P1's runtime claim is about
    this pair.
  * for GPSA models (`--gpsa_study`): the explicit path (softmax weights materialised,
    return_attention=True) and the plain-attention twin: the same widths, heads, MLP and depth
    with every block plain MHSA (a pycls-family spec, so the class token is present in all
    blocks: 197 instead of 196 tokens in the first blocks, +0.5% of the model's MACs). That
    isolates the cost of gating and of the positional attention, everything else being equal.
  * the other parameter layout of each model (`--scan_study`): scanned layers against unrolled
    (ModelSpec.scan_layers), for what the scan saves in compile time and costs in step time.
"""

from __future__ import annotations

import dataclasses

from vit_jax_stems import models
from vit_jax_stems.models.spec import ModelSpec


@dataclasses.dataclass(frozen=True)
class Case:
  label: str
  spec: ModelSpec
  role: str = 'model'  # 'model' | 'twin' (equal-GF patchify) | 'explicit' | 'plain' | 'layout'
  of: str | None = None  # label of the case this one is compared with
  return_attention: bool = False  # the explicit (weights-materialising) attention path

  @property
  def macs_per_image(self) -> int:
    return models.complexity.count(self.spec)['flops']


def model_spec(name: str, overrides: dict) -> ModelSpec:
  """The spec of `name` with `overrides`; an override that a model does not use is dropped.

  Conv-stem fields are meaningless for a patchify model (and would fail its validation), and
  num_gpsa_layers for a pycls model, so one `--override` list can serve a mixed `--models` list.
  """
  base = models.get_spec(name)  # raises with the list of registered names
  usable = dict(overrides)
  if base.stem == 'patchify':
    for key in ('stem_kernels', 'stem_strides', 'stem_channels'):
      usable.pop(key, None)
  if base.family == 'pycls':
    usable.pop('num_gpsa_layers', None)
  return models.get_spec(name, **usable)


def equal_gf_twin(spec: ModelSpec) -> ModelSpec:
  """The patchify model a conv-stem model is matched with in flops (P1: the stem ~ one block)."""
  if spec.stem != 'conv':
    raise ValueError('equal_gf_twin is defined for conv-stem models only.')
  return spec.replace(
    stem='patchify',
    stem_kernels=(),
    stem_strides=(),
    stem_channels=(),
    depth=spec.depth + 1,
    num_gpsa_layers=spec.num_gpsa_layers + (1 if spec.num_gpsa_layers else 0),
  )


def plain_attention_twin(spec: ModelSpec) -> ModelSpec:
  """The same model with every block plain MHSA (see the module docstring)."""
  if not spec.num_gpsa_layers:
    raise ValueError('plain_attention_twin needs a model with GPSA blocks.')
  return spec.replace(family='pycls', num_gpsa_layers=0)


def other_layout(spec: ModelSpec) -> tuple[ModelSpec, str]:
  """(the same model in the other parameter layout, its label suffix)."""
  scanned = not spec.scan_layers
  return spec.replace(scan_layers=scanned), '[scanned]' if scanned else '[unrolled]'


def build_cases(
  names: list[str], overrides: dict, *, twins: bool, gpsa_study: bool, scan_study: bool = False
) -> list[Case]:
  """The rows of one run, validated before anything is traced. Duplicate specs run once."""
  cases: list[Case] = []

  def add(case: Case, after: Case | None = None) -> Case:
    for existing in cases:
      if existing.spec == case.spec and existing.return_attention == case.return_attention:
        return existing
    cases.insert(len(cases) if after is None else cases.index(after) + 1, case)
    return case

  for name in names:
    add(Case(name, model_spec(name, overrides)))
  for main in list(cases):
    if twins and main.spec.stem == 'conv':
      twin = equal_gf_twin(main.spec)
      label = _registered_label(twin, overrides) or f'{main.label}[p-twin]'
      kept = add(Case(label, twin, role='twin', of=main.label))
      if kept.role == 'model':  # asked for by name too (vit_p_4gf with vit_c_4gf): pair them
        cases[cases.index(kept)] = dataclasses.replace(kept, role='twin', of=main.label)
    if gpsa_study and main.spec.num_gpsa_layers:
      add(
        Case(
          f'{main.label}[explicit]',
          main.spec,
          role='explicit',
          of=main.label,
          return_attention=True,
        )
      )
      add(
        Case(f'{main.label}[plain]', plain_attention_twin(main.spec), role='plain', of=main.label)
      )
    if scan_study:  # next to its model, so that the pair runs under the same machine load
      spec, suffix = other_layout(main.spec)
      add(Case(f'{main.label}{suffix}', spec, role='layout', of=main.label), after=main)
  return cases


def _registered_label(spec: ModelSpec, overrides: dict) -> str | None:
  """The registered name whose spec (with the same overrides) equals `spec`, if any."""
  for name in models.list_models():
    try:
      if model_spec(name, overrides) == spec:
        return name
    except ValueError:
      continue
  return None


def peer_spec(spec: ModelSpec) -> tuple[ModelSpec, str]:
  """(spec the timm peer mirrors, 'vit' | 'convit'). Conv stems have no timm peer: their
  equal-GF patchify twin's peer stands in (the ratio then compares equal-GF models)."""
  if spec.stem == 'conv':
    spec = equal_gf_twin(spec)
  return spec, ('convit' if spec.num_gpsa_layers else 'vit')
