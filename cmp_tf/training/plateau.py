"""How long a stage trains: a fixed number of steps, or the convergence rule.

Each `Stage` of a recipe carries one of these (`stage.stop`); the trainer reads it there.
Under the convergence rule (`PlateauRule`), every `every` steps (and at the cap) the stage's dev accuracy is measured per modality
and averaged. An evaluation improves on the best so far when its mean is at least
`min_delta` above it (the first always does); the stage stops after `patience`
evaluations without improvement, or at the cap, and its result is the weights of the
best evaluation. The state is a short JSON history saved inside each checkpoint, so a
resumed stage decides exactly as an uninterrupted one.
"""

import dataclasses
import json

FIXED = "fixed"
PLATEAU = "plateau"
STOP_RULES = (FIXED, PLATEAU)
STOPPED_PLATEAU = "plateau"  # no improvement >= min_delta in `patience` evaluations
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
  """Evaluate every `every` steps; stop after `patience` evaluations without a gain of
  `min_delta` in mean dev accuracy, or at `max_steps`."""
  every: int
  patience: int
  min_delta: float
  max_steps: int

  def __post_init__(self):
    if self.every < 1 or self.patience < 1 or self.max_steps < 1:
      raise ValueError(f"plateau rule: every, patience and max_steps must be >= 1, got "
                       f"{self.every}, {self.patience}, {self.max_steps}")
    if self.min_delta < 0:
      raise ValueError(f"plateau rule: min_delta must be >= 0, got {self.min_delta}")

  def is_evaluation_step(self, step):
    return step % self.every == 0 or step == self.max_steps

  def to_dict(self):
    return {"rule": PLATEAU, **dataclasses.asdict(self)}


@dataclasses.dataclass
class PlateauState:
  """The evaluations so far: [{"step", "dev_accuracy": {m: acc}, "mean"}]."""
  rule: PlateauRule
  history: list = dataclasses.field(default_factory=list)

  @property
  def best(self):
    """The best evaluation (a history entry), or None before the first."""
    best = None
    for entry in self.history:
      if best is None or entry["mean"] >= best["mean"] + self.rule.min_delta:
        best = entry
    return best

  @property
  def evaluations_since_best(self):
    best = self.best
    return 0 if best is None else sum(1 for e in self.history if e["step"] > best["step"])

  def add(self, step, dev_accuracy):
    """Records an evaluation; returns True when it is the new best."""
    if self.history and step <= self.history[-1]["step"]:
      raise ValueError(f"evaluation at step {step} after one at {self.history[-1]['step']}")
    mean = sum(dev_accuracy.values()) / len(dev_accuracy)
    self.history.append({"step": int(step), "dev_accuracy": dict(dev_accuracy),
                         "mean": round(float(mean), 6)})
    return self.best["step"] == step

  @property
  def stop_reason(self):
    """STOPPED_PLATEAU / STOPPED_CAP once the stage is done, else None."""
    if self.evaluations_since_best >= self.rule.patience:
      return STOPPED_PLATEAU
    if self.history and self.history[-1]["step"] >= self.rule.max_steps:
      return STOPPED_CAP
    return None

  def truncated(self, step):
    """The state as it was at `step` (a checkpoint's), dropping later evaluations."""
    return PlateauState(self.rule, [e for e in self.history if e["step"] <= step])

  def to_json(self):
    return json.dumps(self.history, sort_keys=True)

  @classmethod
  def from_json(cls, rule, text):
    return cls(rule, json.loads(text) if text else [])
