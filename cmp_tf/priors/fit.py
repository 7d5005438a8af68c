"""Fits the activation priors of method B on the source network's NAT activations.

B-Single is one full-covariance Gaussian per layer; B-GMM a mixture of K diagonal
Gaussians (K = 100 in the paper). ReLU layers have dead units (always 0), so both fits
regularise: the Gaussian shrinks its covariance (Ledoit-Wolf by default) and adds
`reg` to the diagonal; the GMM adds a variance floor to every variance.

The GMM's floor is relative to the layer's scale: max(variance_floor,
relative_variance_floor * mean per-unit variance of the activations). The prior's
gradient is lambda * (h - mu) / var, so its stiffness is lambda / var: an absolute
floor of 1e-4 on a layer whose units vary by ~1 made components with dead units
1e4 times stiffer than the data suggest, and SGD with momentum diverged on a
weakly trained source network. Ledoit-Wolf shrinkage does the same for the
Gaussian: its smallest eigenvalues stay near shrinkage * mean variance.
"""

import time

import numpy as np
from sklearn import covariance as sk_covariance
from sklearn import mixture as sk_mixture

from cmp_tf.priors import params as params_lib


def _check_activations(activations, layer, min_rows):
  params_lib.check_layer(layer)
  activations = np.asarray(activations)
  if activations.ndim != 2:
    raise ValueError(
        f"{layer} prior: activations must be [N, D], got shape {activations.shape}")
  if activations.shape[0] < min_rows:
    raise ValueError(
        f"{layer} prior: {activations.shape[0]} activation rows; need at least {min_rows}")
  if not np.all(np.isfinite(activations)):
    raise ValueError(f"{layer} prior: activations contain NaN or inf")
  return activations


def fit_gaussian(activations, *, layer, shrinkage="ledoit_wolf", reg=1e-4):
  """Full-covariance Gaussian N(mean, L L^T) of `activations` [N, D].

  Args:
    activations: [N, D] source-network activations of `layer`.
    layer: "pool5", "fc6" or "fc7".
    shrinkage: "ledoit_wolf" (estimated) or a fixed weight in [0, 1] of the scaled
      identity mixed into the sample covariance.
    reg: added to the covariance diagonal, so the Cholesky factor always exists.
  """
  start = time.perf_counter()
  x = _check_activations(activations, layer, min_rows=2).astype(np.float64)
  if reg < 0:
    raise ValueError(f"{layer} prior: reg must be >= 0, got {reg}")
  mean = x.mean(axis=0)
  if shrinkage == "ledoit_wolf":
    cov, amount = sk_covariance.ledoit_wolf(x - mean, assume_centered=True)
  else:
    amount = float(shrinkage)
    if not 0.0 <= amount <= 1.0:
      raise ValueError(
          f"{layer} prior: shrinkage must be 'ledoit_wolf' or in [0, 1], got {shrinkage!r}")
    sample = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])
    target = np.trace(sample) / sample.shape[0]
    cov = (1.0 - amount) * sample + amount * target * np.eye(sample.shape[0])
  cov = cov + reg * np.eye(cov.shape[0])
  try:
    scale_tril = np.linalg.cholesky(cov)
  except np.linalg.LinAlgError as e:
    raise ValueError(
        f"{layer} prior: covariance is not positive definite even after shrinkage "
        f"{amount} and reg {reg}; raise reg") from e
  settings = {
      "method": "gaussian",
      "shrinkage": "ledoit_wolf" if shrinkage == "ledoit_wolf" else amount,
      "shrinkage_amount": float(amount),
      "reg": float(reg),
      "n_samples": int(x.shape[0]),
      "dim": int(x.shape[1]),
      "fit_seconds": round(time.perf_counter() - start, 3),
  }
  return params_lib.PriorParams(
      kind=params_lib.GAUSSIAN, layer=layer,
      arrays={"mean": mean, "scale_tril": scale_tril}, settings=settings)


def fit_gmm(activations, *, layer, num_components=100, seed=0, max_iter=100, tol=1e-3,
            variance_floor=1e-4, relative_variance_floor=1e-2, max_samples=6000):
  """Diagonal-covariance GMM with `num_components` components (sklearn EM, k-means init).

  Args:
    activations: [N, D] source-network activations of `layer`.
    layer: "pool5", "fc6" or "fc7".
    num_components: K.
    seed: seeds the subsample and sklearn's k-means initialisation.
    max_iter, tol: EM stopping rule.
    variance_floor: absolute lower bound of the floor added to every variance.
    relative_variance_floor: the floor as a fraction of the mean per-unit variance of
      the activations (see the module doc); the larger of the two is used (sklearn's
      reg_covar) and recorded as settings["variance_floor"].
    max_samples: EM runs on a random subsample of at most this many rows, which keeps
      K = 100 on ~9000 x 1024 activations well under a minute on 2 cores; 0 = all rows.
  """
  start = time.perf_counter()
  if num_components < 1:
    raise ValueError(f"{layer} prior: num_components must be >= 1, got {num_components}")
  if variance_floor <= 0:
    raise ValueError(f"{layer} prior: variance_floor must be > 0, got {variance_floor}")
  if relative_variance_floor < 0:
    raise ValueError(
        f"{layer} prior: relative_variance_floor must be >= 0, got {relative_variance_floor}")
  x = _check_activations(activations, layer, min_rows=num_components)
  rng = np.random.default_rng(seed)
  n_total = x.shape[0]
  if max_samples and n_total > max_samples:
    x = x[np.sort(rng.choice(n_total, size=max_samples, replace=False))]
  if x.shape[0] < num_components:
    raise ValueError(
        f"{layer} prior: {x.shape[0]} rows for {num_components} components")
  x = x.astype(np.float64)
  unit_variance = float(np.mean(np.var(x, axis=0)))
  floor = max(float(variance_floor), float(relative_variance_floor) * unit_variance)
  gmm = sk_mixture.GaussianMixture(
      n_components=num_components, covariance_type="diag", reg_covar=floor,
      max_iter=max_iter, tol=tol, init_params="k-means++", random_state=seed)
  gmm.fit(x)
  weights = np.maximum(gmm.weights_, np.finfo(np.float64).tiny)
  settings = {
      "method": "gmm",
      "num_components": int(num_components),
      "covariance_type": "diag",
      "variance_floor": floor,
      "absolute_variance_floor": float(variance_floor),
      "relative_variance_floor": float(relative_variance_floor),
      "mean_unit_variance": unit_variance,
      "seed": int(seed),
      "max_iter": int(max_iter),
      "tol": float(tol),
      "init": "k-means++",
      "n_samples": int(x.shape[0]),
      "n_available": int(n_total),
      "dim": int(x.shape[1]),
      "n_iter": int(gmm.n_iter_),
      "converged": bool(gmm.converged_),
      "mean_log_likelihood": float(gmm.score(x)),
      "fit_seconds": round(time.perf_counter() - start, 3),
  }
  return params_lib.PriorParams(
      kind=params_lib.GMM, layer=layer,
      arrays={"logits": np.log(weights), "means": gmm.means_,
              "variances": gmm.covariances_},
      settings=settings)
