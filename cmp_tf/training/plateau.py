"""How long a stage trains: a fixed number of steps, or the convergence rule.

Each `Stage` of a recipe carries one of these (`stage.stop`); the trainer reads it there.

Under the convergence rule (`PlateauRule`) the stage is evaluated on the dev split every
`every` steps (and at the cap): per modality, its accuracy and each dev example's
cross-entropy. A modality still gains when its mean dev loss is below that of its own
reference evaluation (its last gain) by more than `z` standard errors of the paired
per-example difference: the same examples are scored both times, so the noise that counts is
that of the change, not the dev set's sampling error, and the test is as strict for a
modality of 150 examples as it states. The stage goes on while any modality gains — a slow
one (descriptions learned from scratch) keeps it going after the others have stopped — and
stops after `patience` evaluations in which none did, or at the cap. Its result is the
weights of the evaluation with the best mean dev accuracy. The state (history and the
reference losses) is JSON saved inside each checkpoint, so a resumed stage decides exactly
as an uninterrupted one.
"""

import dataclasses
import json
import math

import numpy as np

FIXED = "fixed"
PLATEAU = "plateau"
STOP_RULES = (FIXED, PLATEAU)
STOPPED_PLATEAU = "plateau"  # no modality gained in `patience` evaluations
STOPPED_CAP = "cap"  # reached the stage's maximum steps
STOPPED_FIXED = "fixed"  # the fixed budget, no convergence rule


@dataclasses.dataclass(frozen=True)
class FixedSteps:
  """Train exactly `steps` steps; no dev evaluation decides anything."""
  steps: int

  def __post_init__(self):
    if self.steps < 1:
      raise ValueError(f"fixed steps: must be >= 1, got {self.steps}")

  @property
  def max_steps(self):
    return self.steps

  def to_dict(self):
    return {"rule": FIXED, "steps": self.steps}


@dataclasses.dataclass(frozen=True)
class PlateauRule:
  """Evaluate every `every` steps; stop after `patience` evaluations in which no modality's
  dev loss fell more than `z` paired standard errors below its reference, or at
  `max_steps`."""
  every: int
  patience: int
  z: float
  max_steps: int

  def __post_init__(self):
    if self.every < 1 or self.patience < 1 or self.max_steps < 1:
      raise ValueError(f"plateau rule: every, patience and max_steps must be >= 1, got "
                       f"{self.every}, {self.patience}, {self.max_steps}")
    if not self.z > 0:
      raise ValueError(f"plateau rule: z must be > 0, got {self.z}")

  def is_evaluation_step(self, step):
    return step % self.every == 0 or step == self.max_steps

  def to_dict(self):
    return {"rule": PLATEAU, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class DevScores:
  """One modality's dev evaluation: whether each example was classified right, and its
  cross-entropy (the order of the examples is fixed: the same at every evaluation)."""
  correct: np.ndarray
  losses: np.ndarray

  @property
  def accuracy(self):
    return round(float(np.mean(self.correct)), 4)

  @classmethod
  def from_logits(cls, logits, labels):
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=-1))
    losses = log_norm - shifted[np.arange(len(labels)), labels]
    return cls(np.argmax(logits, axis=-1) == labels, losses)


def paired_gain(reference, losses):
  """(mean loss fall from `reference` to `losses`, its standard error) over paired examples."""
  diff = np.asarray(reference, np.float64) - np.asarray(losses, np.float64)
  if diff.shape[0] < 2:
    return float(diff.mean()), 0.0
  return float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(diff.shape[0]))


def _exact(losses):
  """The losses as float32 values, which JSON writes and reads back bit for bit."""
  return [float(v) for v in np.asarray(losses, np.float32)]


@dataclasses.dataclass
class PlateauState:
  """The evaluations so far, [{"step", "dev_accuracy": {m}, "mean", "dev_loss": {m},
  "gain": {m}, "se": {m}, "gained": [m, ...]}], and each modality's reference
  ({m: {"step", "losses"}}: the per-example dev losses of its last gain)."""
  rule: PlateauRule
  history: list = dataclasses.field(default_factory=list)
  references: dict = dataclasses.field(default_factory=dict)

  @property
  def best(self):
    """The evaluation with the best mean dev accuracy (the earliest of equals), or None."""
    best = None
    for entry in self.history:
      if best is None or entry["mean"] > best["mean"]:
        best = entry
    return best

  @property
  def evaluations_since_gain(self):
    """Evaluations since the last one in which some modality gained."""
    since = 0
    for entry in self.history:
      since = 0 if entry["gained"] else since + 1
    return since

  def add(self, step, dev):
    """Records an evaluation (`dev`: {modality: DevScores}); returns True when it is the new
    best by mean dev accuracy."""
    if self.history and step <= self.history[-1]["step"]:
      raise ValueError(f"evaluation at step {step} after one at {self.history[-1]['step']}")
    previous_best = self.best
    entry = {"step": int(step), "dev_accuracy": {}, "dev_loss": {}, "gain": {}, "se": {},
             "gained": []}
    for m in sorted(dev):
      losses = _exact(dev[m].losses)
      entry["dev_accuracy"][m] = dev[m].accuracy
      entry["dev_loss"][m] = round(float(np.mean(losses)), 6)
      reference = self.references.get(m)
      if reference is None:
        gained = True
      else:
        if len(reference["losses"]) != len(losses):
          raise ValueError(f"dev split of {m} changed size: {len(reference['losses'])} "
                           f"examples at step {reference['step']}, {len(losses)} now")
        gain, se = paired_gain(reference["losses"], losses)
        entry["gain"][m], entry["se"][m] = round(gain, 6), round(se, 6)
        gained = gain > self.rule.z * se and gain > 0
      if gained:
        entry["gained"].append(m)
        self.references[m] = {"step": int(step), "losses": losses}
    entry["mean"] = round(float(np.mean(list(entry["dev_accuracy"].values()))), 6)
    self.history.append(entry)
    return previous_best is None or entry["mean"] > previous_best["mean"]

  @property
  def stop_reason(self):
    """STOPPED_PLATEAU / STOPPED_CAP once the stage is done, else None."""
    if self.history and self.evaluations_since_gain >= self.rule.patience:
      return STOPPED_PLATEAU
    if self.history and self.history[-1]["step"] >= self.rule.max_steps:
      return STOPPED_CAP
    return None

  def truncated(self, step):
    """The state as it was at `step` (a checkpoint's). A checkpoint's state is saved with it,
    so there is nothing later to drop; a reference set after `step` cannot be rewound."""
    later = [e for e in self.history if e["step"] > step]
    if any(e["gained"] for e in later):
      raise ValueError(f"the convergence state holds gains after step {step}, the step of "
                       "its checkpoint")
    return PlateauState(self.rule, [e for e in self.history if e["step"] <= step],
                        dict(self.references))

  def to_json(self):
    return json.dumps({"history": self.history, "references": self.references},
                      sort_keys=True)

  @classmethod
  def from_json(cls, rule, text):
    if not text:
      return cls(rule)
    state = json.loads(text)
    if isinstance(state, list):
      raise ValueError("the checkpoint holds the state of an earlier convergence rule; "
                       "train this stage again in a new --run_dir")
    return cls(rule, state["history"], state["references"])
