"""The paper's methods as data: each method is a recipe, a list of training stages.

One generic trainer runs any recipe, so the methods differ only in what is listed
here (paper, sections 4.2-4.4 and 5.1):

  BL-Individual            one network per modality (no shared upper), from the source
  BL-Shared-Upper          shared fc6/fc7/classifier from the source, everything trains
  BL-Shared-Upper-Scratch  shared upper, everything from scratch
  A: Tune                  source init, shared upper FROZEN, modality branches train
  A: Tune (Free)           A's frozen stage, then everything unfrozen and trained jointly
  B: StatReg (Gaussian)    one network per modality from the source, each regularised by
                           a full-covariance Gaussian of the source's NAT activations
  B: StatReg (GMM)         the same with a K-component diagonal GMM
  C: Tune + StatReg (GMM)  A's frozen stage, then unfrozen with B's GMM regulariser

Multi-domain alignment (not in the paper; the methods DomainBed runs over N domains), each
built as C is with its alignment term in place of the prior, so that only the regulariser
differs: A's frozen stage, then the shared upper unfrozen and trained with the term on the
modalities' features of every step's (global) batch (`cmp_tf.domain_alignment`):

  CORAL    Deep CORAL: means and covariances of every pair of modalities
  MMD      multi-kernel Gaussian MMD between every pair of modalities
  DANN     an M-way modality discriminator behind gradient reversal
  CDANN    the same discriminator conditioned on the category
  SupCon   supervised contrastive, the positives in other modalities

and ours, C + class proxies: C's recipe with, beside the GMM prior of its unfrozen stage, every
modality's fc7 pulled to the shared classifier's direction of its category (a normalised
softmax over the classifier's columns), so that the modalities agree in direction, which is
what cosine retrieval reads.

This module imports no TensorFlow: recipes are resolved and checked before any work.
"""

import dataclasses
from typing import Callable, Mapping

from cmp_tf import modalities as mod_lib
from cmp_tf.domain_alignment.names import ALIGNMENT_TERMS, CDANN, CORAL, DANN, MMD, PROXY, SUPCON
from cmp_tf.layer_names import FEATURE_LAYERS
from cmp_tf.training import plateau as plateau_lib

INIT_SOURCE = "source"      # every branch and upper copy from the source network
INIT_SCRATCH = "scratch"    # fresh, seeded initialisation
INIT_PREVIOUS = "previous"  # the previous stage's final weights, copied by layer name
INITS = (INIT_SOURCE, INIT_SCRATCH, INIT_PREVIOUS)

GAUSSIAN = "gaussian"
GMM = "gmm"
PRIOR_KINDS = (GAUSSIAN, GMM)
PRIOR_LAYERS = FEATURE_LAYERS


@dataclasses.dataclass(frozen=True)
class PriorUse:
  """An activation prior on one layer with its loss weight (lambda in Eq. 1)."""
  kind: str
  layer: str
  weight: float

  def __post_init__(self):
    if self.kind not in PRIOR_KINDS:
      raise ValueError(f"prior kind {self.kind!r}: expected one of {PRIOR_KINDS}")
    if self.layer not in PRIOR_LAYERS:
      raise ValueError(f"prior layer {self.layer!r}: expected one of {PRIOR_LAYERS}")
    if not self.weight > 0:
      raise ValueError(f"prior on {self.layer}: weight must be > 0, got {self.weight}")


@dataclasses.dataclass(frozen=True)
class AlignmentUse:
  """An alignment term on one layer's features (post-ReLU, before dropout) with its loss
  weight; `temperature` is the contrastive term's."""
  term: str
  layer: str
  weight: float
  temperature: float = 0.1

  def __post_init__(self):
    if self.term not in ALIGNMENT_TERMS:
      raise ValueError(f"alignment term {self.term!r}: expected one of {ALIGNMENT_TERMS}")
    if self.layer not in FEATURE_LAYERS:
      raise ValueError(f"alignment layer {self.layer!r}: expected one of {FEATURE_LAYERS}")
    if not self.weight > 0:
      raise ValueError(f"{self.term} on {self.layer}: weight must be > 0, got {self.weight}")
    if not self.temperature > 0:
      raise ValueError(f"{self.term}: temperature must be > 0, got {self.temperature}")


@dataclasses.dataclass(frozen=True)
class Stage:
  """One training stage: what trains, what is frozen, which priors, how long (`stop`: a
  `plateau.FixedSteps` or `plateau.PlateauRule`) and with which SGD settings."""
  name: str
  modalities: tuple
  share_upper: bool
  init: str
  stop: object
  learning_rate: float
  momentum: float
  weight_decay: float
  freeze_upper: bool = False
  priors: tuple = ()
  alignment: tuple = ()

  def __post_init__(self):
    mod_lib.parse_modalities(self.modalities, where=f"stage {self.name}")
    if self.init not in INITS:
      raise ValueError(f"stage {self.name}: init {self.init!r} not in {INITS}")
    if not isinstance(self.stop, (plateau_lib.FixedSteps, plateau_lib.PlateauRule)):
      raise ValueError(f"stage {self.name}: stop must be FixedSteps or PlateauRule, got "
                       f"{self.stop!r}")
    if not self.learning_rate > 0:
      raise ValueError(f"stage {self.name}: learning rate must be > 0")
    if self.momentum < 0 or self.weight_decay < 0:
      raise ValueError(f"stage {self.name}: momentum and weight decay must be >= 0")
    if len({p.layer for p in self.priors}) != len(self.priors):
      raise ValueError(f"stage {self.name}: two priors on one layer")
    if self.alignment and (not self.share_upper or len(self.modalities) < 2):
      raise ValueError(f"stage {self.name}: alignment terms need a shared upper and at "
                       "least two modalities")

  @property
  def steps(self):
    """The most steps the stage may train (all of them under FixedSteps)."""
    return self.stop.max_steps

  @property
  def plateau(self):
    """The stage's convergence rule, or None when it trains a fixed number of steps."""
    return self.stop if isinstance(self.stop, plateau_lib.PlateauRule) else None

  def prior_map(self):
    """{layer: PriorUse} of this stage."""
    return {p.layer: p for p in self.priors}

  def to_dict(self):
    alignment = ({"alignment": [dataclasses.asdict(a) for a in self.alignment]}
                 if self.alignment else {})
    return {
        "name": self.name,
        "modalities": list(self.modalities),
        "share_upper": self.share_upper,
        "init": self.init,
        "steps": self.steps,
        "stop": self.stop.to_dict(),
        "learning_rate": self.learning_rate,
        "momentum": self.momentum,
        "weight_decay": self.weight_decay,
        "freeze_upper": self.freeze_upper,
        "priors": [dataclasses.asdict(p) for p in self.priors],
        **alignment,
    }

  @property
  def aligned_layers(self):
    """The layers whose features the stage's alignment terms read, in network order."""
    return tuple(layer for layer in FEATURE_LAYERS
                 if any(a.layer == layer for a in self.alignment))


@dataclasses.dataclass(frozen=True)
class Recipe:
  """A method: its stable id, the paper's row name, and its stages in order."""
  method: str
  display_name: str
  stages: tuple
  zero_shot: bool = False

  def __post_init__(self):
    if not self.stages:
      raise ValueError(f"recipe {self.method}: no stages")
    if self.stages[0].init == INIT_PREVIOUS:
      raise ValueError(f"recipe {self.method}: the first stage has no previous stage")

  @property
  def needs_source(self):
    return any(s.init == INIT_SOURCE for s in self.stages)

  @property
  def prior_kinds(self):
    return sorted({p.kind for s in self.stages for p in s.priors})

  @property
  def total_steps(self):
    return sum(s.steps for s in self.stages)

  def to_dict(self):
    return {
        "method": self.method,
        "display_name": self.display_name,
        "zero_shot": self.zero_shot,
        "stages": [s.to_dict() for s in self.stages],
    }


@dataclasses.dataclass(frozen=True)
class RecipeSettings:
  """The numbers a recipe is made of: the flags of cmp_tf.train, whose defaults are
  `cmp_tf.training.config.TrainConfig`'s (`TrainConfig().recipe_settings()`). `frozen_stop`
  ends the stages whose shared upper is frozen, `stop` every other stage."""
  modalities: tuple
  frozen_stop: object
  stop: object
  learning_rate: float
  scratch_learning_rate: float
  momentum: float
  weight_decay: float
  prior_weights: Mapping[str, float]
  alignment_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
  alignment_layer: str = "fc7"
  temperatures: Mapping[str, float] = dataclasses.field(default_factory=dict)

  def alignment(self, term):
    """The AlignmentUse of `term` with these settings."""
    return AlignmentUse(term, self.alignment_layer, float(self.alignment_weights.get(term, 0.0)),
                        temperature=float(self.temperatures.get(term, 0.1)))

  def sgd(self, learning_rate=None):
    """The SGD settings of a stage: {learning_rate, momentum, weight_decay}."""
    return {"learning_rate": self.learning_rate if learning_rate is None else learning_rate,
            "momentum": self.momentum, "weight_decay": self.weight_decay}


class NoPriorWeightError(ValueError):
  """A stage with priors, but every layer's prior weight is 0."""


def _priors(kind, settings):
  uses = tuple(PriorUse(kind, layer, float(settings.prior_weights.get(layer, 0.0)))
               for layer in PRIOR_LAYERS if settings.prior_weights.get(layer, 0.0) > 0)
  if not uses:
    raise NoPriorWeightError(f"a {kind} StatReg stage needs at least one positive prior "
                             "weight")
  return uses


def _tune_stage(s):
  """Method A's stage: shared upper from the source and frozen; branches adapt."""
  return Stage("tune", s.modalities, share_upper=True, init=INIT_SOURCE,
               stop=s.frozen_stop, freeze_upper=True, **s.sgd())


def _bl_individual(s):
  return (Stage("finetune", s.modalities, share_upper=False, init=INIT_SOURCE,
                stop=s.stop, **s.sgd()),)


def _bl_shared_upper(s):
  return (Stage("finetune", s.modalities, share_upper=True, init=INIT_SOURCE,
                stop=s.stop, **s.sgd()),)


def _bl_shared_upper_scratch(s):
  return (Stage("scratch", s.modalities, share_upper=True, init=INIT_SCRATCH,
                stop=s.stop, **s.sgd(s.scratch_learning_rate)),)


def _a_tune(s):
  return (_tune_stage(s),)


def _a_tune_free(s):
  return (_tune_stage(s),
          Stage("free", s.modalities, share_upper=True, init=INIT_PREVIOUS,
                stop=s.stop, **s.sgd()))


def _b_statreg(kind):
  def build(s):
    return (Stage("statreg", s.modalities, share_upper=False, init=INIT_SOURCE,
                  stop=s.stop, priors=_priors(kind, s), **s.sgd()),)
  return build


def _c_tune_statreg_gmm(s):
  return (_tune_stage(s),
          Stage("free_statreg", s.modalities, share_upper=True, init=INIT_PREVIOUS,
                stop=s.stop, priors=_priors(GMM, s), **s.sgd()))


def _tune_align(term):
  def build(s):
    return (_tune_stage(s),
            Stage(f"free_{term}", s.modalities, share_upper=True, init=INIT_PREVIOUS,
                  stop=s.stop, alignment=(s.alignment(term),), **s.sgd()))
  return build


def _c_proxy(s):
  """Ours: C, and in its unfrozen stage every modality's fc7 pulled to the shared
  classifier's class directions (the class-proxy term) beside the GMM prior."""
  return (_tune_stage(s),
          Stage("free_statreg_proxy", s.modalities, share_upper=True, init=INIT_PREVIOUS,
                stop=s.stop, priors=_priors(GMM, s), alignment=(s.alignment(PROXY),),
                **s.sgd()))


def _c_cdann(s):
  """Ours: C, and in its unfrozen stage the class-conditional modality discriminator (CDANN)
  beside the GMM prior: the prior matches each modality's marginal activation statistics to
  NAT's, the discriminator each category's across all five modalities."""
  return (_tune_stage(s),
          Stage("free_statreg_cdann", s.modalities, share_upper=True, init=INIT_PREVIOUS,
                stop=s.stop, priors=_priors(GMM, s), alignment=(s.alignment(CDANN),),
                **s.sgd()))


@dataclasses.dataclass(frozen=True)
class _Method:
  display_name: str
  build: Callable


METHODS = {
    "bl_individual": _Method("BL-Individual", _bl_individual),
    "bl_shared_upper": _Method("BL-Shared-Upper", _bl_shared_upper),
    "bl_shared_upper_scratch": _Method("BL-Shared-Upper-Scratch", _bl_shared_upper_scratch),
    "a_tune": _Method("A: Tune", _a_tune),
    "a_tune_free": _Method("A: Tune (Free)", _a_tune_free),
    "b_gaussian": _Method("B: StatReg (Gaussian)", _b_statreg(GAUSSIAN)),
    "b_gmm": _Method("B: StatReg (GMM)", _b_statreg(GMM)),
    "c": _Method("C: Tune + StatReg (GMM)", _c_tune_statreg_gmm),
    "coral": _Method("Tune + CORAL", _tune_align(CORAL)),
    "mmd": _Method("Tune + MMD", _tune_align(MMD)),
    "dann": _Method("Tune + DANN", _tune_align(DANN)),
    "cdann": _Method("Tune + CDANN", _tune_align(CDANN)),
    "supcon": _Method("Tune + cross-modal SupCon", _tune_align(SUPCON)),
    "c_proxy": _Method("Ours: C + class proxies", _c_proxy),
    "c_cdann": _Method("Ours: C + CDANN", _c_cdann),
}
# The rows of the paper's tables; the alignment methods come after them.
PAPER_METHODS = ("bl_individual", "bl_shared_upper", "bl_shared_upper_scratch", "a_tune",
                 "a_tune_free", "b_gaussian", "b_gmm", "c")
ALIGNMENT_METHODS = ("coral", "mmd", "dann", "cdann", "supcon", "c_proxy", "c_cdann")
# The alignment terms each method trains with (their --lambda_<term> must be > 0).
METHOD_TERMS = {"coral": (CORAL,), "mmd": (MMD,), "dann": (DANN,), "cdann": (CDANN,),
                "supcon": (SUPCON,), "c_proxy": (PROXY,), "c_cdann": (CDANN,)}
METHOD_NAMES = tuple(METHODS)


def build_recipe(method, settings, *, zero_shot=False):
  """The Recipe of `method` (an id of METHODS, also the name of its configs/<id>.flags)
  made with `settings` (RecipeSettings)."""
  if method not in METHODS:
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
  entry = METHODS[method]
  return Recipe(method, entry.display_name, tuple(entry.build(settings)), zero_shot=zero_shot)


def source_stage(*, steps, learning_rate, momentum, weight_decay):
  """The source network's ("Places-CNN" stand-in) only stage: NAT from scratch."""
  return Stage("source", (mod_lib.NAT,), share_upper=True, init=INIT_SCRATCH,
               stop=plateau_lib.FixedSteps(steps), learning_rate=learning_rate,
               momentum=momentum, weight_decay=weight_decay)

