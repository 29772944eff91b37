"""Writes vit_jax_stems/imagenet_classes.txt: the 1000 ImageNet-1k classes in label order.

Label order (index i = line i) is tensorflow_datasets' imagenet2012 `labels.txt` (WordNet synset
ids, sorted; the order every ImageNet-1k classifier here is trained with); the human-readable
names are WordNet lemmas from timm's `timm/data/_info/imagenet_synset_to_lemma.txt`. Both are
files of installed packages, so nothing is downloaded. Each output line: `<synset>\t<lemmas>`.

Command (needs tensorflow-datasets and timm installed; timm is not imported, only its data file read):
  .venv/bin/python tools/make_imagenet_classes.py --out vit_jax_stems/imagenet_classes.txt
"""

import argparse
import importlib.util
import os


def _package_dir(name):
  spec = importlib.util.find_spec(name)  # finds the package without importing it
  if spec is None or not spec.submodule_search_locations:
    raise SystemExit(f'package {name!r} is not installed')
  return next(iter(spec.submodule_search_locations))


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--out', default='vit_jax_stems/imagenet_classes.txt')
  args = parser.parse_args()
  tfds_labels = os.path.join(
    _package_dir('tensorflow_datasets'), 'datasets', 'imagenet2012', 'labels.txt'
  )
  timm_info = os.path.join(_package_dir('timm'), 'data', '_info')
  with open(tfds_labels) as f:
    synsets = [line.strip() for line in f if line.strip()]
  with open(os.path.join(timm_info, 'imagenet_synsets.txt')) as f:
    timm_synsets = [line.strip() for line in f if line.strip()]
  if synsets != timm_synsets or len(synsets) != 1000:
    raise SystemExit('tfds and timm disagree on the ImageNet-1k synset order')
  lemmas = {}
  with open(os.path.join(timm_info, 'imagenet_synset_to_lemma.txt')) as f:
    for line in f:
      synset, lemma = line.rstrip('\n').split('\t', 1)
      lemmas[synset] = lemma
  with open(args.out, 'w') as f:
    for synset in synsets:
      f.write(f'{synset}\t{lemmas[synset]}\n')
  print(f'wrote {len(synsets)} classes to {args.out}')


if __name__ == '__main__':
  main()
