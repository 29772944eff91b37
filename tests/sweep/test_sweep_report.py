"""The sweep report: EDF arithmetic and the table's statistics against hand-computed values, and
the command on a synthetic trials.jsonl (tables, figures, bad input)."""

import json
import os

import matplotlib.image
import numpy as np
import pytest

from vit_jax_stems.sweep import report

# Five trials, two tied at 20 and one diverged (counted at 100).
ERRORS = [30.0, 20.0, 20.0, 100.0, 25.0]


def test_edf_counts_errors_strictly_below_e():
  grid = [10.0, 20.0, 20.5, 25.0, 25.01, 30.0, 31.0, 100.0, 100.5]
  # at 20 the tied pair is not yet below e; just above it both are; 100 (diverged) only above 100
  expected = [0.0, 0.0, 0.4, 0.4, 0.6, 0.6, 0.8, 0.8, 1.0]
  np.testing.assert_allclose(report.edf(ERRORS, grid), expected)


def test_edf_steps_are_the_corners_of_the_edf():
  x, y = report.edf_steps(ERRORS)
  np.testing.assert_allclose(x, [20.0, 25.0, 30.0])  # the tie is one step of 2/5
  np.testing.assert_allclose(y, [0.4, 0.6, 0.8])  # the diverged trial keeps it below 1
  np.testing.assert_allclose(report.edf(ERRORS, x + 1e-9), y)


@pytest.mark.parametrize(
  'errors,best,median,top25',
  [
    (ERRORS, 20.0, 25.0, 20.0),  # ceil(5/4) = 2 best: (20 + 20) / 2
    ([5.0, 1.0, 3.0, 100.0, 2.0, 4.0, 7.0, 6.0], 1.0, 4.5, 1.5),  # median (4 + 5) / 2; (1 + 2) / 2
    (
      [9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
      1.0,
      5.0,
      2.0,
    ),  # ceil(9/4) = 3: (1 + 2 + 3) / 3
    ([42.0], 42.0, 42.0, 42.0),
  ],
)
def test_best_median_and_top_quartile(errors, best, median, top25):
  stats = report.summarize(errors, num_diverged=1)
  assert stats == {
    'trials': len(errors),
    'diverged': 1,
    'best': best,
    'median': median,
    'top25': pytest.approx(top25),
  }


def _row(trial_id, model, optimizer, error, *, epochs=10.0, diverged=False, lr=1e-3, wd=0.05):
  return {
    'trial_id': trial_id,
    'index': int(trial_id[1:]),
    'model': model,
    'optimizer': optimizer,
    'epochs': epochs,
    'overrides': {'optimizer.lr': lr, 'optimizer.weight_decay': wd},
    'group': f'{model}-{optimizer}-g00',
    'final_error': 100.0 if diverged else error,
    'best_error': 100.0 if diverged else error - 1.0,
    'final_error_raw': error,
    'final_error_ema': None,
    'diverged': diverged,
    'steps': 10,
    'wall_s': 1.0,
    'execution': 'sequential',
  }


def _synthetic_rows():
  """Two models x two optimizers at 10 epochs (some diverged, one trial repeated), plus ViT_C at
  30 epochs."""
  rows, n = [], 0

  def add(model, optimizer, errors, **kw):
    nonlocal n
    for k, error in enumerate(errors):
      lr = 10.0 ** (-3.5 + 0.3 * k) * (300 if optimizer == 'sgd' else 1)
      wd = 10.0 ** (-1.5 + 0.2 * k) * (1e-3 if optimizer == 'sgd' else 1)
      rows.append(_row(f't{n:03d}', model, optimizer, error, diverged=error is None, lr=lr, wd=wd))
      rows[-1].update(kw)
      n += 1

  add('vit_c', 'adamw', [20.0, 22.0, 24.0, None])
  add('vit_c', 'sgd', [21.0, 23.0, 25.0, 50.0, 29.0])
  rows.append(dict(rows[-2], final_error=27.0))  # a rerun of the 50.0 trial: its last row counts
  add('vit_p', 'adamw', [30.0, 31.0, 35.0, 40.0])
  add('vit_p', 'sgd', [38.0, None, None, 45.0, 41.0])
  rows[-3]['final_error'] = None  # a diverged trial whose error was never measured
  add('vit_c', 'adamw', [18.0, 19.0], epochs=30.0)
  add('vit_c', 'sgd', [19.5], epochs=30.0)
  return rows


def _write(workdir, rows):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'trials.jsonl'), 'w') as f:
    f.writelines(json.dumps(row) + '\n' for row in rows)


def _tables(markdown):
  """{section: [row cells]} of every table row below a '## ' heading."""
  out, section = {}, None
  for line in markdown.splitlines():
    if line.startswith('## '):
      section = line[3:]
    elif line.startswith('| ') and not line.startswith('| model'):
      out.setdefault(section, []).append([cell.strip() for cell in line.strip('|').split('|')])
  return out


def _pixels_of(png, colour, tol=0.04):
  image = matplotlib.image.imread(png)[..., :3]
  return int((np.abs(image - np.array(colour)).max(axis=-1) < tol).sum())


def test_command_writes_tables_and_figures(tmp_path, capsys):
  workdir = str(tmp_path / 'sweep')
  _write(workdir, _synthetic_rows())
  report.main(['--workdir', workdir])
  names = ('edf.png', 'error_vs_hparams.png', 'report.md')
  paths = [os.path.join(workdir, name) for name in names]
  assert capsys.readouterr().out.splitlines() == [f'Wrote {p}' for p in paths]

  with open(paths[2]) as f:
    markdown = f.read()
  assert _tables(markdown) == {
    '10 epochs': [
      ['vit_c', 'adamw', '4', '1', '20.00', '23.00', '20.00'],
      ['vit_c', 'sgd', '5', '0', '21.00', '25.00', '22.00'],  # 27, not 50: the last row counts
      ['vit_p', 'adamw', '4', '0', '30.00', '33.00', '30.00'],
      ['vit_p', 'sgd', '5', '2', '38.00', '45.00', '39.50'],  # diverged at 100 in the median
      ['vit_c', '+1.00', '+2.00'],  # the AdamW-SGD gap: best, median
      ['vit_p', '+8.00', '+12.00'],
    ],
    '30 epochs': [
      ['vit_c', 'adamw', '2', '0', '18.00', '18.50', '18.00'],
      ['vit_c', 'sgd', '1', '0', '19.50', '19.50', '19.50'],
      ['vit_c', '+1.50', '+1.00'],
    ],
  }
  assert f'`python -m vit_jax_stems.sweep.report --workdir {workdir}`' in markdown
  assert '![edf.png](edf.png)\n![error_vs_hparams.png](error_vs_hparams.png)\n' in markdown

  colours = np.array([(0.122, 0.467, 0.706), (1.0, 0.498, 0.055)])  # tab10 C0, C1: vit_c, vit_p
  for png, alpha in zip(paths[:2], (1.0, 0.85)):  # the scatter's points are 85% opaque on white
    with open(png, 'rb') as f:
      assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert os.path.getsize(png) > 20_000
    for colour in alpha * colours + (1 - alpha):  # the curves and points of each model
      assert _pixels_of(png, colour) > 200


def test_best_error_and_several_workdirs_into_out_dir(tmp_path, capsys):
  rows = [r for r in _synthetic_rows() if r['epochs'] == 10.0]
  first, second, out = (str(tmp_path / name) for name in ('a', 'b', 'out'))
  _write(first, [r for r in rows if r['model'] == 'vit_c'])
  _write(second, [r for r in rows if r['model'] == 'vit_p'])
  report.main(['--workdir', first, second, first, '--out_dir', out, '--error', 'best'])
  assert len(capsys.readouterr().out.splitlines()) == 3
  assert not os.path.exists(os.path.join(first, 'report.md'))
  with open(os.path.join(out, 'report.md')) as f:
    markdown = f.read()
  assert f'* `{first}/trials.jsonl`: 9 trials\n* `{second}/trials.jsonl`: 9 trials\n' in markdown
  assert _tables(markdown)['10 epochs'][:4] == [
    ['vit_c', 'adamw', '4', '1', '19.00', '22.00', '19.00'],  # best_error = final_error - 1
    ['vit_c', 'sgd', '5', '0', '20.00', '24.00', '21.00'],
    ['vit_p', 'adamw', '4', '0', '29.00', '32.00', '29.00'],
    ['vit_p', 'sgd', '5', '2', '37.00', '44.00', '38.50'],
  ]


@pytest.mark.parametrize(
  'content,message',
  [
    (None, 'has no trials.jsonl; pass the --workdir of a sweep'),
    ('', 'trials.jsonl has no trials yet; run the sweep first.'),
    ('\n\n', 'trials.jsonl has no trials yet; run the sweep first.'),
    ('{"trial_id": "t0"\n', 'trials.jsonl line 1 is not JSON.'),
    ('[1, 2]\n', 'trials.jsonl line 1 is not a JSON object.'),
    (
      json.dumps(_row('t000', 'vit_c', 'adamw', 20.0)) + '\n{"trial_id": "t1", "model": "vit_c"}\n',
      'trials.jsonl line 2 lacks optimizer, epochs, overrides, diverged.',
    ),
    (
      json.dumps(
        {k: v for k, v in _row('t000', 'vit_c', 'adamw', 1.0).items() if k != 'final_error'}
      ),
      'trials.jsonl line 1 lacks final_error.',
    ),
    (
      json.dumps(_row('t000', 'vit_c', 'adamw', 1.0) | {'final_error': 'low'}),
      "trials.jsonl line 1: final_error is not a number: 'low'.",
    ),
    (
      json.dumps(_row('t000', 'vit_c', 'adamw', 1.0) | {'diverged': 'no'}),
      'trials.jsonl line 1: diverged is not true or false.',
    ),
  ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, capsys, content, message):
  workdir = tmp_path / 'sweep'
  workdir.mkdir()
  if content is not None:
    (workdir / 'trials.jsonl').write_text(content)
  with pytest.raises(SystemExit) as exit_info:
    report.main(['--workdir', str(workdir)])
  assert exit_info.value.code == 1
  err = capsys.readouterr().err
  assert err.startswith('ERROR: ') and message in err and err.count('\n') == 1
  assert sorted(os.listdir(workdir)) == ([] if content is None else ['trials.jsonl'])


def test_a_missing_workdir_is_named(tmp_path, capsys):
  with pytest.raises(SystemExit):
    report.main(['--workdir', str(tmp_path / 'nowhere')])
  assert capsys.readouterr().err == f'ERROR: --workdir {tmp_path / "nowhere"} does not exist.\n'


def test_paired_trials_compare_models_at_the_same_sample(tmp_path, capsys):
  """Three models at the samples 0-2 of one seed; vit_s at sample 2 ran with another seed (other
  values) and has no sample 3 partner: neither pairs. Hand-counted wins, a diverged tie included."""
  lr = {0: 1e-3, 1: 2e-3, 2: 4e-3, 3: 8e-3}
  errors = {  # model: {index: error, None = diverged}
    'vit_c': {0: 20.0, 1: 30.0, 2: None},
    'vit_p': {0: 25.0, 1: 30.0, 2: None, 3: 40.0},
    'vit_s': {0: 10.0, 1: 35.0},
  }
  rows = [
    _row(f't{i:03d}', model, 'adamw', e, diverged=e is None, lr=lr[i], wd=0.05)
    | {'trial_id': f'{model}-adamw-t{i:03d}'}
    for model, by_index in errors.items()
    for i, e in by_index.items()
  ]
  other_seed = _row('t002', 'vit_s', 'adamw', 5.0, lr=3e-3, wd=0.05)
  lone_sgd = _row('t004', 'vit_c', 'sgd', 50.0, lr=0.1, wd=1e-5)
  rows += [other_seed | {'trial_id': 'vit_s-seed1-t002'}, lone_sgd | {'trial_id': 'vit_c-sgd-t004'}]
  workdir = str(tmp_path / 'sweep')
  _write(workdir, rows)
  trials, _ = report.load_trials([workdir])
  paired = report.paired_trials(report.group_trials(trials)[10.0])
  assert list(paired) == ['adamw']  # the lone SGD trial pairs with nothing
  assert [(i, sorted(by_model)) for i, _, by_model in paired['adamw']] == [
    (0, ['vit_c', 'vit_p', 'vit_s']),
    (1, ['vit_c', 'vit_p', 'vit_s']),
    (2, ['vit_c', 'vit_p']),
  ]
  samples = paired['adamw']
  assert report.paired_wins(samples, 'vit_c', 'vit_p') == {
    'pairs': 3,
    'a_lower': 1,  # 20 < 25
    'b_lower': 0,
    'equal': 2,  # 30 = 30, and both diverged (100 = 100)
  }
  assert report.paired_wins(samples, 'vit_c', 'vit_s') == {
    'pairs': 2,
    'a_lower': 1,
    'b_lower': 1,
    'equal': 0,
  }

  report.main(['--workdir', workdir])
  with open(os.path.join(workdir, 'report.md')) as f:
    markdown = f.read()
  assert _tables(markdown)['10 epochs, paired trials'] == [
    ['optimizer', 'model A', 'model B', 'pairs', 'A lower', 'B lower', 'equal'],
    ['adamw', 'vit_c', 'vit_p', '3', '1', '0', '2'],
    ['adamw', 'vit_c', 'vit_s', '2', '1', '1', '0'],
    ['adamw', 'vit_p', 'vit_s', '2', '1', '1', '0'],
    ['trial', 'optimizer.lr', 'optimizer.weight_decay', 'vit_c', 'vit_p', 'vit_s'],
    ['0', '0.001', '0.05', '20.00', '25.00', '10.00'],
    ['1', '0.002', '0.05', '30.00', '30.00', '35.00'],
    ['2', '0.004', '0.05', '100.00', '100.00', ''],
  ]
  capsys.readouterr()
