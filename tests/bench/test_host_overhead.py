"""The host-overhead benchmark on a tiny trainer config: the loop trains on the batches it is
given, the window sees the config's log and checkpoint cadence, and every figure is reported."""

import os
import sys

import pytest

sys.path.insert(
  0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'train')
)
import tiny

from vit_jax_stems.bench import host_overhead


@pytest.mark.parametrize(
  'first,steps,every,expected', [(4, 155, 50, 3), (4, 155, 155, 1), (3, 3, 2, 1), (1, 4, 0, 0)]
)
def test_cadence_counts_the_multiples_inside_the_window(first, steps, every, expected):
  assert host_overhead.cadence_in(first, steps, every) == expected


def test_measure_reports_loop_and_bare_figures_of_the_same_steps():
  config = tiny.tiny_config('vitc', steps=3)  # log and checkpoint every 2 steps
  config.num_devices = 1
  result = host_overhead.measure(config, steps=3, repeats=1, skip=2)
  assert result['window_first_step'] == 3 and result['steps_per_window'] == 3
  assert result['loop_batches_requested'] == 6  # total steps: the loop trained on our batches
  assert result['log_rows_in_window'] == 1 and result['checkpoints_in_window'] == 1
  assert len(result['bare_step_s']) == 2 and len(result['loop_step_s']) == 1
  for side in ('bare', 'loop'):
    for key in ('step_s', 'cpu_s_per_step', 'thread_cpu_s_per_step'):
      assert all(x > 0 for x in result[f'{side}_{key}']), (side, key)
  # The loop's own thread does more per step than dispatching the bare step; all is below wall.
  assert result['loop_thread_cpu_s_per_step'][0] > min(result['bare_thread_cpu_s_per_step'])
  assert 0 < result['loop_host_share'] < result['loop_over_bare_wall'][0]
  bare = sum(result['bare_step_s']) / 2
  assert result['loop_over_bare_wall'] == [pytest.approx(result['loop_step_s'][0] / bare)]
  assert result['overhead_wall'] == pytest.approx(result['loop_over_bare_wall'][0] - 1)
  by_kind = result['loop_thread_ms_by_step_kind']  # steps 3, 5 plain; 4 saves and logs
  assert set(by_kind) == {'plain', 'checkpoint save'}
  assert by_kind['checkpoint save'] > by_kind['plain'] > 0
  text = host_overhead.report(result)
  assert 'loop overhead: ' in text and "the loop's Python work" in text and 'load average' in text
