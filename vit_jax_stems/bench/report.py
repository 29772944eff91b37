"""The benchmark's printed table, its comparisons (ours/peer, fast/explicit, GPSA/plain,
ViT_C/ViT_P, scanned/unrolled) and the JSON document."""

from __future__ import annotations

from typing import Any

from vit_jax_stems import mfu

MIB = 2**20


def add_mfu(row: dict, peak_tflops: float | None) -> None:
  macs, batch = row['macs_per_image'], row['batch_size']
  row['train_flops_per_step'] = mfu.train_flops(macs, batch)
  row['infer_flops_per_step'] = mfu.inference_flops(macs, batch)
  row['train_mfu'] = mfu.mfu(row['train_flops_per_step'], row['train_step_s'], peak_tflops)
  row['infer_mfu'] = mfu.mfu(row['infer_flops_per_step'], row['infer_step_s'], peak_tflops)


def comparisons(rows: list[dict], peer_of: dict[str, dict]) -> list[dict[str, Any]]:
  """Every ratio between rows measured in this run (ours / peer, twins, GPSA paths)."""
  by_label = {r['case']: r for r in rows}
  out = []
  for r in rows:
    peer = peer_of.get(r['case'])
    if peer and 'error' not in peer:
      out.append(
        {
          'kind': 'ours/peer',
          'a': r['case'],
          'b': peer['peer'],
          'peer_of': peer.get('mirrors'),
          'train_images_per_s_ratio': r['train_images_per_s'] / peer['train_images_per_s'],
          'infer_images_per_s_ratio': r['infer_images_per_s'] / peer['infer_images_per_s'],
          'target': '>= 1.3 (train, one H100, bf16)',
        }
      )
    base = by_label.get(r['of']) if r['of'] else None
    if base is None:
      continue
    if r['role'] == 'explicit':
      out.append(
        {
          'kind': 'fast/explicit GPSA',
          'a': base['case'],
          'b': r['case'],
          'train_speedup': r['train_step_s'] / base['train_step_s'],
          'infer_speedup': r['infer_step_s'] / base['infer_step_s'],
          'train_temp_bytes': [base['train_temp_bytes'], r['train_temp_bytes']],
          'infer_temp_bytes': [base['infer_temp_bytes'], r['infer_temp_bytes']],
        }
      )
    elif r['role'] == 'plain':
      out.append(
        {
          'kind': 'GPSA/plain step time',
          'a': base['case'],
          'b': r['case'],
          'train_step_ratio': base['train_step_s'] / r['train_step_s'],
          'infer_step_ratio': base['infer_step_s'] / r['infer_step_s'],
          'target': '<= 1.15 (train, GPU)',
        }
      )
    elif r['role'] == 'layout':
      scanned, unrolled = (r, base) if r['spec']['scan_layers'] else (base, r)
      compile_s = [_train_compile_s(scanned), _train_compile_s(unrolled)]
      out.append(
        {
          'kind': 'scanned/unrolled',
          'a': scanned['case'],
          'b': unrolled['case'],
          'train_lower_compile_s': compile_s,
          'train_compile_ratio': compile_s[0] / compile_s[1],
          'train_step_ratio': scanned['train_step_s'] / unrolled['train_step_s'],
          'infer_step_ratio': scanned['infer_step_s'] / unrolled['infer_step_s'],
          # The same ratios in process CPU time, the steadier figure on a shared machine.
          'train_compile_cpu_ratio': scanned['train_lower_compile_cpu_s']
          / unrolled['train_lower_compile_cpu_s'],
          'train_step_cpu_ratio': scanned['train_step_cpu_s'] / unrolled['train_step_cpu_s'],
          'infer_step_cpu_ratio': scanned['infer_step_cpu_s'] / unrolled['infer_step_cpu_s'],
          'target': 'step time within a few percent',
        }
      )
    elif r['role'] == 'twin':
      out.append(
        {
          'kind': 'conv/patchify step time at equal GF',
          'a': base['case'],
          'b': r['case'],
          'macs_per_image': [base['macs_per_image'], r['macs_per_image']],
          'train_step_ratio': base['train_step_s'] / r['train_step_s'],
          'infer_step_ratio': base['infer_step_s'] / r['infer_step_s'],
          'target': "within 5% (P1's runtime claim)",
        }
      )
  return out


def _train_compile_s(row: dict) -> float:
  return row['train_lower_s'] + row['train_compile_s']


def _fmt(value, spec: str, missing: str = 'n/a') -> str:
  return missing if value is None else format(value, spec)


def table(doc: dict) -> str:
  peak = doc['peak']
  lines = [
    f'device: {doc["device"]["device_kind"]} ({doc["device"]["platform"]}), '
    f'dtype {doc["settings"]["dtype"]}, batch {doc["settings"]["batch_size"]}, '
    f'{doc["settings"]["repeats"]} windows x {doc["settings"]["steps"]} steps '
    f'(+{doc["settings"]["warmup"]} warmup), remat {doc["settings"]["remat"]}, '
    f'donate {doc["settings"].get("donate", True)}',
    f'peak assumed: {_fmt(peak["tflops"], "g")} TFLOP/s ({peak["source"]})',
    'MFU = 6 x pycls MACs/image x batch / step time / peak (docs/references.md#mfu-counting)',
  ]
  head = (
    f'{"case":<22} {"GMACs":>6} {"step ms":>9} {"train im/s":>10} {"MFU":>6} '
    f'{"infer im/s":>10} {"lower+comp s":>12} {"mem MiB":>8} {"attn":>5} '
    f'{"peer im/s":>9} {"ours/peer":>9}'
  )
  lines += [head, '-' * len(head)]
  for r in doc['cases']:
    peer = doc['peers'].get(r['case']) or {}
    ratio = (
      r['train_images_per_s'] / peer['train_images_per_s'] if 'train_images_per_s' in peer else None
    )
    mem = r['device_peak_bytes'] if r['device_peak_bytes'] is not None else r['train_total_bytes']
    lines.append(
      f'{r["case"]:<22} {r["macs_per_image"] / 1e9:>6.3f} {r["train_step_s"] * 1e3:>9.2f} '
      f'{r["train_images_per_s"]:>10.1f} '
      f'{_fmt(r["train_mfu"] and 100 * r["train_mfu"], "5.1f"):>6} '
      f'{r["infer_images_per_s"]:>10.1f} '
      f'{r["train_lower_s"]:>5.1f}+{r["train_compile_s"]:<6.1f} '
      f'{_fmt(mem and mem / MIB, ".0f"):>8} {r["attention"]:>5} '
      f'{_fmt(peer.get("train_images_per_s"), ".1f", "-"):>9} {_fmt(ratio, ".2f", "-"):>9}'
    )
    for note in r.get('notes', []):
      lines.append(f'  note: {note}')
  lines.append(
    'mem MiB: device allocator peak so far in this process where the backend reports '
    "it, else XLA's compiled size of the train step (args + outputs + temps)."
  )
  for label, peer in doc['peers'].items():
    if 'error' in peer:
      lines.append(f'peer of {label}: {peer["error"]}')
    else:
      lines.append(
        f'peer of {label}: {peer["peer"]} on {peer["device_name"]}, {peer["precision"]}, '
        f'{"torch.compile" if peer["compiled"] else "eager"}, torch {peer["torch"]}, '
        f'step {peer["train_step_s"] * 1e3:.2f} ms, first step {peer["first_step_s"]:.1f} s'
        + (
          f', peak {peer["device_peak_bytes"] / MIB:.0f} MiB'
          if peer.get('device_peak_bytes')
          else ''
        )
        + ''.join(f'; {n}' for n in peer.get('notes', []))
      )
  for c in doc['comparisons']:
    if c['kind'] == 'ours/peer':
      lines.append(
        f'{c["a"]} / {c["b"]}: train {c["train_images_per_s_ratio"]:.2f}x, '
        f'inference {c["infer_images_per_s_ratio"]:.2f}x images/s '
        f'(target {c["target"]})'
      )
    elif c['kind'] == 'fast/explicit GPSA':
      tf, te = c['train_temp_bytes']
      lines.append(
        f'GPSA fast vs explicit ({c["a"]}): explicit step takes '
        f'{c["train_speedup"]:.2f}x (train), {c["infer_speedup"]:.2f}x (inference) '
        f'the fast one; train temp memory {_fmt(tf and tf / MIB, ".0f")} vs '
        f'{_fmt(te and te / MIB, ".0f")} MiB'
      )
    elif c['kind'] == 'GPSA/plain step time':
      lines.append(
        f'GPSA/plain ({c["a"]} vs {c["b"]}): train step {c["train_step_ratio"]:.3f}x, '
        f'inference {c["infer_step_ratio"]:.3f}x (target {c["target"]})'
      )
    elif c['kind'] == 'scanned/unrolled':
      scanned_s, unrolled_s = c['train_lower_compile_s']
      lines.append(
        f'scanned/unrolled ({c["a"]} vs {c["b"]}): train lower+compile {scanned_s:.1f} vs '
        f'{unrolled_s:.1f} s ({c["train_compile_ratio"]:.2f}x), train step '
        f'{c["train_step_ratio"]:.3f}x, inference {c["infer_step_ratio"]:.3f}x; in CPU time '
        f'compile {c["train_compile_cpu_ratio"]:.2f}x, train step {c["train_step_cpu_ratio"]:.3f}x, '
        f'inference {c["infer_step_cpu_ratio"]:.3f}x (target {c["target"]})'
      )
    else:
      lines.append(
        f'{c["a"]}/{c["b"]} at equal GF ({c["macs_per_image"][0] / 1e9:.3f} vs '
        f'{c["macs_per_image"][1] / 1e9:.3f} GMACs): train step '
        f'{c["train_step_ratio"]:.3f}x, inference {c["infer_step_ratio"]:.3f}x '
        f'(target {c["target"]})'
      )
  for g in doc['gpsa_outputs']:
    lines.append(
      f'GPSA outputs fast vs explicit ({g["case"]}, {g["dtype"]}, {g["attention"]}): '
      f'max |diff| logits {g["max_abs_diff_logits"]:.2e} (max |logit| '
      f'{g["max_abs_logits"]:.2e}), pre-logits {g["max_abs_diff_pre_logits"]:.2e}'
    )
  return '\n'.join(lines)
