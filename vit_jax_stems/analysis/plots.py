"""Figures of the locality measures (matplotlib, headless): shared by the report and the notebook.

No backend is chosen here (the notebook shows figures inline, the command sets Agg). Every
function takes the JSON-ready dicts of `locality.measure` / `locality.query_attention_maps`
and returns a matplotlib Figure (or None when there is nothing to draw, e.g. gates of a model
without GPSA); the caller saves or shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

_HEAD_CMAP = 'viridis'


def _head_colours(num_heads: int):
  cmap = plt.get_cmap(_HEAD_CMAP)
  return [cmap(h / max(num_heads - 1, 1)) for h in range(num_heads)]


def _array(values) -> np.ndarray:
  return np.array([np.nan if v is None else v for v in values], np.float64)


def _shade_gpsa(ax, layers) -> None:
  gpsa = [layer['index'] for layer in layers if layer['kind'] == 'gpsa']
  if gpsa:
    ax.axvspan(
      min(gpsa) - 0.5, max(gpsa) + 0.5, color='tab:orange', alpha=0.12, lw=0, label='GPSA blocks'
    )


def plot_nonlocality(measures_by_run: Mapping[str, dict]) -> plt.Figure:
  """Per run (columns): nonlocality in patches (top) and mean attention distance in pixels
  (bottom) per layer; dots are heads, the line is the layer mean (P2 Fig. 5 style)."""
  names = list(measures_by_run)
  fig, axes = plt.subplots(
    2, len(names), figsize=(4.2 * len(names) + 0.6, 6.4), squeeze=False, sharey='row'
  )
  for col, name in enumerate(names):
    measures = measures_by_run[name]
    layers = measures['layers']
    colours = _head_colours(measures['num_heads'])
    for row, key in enumerate(('nonlocality', 'attention_distance_px')):
      ax = axes[row, col]
      _shade_gpsa(ax, layers)
      x = np.array([layer['index'] for layer in layers])
      per_head = np.stack([_array(layer[key]) for layer in layers])  # (layers, H)
      for h in range(per_head.shape[1]):
        ax.scatter(
          x + (h - per_head.shape[1] / 2) * 0.04,
          per_head[:, h],
          s=14,
          color=colours[h],
          label=f'head {h}' if col == 0 and row == 0 else None,
        )
      ax.plot(
        x,
        per_head.mean(axis=1),
        color='k',
        lw=1.5,
        label='mean over heads' if col == 0 and row == 0 else None,
      )
      ax.set_xticks(x)
      ax.grid(alpha=0.3)
      if row == 0:
        ax.set_title(name, fontsize=10)
      else:
        ax.set_xlabel('layer')
      if col == 0:
        ax.set_ylabel(
          {
            'nonlocality': 'nonlocality (patches)',
            'attention_distance_px': 'mean attention distance (px)',
          }[key]
        )
  handles, labels = [], []
  for ax in axes.flat:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      if label not in labels:
        handles.append(handle)
        labels.append(label)
  ncol = min(len(labels), 4 * len(names))
  fig.legend(handles, labels, loc='upper center', ncol=ncol, fontsize=8, frameon=False)
  rows_of_legend = -(-len(labels) // ncol)
  fig.tight_layout(rect=(0, 0, 1, 1 - 0.035 * rows_of_legend - 0.01))
  return fig


def plot_gates(measures_by_run: Mapping[str, dict]) -> plt.Figure | None:
  """Per run with GPSA (columns): the gate sigmoid(lambda) per head and layer (top; 1 = purely
  positional, 0 = purely content attention) and each head's positional-attention centre in
  patches, circle radius = span, per GPSA layer (bottom)."""
  runs = {
    name: m
    for name, m in measures_by_run.items()
    if any(layer['kind'] == 'gpsa' for layer in m['layers'])
  }
  if not runs:
    return None
  fig, axes = plt.subplots(2, len(runs), figsize=(4.2 * len(runs) + 0.6, 7.6), squeeze=False)
  for col, (name, measures) in enumerate(runs.items()):
    gpsa = [layer for layer in measures['layers'] if layer['kind'] == 'gpsa']
    colours = _head_colours(measures['num_heads'])
    ax = axes[0, col]
    x = np.array([layer['index'] for layer in gpsa])
    gates = np.stack([_array(layer['gate']) for layer in gpsa])
    for h in range(gates.shape[1]):
      ax.plot(x, gates[:, h], 'o-', ms=4, lw=0.8, color=colours[h], label=f'head {h}')
    ax.axhline(1 / (1 + np.exp(-1)), color='grey', ls=':', lw=1, label='init sigmoid(1)')
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(x)
    ax.set_xlabel('GPSA layer')
    ax.set_title(name, fontsize=10)
    ax.grid(alpha=0.3)
    if col == 0:
      ax.set_ylabel('gate sigmoid(lambda)')
    ax.legend(fontsize=7, loc='lower left')

    ax = axes[1, col]
    layer_cmap = plt.get_cmap('plasma')
    for k, layer in enumerate(gpsa):
      centres = np.array(
        [[np.nan, np.nan] if c is None else c for c in layer['positional_centre']], np.float64
      )
      spans = _array(layer['positional_span'])
      colour = layer_cmap(k / max(len(gpsa) - 1, 1))
      ax.scatter(
        centres[:, 0], centres[:, 1], color=colour, s=16, zorder=3, label=f'layer {layer["index"]}'
      )
      for (cx, cy), span in zip(centres, spans):
        if np.isfinite([cx, cy, span]).all():
          ax.add_patch(plt.Circle((cx, cy), span, fill=False, color=colour, lw=0.6, alpha=0.6))
    designed = np.array(
      [[np.nan, np.nan] if c is None else c for c in gpsa[0]['designed_offset']], np.float64
    )
    ax.scatter(
      designed[:, 0],
      designed[:, 1],
      marker='x',
      color='k',
      s=30,
      zorder=4,
      label='local-init offset',
    )
    grid = measures['grid']
    limit = (
      max(
        2.0,
        np.nanmax(
          np.abs(
            np.concatenate(
              [
                np.array([[np.nan, np.nan] if c is None else c for c in layer['positional_centre']])
                for layer in gpsa
              ]
            )
          )
        )
        + 1.0,
      )
      if gpsa
      else 2.0
    )
    limit = min(limit, max(grid))
    ax.set_xlim(-limit, limit)
    ax.set_ylim(limit, -limit)  # image convention: dy grows downwards
    ax.set_aspect('equal')
    ax.axhline(0, color='grey', lw=0.5)
    ax.axvline(0, color='grey', lw=0.5)
    ax.set_xlabel('centre dx (patches)')
    if col == 0:
      ax.set_ylabel('centre dy (patches)')
    ax.set_title('positional attention: centre, span', fontsize=9)
    ax.legend(fontsize=6, loc='upper right', ncol=2)
  fig.tight_layout()
  return fig


def plot_attention_maps(
  maps: dict,
  image: np.ndarray,
  *,
  query: int = 0,
  layers: Sequence[int] | None = None,
  title: str = '',
) -> plt.Figure:
  """Attention of one query patch (outlined) over the image: rows = layers, columns = heads.

  `maps` from `locality.query_attention_maps`; `image` (S, S, 3) in [0, 1]. Each map is the
  patch-to-patch attention (class token removed, renormalised) upsampled to pixels, on one
  colour scale per layer (0 to the layer's largest weight, at least 4/N, given on the left), so a
  flat head looks flat and dim; the title of each panel gives the mass on the class token where the block has one.
  """
  weights = maps['maps'][:, query]  # (layers, H, rows, cols)
  class_mass = maps['class_token_mass'][:, query]
  num_layers, heads, rows, cols = weights.shape
  layers = list(range(num_layers)) if layers is None else list(layers)
  size_h, size_w = image.shape[:2]
  r, c = maps['queries'][query]
  ph, pw = size_h / rows, size_w / cols
  fig, axes = plt.subplots(
    len(layers), heads + 1, figsize=(1.6 * (heads + 1), 1.7 * len(layers)), squeeze=False
  )
  grey = image.mean(axis=-1)
  for i, layer in enumerate(layers):
    ax = axes[i, 0]
    ax.imshow(image)
    ax.add_patch(plt.Rectangle((c * pw - 0.5, r * ph - 0.5), pw, ph, fill=False, color='red', lw=1))
    # At least 4/N, so that uniform attention (1/N everywhere) looks dim rather than saturated.
    vmax = max(float(np.max(weights[layer])), 4.0 / (rows * cols))
    ax.set_ylabel(f'layer {layer}\nmax {vmax:.2f}', fontsize=8)
    for h in range(heads):
      ax = axes[i, h + 1]
      ax.imshow(grey, cmap='gray', vmin=0, vmax=1)
      ax.imshow(
        weights[layer, h],
        cmap='inferno',
        alpha=0.65,
        vmin=0.0,
        vmax=vmax,
        extent=(-0.5, size_w - 0.5, size_h - 0.5, -0.5),
        interpolation='nearest',
      )
      ax.add_patch(
        plt.Rectangle((c * pw - 0.5, r * ph - 0.5), pw, ph, fill=False, color='cyan', lw=0.8)
      )
      mass = class_mass[layer, h]
      label = f'h{h}' + ('' if np.isnan(mass) else f' cls {mass:.2f}')
      ax.set_title(label, fontsize=7, pad=2)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  axes[0, 0].set_title(f'query ({r},{c})', fontsize=7, pad=2)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return fig


def plot_training(history: Sequence[dict], title: str = '') -> plt.Figure:
  """Locality across training: per layer, the head-mean nonlocality against the step (left)
  and, for GPSA layers, the head-mean gate (right). `history`: [{'step', 'measures'}]."""
  steps = np.array([entry['step'] for entry in history])
  layers = history[0]['measures']['layers']
  has_gpsa = any(layer['kind'] == 'gpsa' for layer in layers)
  fig, axes = plt.subplots(
    1, 2 if has_gpsa else 1, figsize=(10 if has_gpsa else 5.5, 3.8), squeeze=False
  )
  cmap = plt.get_cmap('plasma')
  for k, layer in enumerate(layers):
    colour = cmap(k / max(len(layers) - 1, 1))
    values = [entry['measures']['layers'][k]['nonlocality_mean'] for entry in history]
    style = '-' if layer['kind'] == 'gpsa' else '--'
    axes[0, 0].plot(
      steps, values, style, marker='o', ms=3, color=colour, label=f'layer {k} ({layer["kind"]})'
    )
    if has_gpsa and layer['kind'] == 'gpsa':
      gates = [entry['measures']['layers'][k]['gate_mean'] for entry in history]
      axes[0, 1].plot(steps, gates, '-o', ms=3, color=colour, label=f'layer {k}')
  axes[0, 0].set_xlabel('step')
  axes[0, 0].set_ylabel('nonlocality, mean over heads (patches)')
  axes[0, 0].grid(alpha=0.3)
  axes[0, 0].legend(fontsize=7)
  if has_gpsa:
    axes[0, 1].set_xlabel('step')
    axes[0, 1].set_ylabel('gate, mean over heads')
    axes[0, 1].set_ylim(-0.02, 1.02)
    axes[0, 1].grid(alpha=0.3)
    axes[0, 1].legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return fig
