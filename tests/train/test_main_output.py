"""What a new user meets first: `python main.py` prints the project's own lines before the first
progress line (no TensorFlow, absl, TFDS or JAX start-up notices), and that line has an ETA."""

import os
import subprocess
import sys

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The tiny vitc of tiny.py on the embedded mnist5k, as command-line overrides of the demo.
OVERRIDES = {
  'model.hidden_size': 16,
  'model.num_heads': 4,
  'model.mlp_dim': 32,
  'model.depth': 1,
  'model.stem_kernels': '(3,1)',
  'model.stem_strides': '(4,1)',
  'model.stem_channels': '(8,16)',
  'data.image_size': 16,
  'data.eval_split': 'test[:40]',
  'batch_size': 16,
  'eval_batch_size': 40,
  'num_devices': 1,
  'total_steps': 6,
  'log_every_steps': 3,
}
# Start-up notices nobody can act on, as TensorFlow 2.21, absl, TFDS 4.9 and JAX 0.10 print them.
NOISE = (
  'absl::InitializeLog',
  'oneDNN custom operations',
  'cpu_feature_guard',
  'dataset_info.py',
  'reader.py',
  'xla_bridge.py',
  'deprecation.py',
  'Instructions for updating',
)


def test_the_first_lines_are_the_projects_own_and_the_first_progress_line_has_an_eta(tmp_path):
  env = dict(
    os.environ,
    JAX_PLATFORMS='cpu',
    JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or '',
    JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0.5',
  )
  for var in ('TF_CPP_MIN_LOG_LEVEL', 'TF_ENABLE_ONEDNN_OPTS'):
    env.pop(var, None)  # main.py's own defaults, as a new user has them
  argv = ['--config=configs/vitc.py:demo', f'--workdir={tmp_path}']
  argv += [f'--config.{k}={v}' for k, v in OVERRIDES.items()]
  proc = subprocess.run(
    [sys.executable, 'main.py', *argv],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stdout[-3000:]
  lines = proc.stdout.splitlines()
  first = next(i for i, line in enumerate(lines) if line.startswith('step 3/6'))
  before = lines[:first]
  assert not [line for line in before if any(n in line for n in NOISE)], '\n'.join(before)
  assert len(before) <= 5, '\n'.join(before)  # devices, plan, FLOPs note, clu's progress note
  assert 'ETA 0h' in lines[first], lines[first]
