"""Fine-tuning (configs/finetune.py): starting from a run or a weights directory at another size,
the linear probe's frozen backbone, the P1 recipes' settings, and bad sources stopped early."""

import json
import os
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from configs import finetune
from tests.main_cli import ROOT, run_main
from tests.train import tiny
from vit_jax_stems import export, weights
from vit_jax_stems.train import config_checks, evaluate, metrics, optimizer, pretrained, trainer


@pytest.fixture(scope='module')
def source_run(tmp_path_factory):
  """A tiny ViT_C (conv stem with BatchNorm, EMA on) trained 2 steps at 16 px on mnist5k."""
  workdir = tmp_path_factory.mktemp('source')
  c = tiny.tiny_config('vitc', steps=2)
  trainer.train_and_evaluate(c, str(workdir))
  return str(workdir)


def tiny_finetune(source, options='', *, steps=2, image_size=24):
  c = finetune.get_config(f'init={source},dataset=mnist5k{options}')
  c.data.image_size = image_size
  c.batch_size, c.eval_batch_size = 16, 40
  c.total_epochs, c.total_steps = None, steps
  c.schedule.warmup_epochs, c.schedule.warmup_steps = None, 1
  c.eval_every_epochs = c.checkpoint_every_epochs = None
  c.log_every_steps = 1
  return c


def flat(tree):
  return traverse_util.flatten_dict(jax.device_get(tree), sep='/')


def test_the_config_takes_the_architecture_of_its_source(source_run):
  c = finetune.get_config(f'init={source_run},dataset=cluttered_mnist5k')
  run = json.load(open(f'{source_run}/config.json'))
  assert c.model_name == run['model_name'] == 'vit_c_1gf'
  assert c.model.to_dict() == {'scan_layers': False, **run['model']}
  assert (c.init_weights, c.eval_at_start, c.linear_probe) == (source_run, True, False)
  assert c.data.name == 'cluttered_mnist5k' and c.data.image_size == 64
  assert c.optimizer.weight_decay == 0.0 and c.data.augment.mixup_alpha == 0.0
  assert finetune.get_config(f'init={source_run},dataset=mnist5k,probe').linear_probe


def test_a_linear_probe_moves_only_the_head(source_run, tmp_path):
  """Backbone weights and BatchNorm statistics stay those of the (resampled) source to the bit,
  with weight decay on (AdamW decays every masked-in weight, so a missing mask would show)."""
  c = tiny_finetune(source_run, ',probe')
  c.optimizer.weight_decay = 0.5
  trainer.train_and_evaluate(c, str(tmp_path))
  _, start = pretrained.load(source_run, image_size=24)
  _, _, end = export.from_run(str(tmp_path), which='params')
  start, end = flat(start), flat(end)
  assert start.keys() == end.keys() and any(k.startswith('batch_stats/') for k in start)
  moved = sorted(k for k in start if not np.array_equal(start[k], end[k]))
  assert moved == ['params/head/bias', 'params/head/kernel']
  rows = metrics.read_jsonl(tmp_path / 'metrics.jsonl')
  assert [r['step'] for r in rows if 'eval/params_top1' in r] == [0, 2]
  # the "before" is what `--mode eval` gives the source at the new size
  before = evaluate.run(c, str(tmp_path / 'fresh'))
  assert before['params_top1'] == rows[0]['eval/params_top1']
  assert before['eval_count'] == rows[0]['eval/eval_count'] == 1000


def test_a_full_finetune_at_another_size_moves_the_backbone(source_run, tmp_path):
  c = tiny_finetune(source_run)
  trainer.train_and_evaluate(c, str(tmp_path))
  _, start = pretrained.load(source_run, image_size=24)
  _, _, end = export.from_run(str(tmp_path), which='params')
  start, end = flat(start), flat(end)
  assert start['params/pos_embedding'].shape == end['params/pos_embedding'].shape
  assert start['params/pos_embedding'].shape[1] == 1 + 6 * 6  # class token + 24 px / 4
  moved = {k for k in start if k.startswith('params/') and not np.array_equal(start[k], end[k])}
  assert moved == {k for k in start if k.startswith('params/')}


def test_head_only_freezes_every_other_leaf_of_any_optimizer():
  params = {
    'head': {'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)},
    'encoder': {'w': jnp.ones((2, 2))},
    'pos_embedding': jnp.ones((1, 4, 2)),
  }
  grads = jax.tree_util.tree_map(jnp.ones_like, params)
  for name in optimizer.OPTIMIZERS:
    cfg = tiny.tiny_config('vitc').optimizer
    cfg.name, cfg.weight_decay, cfg.grad_clip_norm = name, 0.1, 1.0
    tx = optimizer.make_optimizer(cfg, lambda count: 0.1, head_only=True)
    updates, _ = tx.update(grads, tx.init(params), params)
    assert not updates['encoder']['w'].any() and not updates['pos_embedding'].any(), name
    assert updates['head']['kernel'].all() and updates['head']['bias'].all(), name


def test_the_p1_recipes(tmp_path):
  weights_dir = tmp_path / 'w'
  weights_dir.mkdir()
  meta = {'arch': 'vit_c_18gf', 'num_classes': 21843, 'image_size': 224, 'overrides': {}}
  (weights_dir / weights.MODEL_JSON).write_text(json.dumps(meta))
  c = finetune.get_config(f'init={weights_dir},recipe=p1_in21k')
  assert (c.total_epochs, c.optimizer.weight_decay, c.data.image_size) == (20.0, 0.0, 224)
  assert c.data.name == 'imagenet2012' and c.data.eval_split == 'validation'
  assert c.optimizer.lr == pytest.approx(1e-4) and c.batch_size == 2048
  assert c.data.augment.autoaugment and c.data.augment.mixup_alpha == 0.0
  assert finetune.get_config(f'init={weights_dir},recipe=p1_384').data.image_size == 384
  assert not c.model.scan_layers  # 12 blocks; the 72GF models' 21-22 are scanned
  meta['arch'] = 'vit_c_72gf'
  (weights_dir / weights.MODEL_JSON).write_text(json.dumps(meta))
  assert finetune.get_config(f'init={weights_dir},recipe=p1_384').model.scan_layers
  meta['arch'] = 'convit_ti'
  (weights_dir / weights.MODEL_JSON).write_text(json.dumps(meta))
  with pytest.raises(ValueError, match="P1's, for vit_p_"):
    finetune.get_config(f'init={weights_dir},recipe=p1_in21k')


@pytest.mark.parametrize(
  'options,message', [('', 'needs init=SOURCE'), ('init=nowhere', 'neither')]
)
def test_a_missing_source_names_what_to_pass(options, message):
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    finetune.get_config(options)


def test_a_wrong_init_weights_stops_before_the_dataset_is_read(tmp_path):
  c = tiny.tiny_config('vitc')
  c.init_weights = str(tmp_path / 'nowhere')
  c.data.name = 'not_a_dataset'  # reading it would fail with another message
  with pytest.raises(config_checks.ConfigError, match='neither a weights directory'):
    trainer.check_config(c)


def test_a_probe_with_precise_bn_is_refused(source_run):
  c = tiny_finetune(source_run, ',probe')
  c.precise_bn_samples = 64
  with pytest.raises(config_checks.ConfigError, match=r'config\.precise_bn_samples'):
    trainer.check_config(c)


def test_the_readme_demo_shortened(source_run, tmp_path):
  """The README's fine-tuning command on the tiny source, cut to 3 steps: it prints the top-1
  before and after on cluttered_mnist5k at 48 px."""
  readme = pathlib.Path(ROOT, 'README.md').read_text()
  options = re.search(r'configs/finetune\.py:init=workdirs/demo_vitc,(\S+) --workdir', readme)[1]
  assert 'dataset=cluttered_mnist5k' in options and 'image_size=48' in options
  out = run_main(
    f'--config=configs/finetune.py:init={source_run},{options}',
    f'--workdir={tmp_path}',
    '--config.total_steps=3',
    '--config.eval_every_steps=10',
    '--config.checkpoint_every_steps=3',
    '--config.batch_size=16',
    '--config.eval_batch_size=200',
    timeout=600,
    env=dict(os.environ, JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or ''),
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'top-1 of the starting weights -> after 3 steps: params ' in out.stdout
