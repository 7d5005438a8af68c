"""The activation prior of method B as a Keras 3 layer.

It passes activations through unchanged and adds `weight * mean_b NLL(h_b)` to the
model's losses (eqs. 2-4 of the paper; called on a list of several branches' batches, the
sum of each batch's mean, computed in one call), where the NLL is that of a fitted
full-covariance Gaussian (B-Single) or diagonal GMM (B-GMM), computed by
tensorflow-probability in log space. The fitted values are non-trainable weights:
the config stays small, the values travel with the model's weights, and
`set_params` loads a fitted `PriorParams` (for the Gaussian, the layer holds the
inverse of the Cholesky factor, computed once in float64, so that the NLL needs a
matrix product rather than a triangular solve: XLA's solve on CPU took 635 ms for
B=64, D=1024, forward and backward, the product 8 ms). The mean is over the batch the layer sees,
i.e. the per-replica batch under a distribution strategy. The loss is added in
training and inference alike, so validation losses include it.

Speed: by default (`jit_compile=True`) the NLL and its gradient with respect to the
activations are computed together by one XLA-compiled function and joined to the
surrounding graph with `tf.custom_gradient`, without compiling the rest of the model
(XLA makes the convolutions slower on CPU); it also works inside an XLA-compiled step
and per replica under MirroredStrategy. The fitted values get no gradient: they are
constants of the regulariser.

The diagonal GMM never forms the [B, K, D] differences that `MixtureSameFamily.log_prob`
does (`gmm_nll_and_grad`): each component's quadratic form sum_d (h_d - m_kd)^2 / v_kd
is expanded into two matrix products, h^2 @ (1/v)^T - 2 h @ (m/v)^T + sum_d m^2/v, on
activations and means centred on the mixture's mean (which keeps the three terms near
the size of the result for typical inputs). The expansion still cancels when an
activation lies close to a component mean far from that centre and the variance is at
its floor (relative NLL errors of 3e-4 were measured in float32), and the components
that matter most are exactly the close ones: so the TOP_EXACT most likely components
of each example are recomputed directly from their differences ([B, TOP_EXACT, D]),
in the NLL and in the gradient. The other components' errors are those of terms at
most as large as the kept ones. `MixtureSameFamily` (`distribution()`) stays the
definition and the tests' reference (float64, 1e-5 relative on the NLL).
"""

import functools

import keras
import numpy as np
import scipy.linalg
import tensorflow as tf
import tensorflow_probability as tfp

from cmp_tf.priors import params as params_lib

tfd = tfp.distributions


def gmm_distribution(logits, means, variances, variance_floor):
  """Mixture of diagonal Gaussians; variances below the floor are raised to it."""
  return tfd.MixtureSameFamily(
      mixture_distribution=tfd.Categorical(logits=logits),
      components_distribution=tfd.MultivariateNormalDiag(
          loc=means, scale_diag=tf.sqrt(tf.maximum(variances, variance_floor))))


def gaussian_distribution(loc, inverse_scale_tril):
  """N(loc, L L^T) given W = L^-1: its precision W^T W has the factor W^T."""
  precision_factor = tf.linalg.LinearOperatorLowerTriangular(inverse_scale_tril).adjoint()
  return tfp.experimental.distributions.MultivariateNormalPrecisionFactorLinearOperator(
      loc=loc, precision_factor=precision_factor)


def _triangular_inverse(tril):
  """Inverse of a lower-triangular matrix, in float64."""
  tril = np.asarray(tril, np.float64)
  return scipy.linalg.solve_triangular(tril, np.eye(tril.shape[0]), lower=True)


TOP_EXACT = 2  # components per example whose quadratic form is computed directly


def gmm_nll_and_grad(h, logits, means, variances, variance_floor):
  """(NLL [B], dNLL/dh [B, D]) of the diagonal GMM without a [B, K, D] tensor (module doc)."""
  variances = tf.maximum(variances, variance_floor)
  precision = 1.0 / variances
  log_weights = tf.nn.log_softmax(logits)
  centre = tf.reduce_sum(tf.nn.softmax(logits)[:, None] * means, axis=0)
  h_c, means_c = h - centre, means - centre
  means_p = means_c * precision
  log_det = tf.reduce_sum(tf.math.log(variances), axis=1)
  quadratic = tf.matmul(tf.concat([h_c * h_c, h_c], 1),
                        tf.concat([precision, -2.0 * means_p], 1), transpose_b=True)
  log_p = log_weights - 0.5 * (quadratic + tf.reduce_sum(means_c * means_p, 1) + log_det)
  num_components = logits.shape[0]
  top = tf.math.top_k(log_p, min(TOP_EXACT, num_components)).indices  # [B, T]
  diff = h[:, None, :] - tf.gather(means, top)
  top_precision = tf.gather(precision, top)
  log_p_top = tf.gather(log_weights, top) - 0.5 * (
      tf.reduce_sum(diff * diff * top_precision, -1) + tf.gather(log_det, top))
  in_top = tf.reduce_sum(tf.one_hot(top, num_components), axis=1) > 0
  log_p_rest = tf.where(in_top, tf.constant(-np.inf, h.dtype), log_p)
  log_total = tf.reduce_logsumexp(tf.concat([log_p_top, log_p_rest], 1), axis=1)
  dim = tf.cast(tf.shape(h)[1], h.dtype)
  nll = 0.5 * dim * np.log(2.0 * np.pi) - log_total
  r_rest = tf.exp(log_p_rest - log_total[:, None])
  r_top = tf.exp(log_p_top - log_total[:, None])
  rest = tf.matmul(r_rest, tf.concat([precision, means_p], 1))
  d = h.shape[1]
  grad = (h_c * rest[:, :d] - rest[:, d:]
          + tf.reduce_sum(r_top[..., None] * diff * top_precision, axis=1))
  return nll, grad


def _nll(make_distribution, h, *params):
  return -make_distribution(*params).log_prob(h)


def _nll_and_grad(make_distribution, h, *params):
  with tf.GradientTape() as tape:
    tape.watch(h)
    nll = _nll(make_distribution, h, *params)
  return nll, tape.gradient(nll, h)


_MAKERS = {params_lib.GMM: gmm_distribution, params_lib.GAUSSIAN: gaussian_distribution}
_NLL_AND_GRAD = {params_lib.GMM: gmm_nll_and_grad,
                 params_lib.GAUSSIAN: functools.partial(_nll_and_grad, gaussian_distribution)}
_COMPILED = {kind: tf.function(function, jit_compile=True)
             for kind, function in _NLL_AND_GRAD.items()}
# The GMM through MixtureSameFamily.log_prob and autodiff (the [B, K, D] path), compiled
# the same way: what the matmul form replaced, kept for benchmarks.priors to compare.
mixture_nll_and_grad = tf.function(functools.partial(_nll_and_grad, gmm_distribution),
                                   jit_compile=True)


@keras.saving.register_keras_serializable(package="cmp_tf")
class ActivationPrior(keras.layers.Layer):
  """Identity on [B, dim] activations that adds `weight * mean NLL` via `add_loss`.

  Args:
    kind: "gaussian" or "gmm".
    dim: activation width D.
    num_components: K (GMM only).
    weight: lambda of eq. 1; 0 computes nothing and adds no loss.
    variance_floor: lower bound applied to the GMM variances at every call.
    jit_compile: compute the NLL and its gradient with XLA (see the module doc).
  """

  def __init__(self, kind, dim, num_components=None, weight=1.0, variance_floor=1e-4,
               jit_compile=True, **kwargs):
    super().__init__(**kwargs)
    where = f"ActivationPrior {self.name}"
    self.kind = params_lib.check_kind(kind, f"{where}: kind")
    self.dim = int(dim)
    if self.dim < 1:
      raise ValueError(f"{where}: dim must be >= 1, got {dim}")
    self.weight = float(weight)
    if not np.isfinite(self.weight) or self.weight < 0:
      raise ValueError(f"{where}: weight must be a finite number >= 0, got {weight}")
    self.variance_floor = float(variance_floor)
    if not self.variance_floor > 0:
      raise ValueError(f"{where}: variance_floor must be > 0, got {variance_floor}")
    self.jit_compile = bool(jit_compile)
    if self.kind == params_lib.GMM:
      if num_components is None or int(num_components) < 1:
        raise ValueError(f"{where}: a GMM needs num_components >= 1, got {num_components}")
      self.num_components = int(num_components)
      self.logits = self._param("logits", (self.num_components,), "zeros")
      self.means = self._param("means", (self.num_components, self.dim), "zeros")
      self.variances = self._param("variances", (self.num_components, self.dim), "ones")
    else:
      if num_components is not None:
        raise ValueError(f"{where}: num_components is for GMM priors only")
      self.num_components = None
      self.loc = self._param("loc", (self.dim,), "zeros")
      self.inverse_scale_tril = self._param("inverse_scale_tril", (self.dim, self.dim),
                                            "identity")

  def _param(self, name, shape, initializer):
    return self.add_weight(name=name, shape=shape, initializer=initializer,
                           trainable=False, dtype="float32")

  def set_params(self, params):
    """Loads a fitted `PriorParams` of matching kind and size."""
    where = f"ActivationPrior {self.name}"
    if params.kind != self.kind:
      raise ValueError(f"{where}: cannot load a {params.kind} prior into a {self.kind} layer")
    if not params.fitted:
      raise ValueError(f"{where}: the {params.layer} prior has no fitted arrays")
    if params.dim != self.dim or params.num_components != self.num_components:
      raise ValueError(
          f"{where}: prior for {params.layer} has dim {params.dim}, K "
          f"{params.num_components}; the layer expects dim {self.dim}, K "
          f"{self.num_components}")
    if self.kind == params_lib.GMM:
      self.logits.assign(params.arrays["logits"])
      self.means.assign(params.arrays["means"])
      self.variances.assign(params.arrays["variances"])
    else:
      self.loc.assign(params.arrays["mean"])
      self.inverse_scale_tril.assign(
          _triangular_inverse(params.arrays["scale_tril"]).astype(np.float32))

  def get_params(self, layer):
    """The current values as `PriorParams` for `layer`."""
    if self.kind == params_lib.GMM:
      arrays = {"logits": self.logits.numpy(), "means": self.means.numpy(),
                "variances": self.variances.numpy()}
    else:
      arrays = {"mean": self.loc.numpy(),
                "scale_tril": _triangular_inverse(self.inverse_scale_tril.numpy())}
    return params_lib.PriorParams(kind=self.kind, layer=layer, arrays=arrays)

  def _param_tensors(self):
    if self.kind == params_lib.GMM:
      return (tf.convert_to_tensor(self.logits), tf.convert_to_tensor(self.means),
              tf.convert_to_tensor(self.variances),
              tf.constant(self.variance_floor, tf.float32))
    return (tf.convert_to_tensor(self.loc), tf.convert_to_tensor(self.inverse_scale_tril))

  def distribution(self):
    """The tfp distribution over [dim] activations."""
    return _MAKERS[self.kind](*self._param_tensors())

  def negative_log_likelihood(self, h):
    """Per-example NLL [B] of activations h [B, dim] (float32), differentiable in h."""
    h = tf.cast(h, tf.float32)
    params = self._param_tensors()
    function = _COMPILED[self.kind] if self.jit_compile else _NLL_AND_GRAD[self.kind]

    @tf.custom_gradient
    def nll(h):
      value, grad = function(h, *params)
      return value, lambda upstream: upstream[..., None] * grad

    return nll(h)

  def call(self, inputs):
    """`inputs`: activations [B, dim], or a list of several branches' batches, whose NLLs
    are computed in one call (one XLA launch instead of one per branch); returned
    unchanged. The loss is weight * the sum over the list of each batch's mean NLL."""
    if self.weight > 0:
      batches = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
      if len(batches) == 1:
        means = [tf.reduce_mean(self.negative_log_likelihood(batches[0]))]
      else:
        sizes = tf.stack([tf.shape(b)[0] for b in batches])
        nll = self.negative_log_likelihood(tf.concat(batches, axis=0))
        means = [tf.reduce_mean(part) for part in tf.split(nll, sizes, num=len(batches))]
      self.add_loss(self.weight * tf.add_n(means))
    return inputs

  def build(self, input_shape):
    several = bool(input_shape) and isinstance(input_shape[0], (list, tuple))
    for shape in (input_shape if several else [input_shape]):
      if shape[-1] is not None and int(shape[-1]) != self.dim:
        raise ValueError(
            f"ActivationPrior {self.name}: built for dim {self.dim}, called on inputs of "
            f"shape {tuple(shape)}")

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    config = super().get_config()
    config.update(kind=self.kind, dim=self.dim, num_components=self.num_components,
                  weight=self.weight, variance_floor=self.variance_floor,
                  jit_compile=self.jit_compile)
    return config
