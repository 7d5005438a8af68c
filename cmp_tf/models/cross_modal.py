"""The cross-modal scene network (section 4.1 of the paper) as a Keras functional model.

One lower branch per modality (conv1..pool5, or the DSC MLP) feeds a shared upper
part: one set of "fc6", "fc7" and "classifier" layers called by every branch, so
the weights are literally shared. With `share_upper=False` each modality gets its
own f"{modality}_fc6" ... (BL-Individual, method B). Priors, when the spec has them,
are layers "pool5_prior", "fc6_prior", "fc7_prior" after the flattened pool5 and
the post-ReLU fc6 and fc7 (before dropout), shared by all branches: a model with priors
runs its branches layer by layer and calls each prior once on the list of every
branch's activations (one NLL computation per layer, not per branch).

Inputs and outputs are dicts keyed by modality; each output is wrapped in an
Identity named f"{modality}_logits". Layer names do not depend on the rest of the
spec, so weights can be copied by name between the models of successive stages.

Initial weights and dropout masks are a function of the model's `seed` alone: each
layer's initializer and dropout get a seed derived from it and the layer's name, so
building a model never reads or resets Keras' global random state.
"""

import keras

from cmp_tf.layer_names import CLASSIFIER, FC6, FC7, FEATURE_LAYERS, LOGITS, POOL5, UPPER_LAYERS
from cmp_tf.models import branches
from cmp_tf.models.spec import CrossModalSpec
from cmp_tf.priors.activation_prior import ActivationPrior
from cmp_tf.seeds import derive_seed

FLATTEN = "pool5_flatten"


def upper_name(spec, modality, layer):
  """Name of `layer` ("fc6", "fc7", "classifier") as used by `modality`'s branch."""
  return layer if spec.share_upper else f"{modality}_{layer}"


def _make_layers(spec, seed):
  """All layers of the model by name, each created once."""
  made = {}
  for modality in spec.modalities:
    made.update(branches.lower_branch(spec, modality, seed))
  made[FLATTEN] = keras.layers.Flatten(name=FLATTEN)
  owners = [None] if spec.share_upper else list(spec.modalities)
  for owner in owners:
    prefix = "" if owner is None else f"{owner}_"
    for layer in (FC6, FC7):
      made[prefix + layer] = keras.layers.Dense(
          spec.fc_units, activation="relu", name=prefix + layer,
          kernel_initializer=keras.initializers.HeNormal(seed=derive_seed(seed, prefix + layer)))
    made[prefix + CLASSIFIER] = keras.layers.Dense(
        spec.num_classes, name=prefix + CLASSIFIER,
        kernel_initializer=keras.initializers.GlorotUniform(
            seed=derive_seed(seed, prefix + CLASSIFIER)))
  for layer, (params, weight) in (spec.priors or {}).items():
    prior = ActivationPrior(
        params.kind, params.dim, num_components=params.num_components, weight=weight,
        variance_floor=spec.prior_variance_floor(layer), name=f"{layer}_prior")
    if params.fitted:
      prior.set_params(params)
    made[prior.name] = prior
  if spec.dropout > 0:
    for layer in (FC6, FC7):
      made[f"{layer}_dropout"] = keras.layers.Dropout(
          spec.dropout, seed=derive_seed(seed, f"{layer}_dropout"), name=f"{layer}_dropout")
  return made


def lower_layer_names(spec, modality):
  return [name for name, _ in branches.lower_branch(spec, modality)]


def _forward(spec, get, modality, x, regularise):
  """Runs one branch; returns {"pool5", "fc6", "fc7", "logits"}.

  With `regularise` the prior and dropout layers are applied; without (features,
  inference) they are skipped.
  """
  priors = spec.priors or {}
  for name in lower_layer_names(spec, modality):
    x = get(name)(x)
  features = {}
  x = features[POOL5] = get(FLATTEN)(x)
  for layer in FEATURE_LAYERS:
    if layer != POOL5:
      x = features[layer] = get(upper_name(spec, modality, layer))(x)
    if regularise and layer in priors:
      x = get(f"{layer}_prior")(x)
    if regularise and layer != "pool5" and spec.dropout > 0:
      x = get(f"{layer}_dropout")(x)
  features[LOGITS] = get(upper_name(spec, modality, CLASSIFIER))(x)
  return features


def _forward_together(spec, get, inputs):
  """Every branch of `inputs` ({modality: x}) with dropout and priors, layer by layer, so
  that each prior layer is called once on the list of all branches' activations (one
  NLL computation per layer and step, not one per branch); returns ({modality: logits},
  {modality: {layer: activations}} of the layers before prior and dropout)."""
  priors = spec.priors or {}
  x, features = {}, {m: {} for m in inputs}
  for modality, h in inputs.items():
    for name in lower_layer_names(spec, modality):
      h = get(name)(h)
    x[modality] = get(FLATTEN)(h)
  for layer in FEATURE_LAYERS:
    if layer != POOL5:
      x = {m: get(upper_name(spec, m, layer))(h) for m, h in x.items()}
    for m, h in x.items():
      features[m][layer] = h
    if layer in priors:
      x = dict(zip(x, get(f"{layer}_prior")(list(x.values()))))
    if layer != POOL5 and spec.dropout > 0:
      x = {m: get(f"{layer}_dropout")(h) for m, h in x.items()}
  return {m: get(upper_name(spec, m, CLASSIFIER))(h) for m, h in x.items()}, features


def exposed_output(modality, layer):
  """The output key of `modality`'s `layer` activations in a model with exposed layers."""
  return f"{modality}_{layer}_out"


@keras.saving.register_keras_serializable(package="cmp_tf")
class CrossModalModel(keras.Model):
  """Functional model {modality: input} -> {modality: logits}; `spec` describes it and
  `seed` draws its initial weights and dropout masks."""

  def __init__(self, spec, seed=0, **kwargs):
    # === Layers ===
    made = _make_layers(spec, int(seed))
    # === Functional Model ===
    inputs = {m: branches.branch_input(spec, m) for m in spec.modalities}
    if spec.priors or spec.exposed_layers:
      logits, features = _forward_together(spec, made.__getitem__, inputs)
    else:
      logits = {m: _forward(spec, made.__getitem__, m, inputs[m], regularise=True)["logits"]
                for m in spec.modalities}
    outputs = {m: keras.layers.Identity(name=f"{m}_logits")(logits[m])
               for m in spec.modalities}
    for m in spec.modalities:
      for layer in spec.exposed_layers:
        name = exposed_output(m, layer)
        outputs[name] = keras.layers.Identity(name=name)(features[m][layer])
    kwargs.setdefault("name", "cross_modal_scene_network")
    super().__init__(inputs=inputs, outputs=outputs, **kwargs)
    # === Config ===
    self.spec = spec
    self.seed = int(seed)

  def get_config(self):
    return {"spec": self.spec.to_config(), "seed": self.seed, "name": self.name,
            "trainable": self.trainable}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    spec = CrossModalSpec.from_config(config.pop("spec"))
    return cls(spec, **config)


def build_cross_modal_model(spec, seed=0):
  """The cross-modal scene network of `spec` (a CrossModalModel), initialised from `seed`."""
  if not isinstance(spec, CrossModalSpec):
    raise TypeError(f"build_cross_modal_model expects a CrossModalSpec, got {type(spec)}")
  return CrossModalModel(spec, seed=seed)


def _spec_of(model):
  spec = getattr(model, "spec", None)
  if not isinstance(spec, CrossModalSpec):
    raise TypeError(f"model {model.name!r} is not a cross-modal scene network")
  return spec


def _check_modality(spec, modality, where):
  if modality not in spec.modalities:
    raise ValueError(
        f"{where}: the model has no {modality!r} branch (it has {', '.join(spec.modalities)})")


def upper_layers(model):
  """fc6, fc7 and classifier layers (shared, or every modality's copy): what a frozen
  stage freezes."""
  spec = _spec_of(model)
  owners = [spec.modalities[0]] if spec.share_upper else spec.modalities
  return [model.get_layer(upper_name(spec, m, layer)) for m in owners for layer in UPPER_LAYERS]


def branch_layers(model, modality):
  """The lower layers of `modality` (input scaling, convs, LRN and pools, or the MLP),
  in forward order."""
  spec = _spec_of(model)
  _check_modality(spec, modality, "branch_layers")
  return [model.get_layer(name) for name in lower_layer_names(spec, modality)]


def feature_model(model, modality):
  """keras.Model: `modality` input -> {"pool5" [B, P], "fc6", "fc7", "logits"}.

  Calls the model's own layer objects (no copy) without dropout or priors, so it
  always computes inference-mode features of the current weights.
  """
  spec = _spec_of(model)
  _check_modality(spec, modality, "feature_model")
  inputs = branches.branch_input(spec, modality)
  features = _forward(spec, model.get_layer, modality, inputs, regularise=False)
  return keras.Model(inputs=inputs, outputs=features, name=f"{modality}_features")
