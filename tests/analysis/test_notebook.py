"""notebooks/attention_locality.ipynb runs top to bottom (nbclient) on tiny runs of each source kind."""

import json
import os

import nbformat
from analysis_tiny import TINY
from conftest import ROOT
from nbclient import NotebookClient

NOTEBOOK = os.path.join(ROOT, 'notebooks', 'attention_locality.ipynb')


def inject_parameters(nb, values):
  """Papermill style: a cell right after the one tagged 'parameters' overrides its values."""
  index = next(
    i for i, cell in enumerate(nb.cells) if 'parameters' in cell.metadata.get('tags', [])
  )
  source = '\n'.join(f'{k} = {v!r}' for k, v in values.items())
  cell = nbformat.v4.new_code_cell(source, metadata={'tags': ['injected-parameters']})
  nb.cells.insert(index + 1, cell)


def test_notebook_runs_on_a_run_converted_weights_and_a_fresh_init(tiny_run_dir, tiny_weights_dir):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  assert all(not cell.get('outputs') for cell in nb.cells if cell.cell_type == 'code'), (
    'commit the notebook with its outputs cleared'
  )
  arch, overrides = TINY['vit_p']
  inject_parameters(
    nb,
    {
      'RUNS': {
        'ViT_P': {'arch': arch, 'overrides': overrides},
        'ViT_C': tiny_weights_dir,
        'ConViT': tiny_run_dir,
      },
      'NUM_IMAGES': 3,
      'FALLBACK_TO_INIT': False,
    },
  )
  NotebookClient(
    nb,
    timeout=600,
    kernel_name='python3',
    resources={'metadata': {'path': os.path.join(ROOT, 'notebooks')}},
  ).execute()
  images = [
    out
    for cell in nb.cells
    for out in cell.get('outputs', [])
    if 'image/png' in out.get('data', {})
  ]
  # nonlocality + gates + three attention-map figures + one training history (the ConViT run)
  assert len(images) == 6
  text = json.dumps([cell.get('outputs', []) for cell in nb.cells])
  assert 'ViT_C: no checkpoints to follow' in text and 'ViT_P: no checkpoints' in text
