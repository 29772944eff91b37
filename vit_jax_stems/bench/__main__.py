"""`python -m vit_jax_stems.bench --models vit_p_4gf,convit_s --batch_size 256 --steps 20
--dtype bfloat16 --peer timm --json out.json`: the GPU benchmark of benchmarks/NOTES.md.

Order of work: arguments and every case are validated first (nothing traced yet); then the timm
peers run, each in its own subprocess, before JAX touches the accelerator (JAX preallocates most
of the GPU's memory when its backend starts); then our cases, one by one, on one device.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys

from vit_jax_stems import models
from vit_jax_stems.bench import cases as cases_lib
from vit_jax_stems.bench import timm_peer
from vit_jax_stems.models.spec import ModelSpec


def parse_args(argv):
  p = argparse.ArgumentParser(
    prog='python -m vit_jax_stems.bench', description=__doc__.splitlines()[0]
  )
  p.add_argument('--models', required=True, help='Comma-separated registered model names.')
  p.add_argument('--batch_size', type=int, required=True)
  p.add_argument('--steps', type=int, default=10, help='Steps per timed window.')
  p.add_argument('--repeats', type=int, default=3, help='Timed windows (the median counts).')
  p.add_argument('--warmup', type=int, default=2, help='Untimed steps after compilation.')
  p.add_argument(
    '--dtype',
    choices=tuple(models.COMPUTE_DTYPES),
    default='float32',
    help='Compute dtype (parameters and optimizer stay float32).',
  )
  p.add_argument(
    '--image_size', type=int, default=None, help='Shortcut for --override image_size=N.'
  )
  p.add_argument(
    '--override',
    action='append',
    default=[],
    metavar='FIELD=VALUE',
    help='ModelSpec field for every model, e.g. depth=2 or stem_channels=8,16,32; repeatable.',
  )
  p.add_argument(
    '--peer',
    choices=('none', 'timm'),
    default='none',
    help="timm: also train timm's model of the same shapes (torch + timm needed).",
  )
  p.add_argument(
    '--peer_no_compile',
    action='store_true',
    help='Run the peer eagerly instead of under torch.compile.',
  )
  p.add_argument(
    '--peer_only',
    action='store_true',
    help='Run only the peers (JAX not started; benchmarks/gpu_check.sh runs them after our cases '
    'and pairs the two JSONs).',
  )
  p.add_argument(
    '--peer_timeout_s',
    type=float,
    default=None,
    help='Stop a peer that takes longer (its row then says so); default: no limit.',
  )
  p.add_argument(
    '--attention',
    choices=('auto', 'xla', 'cudnn'),
    default='auto',
    help='dot_product_attention implementation; auto = cudnn on GPU in bfloat16.',
  )
  p.add_argument(
    '--remat',
    choices=('none', 'block', 'block_dots'),
    default='none',
    help='Rematerialise each encoder block in the backward pass.',
  )
  p.add_argument(
    '--no_donate',
    action='store_true',
    help='Do not donate the train state to the step (to measure what donation buys).',
  )
  p.add_argument(
    '--twins',
    action='store_true',
    help='Add the equal-GF patchify twin of each conv-stem model (ViT_C vs ViT_P).',
  )
  p.add_argument(
    '--gpsa_study',
    action='store_true',
    help='For GPSA models add the explicit path, the plain-attention twin and an '
    'output check fast vs explicit.',
  )
  p.add_argument(
    '--scan_study',
    action='store_true',
    help='Add each model in the other parameter layout (scanned vs unrolled layers, '
    'ModelSpec.scan_layers) and compare compile and step times.',
  )
  p.add_argument(
    '--peak_tflops',
    type=float,
    default=None,
    help='Peak to divide by instead of the device table (e.g. a nominal CPU peak).',
  )
  p.add_argument('--json', default=None, help='Write the full results here.')
  args = p.parse_args(argv)
  try:
    args.overrides = ModelSpec.parse_overrides(args.override)
  except ValueError as e:
    p.error(str(e))
  for name in ('batch_size', 'steps', 'repeats'):
    if getattr(args, name) < 1:
      p.error(f'--{name} must be at least 1.')
  if args.warmup < 0:
    p.error('--warmup must be >= 0.')
  if args.peer_only and args.peer != 'timm':
    p.error('--peer_only needs --peer timm.')
  if args.peer == 'timm' and not timm_peer.available():
    p.error(
      '--peer timm needs torch and timm: .venv/bin/pip install torch==2.13.0 and '
      '.venv/bin/pip install --no-deps timm==1.0.31 (requirements-reference.txt), or '
      'drop --peer.'
    )
  return args


def main(argv=None) -> dict:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  overrides = args.overrides
  if args.image_size is not None:
    overrides['image_size'] = args.image_size
  names = [n.strip() for n in args.models.split(',') if n.strip()]
  try:
    cases = cases_lib.build_cases(
      names, overrides, twins=args.twins, gpsa_study=args.gpsa_study, scan_study=args.scan_study
    )
  except ValueError as e:
    raise SystemExit(f'error: {e}') from None

  # ---- peers first, in subprocesses, before JAX starts on the accelerator
  peer_of: dict[str, dict] = {}
  if args.peer == 'timm':
    runs: dict[str, dict] = {}
    for case in cases:
      if case.role not in ('model', 'twin'):
        continue
      spec, _ = cases_lib.peer_spec(case.spec)
      key = json.dumps(spec.to_dict(), sort_keys=True)
      if key not in runs:
        print(f'peer for {case.label} ...', flush=True)
        runs[key] = timm_peer.run_subprocess(
          spec.to_dict(),
          batch_size=args.batch_size,
          steps=args.steps,
          repeats=args.repeats,
          warmup=args.warmup,
          dtype=args.dtype,
          compile_model=not args.peer_no_compile,
          timeout_s=args.peer_timeout_s,
        )
        runs[key]['mirrors'] = spec.to_dict()
      peer_of[case.label] = runs[key]
      if args.peer_only and args.json:  # after each peer: a run stopped at a limit keeps them
        _write_json(args.json, _peers_document(args, argv, peer_of))
  if args.peer_only:
    doc = _peers_document(args, argv, peer_of)
    for label, peer in peer_of.items():
      summary = peer.get('error') or f'{peer["train_images_per_s"]:.1f} train images/s'
      print(f'peer of {label}: {summary}')
    if args.json:
      _write_json(args.json, doc)
      print(f'wrote {args.json}')
    return doc

  # ---- our cases
  import flax  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  from vit_jax_stems import mfu  # pylint: disable=g-import-not-at-top
  from vit_jax_stems.bench import gpsa_paths, jax_bench, report  # pylint: disable=g-import-not-at-top

  device = jax.devices()[0]
  attention = jax_bench.resolve_attention(args.attention, device.platform, args.dtype)
  peak_tflops, peak_source = mfu.peak_for(device.device_kind, args.dtype, args.peak_tflops)
  if peak_tflops is None:
    peak_source += '; pass --peak_tflops to state a nominal one'
  settings = jax_bench.Settings(
    batch_size=args.batch_size,
    steps=args.steps,
    repeats=args.repeats,
    warmup=args.warmup,
    dtype=args.dtype,
    attention=attention,
    remat=args.remat,
    donate=not args.no_donate,
  )
  rows, gpsa_outputs = [], []

  def document(complete):
    return {
      'command': _command(argv),
      'complete': complete,  # False: written before a case, the run not finished
      'time': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
      'versions': {'jax': jax.__version__, 'flax': flax.__version__},
      'device': {
        'platform': device.platform,
        'device_kind': device.device_kind,
        'count': jax.device_count(),
        'used': 1,
      },
      'peak': {'tflops': peak_tflops, 'dtype': args.dtype, 'source': peak_source},
      'settings': dict(
        _timing_settings(args),
        attention=attention,
        remat=args.remat,
        donate=not args.no_donate,
        overrides=overrides,
      ),
      'cases': rows,
      'peers': peer_of,
      'comparisons': report.comparisons(rows, peer_of),
      'gpsa_outputs': gpsa_outputs,
    }

  for case in cases:
    if args.json:  # before each case, so that a run stopped by a time limit keeps what it measured
      _write_json(args.json, document(complete=False))
    print(f'{case.label} ...', flush=True)
    row = jax_bench.run_case(case, settings)
    report.add_mfu(row, peak_tflops)
    rows.append(row)
    if case.role == 'explicit':
      for dtype in sorted({'float32', args.dtype}):
        gpsa_outputs.append(
          {
            'case': case.of,
            **gpsa_paths.compare_paths(case.spec, dtype=dtype, attention=row['attention']),
          }
        )

  doc = document(complete=True)
  print(report.table(doc))
  if args.json:
    _write_json(args.json, doc)
    print(f'wrote {args.json}')
  return doc


def _command(argv):
  return 'python -m vit_jax_stems.bench ' + ' '.join(sys.argv[1:] if argv is None else argv)


def _timing_settings(args):
  """The settings that every document of a run records, ours and the peers' alike."""
  return {
    'batch_size': args.batch_size,
    'steps': args.steps,
    'repeats': args.repeats,
    'warmup': args.warmup,
    'dtype': args.dtype,
    'peer': args.peer,
    'peer_compile': not args.peer_no_compile,
  }


def _peers_document(args, argv, peer_of):
  return {
    'command': _command(argv),
    'settings': _timing_settings(args),
    'cases': [],
    'peers': peer_of,
  }


def _write_json(path, doc):
  """Through a temporary file renamed into place: a reader never sees half a document."""
  with open(f'{path}.tmp', 'w') as f:
    json.dump(doc, f, indent=1, default=str)
  os.replace(f'{path}.tmp', path)


if __name__ == '__main__':
  main()
