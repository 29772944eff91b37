"""`python -m vit_jax_stems.complexity MODEL|all [--image_size N] [--json] [--no_xla]`.

Prints parameters, FLOPs counted as pycls counts them (multiply-adds, `models.complexity`) and
activations, beside XLA's own FLOP count of the compiled forward (`cost_analysis()`), so the two
can be compared. XLA counts 2 FLOPs per multiply-add and also counts softmax, norms and GELU, so
`xla_macs` = XLA FLOPs / 2 is expected a few percent above the pycls count.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp

from vit_jax_stems import models


def xla_forward_flops(name: str, image_size: int | None = None, batch: int = 1) -> float:
  """FLOPs XLA reports for the compiled inference forward of one batch (no compute is run)."""
  overrides = {} if image_size is None else {'image_size': image_size}
  model = models.create_model(name, **overrides)
  size = model.spec.image_size
  images = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
  variables = models.abstract_variables(model)
  forward = jax.jit(lambda v, x: model.apply(v, x)[0])
  cost = forward.lower(variables, images).compile().cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX returned one dict per device program
    cost = cost[0]
  return float(cost['flops']) / batch


def report(name: str, image_size: int | None = None, with_xla: bool = True) -> dict:
  spec = models.get_spec(name, **({} if image_size is None else {'image_size': image_size}))
  row = {'model': name, 'image_size': spec.image_size, **models.complexity.count(spec)}
  if with_xla:
    row['xla_flops'] = xla_forward_flops(name, spec.image_size)
    row['xla_macs_over_pycls'] = row['xla_flops'] / 2 / row['flops']
  return row


def _format(row: dict) -> str:
  text = (
    f'{row["model"]:<16} {row["image_size"]:>4}px  params {row["params"] / 1e6:9.3f} M  '
    f'flops {row["flops"] / 1e9:8.3f} GMAC  acts {row["acts"] / 1e6:8.3f} M'
  )
  if 'xla_flops' in row:
    text += (
      f'  | XLA {row["xla_flops"] / 1e9:8.3f} GFLOP '
      f'(= {row["xla_macs_over_pycls"]:.3f} x pycls MACs)'
    )
  return text


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    'model', help=f"a registered model or 'all': {', '.join(models.list_models())}"
  )
  parser.add_argument('--image_size', type=int, default=None)
  parser.add_argument('--json', action='store_true', help='print one JSON object per model')
  parser.add_argument('--no_xla', action='store_true', help="skip XLA's compiled-forward count")
  args = parser.parse_args(argv)
  names = models.list_models() if args.model == 'all' else [args.model]
  try:
    for name in names:
      models.get_spec(name, **({} if args.image_size is None else {'image_size': args.image_size}))
  except ValueError as e:
    parser.error(str(e))
  for name in names:
    row = report(name, args.image_size, with_xla=not args.no_xla)
    print(json.dumps(row) if args.json else _format(row), flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
