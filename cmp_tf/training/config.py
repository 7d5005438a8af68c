"""Every setting of a training run, with its flag help, checked before any work.

`cmp_tf.train` turns each field of TrainConfig into an absl flag of the same name
(help text from the field's metadata, `cmp_tf.cli.define_flags`), so the flag list, the defaults and the
validation live in one place and error messages name the flag (`--lambda_fc6: ...`).
No TensorFlow here.
"""

import dataclasses
import os
import pathlib

from cmp_tf import modalities as mod_lib
from cmp_tf import paths
from cmp_tf.domain_alignment.names import ALIGNMENT_TERMS
from cmp_tf.layer_names import FEATURE_LAYERS
from cmp_tf.models import variants as variants_lib
from cmp_tf.settings import setting
from cmp_tf.training import plateau as plateau_lib
from cmp_tf.training import recipes

# Image variants of cmp_tf.models and their input resolution.
IMAGE_VARIANTS = {name: v.image_size for name, v in variants_lib.VARIANTS.items()}
STRATEGIES = ("mirrored", "default", "multiworker")
DEFAULT_DATA_CONFIG = "configs/data_default.flags"
DSC_UPPER_FROM_SOURCE, DSC_UPPER_SCRATCH = "source", "scratch"


class ConfigError(ValueError):
  """A bad setting; the message starts with the name of the flag (or flags) it is about."""

  def __init__(self, flag, message):
    flags = (flag,) if isinstance(flag, str) else tuple(flag)
    super().__init__(f"{', '.join(f'--{f}' for f in flags)}: {message}")
    self.flag = flags[0]
    self.flags = flags


@dataclasses.dataclass
class TrainConfig:
  """The settings of `python -m cmp_tf.train`; see each field's help."""
  # What to train.
  method: str = setting("c", "Method (paper table row) to train.",
                       recipes.METHOD_NAMES)
  zero_shot: bool = setting(False, "Drop the manifest's heldout_categories from the "
                           "training data of every modality except NAT (paper 5.2).")
  modalities: list = setting(list(mod_lib.ALL_MODALITIES), "Modalities to train.")
  # Where.
  data_dir: str = setting("", "Dataset directory (manifest.json + TFRecords). Empty: "
                         "<cache_dir>/data/<name of --data_config>, built if missing.")
  data_config: str = setting(DEFAULT_DATA_CONFIG, "Flagfile of cmp_tf.build_data used to "
                            "build the default dataset when --data_dir is empty.")
  run_dir: str = setting("", "Run directory. Empty: runs/<method>[_zeroshot] in the checkout.")
  cache_dir: str = setting(str(paths.DEFAULT_CACHE_DIR), "Cache of the source network, "
                          "its activation priors and default datasets.")
  source_weights: str = setting("", "Weights file (.weights.h5) of a NAT-only source "
                               "network of the same variant; empty: train one and cache it.")
  # Model.
  image_variant: str = setting("alexnet_small", "Image branch architecture.",
                              tuple(IMAGE_VARIANTS))
  image_size: int = setting(0, "Input resolution; 0: the variant's own.")
  dropout: float = setting(0.5, "Dropout after fc6 and fc7.")
  dsc_upper_init: str = setting(DSC_UPPER_FROM_SOURCE, "Where DSC's own fc6, fc7 and "
                               "classifier start in methods with a network per modality "
                               "(BL-Individual, B): source (copies of the source network's, "
                               "like every other modality's) or scratch (their initializers; "
                               "the NAT-only source never saw text). No effect where the "
                               "upper is shared.", (DSC_UPPER_FROM_SOURCE, DSC_UPPER_SCRATCH))
  # Optimisation (SGD with momentum; paper 4.5).
  batch_size: int = setting(32, "Examples per modality per replica; the global batch is "
                           "batch_size x number of replicas.")
  learning_rate: float = setting(1e-3, "SGD learning rate of stages that start from the "
                                "source network (paper: 1e-3).")
  scratch_learning_rate: float = setting(1e-2, "SGD learning rate of stages from scratch.")
  momentum: float = setting(0.9, "SGD momentum.")
  weight_decay: float = setting(5e-4, "L2 weight decay on kernels (Caffe-style, in the loss).")
  frozen_steps: int = setting(400, "Steps of a stage with the shared upper frozen (A, C); "
                             "--stop_rule=fixed only.")
  steps: int = setting(400, "Steps of a stage with every layer trainable; "
                      "--stop_rule=fixed only.")
  # How long a stage trains: one rule for every method and stage.
  stop_rule: str = setting(plateau_lib.FIXED, "fixed: every stage runs its --frozen_steps / "
                          "--steps. plateau: every stage runs until, in --plateau_patience "
                          "evaluations (one every --dev_every steps), no modality's dev loss "
                          "fell by more than --plateau_z paired standard errors, or "
                          "--max_stage_steps, and keeps the weights of its best mean dev "
                          "accuracy (cmp_tf.training.plateau).", plateau_lib.STOP_RULES)
  dev_every: int = setting(100, "Steps between dev evaluations (--stop_rule=plateau).")
  plateau_patience: int = setting(4, "Evaluations without a gain before a stage stops.")
  plateau_z: float = setting(3.0, "A modality gains when its mean dev loss fell by more than "
                             "this many standard errors of the paired per-example change.")
  max_stage_steps: int = setting(3000, "Cap of every stage under --stop_rule=plateau.")
  seed: int = setting(0, "Seed of the method's own training: initialisation of what is not "
                      "copied, dropout, input order.")
  source_seed: int = setting(0, "Seed of the source network and its priors' fits: shared by "
                             "every method and seed, as a downloaded Places-CNN would be.")
  # Activation priors (method B and C).
  lambda_pool5: float = setting(1e-4, "Weight of the pool5 prior NLL (0: no prior there).")
  lambda_fc6: float = setting(1e-4, "Weight of the fc6 prior NLL (0: no prior there).")
  lambda_fc7: float = setting(1e-4, "Weight of the fc7 prior NLL (0: no prior there).")
  prior_per_dimension: bool = setting(False, "Divide each prior's NLL by its layer's width D, "
                                     "so that one lambda weighs pool5 (1,024 units in "
                                     "alexnet_small) and fc6/fc7 (512) alike per unit. Off: "
                                     "lambda weighs the NLL summed over units (earlier runs).")
  # Multi-domain alignment (the alignment methods, cmp_tf.domain_alignment). Defaults: the
  # weights their source papers and DomainBed use.
  lambda_coral: float = setting(1.0, "Weight of the CORAL term (method coral).")
  lambda_mmd: float = setting(1.0, "Weight of the MMD term (method mmd).")
  lambda_dann: float = setting(1.0, "Weight of the modality discriminator's loss, reversed "
                               "into the network (method dann).")
  lambda_cdann: float = setting(1.0, "Weight of the class-conditional discriminator's loss "
                                "(method cdann).")
  lambda_supcon: float = setting(0.1, "Weight of the cross-modal supervised contrastive term "
                                 "(method supcon).")
  supcon_temperature: float = setting(0.1, "Temperature of the contrastive term.")
  lambda_proxy: float = setting(1.0, "Weight of the class-proxy term (method c_proxy, ours).")
  proxy_temperature: float = setting(0.1, "Temperature of the class-proxy term.")
  alignment_layer: str = setting("fc7", "Layer whose features the alignment term reads.",
                                 FEATURE_LAYERS)
  gmm_components: int = setting(100, "GMM components K (paper: 100).")
  gmm_max_iter: int = setting(100, "EM iterations of the GMM fit.")
  prior_samples: int = setting(4000, "NAT training examples whose source activations "
                              "the priors are fitted on.")
  # Source network ("Places-CNN" stand-in).
  source_steps: int = setting(2000, "Steps of training the source network on NAT.")
  source_learning_rate: float = setting(0.01, "SGD learning rate of the source network.")
  source_batch_size: int = setting(64, "NAT examples per replica per source step.")
  # Running.
  strategy: str = setting("mirrored", "Distribution strategy: mirrored (all local "
                         "devices), default (one device), multiworker (TF_CONFIG).",
                         STRATEGIES)
  cpu_replicas: int = setting(0, "Split the CPU into this many logical devices (0: no split).")
  checkpoint_every: int = setting(100, "Steps between checkpoints (the trained weights do not "
                                 "depend on it).")
  keep_checkpoints: int = setting(2, "Checkpoints kept per stage.")
  log_every: int = setting(20, "Steps between TensorBoard summaries.")
  jit_compile: bool = setting(False, "Compile forward and backward pass with XLA. On CPU "
                             "this measured ~4x slower for the conv branches; XLA has no "
                             "deterministic MaxPool gradient, so it needs --nodeterministic.")
  deterministic: bool = setting(True, "tf.config.experimental.enable_op_determinism().")
  stage_donors: list = setting([], "Finished runs (run directories, or directories of "
                               "them) whose first stages this run takes instead of training "
                               "them again where they were trained exactly as this run would "
                               "train them: same settings, dataset and kernels "
                               "(cmp_tf.training.stage_reuse). The weights are the same.")
  evaluate: bool = setting(True, "Evaluate the run at the end (cmp_tf.eval.evaluation.evaluate_run).")
  export: bool = setting(True, "Export the run at the end (cmp_tf.serving.export.export_run).")

  # === Derived values ===

  @property
  def resolved_image_size(self):
    return self.image_size or IMAGE_VARIANTS[self.image_variant]

  @property
  def prior_weights(self):
    return {"pool5": self.lambda_pool5, "fc6": self.lambda_fc6, "fc7": self.lambda_fc7}

  @property
  def fresh_upper(self):
    """Modalities whose own upper copies do not start from the source network."""
    return (mod_lib.DSC,) if self.dsc_upper_init == DSC_UPPER_SCRATCH else ()

  @property
  def data_is_default(self):
    return not self.data_dir

  def resolved_data_config(self):
    return _repo_path(self.data_config)

  def resolved_data_dir(self):
    if self.data_dir:
      return pathlib.Path(self.data_dir).expanduser().resolve()
    stem = self.resolved_data_config().name.split(".")[0]
    return pathlib.Path(self.cache_dir).expanduser().resolve() / "data" / stem

  def resolved_run_dir(self):
    if self.run_dir:
      return pathlib.Path(self.run_dir).expanduser().resolve()
    name = self.method + ("_zeroshot" if self.zero_shot else "")
    return paths.REPO_ROOT / "runs" / name

  def stop_rules(self):
    """(stop rule of the stages with a frozen upper, of every other stage): one
    PlateauRule for all (--stop_rule=plateau), or their fixed step counts."""
    if self.stop_rule == plateau_lib.PLATEAU:
      rule = plateau_lib.PlateauRule(every=self.dev_every, patience=self.plateau_patience,
                                     z=self.plateau_z,
                                     max_steps=self.max_stage_steps)
      return rule, rule
    return plateau_lib.FixedSteps(self.frozen_steps), plateau_lib.FixedSteps(self.steps)

  def recipe_settings(self):
    frozen_stop, stop = self.stop_rules()
    return recipes.RecipeSettings(
        modalities=tuple(self.modalities), frozen_stop=frozen_stop, stop=stop,
        learning_rate=self.learning_rate, scratch_learning_rate=self.scratch_learning_rate,
        momentum=self.momentum, weight_decay=self.weight_decay,
        prior_weights=self.prior_weights,
        alignment_weights={term: getattr(self, f"lambda_{term}")
                           for term in ALIGNMENT_TERMS},
        alignment_layer=self.alignment_layer,
        temperatures={"supcon": self.supcon_temperature, "proxy": self.proxy_temperature})

  def recipe(self):
    return recipes.build_recipe(self.method, self.recipe_settings(), zero_shot=self.zero_shot)

  def to_dict(self):
    return dataclasses.asdict(self)

  # === Validation ===

  def validate(self):
    """Raises ConfigError naming the first bad flag; returns the normalised config."""
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(self)}
    for name, allowed in choices.items():
      if allowed is not None and getattr(self, name) not in allowed:
        raise ConfigError(name, f"unknown value {getattr(self, name)!r}; expected one of "
                          f"{', '.join(allowed)}")
    try:
      self.modalities = list(mod_lib.parse_modalities(self.modalities, where="modalities"))
    except ValueError as e:
      raise ConfigError("modalities", str(e).split(": ", 1)[-1]) from None
    if self.zero_shot and self.modalities == [mod_lib.NAT]:
      raise ConfigError("zero_shot", "needs a modality other than NAT")
    for name in ("batch_size", "steps", "frozen_steps", "source_steps", "source_batch_size",
                 "checkpoint_every", "keep_checkpoints", "log_every", "prior_samples",
                 "gmm_max_iter", "dev_every", "plateau_patience", "max_stage_steps"):
      if getattr(self, name) < 1:
        raise ConfigError(name, f"must be a positive integer, got {getattr(self, name)}")
    if self.gmm_components < 1:
      raise ConfigError("gmm_components", f"K must be >= 1, got {self.gmm_components}")
    for name in ("learning_rate", "scratch_learning_rate", "source_learning_rate"):
      if not getattr(self, name) > 0:
        raise ConfigError(name, f"must be > 0, got {getattr(self, name)}")
    for name in ("lambda_pool5", "lambda_fc6", "lambda_fc7", "weight_decay", "momentum",
                 "cpu_replicas", "image_size"):
      if getattr(self, name) < 0:
        raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
    used = recipes.METHOD_TERMS.get(self.method, ())
    for term in ALIGNMENT_TERMS:
      weight = getattr(self, f"lambda_{term}")
      if weight < 0 or (weight == 0 and term in used):
        raise ConfigError(f"lambda_{term}", f"must be > 0 for --method={self.method} and >= 0 "
                          f"otherwise, got {weight}")
    for name in ("supcon_temperature", "proxy_temperature"):
      if not getattr(self, name) > 0:
        raise ConfigError(name, f"must be > 0, got {getattr(self, name)}")
    if not self.plateau_z > 0:
      raise ConfigError("plateau_z", f"must be > 0, got {self.plateau_z}")
    if not 0 <= self.dropout < 1:
      raise ConfigError("dropout", f"must be in [0, 1), got {self.dropout}")
    if self.image_size and self.image_size < 16:
      raise ConfigError("image_size", f"must be 0 or >= 16, got {self.image_size}")
    if self.jit_compile and self.deterministic:
      raise ConfigError("jit_compile", "XLA has no deterministic MaxPool gradient; "
                        "use --jit_compile with --nodeterministic")
    if self.data_dir:
      data_dir = self.resolved_data_dir()
      if not data_dir.is_dir():
        raise ConfigError("data_dir", f"no such directory: {data_dir}")
      if not (data_dir / "manifest.json").is_file():
        raise ConfigError("data_dir", f"{data_dir} has no manifest.json; build a dataset "
                          "with python -m cmp_tf.build_data")
    elif not self.resolved_data_config().is_file():
      raise ConfigError("data_config", f"no such file: {self.resolved_data_config()}")
    if self.source_weights and not os.path.isfile(self.source_weights):
      raise ConfigError("source_weights", f"no such file: {self.source_weights}")
    try:
      self.recipe()
    except recipes.NoPriorWeightError as e:
      raise ConfigError(("lambda_pool5", "lambda_fc6", "lambda_fc7"),
                        f"all 0, but --method={self.method}: {e}") from None
    return self


def settings_diff(old, new):
  """The keys in which two TrainConfig dicts differ. A setting absent from `old` (added
  after it was written) counts as equal when `new` has it at its default: a new setting's
  default is the behaviour before it existed."""
  defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
  missing = object()
  return sorted(k for k in set(old) | set(new)
                if old.get(k, defaults.get(k, missing)) != new.get(k, missing))


def _repo_path(path):
  """A relative path is taken from the current directory if it exists there, else the checkout."""
  path = pathlib.Path(path).expanduser()
  if path.is_absolute() or path.exists():
    return path.resolve()
  return paths.REPO_ROOT / path
