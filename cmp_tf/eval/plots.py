"""The figures of the evaluation and reproduction pages, drawn with matplotlib.

Every number drawn comes from the results the tables are made of (results.json, run.json,
the reproduction's JSON): a figure is another view of a table, never its own computation.
PNGs are written atomically.
"""

import numpy as np

from cmp_tf import modalities as mod_lib
from cmp_tf.eval import rows as rows_lib
from cmp_tf.fileio import atomic_path

DPI = 100


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  return plt


def save(fig, path):
  """Writes a matplotlib figure as PNG to `path` atomically and closes it."""
  plt = _pyplot()
  try:
    with atomic_path(path) as tmp:
      fig.savefig(tmp, format="png", bbox_inches="tight", dpi=DPI)
  finally:
    plt.close(fig)


def pair_matrix(scores, modalities, metric="map"):
  """float [M, M]: scores["query->target"][metric] in percent, rows the query modality,
  columns the target; NaN on the diagonal and where a pair was not evaluated."""
  matrix = np.full((len(modalities), len(modalities)), np.nan)
  for i, query in enumerate(modalities):
    for j, target in enumerate(modalities):
      entry = scores.get(rows_lib.pair_key((query, target))) if query != target else None
      if entry is not None:
        matrix[i, j] = 100.0 * entry[metric]
  return matrix


def plot_pair_matrices(matrices, modalities, path, *, chance=None, difference=False,
                       suptitle=""):
  """Heatmaps of query -> target matrices side by side ({title: [M, M] in percent}), each
  cell annotated; the colour scale is shared. `difference`: a diverging scale around 0."""
  plt = _pyplot()
  names = [m.upper() for m in modalities]
  values = np.concatenate([m[np.isfinite(m)] for m in matrices.values()] or [np.zeros(1)])
  if difference:
    bound = max(1.0, float(np.abs(values).max())) if values.size else 1.0
    vmin, vmax, cmap = -bound, bound, "RdBu"
  else:
    vmin, vmax, cmap = 0.0, max(1.0, float(values.max())) if values.size else 1.0, "viridis"
  fig, axes = plt.subplots(1, len(matrices), figsize=(4.2 * len(matrices) + 0.8, 4.0),
                           squeeze=False)
  image = None
  axes[0][0].set_ylabel("query")
  for ax, (title, matrix) in zip(axes[0], matrices.items()):
    masked = np.ma.masked_invalid(matrix)
    image = ax.imshow(masked, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_facecolor("#dddddd")
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("target")
    ax.set_title(title)
    for i in range(matrix.shape[0]):
      for j in range(matrix.shape[1]):
        if np.isfinite(matrix[i, j]):
          shade = (matrix[i, j] - vmin) / (vmax - vmin or 1.0)
          light = 0.3 < shade < 0.7 if difference else shade > 0.6
          ax.text(j, i, f"{matrix[i, j]:.1f}", ha="center", va="center", fontsize=8,
                  color="black" if light else "white")
  bar = fig.colorbar(image, ax=axes[0].tolist(), shrink=0.85)
  bar.set_label("mAP difference (points)" if difference else "mAP (%)")
  if chance is not None and not difference:
    bar.ax.axhline(100.0 * chance, color="red", linewidth=2)
    bar.ax.text(1.6, 100.0 * chance, "chance", color="red", va="center", fontsize=8,
                transform=bar.ax.get_yaxis_transform())
  if suptitle:
    fig.suptitle(suptitle)
  save(fig, path)


def plot_dev_curves(stages, path):
  """Dev accuracy per modality over steps, one panel per stage with a dev history (from
  run.json's stages); the best evaluation and the stop are marked."""
  plt = _pyplot()
  stages = [s for s in stages if s.get("dev_history")]
  if not stages:
    return False
  fig, axes = plt.subplots(1, len(stages), figsize=(5.0 * len(stages), 3.6), squeeze=False)
  for ax, stage in zip(axes[0], stages):
    history = stage["dev_history"]
    steps = [e["step"] for e in history]
    present = [m for m in mod_lib.ALL_MODALITIES if m in history[0]["dev_accuracy"]]
    for m in present:
      ax.plot(steps, [e["dev_accuracy"][m] for e in history], color=mod_lib.COLOURS[m],
              label=m.upper(), linewidth=1.5)
    ax.plot(steps, [e["mean"] for e in history], color="black", linestyle="--",
            label="mean", linewidth=1.2)
    if stage.get("best_step") is not None:
      ax.axvline(stage["best_step"], color="grey", linestyle=":", linewidth=1)
      ax.text(stage["best_step"], 1.01, " best", transform=ax.get_xaxis_transform(),
              fontsize=8, color="grey")
    ax.set_title(f"{stage.get('name')}: {stage.get('steps')} steps "
                 f"({stage.get('stop_reason') or 'fixed'})", fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel("dev accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
  axes[0][-1].legend(loc="lower right", fontsize=8)
  save(fig, path)
  return True


def _or_nan(value):
  """An error bar's size; no spread (one seed) draws none."""
  return np.nan if value is None else value


def plot_bars(groups, path, *, ylabel, title="", reference=None, chance=None):
  """Grouped bars: {group: {series: (mean, std or None)}}; `reference`: {group: value}
  drawn as a black tick beside each group (e.g. the paper's figure); `chance` a line."""
  plt = _pyplot()
  names = list(groups)
  series = list(dict.fromkeys(s for g in groups.values() for s in g))
  width = 0.8 / max(1, len(series) + (reference is not None))
  fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(names) + 2), 4.0))
  x = np.arange(len(names))
  for k, name in enumerate(series):
    means = [groups[g].get(name, (np.nan, None))[0] for g in names]
    stds = [_or_nan(groups[g].get(name, (np.nan, None))[1]) for g in names]
    ax.bar(x + k * width, means, width, yerr=stds, capsize=3, label=name)
  if reference is not None:
    ax.bar(x + len(series) * width, [reference.get(g, np.nan) for g in names], width,
           color="#bbbbbb", edgecolor="black", label="paper")
  if chance is not None:
    ax.axhline(chance, color="red", linestyle="--", linewidth=1, label="chance")
  ax.set_xticks(x + width * (len(series) + (reference is not None) - 1) / 2, names,
                rotation=30, ha="right")
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.legend(fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  save(fig, path)


def plot_lines(lines, xlabels, path, *, ylabel, title=""):
  """One line per name over the x labels (e.g. pool5 -> fc6 -> fc7): {name: [(mean, std)]}."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.0, 4.0))
  x = np.arange(len(xlabels))
  for name, points in lines.items():
    means = [p[0] for p in points]
    stds = [_or_nan(p[1]) for p in points]
    ax.errorbar(x, means, yerr=stds, marker="o", capsize=3, label=name)
  ax.set_xticks(x, xlabels)
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  save(fig, path)
