"""The benchmark CLI end to end on a tiny conv-stem model, and the MFU arithmetic by hand."""

import json

import pytest

from vit_jax_stems import mfu
from vit_jax_stems.bench import __main__ as bench_main
from vit_jax_stems.bench import cases as cases_lib
from vit_jax_stems.bench import report

TINY_ARGS = [
  '--override',
  'hidden_size=32',
  '--override',
  'num_heads=2',
  '--override',
  'mlp_dim=64',
  '--override',
  'depth=2',
  '--override',
  'stem_kernels=(3,3,1)',
  '--override',
  'stem_strides=(2,2,1)',
  '--override',
  'stem_channels=(8,16,32)',
  '--override',
  'patch_size=4',
  '--override',
  'num_classes=10',
  '--image_size',
  '16',
]


def _hand_macs_tiny_vit_c():
  """pycls `blocks.py` *_cx rules written out for the tiny vit_c of TINY_ARGS."""
  stem = (
    9 * 3 * 8 * 8 * 8  # 3x3 conv 3->8, stride 2: 8x8 output, no bias
    + 9 * 8 * 16 * 4 * 4  # 3x3 conv 8->16, stride 2: 4x4 output, no bias
    + 16 * 32 * 4 * 4
    + 32 * 4 * 4
  )  # 1x1 conv 16->32 with bias
  length, d, heads, dh, m = 4 * 4 + 1, 32, 2, 16, 64
  mha = length * (3 * d * d + 3 * d) + 2 * heads * length**2 * dh + length * (d * d + d)
  mlp = length * (d * m + m) + length * (m * d + d)
  head = d * 10 + 10
  return stem + 2 * (mha + mlp) + head


def test_cli_end_to_end_writes_json_with_all_fields(tmp_path):
  out = tmp_path / 'bench.json'
  bench_main.main(
    [
      '--models',
      'vit_c_1gf',
      '--batch_size',
      '4',
      '--steps',
      '2',
      '--repeats',
      '1',
      '--warmup',
      '1',
      '--peak_tflops',
      '0.05',
      '--json',
      str(out),
    ]
    + TINY_ARGS
  )
  doc = json.loads(out.read_text())
  for key in (
    'command',
    'device',
    'peak',
    'settings',
    'cases',
    'peers',
    'comparisons',
    'gpsa_outputs',
  ):
    assert key in doc
  assert doc['peak']['tflops'] == 0.05 and '--peak_tflops' in doc['peak']['source']
  (row,) = doc['cases']
  for key in (
    'train_step_s',
    'train_images_per_s',
    'train_mfu',
    'train_lower_s',
    'train_compile_s',
    'train_temp_bytes',
    'train_total_bytes',
    'infer_step_s',
    'infer_images_per_s',
    'infer_mfu',
    'infer_compile_s',
    'device_peak_bytes',
    'final_loss',
    'macs_per_image',
    'train_flops_per_step',
    'attention',
  ):
    assert key in row, key
  assert row['macs_per_image'] == _hand_macs_tiny_vit_c()
  assert row['train_flops_per_step'] == 6 * _hand_macs_tiny_vit_c() * 4
  assert row['train_mfu'] == pytest.approx(
    6 * _hand_macs_tiny_vit_c() * 4 / row['train_step_s'] / 0.05e12
  )
  assert row['train_images_per_s'] == pytest.approx(4 / row['train_step_s'])
  assert row['train_step_s'] == pytest.approx(row['train_window_s'][0] / 2)
  assert row['train_compile_s'] > 0 and row['train_total_bytes'] > 0
  assert row['attention'] == 'xla'  # CPU
  assert 0 < row['final_loss'] < 10  # a real cross-entropy over 10 classes, finite
  assert row['spec']['stem'] == 'conv'


def test_mfu_by_hand_h100():
  """ViT_P-18GF (17.580 GMACs by pycls count, P1 Table 1: 17.5), batch 256, 0.1 s per step."""
  peak, source = mfu.peak_for('NVIDIA H100 80GB HBM3', 'bfloat16')
  assert peak == 989.4 and 'datasheet' in source
  flops = mfu.train_flops(17_580_000_000, 256)
  assert flops == 27_002_880_000_000  # 6 * 17.58e9 * 256
  assert mfu.mfu(flops, 0.1, peak) == pytest.approx(27.00288e12 / 0.1 / 989.4e12)
  assert mfu.mfu(flops, 0.1, peak) == pytest.approx(0.27292, abs=1e-5)


def test_peak_table_lookup():
  assert mfu.peak_for('NVIDIA H100 PCIe', 'bfloat16')[0] == 756.0
  assert mfu.peak_for('NVIDIA H200', 'bfloat16')[0] == 989.4
  assert mfu.peak_for('NVIDIA A100-SXM4-80GB', 'bfloat16')[0] == 312.0
  assert mfu.peak_for('TPU v4', 'bfloat16')[0] == 275.0
  assert mfu.peak_for('TPU v5 lite', 'bfloat16')[0] == 197.0
  assert mfu.peak_for('TPU v4', 'float32')[0] is None
  assert mfu.peak_for('cpu', 'float32')[0] is None
  assert mfu.mfu(1e12, 1.0, None) is None
  assert mfu.peak_for('cpu', 'float32', 2.0) == (
    2.0,
    pytest.approx('--peak_tflops 2 (given on the command line)'),
  )


def test_bad_input_fails_before_compiling():
  with pytest.raises(SystemExit, match="Unknown model 'vit_x'"):
    bench_main.main(['--models', 'vit_x', '--batch_size', '2'])
  with pytest.raises(SystemExit):
    bench_main.main(['--models', 'vit_p_1gf', '--batch_size', '2', '--override', 'depth'])
  with pytest.raises(SystemExit):
    bench_main.main(['--models', 'vit_p_1gf', '--batch_size', '0'])
  with pytest.raises(SystemExit):  # the peers alone need the peer named
    bench_main.main(['--models', 'vit_p_1gf', '--batch_size', '2', '--peer_only'])


def test_cases_twins_and_gpsa_study_of_the_registered_models():
  built = cases_lib.build_cases(['vit_c_4gf', 'convit_s'], {}, twins=True, gpsa_study=True)
  by_label = {c.label: c for c in built}
  # P1 Table 1: ViT_C-4GF = ViT_P-4GF with a conv stem and one block fewer.
  assert by_label['vit_p_4gf'].role == 'twin' and by_label['vit_p_4gf'].of == 'vit_c_4gf'
  assert by_label['convit_s[explicit]'].return_attention
  plain = by_label['convit_s[plain]'].spec
  assert plain.num_gpsa_layers == 0 and plain.hidden_size == 432 and plain.depth == 12
  assert not plain.qkv_bias
  assert cases_lib.peer_spec(by_label['vit_c_4gf'].spec) == (by_label['vit_p_4gf'].spec, 'vit')


def test_twin_asked_for_by_name_is_still_paired():
  """With vit_p_4gf in --models as well, --twins still compares vit_c_4gf with it (once)."""
  built = cases_lib.build_cases(['vit_p_4gf', 'vit_c_4gf'], {}, twins=True, gpsa_study=False)
  assert [(c.label, c.role, c.of) for c in built] == [
    ('vit_p_4gf', 'twin', 'vit_c_4gf'),
    ('vit_c_4gf', 'model', None),
  ]


def test_report_comparisons_are_ratios_of_rows():
  def row(case, role='model', of=None, step=1.0, temp=10):
    return {
      'case': case,
      'role': role,
      'of': of,
      'train_step_s': step,
      'infer_step_s': step / 2,
      'train_images_per_s': 8 / step,
      'infer_images_per_s': 16 / step,
      'train_temp_bytes': temp,
      'infer_temp_bytes': temp,
      'macs_per_image': 100,
    }

  rows = [
    row('convit_s', step=1.1),
    row('convit_s[explicit]', 'explicit', 'convit_s', 2.2, 40),
    row('convit_s[plain]', 'plain', 'convit_s', 1.0),
  ]
  peer = {'peer': 'timm ConVit', 'train_images_per_s': 4 / 1.1, 'infer_images_per_s': 16 / 1.1}
  got = {c['kind']: c for c in report.comparisons(rows, {'convit_s': peer})}
  assert got['ours/peer']['train_images_per_s_ratio'] == pytest.approx(2.0)
  assert got['fast/explicit GPSA']['train_speedup'] == pytest.approx(2.0)
  assert got['GPSA/plain step time']['train_step_ratio'] == pytest.approx(1.1)


def test_scan_study_pairs_each_model_with_its_other_layout():
  built = cases_lib.build_cases(
    ['vit_c_4gf', 'convit_s'], {}, twins=True, gpsa_study=False, scan_study=True
  )
  labels = [c.label for c in built]
  # Each pair side by side, so that both run under the same machine load.
  assert labels[:4] == ['vit_c_4gf', 'vit_c_4gf[scanned]', 'convit_s', 'convit_s[scanned]']
  by_label = {c.label: c for c in built}
  scanned = by_label['convit_s[scanned]']
  assert scanned.role == 'layout' and scanned.of == 'convit_s'
  assert scanned.spec == by_label['convit_s'].spec.replace(scan_layers=True)
  again = cases_lib.build_cases(
    ['convit_s'], {'scan_layers': True}, twins=False, gpsa_study=False, scan_study=True
  )
  assert [c.label for c in again] == ['convit_s', 'convit_s[unrolled]']


def test_cli_scan_study_compares_compile_and_step_times(tmp_path):
  out = tmp_path / 'bench.json'
  bench_main.main(
    ['--models', 'vit_c_1gf', '--batch_size', '2', '--steps', '1', '--repeats', '1']
    + ['--warmup', '0', '--scan_study', '--json', str(out)]
    + TINY_ARGS
  )
  doc = json.loads(out.read_text())
  unrolled, scanned = doc['cases']
  assert (unrolled['spec']['scan_layers'], scanned['spec']['scan_layers']) == (False, True)
  assert scanned['final_loss'] == pytest.approx(unrolled['final_loss'], rel=1e-4)
  (c,) = doc['comparisons']
  assert c['kind'] == 'scanned/unrolled' and (c['a'], c['b']) == ('vit_c_1gf[scanned]', 'vit_c_1gf')
  compile_s = [r['train_lower_s'] + r['train_compile_s'] for r in (scanned, unrolled)]
  assert c['train_lower_compile_s'] == pytest.approx(compile_s)
  assert c['train_compile_ratio'] == pytest.approx(compile_s[0] / compile_s[1])
  assert c['train_step_ratio'] == pytest.approx(scanned['train_step_s'] / unrolled['train_step_s'])
  cpu = [r['train_step_cpu_s'] for r in (scanned, unrolled)]
  assert min(cpu) > 0 and c['train_step_cpu_ratio'] == pytest.approx(cpu[0] / cpu[1])
