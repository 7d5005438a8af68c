"""Modality invariance of the shared representation (paper section 5.3, Figure 7).

Two views of one question, whether a feature still says which modality it came from:

- a t-SNE map of fc7 over the validation examples of every modality, drawn twice,
  coloured by modality and by category: an invariant representation mixes the
  modalities and clusters the categories;
- a number per layer: the cross-validated accuracy of a linear probe (logistic
  regression, stratified k-fold) that predicts the modality from the feature. Lower
  is more invariant; chance is the share of the largest modality.

Features are L2-normalised first, as retrieval compares them by cosine similarity, so
neither view rewards a mere difference in scale between modalities.
"""

import os

import numpy as np

from cmp_tf import modalities as mod_lib
from cmp_tf.fileio import atomic_path
from cmp_tf.layer_names import FEATURE_LAYERS

PROBE_LAYERS = FEATURE_LAYERS
TSNE_LAYER = "fc7"
FOLDS = 5
PROBE_C = 1.0
TSNE_PERPLEXITY = 30.0
TSNE_PCA_DIMS = 50
_MARKERS = ("o", "^", "s", "D")


def one_thread():
  """A context in which BLAS and OpenMP (t-SNE's gradient) use one thread each.

  On a 2-core machine whose cores are busy, extra threads spin-wait: t-SNE of 120
  points took 114 s with two OpenMP threads and 3 s with one. threadpoolctl limits
  only the libraries already loaded, so the callers import scikit-learn first.
  """
  from threadpoolctl import threadpool_limits
  return threadpool_limits(limits=1)


def l2_normalise(x):
  """Rows scaled to unit length (zero rows stay zero)."""
  x = np.asarray(x, np.float64)
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  return x / np.maximum(norms, 1e-12)


def stack_modalities(features):
  """(X [N, D], modality index [N], modality names) from {modality: [N_m, D]}."""
  names = list(features)
  if not names:
    raise ValueError("no modality given")
  dims = {np.shape(features[m])[1] for m in names}
  if len(dims) != 1:
    raise ValueError(f"the modalities' features have different widths {sorted(dims)}")
  x = np.concatenate([np.asarray(features[m]) for m in names])
  y = np.concatenate([np.full(len(features[m]), i) for i, m in enumerate(names)])
  return x, y, names


def modality_probe(features, *, folds=FOLDS, seed=0, c=PROBE_C):
  """Cross-validated accuracy of a linear probe predicting the modality from a feature.

  Args:
    features: {modality: float [N_m, D]}, two or more modalities.
    folds: stratified folds (capped by the smallest modality's size).
    seed: the folds' shuffle.
    c: inverse L2 regularisation of the logistic regression (on standardised features).

  Returns:
    {"accuracy": mean over folds, "std", "fold_accuracies", "chance": share of the
    largest modality, "folds", "examples": {modality: N_m}}.
  """
  from sklearn.linear_model import LogisticRegression
  from sklearn.model_selection import StratifiedKFold, cross_val_score
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  x, y, names = stack_modalities(features)
  if len(names) < 2:
    raise ValueError(f"a modality probe needs two or more modalities, got {names}")
  counts = np.bincount(y)
  folds = int(min(folds, counts.min()))
  if folds < 2:
    raise ValueError(f"a modality probe needs >= 2 examples per modality, got "
                     f"{dict(zip(names, counts.tolist()))}")
  probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
  splits = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
  with one_thread():
    scores = cross_val_score(probe, l2_normalise(x), y, cv=splits, scoring="accuracy")
  return {"accuracy": float(scores.mean()), "std": float(scores.std()),
          "fold_accuracies": [float(s) for s in scores],
          "chance": float(counts.max() / counts.sum()), "folds": folds,
          "examples": dict(zip(names, counts.tolist()))}


def tsne_embedding(x, *, seed=0, perplexity=TSNE_PERPLEXITY, pca_dims=TSNE_PCA_DIMS):
  """float [N, 2]: t-SNE of L2-normalised rows (after PCA to `pca_dims`, as usual)."""
  from sklearn.decomposition import PCA
  from sklearn.manifold import TSNE

  x = l2_normalise(x)
  if len(x) < 5:
    raise ValueError(f"t-SNE needs at least 5 examples, got {len(x)}")
  dims = min(pca_dims, x.shape[1], len(x))
  perplexity = min(perplexity, (len(x) - 1) / 3)
  tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
              learning_rate="auto")
  with one_thread():
    if dims < x.shape[1]:
      x = PCA(n_components=dims, random_state=seed).fit_transform(x)
    return tsne.fit_transform(x).astype(np.float32)


def plot_tsne(points, groups, group_names, path, *, title, colours=None, legend=True):
  """Writes a scatter plot of `points` [N, 2] coloured by `groups` [N] as a PNG, atomically."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  fig, ax = plt.subplots(figsize=(7, 7), dpi=100)
  cmap = plt.get_cmap("tab20" if len(group_names) > 10 else "tab10")
  for g, name in enumerate(group_names):
    mask = np.asarray(groups) == g
    if not mask.any():
      continue
    # Beyond the palette's colours, a new marker shape keeps groups apart.
    colour = (colours or {}).get(name, cmap(g % cmap.N))
    marker = _MARKERS[(g // cmap.N) % len(_MARKERS)]
    ax.scatter(points[mask, 0], points[mask, 1], s=10, color=colour, marker=marker,
               label=name, alpha=0.75, linewidths=0)
  ax.set_title(title)
  ax.set_xticks([])
  ax.set_yticks([])
  if legend:
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7 if len(group_names) > 10
              else 9, markerscale=2, frameon=False, ncol=2 if len(group_names) > 20 else 1)
  try:
    with atomic_path(path) as tmp:
      fig.savefig(tmp, format="png", bbox_inches="tight")  # grows to hold the legend
  finally:
    plt.close(fig)


def run_invariance(acts, out_dir, *, categories, seed=0, folds=FOLDS,
                   probe_layers=PROBE_LAYERS, tsne_layer=TSNE_LAYER, title=""):
  """t-SNE pictures and the modality probe for {modality: Activations}; JSON-ready results.

  Writes `out_dir`/tsne_modality.png and tsne_category.png (no other files); the
  returned dict holds the probe per layer and the pictures' names relative to `out_dir`.
  """
  os.makedirs(out_dir, exist_ok=True)
  probes = {layer: modality_probe({m: a.features(layer) for m, a in acts.items()},
                                  folds=folds, seed=seed) for layer in probe_layers}
  x, modality_ids, names = stack_modalities({m: a.features(tsne_layer) for m, a in acts.items()})
  labels = np.concatenate([a.labels for a in acts.values()])
  points = tsne_embedding(x, seed=seed)
  prefix = f"{title}: " if title else ""
  pictures = {"modality": "tsne_modality.png", "category": "tsne_category.png"}
  plot_tsne(points, modality_ids, [m.upper() for m in names],
            os.path.join(out_dir, pictures["modality"]),
            title=f"{prefix}t-SNE of {tsne_layer}, coloured by modality",
            colours={m.upper(): mod_lib.COLOURS[m] for m in names if m in mod_lib.COLOURS})
  plot_tsne(points, labels, list(categories), os.path.join(out_dir, pictures["category"]),
            title=f"{prefix}t-SNE of {tsne_layer}, coloured by category")
  return {"probe": probes, "probe_layers": list(probe_layers), "tsne_layer": tsne_layer,
          "pictures": pictures, "examples": {m: len(a) for m, a in acts.items()},
          "protocol": {"folds": folds, "seed": seed, "probe_c": PROBE_C,
                       "tsne_perplexity": TSNE_PERPLEXITY, "tsne_pca_dims": TSNE_PCA_DIMS,
                       "normalisation": "L2 per example; the probe also standardises"}}
