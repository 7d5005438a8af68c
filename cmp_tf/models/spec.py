"""CrossModalSpec: everything that defines a cross-modal scene network's architecture."""

import dataclasses
import math

from cmp_tf import modalities as mod_lib
from cmp_tf.models import variants as variants_lib
from cmp_tf.priors import params as params_lib

DEFAULT_VARIANCE_FLOOR = 1e-4


@dataclasses.dataclass(frozen=True)
class CrossModalSpec:
  """The architecture of a cross-modal scene network.

  Attributes:
    modalities: canonical modality names (cmp_tf.modalities), one branch each.
    num_classes: scene categories of the classifier.
    image_variant: "alexnet" (227x227), "alexnet_small" (64x64, CPU default) or
      "alexnet_tiny" (32x32, tests); see cmp_tf.models.variants.
    image_size: input resolution; None takes the variant's own.
    text_dim: width of the DSC sentence vector and of the DSC MLP.
    share_upper: True: one fc6/fc7/classifier for all branches; False: a copy per
      modality (BL-Individual, method B).
    dropout: rate after fc6 and fc7 (0 = no dropout layers).
    priors: {"pool5"|"fc6"|"fc7": (PriorParams, weight)} or None.
    exposed_layers: layers whose activations (post-ReLU, before prior and dropout) the
      model also outputs, as f"{modality}_{layer}_out": what a training stage's alignment
      terms read. Empty for every saved or evaluated model.
  """
  modalities: tuple
  num_classes: int
  image_variant: str = "alexnet_small"
  image_size: int | None = None
  text_dim: int = 512
  share_upper: bool = True
  dropout: float = 0.5
  priors: dict | None = None
  exposed_layers: tuple = ()

  def __post_init__(self):
    set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
    set_("modalities", mod_lib.parse_modalities(self.modalities, "CrossModalSpec.modalities"))
    variant = variants_lib.get_variant(self.image_variant, "CrossModalSpec.image_variant")
    set_("image_variant", variant.name)
    set_("image_size", variant.image_size if self.image_size is None else int(self.image_size))
    for name in ("num_classes", "image_size", "text_dim"):
      value = getattr(self, name)
      if int(value) != value or value < 1:
        raise ValueError(f"CrossModalSpec.{name} must be a positive integer, got {value!r}")
      set_(name, int(value))
    if not 0.0 <= float(self.dropout) < 1.0:
      raise ValueError(f"CrossModalSpec.dropout must be in [0, 1), got {self.dropout!r}")
    set_("dropout", float(self.dropout))
    set_("share_upper", bool(self.share_upper))
    variant.pool5_shape(self.image_size)  # fails early on a size the variant cannot take
    set_("priors", self._checked_priors(self.priors))
    odd = [layer for layer in self.exposed_layers if layer not in params_lib.LAYERS]
    if odd:
      raise ValueError(f"CrossModalSpec.exposed_layers: {odd} are not among "
                       f"{', '.join(params_lib.LAYERS)}")
    set_("exposed_layers", tuple(layer for layer in params_lib.LAYERS
                                 if layer in self.exposed_layers))

  def _checked_priors(self, priors):
    if not priors:
      return None
    checked = {}
    for layer, entry in priors.items():
      where = f"CrossModalSpec.priors[{layer!r}]"
      params_lib.check_layer(layer, where)
      try:
        params, weight = entry
      except (TypeError, ValueError):
        raise ValueError(f"{where}: expected (PriorParams, weight), got {entry!r}") from None
      if not isinstance(params, params_lib.PriorParams):
        raise ValueError(f"{where}: expected PriorParams, got {type(params).__name__}")
      if params.layer != layer:
        raise ValueError(f"{where}: the prior was fitted on {params.layer!r}")
      weight = float(weight)
      if not math.isfinite(weight) or weight < 0:
        raise ValueError(f"{where}: weight must be a finite number >= 0, got {weight}")
      if params.dim != self.layer_dim(layer):
        raise ValueError(
            f"{where}: the prior has dim {params.dim} but {layer} of {self.image_variant} "
            f"at {self.image_size}x{self.image_size} has {self.layer_dim(layer)} units")
      checked[layer] = (params, weight)
    return {layer: checked[layer] for layer in params_lib.LAYERS if layer in checked}

  @property
  def variant(self):
    return variants_lib.get_variant(self.image_variant)

  @property
  def pool5_shape(self):
    return self.variant.pool5_shape(self.image_size)

  @property
  def pool5_size(self):
    return self.variant.pool5_size(self.image_size)

  @property
  def fc_units(self):
    return self.variant.fc_units

  def layer_dim(self, layer):
    """Width of the shared representation at "pool5", "fc6" or "fc7"."""
    params_lib.check_layer(layer)
    return self.pool5_size if layer == "pool5" else self.fc_units

  def prior_variance_floor(self, layer):
    params, _ = self.priors[layer]
    return float(params.settings.get("variance_floor", DEFAULT_VARIANCE_FLOOR))

  def to_config(self):
    """JSON-ready dict. Priors keep their layout and weight; the fitted values live in
    the model's weights (or the prior .npz files)."""
    priors = None
    if self.priors:
      priors = {
          layer: {"kind": params.kind, "dim": params.dim,
                  "num_components": params.num_components, "weight": weight,
                  "variance_floor": self.prior_variance_floor(layer)}
          for layer, (params, weight) in self.priors.items()}
    return {
        "modalities": list(self.modalities), "num_classes": self.num_classes,
        "image_variant": self.image_variant, "image_size": self.image_size,
        "text_dim": self.text_dim, "share_upper": self.share_upper,
        "dropout": self.dropout, "priors": priors,
        **({"exposed_layers": list(self.exposed_layers)} if self.exposed_layers else {})}

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    unknown = set(config) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f"CrossModalSpec config: unknown keys {sorted(unknown)}")
    priors = config.pop("priors", None)
    if priors:
      layouts = {}
      for layer, entry in priors.items():
        params = params_lib.PriorParams.unfitted(
            entry["kind"], layer, entry["dim"], entry.get("num_components"))
        params.settings["variance_floor"] = float(
            entry.get("variance_floor", DEFAULT_VARIANCE_FLOOR))
        layouts[layer] = (params, entry["weight"])
      priors = layouts
    return cls(priors=priors, **{k: (tuple(v) if k in ("modalities", "exposed_layers") else v)
                                 for k, v in config.items()})
