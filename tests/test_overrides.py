"""One typed `key=value` syntax (vit_jax_stems/overrides.py) for convert, bench and the locality
report's `--override`, and for the config options after ':'."""

import pytest

from vit_jax_stems import convert
from vit_jax_stems.analysis import locality_report
from vit_jax_stems.bench import __main__ as bench_main
from vit_jax_stems.bench import cases as cases_lib
from vit_jax_stems.models import ModelSpec

ITEMS = [
  'depth=2',
  'stem_strides=(2,2,1)',
  'stem_channels=8,16,32',
  'stem_kernels=[3, 3, 1]',
  'qkv_bias=False',
  'interpolation=bicubic',
  'locality_strength=1.5',
  'mean=0.5,0.5,0.5',
]
TYPED = {
  'depth': 2,
  'stem_strides': (2, 2, 1),
  'stem_channels': (8, 16, 32),
  'stem_kernels': (3, 3, 1),
  'qkv_bias': False,
  'interpolation': 'bicubic',
  'locality_strength': 1.5,
  'mean': (0.5, 0.5, 0.5),
}


def test_values_are_typed_by_the_model_field():
  got = ModelSpec.parse_overrides(ITEMS)
  assert got == TYPED
  assert [type(v) for v in got.values()] == [type(v) for v in TYPED.values()]
  assert ModelSpec.parse_overrides(['qkv_bias']) == {'qkv_bias': True}
  assert ModelSpec.parse_overrides(['stem_strides=()', 'stem_kernels=(3,)']) == {
    'stem_strides': (),
    'stem_kernels': (3,),
  }


@pytest.mark.parametrize(
  'item,message',
  [
    ('depth=two', 'depth=two: use an integer'),
    ('depth=2.0', 'depth=2.0: use an integer'),
    ('qkv_bias=flase', 'qkv_bias=flase: use true or false'),
    ('interpolation=nearest', 'choose one of bilinear, bicubic'),
    ('mean=0.5,0.5', 'mean=0.5,0.5: use 3 comma-separated values'),
    ('stem_strides=2,x', 'stem_strides=2,x: use an integer'),
    ('dpeth=2', "Unknown --override 'dpeth' in 'dpeth=2'. Did you mean depth?"),
    ('depth', 'write it as depth=value'),
  ],
)
def test_a_wrong_value_names_the_field(item, message):
  with pytest.raises(ValueError, match='--override') as e:
    ModelSpec.parse_overrides([item])
  assert message in str(e.value)


class _Captured(Exception):
  pass


def _capture(monkeypatch, module, name):
  """Replaces module.name by a function that raises _Captured with its arguments."""

  def fake(*args, **kwargs):
    raise _Captured(args, kwargs)

  monkeypatch.setattr(module, name, fake)


def test_convert_bench_and_locality_report_parse_overrides_alike(monkeypatch):
  argv = [a for item in ITEMS for a in ('--override', item)]
  _capture(monkeypatch, convert, 'convert')
  with pytest.raises(_Captured) as e:
    convert.main(['--arch', 'vit_c_1gf', '--src', 'x.safetensors', '--dst', 'y', *argv])
  assert e.value.args[1]['overrides'] == TYPED

  _capture(monkeypatch, cases_lib, 'build_cases')
  with pytest.raises(_Captured) as e:
    bench_main.main(['--models', 'vit_c_1gf', '--batch_size', '2', *argv])
  assert e.value.args[0][1] == TYPED

  _capture(monkeypatch, locality_report, 'run_locality')
  with pytest.raises(_Captured) as e:
    locality_report.main(['--workdir', 'w', '--arch', 'vit_c_1gf', *argv])
  assert e.value.args[1]['arch_overrides'] == TYPED


@pytest.mark.parametrize(
  'main,argv',
  [
    (convert.main, ['--arch', 'vit_c_1gf', '--src', 'x.safetensors', '--dst', 'y']),
    (bench_main.main, ['--models', 'vit_c_1gf', '--batch_size', '2']),
    (locality_report.main, ['--workdir', 'w', '--arch', 'vit_c_1gf']),
  ],
)
def test_a_bad_override_is_a_usage_error_in_every_command(main, argv, capsys):
  with pytest.raises(SystemExit) as e:
    main([*argv, '--override', 'depth=two'])
  assert e.value.code == 2
  assert '--override depth=two: use an integer' in capsys.readouterr().err
