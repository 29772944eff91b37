"""The README's Models snippet runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / 'README.md'


def _models_snippet():
  section = README.read_text().split('\n## Models\n', 1)[1].split('\n## ', 1)[0]
  return re.search(r'```python\n(.*?)```', section, re.DOTALL)[1]


def test_models_snippet_runs_as_written():
  namespace = {}
  exec(compile(_models_snippet(), 'README.md (Models)', 'exec'), namespace)
  logits, out = namespace['logits'], namespace['out']
  assert logits.shape == (2, 1000)
  # The keys the snippet's comment promises (vit_c_1gf: 11 blocks).
  assert {'stem', 'encoder/block00', 'pre_logits', 'encoder/block10/attention'} <= set(out)
  assert out['encoder/block10/attention'].shape == (2, 3, 197, 197)
