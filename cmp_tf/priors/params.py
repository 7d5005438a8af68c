"""Fitted activation-prior parameters and their `.npz` file format.

A prior file holds the arrays of one distribution plus, as 0-d string arrays, its
kind, the layer it was fitted on and the fit settings as JSON, so it loads with
`allow_pickle=False`:

  format_version  int    1
  kind            str    "gaussian" | "gmm"
  layer           str    "pool5" | "fc6" | "fc7"
  settings        str    JSON object (fit options, n_samples, ...)
  array_<name>    float  gaussian: mean [D], scale_tril [D, D] (lower Cholesky factor
                         of the regularised covariance);
                         gmm: logits [K], means [K, D], variances [K, D] (diagonal)
"""

import dataclasses
import json
import pathlib

import numpy as np

from cmp_tf import fileio
from cmp_tf.layer_names import FEATURE_LAYERS

GAUSSIAN = "gaussian"
GMM = "gmm"
KINDS = (GAUSSIAN, GMM)
LAYERS = FEATURE_LAYERS
FORMAT_VERSION = 1

ARRAY_NAMES = {GAUSSIAN: ("mean", "scale_tril"), GMM: ("logits", "means", "variances")}


def check_kind(kind, where="kind"):
  if kind not in KINDS:
    raise ValueError(f"{where}: unknown prior kind {kind!r}; expected one of {', '.join(KINDS)}")
  return kind


def check_layer(layer, where="layer"):
  if layer not in LAYERS:
    raise ValueError(
        f"{where}: priors apply to one of {', '.join(LAYERS)}, not {layer!r}")
  return layer


@dataclasses.dataclass(eq=False)
class PriorParams:
  """The parameters of one layer's activation prior.

  `arrays` is empty for an unfitted layout (see `unfitted`): a model rebuilt from its
  config knows each prior's kind and size, and gets the values from its weights.
  """
  kind: str
  layer: str
  arrays: dict
  settings: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    check_kind(self.kind, "PriorParams.kind")
    check_layer(self.layer, "PriorParams.layer")
    self.arrays = {name: np.asarray(value, np.float32) for name, value in self.arrays.items()}
    self.settings = dict(self.settings)
    if self.arrays:
      _check_arrays(self.kind, self.arrays, f"{self.kind} prior for {self.layer}")

  def __eq__(self, other):
    if not isinstance(other, PriorParams):
      return NotImplemented
    return (self.kind == other.kind and self.layer == other.layer
            and self.settings == other.settings and self.arrays.keys() == other.arrays.keys()
            and all(np.array_equal(v, other.arrays[k]) for k, v in self.arrays.items()))

  __hash__ = None

  @classmethod
  def unfitted(cls, kind, layer, dim, num_components=None):
    """A layout without values: kind, layer and sizes only."""
    settings = {"dim": int(dim), "unfitted": True}
    if kind == GMM:
      settings["num_components"] = int(num_components)
    return cls(kind=kind, layer=layer, arrays={}, settings=settings)

  @property
  def fitted(self):
    return bool(self.arrays)

  @property
  def dim(self):
    if not self.arrays:
      return int(self.settings["dim"])
    key = "mean" if self.kind == GAUSSIAN else "means"
    return int(self.arrays[key].shape[-1])

  @property
  def num_components(self):
    """K for a GMM; None for a Gaussian."""
    if self.kind != GMM:
      return None
    if not self.arrays:
      return int(self.settings["num_components"])
    return int(self.arrays["logits"].shape[0])


def _check_arrays(kind, arrays, where):
  expected = ARRAY_NAMES[kind]
  if sorted(arrays) != sorted(expected):
    raise ValueError(f"{where}: arrays {sorted(arrays)} != expected {sorted(expected)}")
  for name, value in arrays.items():
    if not np.all(np.isfinite(value)):
      raise ValueError(f"{where}: array {name!r} has non-finite values")
  if kind == GAUSSIAN:
    mean, tril = arrays["mean"], arrays["scale_tril"]
    dim = mean.shape[0] if mean.ndim == 1 else -1
    if mean.ndim != 1 or tril.shape != (dim, dim):
      raise ValueError(
          f"{where}: mean {mean.shape} and scale_tril {tril.shape} must be [D] and [D, D]")
    if np.any(np.triu(tril, 1) != 0) or np.any(np.diag(tril) <= 0):
      raise ValueError(
          f"{where}: scale_tril must be lower triangular with a positive diagonal")
  else:
    logits, means, variances = arrays["logits"], arrays["means"], arrays["variances"]
    if (logits.ndim != 1 or means.ndim != 2 or means.shape[0] != logits.shape[0]
        or variances.shape != means.shape):
      raise ValueError(
          f"{where}: logits {logits.shape}, means {means.shape}, variances "
          f"{variances.shape} must be [K], [K, D], [K, D]")
    if np.any(variances <= 0):
      raise ValueError(f"{where}: variances must be positive")


def save_prior(path, params):
  """Writes `params` to `path` (.npz) atomically."""
  if not params.fitted:
    raise ValueError(f"save_prior({path}): the {params.layer} prior has no fitted arrays")
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  payload = {
      "format_version": np.array(FORMAT_VERSION, np.int64),
      "kind": np.array(params.kind),
      "layer": np.array(params.layer),
      "settings": np.array(json.dumps(params.settings, sort_keys=True)),
  }
  payload.update({f"array_{name}": value for name, value in params.arrays.items()})
  with fileio.atomic_path(path) as tmp:
    np.savez(tmp, **payload)
  return path


def load_prior(path):
  """Reads a prior written by `save_prior`; a clear error names a bad file."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"prior file {path} does not exist")
  try:
    with np.load(path, allow_pickle=False) as data:
      contents = {key: data[key] for key in data.files}
  except (OSError, ValueError) as e:
    raise ValueError(f"{path}: not a readable prior .npz file ({e})") from e
  for key in ("format_version", "kind", "layer", "settings"):
    if key not in contents:
      raise ValueError(f"{path}: missing entry {key!r}; not a cmp_tf prior file")
  version = int(contents["format_version"])
  if version != FORMAT_VERSION:
    raise ValueError(f"{path}: format_version {version}, expected {FORMAT_VERSION}")
  kind = check_kind(str(contents["kind"]), f"{path}: kind")
  layer = check_layer(str(contents["layer"]), f"{path}: layer")
  try:
    settings = json.loads(str(contents["settings"]))
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: settings are not valid JSON ({e})") from e
  arrays = {key[len("array_"):]: value for key, value in contents.items()
            if key.startswith("array_")}
  try:
    return PriorParams(kind=kind, layer=layer, arrays=arrays, settings=settings)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e
