"""Loading a config, the models or the device half of the augmentation imports no TensorFlow.

TensorFlow (and TFDS) is only for the host input pipeline: it takes seconds to import, grabs
accelerator memory unless told not to, and is absent from some accelerator images. Each check runs
in a fresh interpreter, since this test process has long imported TensorFlow.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NO_TF = """
import sys
{imports}
loaded = sorted(m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules)
assert not loaded, f'{{loaded}} imported'
"""


@pytest.mark.parametrize(
  'imports',
  [
    "import vit_jax_stems.data, configs.vitc; configs.vitc.get_config('demo')",
    "import configs.convit, configs.vitp; configs.convit.get_config(); configs.vitp.get_config('demo')",
    'from vit_jax_stems import data; data.default_config(); data.paper_recipe_config("convit")',
    'import vit_jax_stems.data.device_augment',
    'import vit_jax_stems.models',
    'import vit_jax_stems.train.config_checks',
  ],
)
def test_import_without_tensorflow(imports):
  result = subprocess.run(
    [sys.executable, '-c', NO_TF.format(imports=imports)],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr[-3000:]
