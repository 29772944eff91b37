"""Config options after ':' are typed by their default: strict booleans, ints, unknown names named."""

import math

import pytest

from configs import common, convit, vitc, vitp


def _untuned_adamw(config):
  return (config.optimizer.lr, config.optimizer.weight_decay) == common.P1_ADAMW['1gf']


@pytest.mark.parametrize('arg', ['tuned=False', 'tuned=false', 'tuned=0', 'tuned=NO', ''])
def test_a_false_boolean_is_false(arg):
  assert _untuned_adamw(vitc.get_config(arg))


@pytest.mark.parametrize('arg', ['tuned', 'tuned=True', 'tuned=true', 'tuned=1', 'tuned=yes'])
def test_a_true_boolean_is_true(arg):
  config = vitc.get_config(arg)
  assert (config.optimizer.lr, config.optimizer.weight_decay) == common.P1_TUNED['vit_c_1gf'][0]


@pytest.mark.parametrize('module', [vitc, vitp, convit])
def test_demo_false_is_the_paper_recipe(module):
  paper, demo = module.get_config(''), module.get_config('demo')
  assert module.get_config('demo=false').to_dict() == paper.to_dict() != demo.to_dict()
  assert module.get_config('demo=True').to_dict() == demo.to_dict()


def test_epochs_is_an_integer():
  assert vitp.get_config('size=4gf,epochs=100').total_epochs == 100.0
  with pytest.raises(ValueError, match=r'config option epochs=100\.5: use an integer'):
    vitp.get_config('epochs=100.5')


@pytest.mark.parametrize(
  'module,arg,message',
  [
    (vitc, 'tuned=maybe', 'config option tuned=maybe: use true or false'),
    (convit, 'demo=ture', 'config option demo=ture: use true or false'),
    (vitc, 'sise=4gf', "Unknown config option 'sise' in 'sise=4gf'. Did you mean size?"),
    (vitc, 'size', 'write it as size=value'),
    (vitp, 'dataset=cluttered_mnist5k', 'a demo option; add demo'),
    (convit, 'demo,dataset=cifar10', "dataset='cifar10': choose one of mnist5k, cluttered_mnist5k"),
  ],
)
def test_a_wrong_option_names_it(module, arg, message):
  with pytest.raises(ValueError) as e:
    module.get_config(arg)
  assert message in str(e.value)


@pytest.mark.parametrize('module', [vitc, vitp, convit])
def test_every_demo_takes_the_demos_sgd_and_only_the_optimizer_changes(module):
  adamw, sgd = module.get_config('demo'), module.get_config('demo,optimizer=sgd')
  assert module.get_config('demo,optimizer=adamw').to_dict() == adamw.to_dict()
  assert {k: sgd.optimizer[k] for k in common.DEMO_SGD} == common.DEMO_SGD
  assert sgd.optimizer.wd_mask == adamw.optimizer.wd_mask == 'pycls'
  assert dict(sgd.to_dict(), optimizer=None) == dict(adamw.to_dict(), optimizer=None)


def test_the_deit_recipe_refuses_sgd():
  with pytest.raises(ValueError, match='the DeiT recipe is AdamW only'):
    convit.get_config('size=s,optimizer=sgd')


@pytest.mark.parametrize('module', [vitc, vitp, convit])
def test_the_cluttered_demo_changes_only_the_data_and_the_patch(module):
  """64x64 canvases with patch 8 (a stem of three stride-2 convs for ViT_C): the same 8x8 tokens
  as the mnist5k demo at 32x32 with patch 4, so the transformer costs the same."""
  plain, cluttered = module.get_config('demo'), module.get_config('demo,dataset=cluttered_mnist5k')
  assert (cluttered.data.name, cluttered.data.image_size) == ('cluttered_mnist5k', 64)
  for c in (plain, cluttered):
    assert c.data.image_size // c.model.patch_size == 8
    if 'stem_strides' in c.model:
      assert math.prod(c.model.stem_strides) == c.model.patch_size
  assert {k for k in plain if plain[k] != cluttered[k]} == {'model', 'data'}
  stem = ('stem_kernels', 'stem_strides', 'stem_channels', 'patch_size')
  assert {k: v for k, v in plain.model.items() if k not in stem} == {
    k: v for k, v in cluttered.model.items() if k not in stem
  }
