"""Subspace alignment (Fernando et al., ICCV 2013), the paper's SA baseline.

Each domain (modality) is z-scored with its own per-feature mean and standard deviation
(features that are constant in a domain are only centred), as in the authors' code; its d
leading principal directions form the columns of X_s (source) or X_t (target). The alignment
M = X_s^T X_t maps the source subspace onto the target one, so the source is represented as
S X_s M and the target as T X_t, where S and T are the z-scored features. The statistics and
subspaces come from the data given to `fit` (the training sets) and are then applied to any
features (the validation sets), as the paper does.
"""

import numpy as np
from sklearn.decomposition import PCA
from sklearn.svm import LinearSVC

from cmp_tf.eval import retrieval, zero_shot


class _Standardizer:
  """Per-feature z-scoring with statistics from one domain's fitting data."""

  def __init__(self, features):
    self.mean = features.mean(axis=0)
    std = features.std(axis=0)
    self.scale = np.where(std > 0, std, 1.0)

  def __call__(self, features):
    return (features - self.mean) / self.scale


def _check_domain(features, name, n_components, num_features=None):
  features = np.asarray(retrieval.check_features(features, name), dtype=np.float64)
  if num_features is not None and features.shape[1] != num_features:
    raise ValueError(f"{name}: feature size {features.shape[1]} differs from the fitted "
                     f"{num_features}")
  if n_components is not None and n_components > min(features.shape):
    raise ValueError(f"{name}: n_components={n_components} exceeds min(examples, features) = "
                     f"{min(features.shape)} of its shape {features.shape}")
  return features


class SubspaceAlignment:
  """Aligns a source domain's PCA subspace to a target domain's (Fernando et al. 2013)."""

  def __init__(self, n_components, seed=0):
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)) or (
        n_components < 1):
      raise ValueError(f"n_components: expected a positive integer, got {n_components!r}")
    self.n_components = int(n_components)
    self.seed = seed

  def _basis(self, features):
    pca = PCA(n_components=self.n_components, random_state=self.seed)
    return pca.fit(features).components_.T  # [D, d], orthonormal columns

  def fit(self, source, target):
    """Learns both subspaces and the alignment M from unlabeled source and target features."""
    source = _check_domain(source, "source", self.n_components)
    target = _check_domain(target, "target", self.n_components, source.shape[1])
    self._source_z = _Standardizer(source)
    self._target_z = _Standardizer(target)
    self.source_basis_ = self._basis(self._source_z(source))
    self.target_basis_ = self._basis(self._target_z(target))
    self.alignment_ = self.source_basis_.T @ self.target_basis_  # M, [d, d]
    return self

  def _check_fitted(self):
    if not hasattr(self, "alignment_"):
      raise ValueError("SubspaceAlignment: call fit(source, target) before transforming")

  def transform_source(self, features):
    """Source features in the aligned space: S X_s M, [N, d]."""
    self._check_fitted()
    features = _check_domain(features, "features", None, self.source_basis_.shape[0])
    return self._source_z(features) @ self.source_basis_ @ self.alignment_

  def transform_target(self, features):
    """Target features in the target subspace: T X_t, [N, d]."""
    self._check_fitted()
    features = _check_domain(features, "features", None, self.target_basis_.shape[0])
    return self._target_z(features) @ self.target_basis_


def sa_similarity(query_feats, target_feats, n_components, *, query_fit_feats=None,
                  target_fit_feats=None, seed=0):
  """[Q, T] cosine similarity after aligning the query domain (source) to the target domain.

  The subspaces are fitted on `query_fit_feats` / `target_fit_feats` (e.g. the training sets)
  when given, otherwise on the features being compared.
  """
  sa = SubspaceAlignment(n_components, seed=seed).fit(
      query_feats if query_fit_feats is None else query_fit_feats,
      target_feats if target_fit_feats is None else target_fit_feats)
  return retrieval.cosine_similarity(sa.transform_source(query_feats),
                                     sa.transform_target(target_feats))


def sa_zero_shot(source_feats, source_labels, target_feats, n_components, C=1.0, *,
                 target_fit_feats=None, seed=0, max_iter=5000, restrict_to=None):
  """Predicted labels of `target_feats` from a linear SVM trained on aligned source features
  (argmax over every class, or over the labels `restrict_to` only).

  Table 4's SA rows: the source is NAT (all categories, labelled), the target a modality
  whose held-out categories were never labelled. The target subspace is fitted on
  `target_fit_feats` (e.g. its training set) when given, otherwise on `target_feats`.
  """
  source_feats = retrieval.check_features(source_feats, "source_feats")
  source_labels = retrieval.check_labels(source_labels, len(source_feats), "source_labels",
                                          "source_feats")
  if np.unique(source_labels).size < 2:
    raise ValueError("source_labels: a classifier needs at least two classes")
  sa = SubspaceAlignment(n_components, seed=seed).fit(
      source_feats, target_feats if target_fit_feats is None else target_fit_feats)
  svm = LinearSVC(C=C, random_state=seed, max_iter=max_iter)
  svm.fit(sa.transform_source(source_feats), source_labels)
  target = sa.transform_target(target_feats)
  if restrict_to is None:
    return svm.predict(target)
  scores = svm.decision_function(target)
  if scores.ndim == 1:  # two classes: one margin column for classes_[1]
    scores = np.stack([-scores, scores], axis=1)
  return zero_shot.restricted_argmax(scores, svm.classes_, restrict_to)
