"""Complexity of the zoo against the papers' tables (P1, P2 Table 1) and the real modules."""

import jax
import jax.numpy as jnp
import pytest

from vit_jax_stems import complexity as complexity_cli
from vit_jax_stems import models

# Exact pycls count of P1 Table 1 (docs/references.md#pycls-complexity-counting):
# (GF multiply-adds, params M, acts M).
PYCLS_TABLE = {
  'vit_p_1gf': (1.083, 4.830, 5.521),
  'vit_c_1gf': (1.079, 4.568, 5.628),
  'vit_p_4gf': (3.909, 18.507, 11.040),
  'vit_c_4gf': (3.966, 17.754, 11.256),
  'vit_p_18gf': (17.580, 86.568, 23.896),
  'vit_c_18gf': (17.727, 81.573, 24.024),
  'vit_p_36gf': (35.997, 178.364, 37.137),
  'vit_c_36gf': (35.026, 167.796, 36.606),
}
# P2 Table 1 (docs/references.md#convit-and-gpsa): (GMACs, params M).
CONVIT_TABLE = {
  'convit_ti': (1.25, 5.71),
  'convit_ti_plus': (2.13, 9.97),
  'convit_s': (5.75, 27.78),
  'convit_s_plus': (10.00, 48.98),
  'convit_b': (17.51, 86.54),
  'convit_b_plus': (30.74, 153.13),
}


def _rel(a, b):
  return abs(a / b - 1)


@pytest.mark.parametrize('name', sorted(PYCLS_TABLE))
def test_vit_p_and_c_match_pycls_counts(name):
  flops, params, acts = PYCLS_TABLE[name]
  c = models.complexity.count(models.get_spec(name))
  assert _rel(c['flops'] / 1e9, flops) < 0.005
  assert _rel(c['params'] / 1e6, params) < 0.005
  assert _rel(c['acts'] / 1e6, acts) < 0.005


@pytest.mark.parametrize('name', sorted(CONVIT_TABLE))
def test_convit_matches_paper_table(name):
  macs, params = CONVIT_TABLE[name]
  c = models.complexity.count(models.get_spec(name))
  assert _rel(c['flops'] / 1e9, macs) < 0.005
  assert _rel(c['params'] / 1e6, params) < 0.005


@pytest.mark.parametrize('name', models.list_models())
def test_counted_params_equal_the_flax_parameter_tree(name):
  """The counter and the module are written independently; their parameter counts must agree."""
  model = models.create_model(name)
  images = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
  shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)
  n_params = sum(x.size for x in jax.tree.leaves(shapes['params']))
  assert n_params == models.complexity.count(model.spec)['params']


def test_flops_follow_the_image_size():
  small = models.complexity.count(models.get_spec('vit_p_1gf'), image_size=112)
  big = models.complexity.count(models.get_spec('vit_p_1gf'))
  assert small['flops'] < big['flops'] / 3.5


def test_xla_count_is_close_to_pycls_count():
  """XLA's compiled-forward FLOPs / 2 exceed the pycls MACs only by what pycls leaves out."""
  row = complexity_cli.report('vit_p_1gf')
  assert 1.0 < row['xla_macs_over_pycls'] < 1.1


def test_cli_rejects_bad_image_size(capsys):
  with pytest.raises(SystemExit):
    complexity_cli.main(['vit_p_1gf', '--image_size', '100'])
  assert 'divisible by patch_size' in capsys.readouterr().err
