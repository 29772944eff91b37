"""Every accelerator figure of benchmarks/NOTES.md in one command that fits in 8 minutes on one
H100/H200: `bash benchmarks/gpu_check.sh` (which runs `python -m vit_jax_stems.bench.gpu_check`).

Why one prepared command: machines with a GPU are lent rarely and for minutes, so the whole
measurement must be one call that fits, leaves time to run it again, and keeps what it measured
even when a part runs long. So each part

  * runs in its own process (JAX preallocates most of the GPU when it starts, and the device's
    memory peak is per process), under its own time limit (one slow torch.compile or XLA compile
    does not eat the other parts' time; the model benchmark writes its JSON before every case, so
    a part stopped at its limit keeps its finished rows);
  * prints its output as it runs and keeps it in `parts/<part>.log`, its JSON in
    `parts/<part>.json` and its status and seconds in `parts/<part>.status.json`; a rerun with
    `--parts` into the same folder (same day and device) redoes only those parts;

and at the end every part's figures go into one JSON (`gpu_check.json`) and one Markdown page of
tables (`gpu_check.md`), in `benchmarks/results/gpu_check_<date>_<device>/`.

Parts, in this order (limits in `parts`, 480 s in all; estimates: no GPU has run them yet):
  table      `python -m vit_jax_stems.bench`: vit_p_4gf, vit_c_4gf, vit_p_18gf, vit_c_18gf,
             convit_s, convit_b at batch 256 in bfloat16, --twins (ViT_C vs ViT_P),
             --gpsa_study (GPSA fast vs explicit vs plain attention); attention auto = cuDNN
             flash attention on GPU in bf16.
  attention  vit_p_18gf and convit_b with XLA's attention (--attention xla), against the table's
             cuDNN rows.
  scan_off, scan_on
             vit_p_18gf and convit_b with --override scan_layers=false / true: compile and step
             time, unrolled against scanned.
  sweep      `python -m vit_jax_stems.sweep.bench`: K = 1, 4, 8, 16 trials of the ViT_C demo in
             one vmapped step, on synthetic batches (--num_classes: no dataset, no TensorFlow).
  peers      the table's timm peers (bf16 autocast, torch.compile; `--peer_only`), each under
             its own limit: the least certain time (four torch.compile runs), so it comes last
             and cannot cost the JAX figures; ours/peer is computed when merging.

`--dry` runs the same parts with the same flags on CPU with tiny models, tiny batches and one
step (tests/bench/test_gpu_check.py), so the check cannot rot while no GPU is at hand.

Needs only what a GPU image has (jax, flax, optax, orbax-checkpoint, torch, timm) plus
ml_collections (the configs of the sweep part), which gpu_check.sh installs from `.whl/`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from vit_jax_stems.bench import report

BUDGET_S = 480  # the issue's 8 minutes on one H100/H200

GPU_MODELS = 'vit_p_4gf,vit_c_4gf,vit_p_18gf,vit_c_18gf,convit_s,convit_b'
# The deepest plain model (the MFU goal's) and the deepest ConViT (two kinds of blocks).
STUDY_MODELS = 'vit_p_18gf,convit_b'
# Dry mode: a tiny conv-stem model (it has a patchify twin) and a tiny ConViT (GPSA study).
DRY_MODELS = 'vit_c_1gf,convit_ti'
DRY_OVERRIDES = (
  'hidden_size=32',
  'num_heads=2',
  'mlp_dim=64',
  'depth=2',
  'num_gpsa_layers=1',
  'stem_kernels=3,3,1',
  'stem_strides=2,2,1',
  'stem_channels=8,16,32',
  'patch_size=4',
  'num_classes=10',
  'image_size=16',
)
MFU_GOAL_MODEL = 'vit_p_18gf'  # the model of the MFU goal
SCAN_FIELD = 'scan_layers'  # ModelSpec field: transformer blocks as one nn.scan


@dataclasses.dataclass(frozen=True)
class Part:
  name: str
  argv: tuple[str, ...]  # after `python -m`
  timeout_s: float
  json: str  # file name under parts/
  about: str


def parts(dry: bool) -> list[Part]:
  """The check's parts, in the order they run; `dry`: the same flags at CPU size."""
  if dry:
    # float32: XLA's CPU backend has no fast bfloat16 path, and one dtype means one GPSA
    # output check instead of two.
    size = ['--dtype', 'float32', '--batch_size', '2', '--steps', '1', '--repeats', '1']
    size += ['--warmup', '0']
    size += [a for o in DRY_OVERRIDES for a in ('--override', o)]
    table_models = study_models = DRY_MODELS
    peer = ['--peer_no_compile', '--peer_timeout_s', '120']
    sweep_size = ['--ks', '1,2', '--steps', '1', '--repeats', '1', '--interleaved=false']
    sweep_size += ['--config.batch_size=8', '--config.model.depth=1']
    timeouts = dict(table=240, attention=120, scan_off=120, scan_on=120, sweep=120, peers=240)
  else:
    size = ['--dtype', 'bfloat16', '--batch_size', '256', '--steps', '10', '--repeats', '3']
    size += ['--warmup', '2']
    table_models, study_models = GPU_MODELS, STUDY_MODELS
    peer = ['--peer_timeout_s', '50']
    sweep_size = ['--ks', '1,4,8,16', '--steps', '20', '--repeats', '3']
    timeouts = dict(table=210, attention=40, scan_off=50, scan_on=30, sweep=40, peers=110)
  bench = ['vit_jax_stems.bench', *size]
  table = (*bench, '--models', table_models, '--twins', '--gpsa_study')
  return [
    Part(
      'table',
      table,
      timeouts['table'],
      'table.json',
      'models, ViT_C vs ViT_P twins, GPSA study (attention auto)',
    ),
    Part(
      'attention',
      (*bench, '--models', study_models, '--attention', 'xla'),
      timeouts['attention'],
      'attention_xla.json',
      "XLA's attention, against the table's cuDNN rows",
    ),
    Part(
      'scan_off',
      (*bench, '--models', study_models, '--override', f'{SCAN_FIELD}=false'),
      timeouts['scan_off'],
      'scan_off.json',
      'transformer blocks unrolled',
    ),
    Part(
      'scan_on',
      (*bench, '--models', study_models, '--override', f'{SCAN_FIELD}=true'),
      timeouts['scan_on'],
      'scan_on.json',
      'transformer blocks as one nn.scan per kind',
    ),
    Part(
      'sweep',
      (
        'vit_jax_stems.sweep.bench',
        '--config',
        'configs/vitc.py:demo',
        '--num_classes',
        '10',
        *sweep_size,
      ),
      timeouts['sweep'],
      'sweep.json',
      'K trials of the ViT_C demo in one vmapped step',
    ),
    Part(
      'peers',
      (*table, '--peer', 'timm', '--peer_only', *peer),
      timeouts['peers'],
      'peers.json',
      "the table's timm peers (bf16 autocast, torch.compile), last: the least certain time",
    ),
  ]


# ---------------------------------------------------------------------------------- preflight


def probe_device() -> dict:
  """The first JAX device, asked in a subprocess: this process never starts JAX's backend, which
  would hold most of the GPU's memory for the whole check."""
  code = (
    'import json, jax; d = jax.devices()[0]; print(json.dumps({"platform": d.platform, '
    '"device_kind": d.device_kind, "count": jax.device_count(), "jax": jax.__version__}))'
  )
  proc = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, timeout=300, check=False
  )
  if proc.returncode != 0:
    raise SystemExit(f'error: JAX does not start: {proc.stderr.strip().splitlines()[-1:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def preflight(dry: bool, device: dict) -> None:
  """Everything the parts need, checked before any of them starts."""
  if not dry and device['platform'] != 'gpu':
    raise SystemExit(
      f'error: JAX sees no GPU (first device: {device["device_kind"]}, {device["platform"]}); '
      'on a CPU run the dry mode: bash benchmarks/gpu_check.sh --dry'
    )
  missing = [m for m in ('torch', 'timm', 'ml_collections') if importlib.util.find_spec(m) is None]
  if missing:
    raise SystemExit(
      f'error: {", ".join(missing)} not installed. torch and timm come with the GPU image; '
      'ml_collections: run the check as bash benchmarks/gpu_check.sh, which installs it from '
      '.whl/ (see the script).'
    )


def folder_name(device: dict, dry: bool) -> str:
  date = datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d')
  slug = re.sub(r'[^a-z0-9]+', '_', device['device_kind'].lower()).strip('_') or 'device'
  return f'gpu_check_{"dry_" if dry else ""}{date}_{slug}'


# ---------------------------------------------------------------------------------- running


def run_part(part: Part, parts_dir: str, timeout_s: float) -> dict:
  """Runs one part with its output shown and kept in its log; returns its status record."""
  log_path = os.path.join(parts_dir, f'{part.name}.log')
  json_path = os.path.join(parts_dir, part.json)
  if os.path.exists(json_path):
    os.remove(json_path)  # a rerun's figures only
  cmd = [sys.executable, '-m', *part.argv, '--json', json_path]
  start = time.monotonic()
  with open(log_path, 'w') as log:
    log.write(' '.join(cmd) + '\n')
    # Its own session, so that a part stopped at its limit takes its peer subprocesses with it.
    proc = subprocess.Popen(
      cmd,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      start_new_session=True,
    )

    def copy_output():
      for line in proc.stdout:
        sys.stdout.write(f'  [{part.name}] {line}')
        sys.stdout.flush()
        log.write(line)

    reader = threading.Thread(target=copy_output, daemon=True)
    reader.start()
    try:
      proc.wait(timeout=timeout_s)
      status = 'ok' if proc.returncode == 0 else f'failed (exit {proc.returncode})'
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGTERM)
      try:
        proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
      status = f'timed out after {timeout_s:g} s'
    reader.join(timeout=10)
  return {
    'part': part.name,
    'about': part.about,
    'command': 'python -m ' + ' '.join(part.argv) + f' --json parts/{part.json}',
    'status': status,
    'seconds': round(time.monotonic() - start, 1),
    'timeout_s': timeout_s,
    'json': f'parts/{part.json}' if os.path.exists(json_path) else None,
    'log': f'parts/{part.name}.log',
  }


def skipped(part: Part, why: str) -> dict:
  return {
    'part': part.name,
    'about': part.about,
    'command': 'python -m ' + ' '.join(part.argv),
    'status': f'skipped: {why}',
    'seconds': 0.0,
    'timeout_s': part.timeout_s,
    'json': None,
    'log': None,
  }


# ---------------------------------------------------------------------------------- merging


def _load(folder: str, record: dict | None):
  if not record or not record.get('json'):
    return None
  path = os.path.join(folder, record['json'])
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _rows(doc) -> dict:
  return {r['case']: r for r in (doc or {}).get('cases', [])}


def attention_rows(table, xla) -> list[dict]:
  """For each model of the attention part: the table's row (attention auto) against XLA's."""
  auto, plain = _rows(table), _rows(xla)
  out = []
  for label, r in plain.items():
    if label in auto:
      a = auto[label]
      out.append(
        {
          'case': label,
          'auto_attention': a['attention'],
          'auto_step_s': a['train_step_s'],
          'xla_step_s': r['train_step_s'],
          'xla_over_auto': r['train_step_s'] / a['train_step_s'],
          'auto_infer_s': a['infer_step_s'],
          'xla_infer_s': r['infer_step_s'],
        }
      )
  return out


def scan_rows(off, on) -> list[dict]:
  """Compile (lower + compile) and step time per model, unrolled against scanned."""
  unrolled, scanned = _rows(off), _rows(on)
  out = []
  for label, u in unrolled.items():
    if label in scanned:
      s = scanned[label]
      out.append(
        {
          'case': label,
          'unrolled_compile_s': u['train_lower_s'] + u['train_compile_s'],
          'scanned_compile_s': s['train_lower_s'] + s['train_compile_s'],
          'unrolled_step_s': u['train_step_s'],
          'scanned_step_s': s['train_step_s'],
          'scanned_over_unrolled_step': s['train_step_s'] / u['train_step_s'],
        }
      )
  return out


def merge(folder: str, records: dict[str, dict], device: dict, dry: bool) -> dict:
  docs = {name: _load(folder, rec) for name, rec in records.items()}
  total = sum(rec['seconds'] for rec in records.values())
  table, peers = docs.get('table'), (docs.get('peers') or {}).get('peers', {})
  return {
    'check': 'bash benchmarks/gpu_check.sh' + (' --dry' if dry else ''),
    'dry': dry,
    'written': datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds'),
    'device': device,
    'budget_s': BUDGET_S,
    'total_s': round(total, 1),
    'parts': records,
    'results': docs,
    # The table's ratios (twins, GPSA paths) and ours/peer, the peers paired by case label.
    'peers': peers,
    'comparisons': report.comparisons(table['cases'], peers) if table else [],
    'attention': attention_rows(docs.get('table'), docs.get('attention')),
    'scan': scan_rows(docs.get('scan_off'), docs.get('scan_on')),
  }


def _f(value, spec, missing='-'):
  return missing if value is None else format(value, spec)


def markdown(doc: dict) -> str:
  """The check's page: parts, the model table, the goals' ratios, attention, scan, K trials."""
  d = doc['device']
  lines = [
    f'# GPU check{" (dry run, CPU)" if doc["dry"] else ""}: {d["device_kind"]}',
    '',
    f'`{doc["check"]}`, written {doc["written"]}, jax {d.get("jax", "?")}; '
    f'{doc["total_s"]:.0f} s of the {doc["budget_s"]} s budget.',
    '',
    '| part | status | seconds (limit) | what |',
    '|---|---|---|---|',
  ]
  for rec in doc['parts'].values():
    lines.append(
      f'| {rec["part"]} | {rec["status"]} | {rec["seconds"]:.0f} ({rec["timeout_s"]:g}) '
      f'| {rec["about"]} |'
    )
  table = doc['results'].get('table')
  if table:
    s = table['settings']
    lines += [
      '',
      f'## Models (batch {s["batch_size"]}, {s["dtype"]}, {s["repeats"]} windows x '
      f'{s["steps"]} steps, attention {s["attention"]})',
      '',
      f'MFU against {table["peak"]["source"]}.',
      '',
      '| case | GMACs | train step ms | train im/s | MFU % | infer im/s | lower+compile s '
      '| mem MiB | attention | timm im/s | ours/timm |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for r in table['cases']:
      peer = doc['peers'].get(r['case']) or {}
      peer_ips = peer.get('train_images_per_s')
      mem = r['device_peak_bytes'] or r.get('train_total_bytes')
      lines.append(
        f'| {r["case"]} | {r["macs_per_image"] / 1e9:.3f} | {r["train_step_s"] * 1e3:.2f} '
        f'| {r["train_images_per_s"]:.1f} | {_f(r["train_mfu"] and 100 * r["train_mfu"], ".1f")} '
        f'| {r["infer_images_per_s"]:.1f} '
        f'| {r["train_lower_s"]:.1f}+{r["train_compile_s"]:.1f} '
        f'| {_f(mem and mem / 2**20, ".0f")} | {r["attention"]} | {_f(peer_ips, ".1f")} '
        f'| {_f(peer_ips and r["train_images_per_s"] / peer_ips, ".2f")} |'
      )
    errors = [f'{k}: {p["error"]}' for k, p in doc['peers'].items() if 'error' in p]
    lines += [f'\npeer error, {e}' for e in errors]
    lines += ['', '## Ratios and goals', '', '| comparison | train | inference | goal |']
    lines.append('|---|---|---|---|')
    for c in doc['comparisons']:
      if c['kind'] == 'ours/peer':
        train, infer = c['train_images_per_s_ratio'], c['infer_images_per_s_ratio']
        what = f'{c["a"]} / {c["b"]} images/s'
      elif c['kind'] == 'fast/explicit GPSA':
        train, infer = c['train_speedup'], c['infer_speedup']
        what = f'{c["b"]} / {c["a"]} step time'
      else:
        train, infer = c['train_step_ratio'], c['infer_step_ratio']
        what = f'{c["a"]} / {c["b"]} step time'
      lines.append(f'| {what} | {train:.3f} | {infer:.3f} | {c.get("target", "")} |')
    for r in table['cases']:
      if r['case'] == MFU_GOAL_MODEL:
        mfu = _f(r['train_mfu'] and 100 * r['train_mfu'], '.1f')
        lines.append(f'| MFU of {r["case"]}, % | {mfu} | | >= 45 (one H100, bf16) |')
  if doc['attention']:
    lines += [
      '',
      "## Attention: the table's (auto) against XLA's",
      '',
      '| case | auto = | auto step ms | XLA step ms | XLA / auto |',
      '|---|---|---|---|---|',
    ]
    for r in doc['attention']:
      lines.append(
        f'| {r["case"]} | {r["auto_attention"]} | {r["auto_step_s"] * 1e3:.2f} '
        f'| {r["xla_step_s"] * 1e3:.2f} | {r["xla_over_auto"]:.3f} |'
      )
  if doc['scan']:
    lines += [
      '',
      '## Scanned against unrolled blocks (train step)',
      '',
      '| case | unrolled lower+compile s | scanned lower+compile s | unrolled step ms '
      '| scanned step ms | scanned / unrolled step |',
      '|---|---|---|---|---|---|',
    ]
    for r in doc['scan']:
      lines.append(
        f'| {r["case"]} | {r["unrolled_compile_s"]:.1f} | {r["scanned_compile_s"]:.1f} '
        f'| {r["unrolled_step_s"] * 1e3:.2f} | {r["scanned_step_s"] * 1e3:.2f} '
        f'| {r["scanned_over_unrolled_step"]:.3f} |'
      )
  sweep = doc['results'].get('sweep')
  if sweep and sweep.get('rows'):
    from vit_jax_stems.sweep import bench as sweep_bench  # pylint: disable=g-import-not-at-top

    lines += ['', f'## K trials in one vmapped step ({sweep["device"]})', '']
    lines.append(sweep_bench.table(sweep['rows']))
  return '\n'.join(lines) + '\n'


# ---------------------------------------------------------------------------------- command


def parse_args(argv):
  p = argparse.ArgumentParser(
    prog='python -m vit_jax_stems.bench.gpu_check', description=__doc__.splitlines()[0]
  )
  p.add_argument(
    '--dry', action='store_true', help='The same parts on CPU with tiny models (the test).'
  )
  p.add_argument(
    '--parts',
    default=None,
    help='Comma-separated parts to run (default: all); the others keep their earlier results '
    'in the same folder.',
  )
  p.add_argument(
    '--limits',
    default='',
    help='Time limits to change, in seconds, e.g. table=300,peers=200 (after a first run has '
    'shown what a part takes).',
  )
  p.add_argument(
    '--results_dir',
    default='benchmarks/results',
    help='Where the folder gpu_check_<date>_<device>/ is made.',
  )
  args = p.parse_args(argv)
  names = [part.name for part in parts(args.dry)]
  args.selected = names if args.parts is None else [n.strip() for n in args.parts.split(',')]
  unknown = sorted(set(args.selected) - set(names))
  if unknown:
    p.error(f'--parts: unknown {", ".join(unknown)}; the parts are {", ".join(names)}.')
  args.limit_of = {}
  for item in filter(None, args.limits.split(',')):
    name, _, seconds = item.partition('=')
    try:
      args.limit_of[name.strip()] = float(seconds)
    except ValueError:
      p.error(f'--limits: {item!r}: write PART=SECONDS, e.g. table=300.')
    if name.strip() not in names:
      p.error(f'--limits: unknown part {name.strip()!r}; the parts are {", ".join(names)}.')
  return args


def main(argv=None) -> str:
  args = parse_args(sys.argv[1:] if argv is None else argv)
  device = probe_device()
  preflight(args.dry, device)
  folder = os.path.join(args.results_dir, folder_name(device, args.dry))
  parts_dir = os.path.join(folder, 'parts')
  os.makedirs(parts_dir, exist_ok=True)
  print(f'GPU check on {device["device_kind"]} into {folder}/ (budget {BUDGET_S} s)', flush=True)
  spent = 0.0
  records = {}
  for part in parts(args.dry):
    status_path = os.path.join(parts_dir, f'{part.name}.status.json')
    if part.name not in args.selected:
      if os.path.exists(status_path):
        with open(status_path) as f:
          records[part.name] = json.load(f)
      continue
    limit = args.limit_of.get(part.name, part.timeout_s)
    print(f'[{part.name}] {part.about} (limit {limit:g} s)', flush=True)
    record = run_part(part, parts_dir, limit)
    spent += record['seconds']
    print(
      f'[{part.name}] {record["status"]} in {record["seconds"]:.1f} s; '
      f'total {spent:.1f} of {BUDGET_S} s',
      flush=True,
    )
    with open(status_path, 'w') as f:
      json.dump(record, f, indent=1)
    records[part.name] = record
  doc = merge(folder, records, device, args.dry)
  with open(os.path.join(folder, 'gpu_check.json'), 'w') as f:
    json.dump(doc, f, indent=1, default=str)
  with open(os.path.join(folder, 'gpu_check.md'), 'w') as f:
    f.write(markdown(doc))
  print(f'wrote {folder}/gpu_check.json and gpu_check.md ({spent:.1f} s)', flush=True)
  return folder


if __name__ == '__main__':
  main()
