"""Every citation in the repository points at something a reader of the repository has.

Comments and documents cite a primary source (a paper and its table, a file of a reference
repository) or a section of docs/references.md. Two kinds of citation point outside the
repository and are refused: the internal design document the facts were first gathered in, and
the numbers of this project's issue tracker. An upstream issue stays citable as
`owner/repo issue #N`. Every link to a section of docs/references.md must name one of its
headings.
"""

from __future__ import annotations

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCES = ROOT / 'docs' / 'references.md'

# The word "issue(s)" followed by a number, with a space or a hyphen: a tracker number. An upstream
# issue has a '#' before its number and does not match.
TRACKER_ISSUE = re.compile(r'\b[Ii]ssues?[ -]\d')
# The internal design document by its name, in any form (with a section, with `.md`, alone in
# brackets). The launch scripts' usage line `--config SPEC` uses the word as a metavariable.
SPEC_DOCUMENT = re.compile(r'(?<!--config )\bSPEC\b')
ANCHOR_LINK = re.compile(r'references\.md#([A-Za-z0-9_-]+)')
LOCAL_ANCHOR_LINK = re.compile(r'\]\(#([A-Za-z0-9_-]+)\)')
SKIPPED_DIRS = {'.git', '.venv', 'workdirs', '__pycache__', '.pytest_cache', '.ruff_cache'}


def repository_files() -> list[pathlib.Path]:
  """Tracked and untracked-but-not-ignored files: what a clone (or the next commit) holds."""
  try:
    listed = subprocess.run(
      ['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
      cwd=ROOT,
      capture_output=True,
      check=True,
    ).stdout.decode()
    paths = [ROOT / p for p in listed.split('\0') if p]
  except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the tree
    paths = [
      p
      for p in ROOT.rglob('*')
      if p.is_file() and not SKIPPED_DIRS.intersection(p.relative_to(ROOT).parts)
    ]
  return [p for p in paths if p.is_file()]


def text_lines(path: pathlib.Path) -> list[str]:
  """The file's lines, or none for a binary file (weights, images, npz fixtures)."""
  data = path.read_bytes()
  if b'\0' in data:
    return []
  try:
    return data.decode('utf-8').splitlines()
  except UnicodeDecodeError:
    return []


def github_anchor(heading: str) -> str:
  """The anchor GitHub gives a markdown heading: lower case, punctuation dropped, '-' for ' '."""
  return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def reference_anchors() -> set[str]:
  anchors, in_code = set(), False
  for line in REFERENCES.read_text(encoding='utf-8').splitlines():
    if line.startswith('```'):
      in_code = not in_code
    elif not in_code and line.startswith('#'):
      anchors.add(github_anchor(line.lstrip('#')))
  return anchors


def test_the_patterns_refuse_outside_citations_and_keep_primary_sources():
  assert SPEC_DOCUMENT.search('(S' + 'PEC section 4)')
  assert SPEC_DOCUMENT.search('see S' + 'PEC.md')
  assert not SPEC_DOCUMENT.search('  --config S' + 'PEC             run: [TPU_CONFIG]')
  assert TRACKER_ISSUE.search('# Training and evaluation (iss' + 'ue 4)')
  assert TRACKER_ISSUE.search('the iss' + 'ue-7 benchmark')
  assert not TRACKER_ISSUE.search('facebookresearch/convit issue #23')
  assert github_anchor(' P1 models (pycls)') == 'p1-models-pycls'
  assert github_anchor('ConViT recipe (DeiT)') == 'convit-recipe-deit'


def test_no_file_cites_the_design_document_or_a_tracker_issue():
  offenders = [
    f'{path.relative_to(ROOT)}:{number}: {line.strip()}'
    for path in repository_files()
    for number, line in enumerate(text_lines(path), start=1)
    if SPEC_DOCUMENT.search(line) or TRACKER_ISSUE.search(line)
  ]
  assert not offenders, (
    'cite the primary source (paper table, reference file) or a section of '
    'docs/references.md instead:\n' + '\n'.join(offenders)
  )


def test_every_references_link_names_a_heading_of_docs_references():
  anchors = reference_anchors()
  links, broken = 0, []
  for path in repository_files():
    lines = text_lines(path)
    for number, line in enumerate(lines, start=1):
      found = ANCHOR_LINK.findall(line)
      if path == REFERENCES:
        found += LOCAL_ANCHOR_LINK.findall(line)
      links += len(found)
      broken += [f'{path.relative_to(ROOT)}:{number}: #{a}' for a in found if a not in anchors]
  assert not broken, f'no such heading in docs/references.md (have {sorted(anchors)}):\n' + (
    '\n'.join(broken)
  )
  assert links >= 20, f'only {links} links to docs/references.md sections found'


def test_readme_links_the_references_page():
  assert '(docs/references.md)' in (ROOT / 'README.md').read_text(encoding='utf-8')
