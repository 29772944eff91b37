"""Starting a run from trained weights (`config.init_weights = SOURCE`), for fine-tuning.

SOURCE is a weights directory (model.json + variables/: converted PyTorch weights, or
`python -m vit_jax_stems.export --format weights`) or a trainer run directory (config.json +
checkpoints/: its latest checkpoint, the EMA weights when the run kept them, as `export` picks
them). The weights replace the freshly initialised parameters and BatchNorm statistics leaf by leaf; when the number
of classes differs (the usual fine-tuning start) the classifier head is a new one, all zeros (pycls
`init_weights_vit` zero-initialises the head; with zeros every class starts at the same logit and
the first updates come from the pretrained features, whichever family), and a position embedding
of another token grid (the run's config.data.image_size differs from the weights') is resampled to
the run's grid (`models.pos_embedding.for_spec`, bicubic as timm's `resample_abs_pos_embed`). Any
other mismatch is an error naming the parameter. Both sides are compared per block
(`encoder/blockNN`, the weights directory's layout), so a scanned run (config.model.scan_layers)
starts from the same directories; its variables are stacked after.
"""

import os

import numpy as np
from absl import logging
from flax import traverse_util

from vit_jax_stems import weights
from vit_jax_stems.models import layers_layout, pos_embedding
from vit_jax_stems.train.checkpointing import CONFIG_JSON as RUN_CONFIG

WEIGHTS_JSON = weights.MODEL_JSON


def is_run(source):
  """True for a trainer run directory, False for a weights directory; anything else is an error
  that says what SOURCE must be (checked before anything is built)."""
  if os.path.isfile(os.path.join(source, WEIGHTS_JSON)):
    return False
  if os.path.isfile(os.path.join(source, RUN_CONFIG)):
    return True
  raise FileNotFoundError(
    f'config.init_weights={source}: neither a weights directory ({WEIGHTS_JSON}; made by '
    f'`python -m vit_jax_stems.convert` or `export --format weights`) nor a training run '
    f'({RUN_CONFIG} + checkpoints/).'
  )


def architecture(source):
  """(arch, ModelSpec overrides without num_classes and image_size, image_size) of SOURCE, read
  from its JSON alone (configs/finetune.py builds the fine-tuning model from it)."""
  from vit_jax_stems.analysis import sources  # pylint: disable=g-import-not-at-top

  if is_run(source):
    meta = sources.read_run_config(source)
    arch, overrides, image_size = meta['model_name'], meta['model'], meta['data']['image_size']
  else:
    meta = weights.read_model_json(source)
    arch, overrides, image_size = meta['arch'], meta.get('overrides', {}), meta['image_size']
  overrides = {k: v for k, v in overrides.items() if k not in ('num_classes', 'image_size')}
  return arch, overrides, image_size


def load(source, *, image_size=None):
  """(the per-block model, per-block variables) of SOURCE (module doc), at `image_size` when
  given (the position embedding resampled)."""
  from vit_jax_stems import export  # pylint: disable=g-import-not-at-top (export -> convert)

  if is_run(source):
    arch, overrides, variables = export.from_run(source)
    model, variables = weights.at_image_size(
      arch, overrides, variables, image_size or overrides['image_size']
    )
  else:
    model, variables = weights.load_weights(source, image_size=image_size)
  per_block = layers_layout.to_layout(variables, model.spec, stacked=False)
  return layers_layout.unrolled_model(model), per_block


def merge(init_variables, loaded_variables, *, source, spec):
  """Returns `init_variables` (the layout of the run's `spec`) with every leaf replaced by the
  per-block `loaded_variables` (see module doc), in the layout of `spec`; `spec` also gives the
  run's token grid."""
  init_variables = layers_layout.to_layout(init_variables, spec, stacked=False)
  merged = {}
  for collection, init_tree in init_variables.items():
    init_flat = traverse_util.flatten_dict(init_tree, sep='/')
    loaded_flat = traverse_util.flatten_dict(loaded_variables.get(collection, {}), sep='/')
    extra = sorted(set(loaded_flat) - set(init_flat))
    if extra:
      raise ValueError(
        f'config.init_weights={source}: {collection} {extra[:5]} do not exist '
        'in the model of config.model_name / config.model; wrong architecture?'
      )
    out = {}
    for name, init in init_flat.items():
      if name not in loaded_flat:
        raise ValueError(f'config.init_weights={source}: {collection}/{name} is missing.')
      new = np.asarray(loaded_flat[name])
      if new.shape == init.shape:
        out[name] = new.astype(init.dtype)
      elif name == 'pos_embedding' and new.shape[2:] == init.shape[2:]:
        out[name] = pos_embedding.for_spec(new, spec).astype(init.dtype)
        logging.info('init_weights: resampled pos_embedding %s -> %s', new.shape, out[name].shape)
      elif name.startswith('head/'):
        logging.info(
          'init_weights: a new zero head %s (%s -> %s, num_classes differ)',
          name,
          new.shape,
          init.shape,
        )
        out[name] = np.zeros_like(init)
      else:
        raise ValueError(
          f'config.init_weights={source}: {collection}/{name} has shape {new.shape}, the '
          f'model wants {init.shape}; check config.model / config.data.image_size.'
        )
    merged[collection] = traverse_util.unflatten_dict(out, sep='/')
  return layers_layout.to_layout(merged, spec)
