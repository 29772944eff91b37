"""One command-line flag style: every flag a Python command defines is spelled with underscores
(absl's style, which main.py and `--config.a.b` force), whether it is defined with absl or argparse.

Read from the source, so a new command or flag is covered without being listed here.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = sorted(
  [ROOT / 'main.py', *(ROOT / 'vit_jax_stems').rglob('*.py'), *(ROOT / 'tools').rglob('*.py')]
)


def _defined_flags(path):
  """(line, flag) for each argparse `add_argument('--x')` and absl `flags.DEFINE_*('x', ...)`."""
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
      continue
    strings = [
      a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
    ]
    if node.func.attr == 'add_argument':
      yield from ((node.lineno, s) for s in strings if s.startswith('--'))
    elif node.func.attr.startswith('DEFINE_') and strings:
      yield node.lineno, '--' + strings[0]


def test_every_flag_is_spelled_with_underscores():
  flags = {f'{p.relative_to(ROOT)}:{line}': f for p in SOURCES for line, f in _defined_flags(p)}
  assert len(flags) > 50  # the scan sees the commands (convert, predict, bench, main.py, ...)
  hyphenated = {where: f for where, f in flags.items() if '-' in f[2:]}
  assert not hyphenated, f'use underscores (README, "Command-line conventions"): {hyphenated}'
