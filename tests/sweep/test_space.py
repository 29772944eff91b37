"""The search space: `--space` syntax and its errors, P1's default space, and samples that are a
pure function of (sweep seed, trial index)."""

import math

import numpy as np
import pytest

from configs import vitc
from vit_jax_stems.sweep import space


def _demo():
  return vitc.get_config('demo')


def test_samples_are_a_pure_function_of_seed_and_index_and_lie_in_their_bounds():
  s = space.parse(
    'optimizer.lr=loguniform(1e-4,1e-2),schedule.warmup_factor=uniform(0.1,0.5),'
    'optimizer.nesterov=choice(true|false)',
    _demo(),
  )
  forward = [space.sample(s, 7, i) for i in range(200)]
  backward = [space.sample(s, 7, i) for i in reversed(range(200))][::-1]
  assert forward == backward  # no state carried from one call to the next
  assert space.sample(s, 7, 3) != space.sample(s, 8, 3)
  assert len({f['optimizer.lr'] for f in forward}) == 200
  for values in forward:
    assert 1e-4 <= values['optimizer.lr'] <= 1e-2
    assert 0.1 <= values['schedule.warmup_factor'] <= 0.5
    assert values['optimizer.nesterov'] in (True, False)
  assert {f['optimizer.nesterov'] for f in forward} == {True, False}


def test_loguniform_is_uniform_in_the_logarithm():
  s = space.parse('optimizer.lr=loguniform(1e-4,1e-2)', _demo())
  logs = np.log10([space.sample(s, 0, i)['optimizer.lr'] for i in range(2000)])
  # uniform on [-4, -2]: mean -3, and a quarter of the draws in each quarter of the range
  assert logs.mean() == pytest.approx(-3.0, abs=0.05)
  counts = np.histogram(logs, bins=4, range=(-4, -2))[0]
  assert np.all(np.abs(counts - 500) < 80), counts


def test_the_default_space_is_p1s_eighth_to_four_times_the_base_point():
  config = _demo()  # AdamW lr 2e-3, wd 0.05 (configs/common.py demo)
  s = space.default_space(config)
  assert list(s) == ['optimizer.lr', 'optimizer.weight_decay']
  assert (s['optimizer.lr'].kind, s['optimizer.weight_decay'].kind) == ('loguniform',) * 2
  assert (s['optimizer.lr'].low, s['optimizer.lr'].high) == pytest.approx((2.5e-4, 8e-3))
  assert (s['optimizer.weight_decay'].low, s['optimizer.weight_decay'].high) == pytest.approx(
    (0.05 / 8, 0.2)
  )
  # P1's ranges at batch 2048 (docs/references.md#experiment-protocols) from their base points.
  config.optimizer.update(dict(name='sgd', lr=0.8, weight_decay=3e-5))
  s = space.default_space(config)
  assert (s['optimizer.lr'].low, s['optimizer.lr'].high) == pytest.approx((0.1, 3.2))
  assert s['optimizer.weight_decay'].high == pytest.approx(1.2e-4)
  values = [space.sample(s, 1, i) for i in range(100)]
  assert all(0.1 <= v['optimizer.lr'] <= 3.2 for v in values)


def test_the_default_space_needs_a_positive_base_point():
  config = _demo()
  config.optimizer.weight_decay = 0.0
  with pytest.raises(space.SpaceError, match=r'config.optimizer.weight_decay is 0.0.*--space'):
    space.default_space(config)


def test_parse_keeps_the_order_types_choices_by_the_field_and_reads_back_its_description():
  s = space.parse(
    ' config.optimizer.weight_decay=uniform(0,0.3), ema.period=choice(1|4),'
    'optimizer.grad_clip_norm=loguniform(0.5,2)',
    _demo(),
  )
  assert list(s) == ['optimizer.weight_decay', 'ema.period', 'optimizer.grad_clip_norm']
  assert s['ema.period'].choices == (1, 4)  # ints: config.ema.period is an int
  assert s['optimizer.weight_decay'] == space.Distribution('uniform', 0.0, 0.3)
  assert space.parse(space.describe(s), _demo()) == s


@pytest.mark.parametrize(
  'text,message',
  [
    (
      'optimizer.lrr=loguniform(1e-4,1e-2)',
      "config.optimizer has no field 'lrr'. Did you mean lr?",
    ),
    ('optimzer.lr=loguniform(1e-4,1e-2)', "config has no group 'optimzer'"),
    ('optimizer.lr=logunifrom(1e-4,1e-2)', "no distribution 'logunifrom'. Did you mean loguniform"),
    ('optimizer.lr=loguniform(1e-2,1e-4)', 'lower bound must be below the upper one'),
    ('optimizer.lr=uniform(0.1,0.1)', 'lower bound must be below the upper one'),
    ('optimizer.lr=loguniform(0,1e-2)', 'loguniform bounds must be > 0'),
    ('optimizer.lr=loguniform(1e-2)', 'loguniform(a,b) takes two numbers'),
    ('ema.period=uniform(1,4)', 'config.ema.period holds int, not a float'),
    ('ema.enabled=choice(true|maybe)', 'config.ema.enabled holds a bool: use true or false'),
    ('optimizer.lr=loguniform(1e-4,1e-2),optimizer.lr=uniform(0,1)', 'names optimizer.lr twice'),
    ('batch_size=choice(16|32)', 'config.batch_size is not sampled'),
    ('total_epochs=uniform(1,2)', 'config.total_epochs is not sampled (set by --epochs)'),
    ('optimizer=choice(adamw|sgd)', 'config.optimizer is a group of fields'),
    ('optimizer.lr:loguniform(1e-4,1e-2)', 'write field=loguniform(a,b)'),
    (' , ', '--space is empty'),
  ],
)
def test_a_space_that_cannot_be_sampled_is_one_message_naming_the_entry(text, message):
  with pytest.raises(space.SpaceError) as e:
    space.parse(text, _demo())
  assert message in str(e.value)
  assert '\n' not in str(e.value)


def test_sample_refuses_negative_seeds_and_indices():
  s = space.default_space(_demo())
  with pytest.raises(ValueError, match='must be >= 0'):
    space.sample(s, -1, 0)
  assert math.isfinite(space.sample(s, 2**40, 2**40)['optimizer.lr'])
