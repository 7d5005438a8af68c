"""The grid of every method's extra hyperparameter, under one rule for all.

  python -m cmp_tf.grid --out=DIR [--methods=b_gaussian,b_gmm,c,alignment] [--records=DIR]

Each method with an extra hyperparameter — the activation priors' lambda of B and C (the
three layers' lambdas moved together), lambda of CORAL, MMD, DANN and CDANN, the temperature
of the contrastive term — is trained at three values a factor of 10 apart around its
reference value (the setting's default in `TrainConfig`: the value its source paper uses, or
for the priors the value chosen before the grid), at the method's own learning rate (its
flagfile's: the learning-rate rule's), under the convergence rule, as `python -m
cmp_tf.train --flagfile=configs/<m>.flags --<flag>=<value> --run_dir=DIR/runs/<m>_<name>
<value>`. Score: the **dev** split's
cross-modal mAP (fc7, all ordered pairs of distinct modalities, every dev example a query),
never the validation split's. Each method keeps its reference value unless another value
scores more than `TIE_WITHIN` above it, and then takes its best; a run that diverges or
fails scores nothing. DIR/grid.md and DIR/grid.json hold every score and the choice (of
this invocation's methods and of those an earlier one left there); the choice goes into the
method's flagfile (`flagfile_value`), which leaves the grid where it is. Resumable; with
--records (committed), on another machine.
"""

import dataclasses
import os
import time

import numpy as np

from cmp_tf import fileio, finished_run
from cmp_tf.experiments import lr_sweep, records, reproduce
from cmp_tf.layer_names import FC7
from cmp_tf.training import recipes

GRID_JSON = "grid.json"
GRID_MD = "grid.md"
PRIOR_FLAGS = ("lambda_pool5", "lambda_fc6", "lambda_fc7")
# Dev cross-modal mAP this close is a tie. Measured on the default data (750 dev queries,
# fc7): one run's score has a standard error of 0.9-1.0 points over its queries; the paired
# difference of two runs' scores 0.5-0.6 (same queries), and C's score moves by 0.45 (standard
# deviation) between training seeds, so two values' scores differ by about 0.8 from noise
# alone (`python -m cmp_tf.grid --noise_of=<C's three seeds>,<A: Tune>,<A: Tune (Free)>`, AMD
# EPYC, data db86736bc11943a1). A value that wins by less has not been shown better: the
# reference value stays.
TIE_WITHIN = 0.01


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
  """What a method's grid moves: `flags` set together to one value."""
  name: str
  flags: tuple


HYPERPARAMETERS = {
    "b_gaussian": Hyperparameter("lambda", PRIOR_FLAGS),
    "b_gmm": Hyperparameter("lambda", PRIOR_FLAGS),
    "c": Hyperparameter("lambda", PRIOR_FLAGS),
    "coral": Hyperparameter("lambda", ("lambda_coral",)),
    "mmd": Hyperparameter("lambda", ("lambda_mmd",)),
    "dann": Hyperparameter("lambda", ("lambda_dann",)),
    "cdann": Hyperparameter("lambda", ("lambda_cdann",)),
    "supcon": Hyperparameter("temperature", ("supcon_temperature",)),
    "c_proxy": Hyperparameter("lambda", ("lambda_proxy",)),
    "c_cdann": Hyperparameter("lambda", ("lambda_cdann",)),
}


def gridded_methods(methods):
  """The methods of `methods` that have an extra hyperparameter."""
  return [m for m in methods if m in HYPERPARAMETERS]


def reference_value(method):
  """The value `method`'s grid centres on: the `TrainConfig` default of the flags it moves
  (the source paper's value), not the flagfile's — the flagfile carries the grid's choice."""
  from cmp_tf.training import config as config_lib
  defaults = {f.name: f.default for f in dataclasses.fields(config_lib.TrainConfig)}
  values = {defaults[flag] for flag in HYPERPARAMETERS[method].flags}
  if len(values) != 1:
    raise ValueError(f"{method}: the flags {', '.join(HYPERPARAMETERS[method].flags)} have "
                     f"different defaults ({sorted(values)}); the grid moves them together")
  return values.pop()


def grid_values(method):
  """`method`'s reference value and its three grid values (x0.1, x1, x10)."""
  reference = reference_value(method)
  return reference, [float(f"{reference * f:.6g}") for f in (0.1, 1.0, 10.0)]


def flagfile_value(method):
  """The value configs/<method>.flags trains with; an error when the flags the grid moves
  together differ there."""
  config = records.planned_config(reproduce.train_command(method, False, "unused")[3:])
  values = {config[flag] for flag in HYPERPARAMETERS[method].flags}
  if len(values) != 1:
    raise ValueError(f"{method}: the flags {', '.join(HYPERPARAMETERS[method].flags)} have "
                     f"different values in configs/{method}.flags ({sorted(values)}); the grid "
                     "moves them together")
  return values.pop()


def run_dir_name(method, value):
  return f"{method}_{HYPERPARAMETERS[method].name}{value:g}"


def value_flags(method, value):
  return [f"--{flag}={value:g}" for flag in HYPERPARAMETERS[method].flags]


def _dev_features(run_dir, layer):
  """({modality: [N, D]}, {modality: [N]}): `layer` features and labels of the dev split."""
  from cmp_tf.eval import embeddings
  run = finished_run.load_run(run_dir)
  features, labels = {}, {}
  for modality in run.modalities:
    sets = embeddings.extract(run.model, run.data_dir, modality, split="dev", outputs=(layer,))
    features[modality], labels[modality] = sets.features[layer], sets.labels
  return features, labels


def dev_cross_modal_map(run_dir, layer=FC7):
  """Mean mAP over every ordered pair of distinct modalities of `layer` features of the dev
  split, every dev example a query (exact retrieval)."""
  from cmp_tf.eval import retrieval
  scores = retrieval.cross_modal_retrieval(*_dev_features(run_dir, layer))
  return round(float(np.mean([s["map"] for s in scores.values()])), 6)


def dev_query_scores(run_dir, layer=FC7):
  """[Q]: each dev query's AP averaged over the other modalities, modality by modality; their
  mean is `dev_cross_modal_map` when every modality has as many dev examples."""
  from cmp_tf.eval import retrieval
  features, labels = _dev_features(run_dir, layer)
  return np.concatenate([
      np.mean([retrieval.average_precision(
          retrieval.cosine_similarity(features[q], features[t]), labels[q], labels[t])
               for t in features if t != q], axis=0)
      for q in features])


def score_noise(query_scores):
  """How much of a difference between grid scores is noise, from finished runs' per-query
  scores {name: [Q]} (the same dev queries): each score's standard error over its queries,
  and for every two runs their difference with its paired standard error."""
  def se(x):
    return float(np.std(x, ddof=1) / np.sqrt(len(x)))
  names = list(query_scores)
  return {
      "runs": {n: {"score": float(np.mean(query_scores[n])), "se": se(query_scores[n])}
               for n in names},
      "differences": [{"runs": [a, b],
                       "difference": float(np.mean(query_scores[a] - query_scores[b])),
                       "paired_se": se(query_scores[a] - query_scores[b])}
                      for i, a in enumerate(names) for b in names[i + 1:]]}


def choose(scores, defaults, tie_within=TIE_WITHIN):
  """{method: value}: the reference value `defaults[method]` unless another value scores
  more than `tie_within` above it, else the best-scoring value (exact ties: the smaller);
  None if none scored."""
  best = lr_sweep.choose(scores, tie_within=0.0)
  chosen = {}
  for method, by_value in scores.items():
    default_score = by_value.get(defaults[method])
    kept = (default_score is not None and best[method] is not None
            and by_value[best[method]] <= default_score + tie_within + 1e-12)
    chosen[method] = defaults[method] if kept else best[method]
  return chosen


def grid(out_dir, *, methods, data_dir=None, train_flagfiles=(), records_dir=None,
         donors=(), progress=True):
  """Trains and scores every (method, value) not done yet; writes the report. A run takes
  the stages that one of the grid's runs or of `donors` (a sweep's runs, say) trained as it
  would (`reproduce.stage_donors`)."""
  started = time.perf_counter()
  out_dir = os.path.abspath(os.fspath(out_dir))
  records_dir = os.path.abspath(records_dir) if records_dir else None
  train_flagfiles = [os.path.abspath(f) for f in train_flagfiles]
  methods = gridded_methods(reproduce.parse_methods(list(methods)))
  if not methods:
    raise ValueError("--methods: none of them has an extra hyperparameter; expected some of "
                     + ", ".join(HYPERPARAMETERS))
  planned = [(m, v) for m in methods for v in grid_values(m)[1]]
  names = [run_dir_name(m, v) for m, v in planned]
  scores, runs = lr_sweep.earlier_results(os.path.join(out_dir, GRID_JSON), methods,
                                          HYPERPARAMETERS)
  scores.update({m: {} for m in methods})
  methods = [m for m in HYPERPARAMETERS if m in scores]
  trained_s = []
  for method, value in planned:
    name = run_dir_name(method, value)
    run_dir = os.path.join(out_dir, reproduce.RUNS_DIR, name)
    command = reproduce.train_command(
        method, False, run_dir, data_dir=data_dir, train_flagfiles=train_flagfiles,
        donors=reproduce.stage_donors(out_dir, donors)) + value_flags(method, value)
    state, status, score = reproduce.finished_state(run_dir), "kept", None
    record = None if state is not None else records.find_run_record(
        records_dir, name, command[3:])
    if record is not None and "dev_map" not in record:
      record = None  # another experiment's record of this run (the flagfile's value): no score
    if record is not None:
      state, score = record["run_json"], record["dev_map"]
      status = records.trained_on(record) if state.get("status") == "complete" else "failed"
    elif state is None:
      state, rc = reproduce.train_in_turn(command, out_dir, name, names, trained_s, progress)
      status = "trained" if state is not None else f"failed (exit status {rc})"
    if record is None and records_dir:
      if state is not None and state.get("status") == "complete":
        score = dev_cross_modal_map(run_dir)
        records.write_run_record(records_dir, name, state, dev_map=score)
      elif reproduce.run_json(run_dir).get("status") == "diverged":  # a result: not trained again
        records.write_run_record(records_dir, name, reproduce.run_json(run_dir), dev_map=None)
    elif state is not None and state.get("status") == "complete" and score is None:
      score = dev_cross_modal_map(run_dir)
    scores[method][value] = score
    runs.append({"method": method, "value": value, "run_dir": run_dir, "status": status,
                 "score": score, "command": " ".join(command[1:]),
                 "training": finished_run.training_summary(state) if state else None})
    _write(out_dir, methods, scores, runs, started)
  return _write(out_dir, methods, scores, runs, started)


def _write(out_dir, methods, scores, runs, started):
  defaults = {m: grid_values(m)[0] for m in methods}
  result = {"format_version": 1, "methods": methods,
            "hyperparameters": {m: dataclasses.asdict(HYPERPARAMETERS[m]) for m in methods},
            "defaults": defaults,
            "scores": {m: {f"{v:g}": s for v, s in by.items()} for m, by in scores.items()},
            "chosen": choose(scores, defaults), "tie_within": TIE_WITHIN, "runs": runs,
            "wall_time_s": round(time.perf_counter() - started, 1)}
  os.makedirs(out_dir, exist_ok=True)
  fileio.write_json_atomic(os.path.join(out_dir, GRID_JSON), result)
  fileio.write_text_atomic(os.path.join(out_dir, GRID_MD), grid_markdown(result))
  return result


def grid_markdown(result):
  """Dev cross-modal mAP (percent) per method and value, the steps of every stage, the
  choice."""
  lines = ["# Hyperparameter grid (dev cross-modal mAP of fc7, percent)", "",
           "| Method | hyperparameter (reference value) | value: score (steps per stage) | "
           "chosen |", "|---|---|---|---:|"]
  by_run = {(r["method"], r["value"]): r for r in result["runs"]}
  for method in result["methods"]:
    spec = result["hyperparameters"][method]
    default = result["defaults"][method]
    cells = []
    for key, score in result["scores"][method].items():
      run = by_run.get((method, float(key))) or {}
      steps = " + ".join(str(st["steps"]) for st in run.get("training") or [])
      cells.append(f"{key}: " + ("-" if score is None else f"{100 * score:.1f}")
                   + (f" ({steps} steps)" if steps else ""))
    chosen = result["chosen"].get(method)
    lines.append(f"| {recipes.METHODS[method].display_name} | {spec['name']} "
                 f"(--{', --'.join(spec['flags'])} = {default:g}) | " + "; ".join(cells)
                 + f" | {'-' if chosen is None else f'{chosen:g}'} |")
  lines += ["", "Score: mean mAP over every ordered pair of distinct modalities of fc7 "
            "features of the dev split (every dev example a query), after training under the "
            "convergence rule of configs/base.flags at the method's own learning rate; each "
            "method keeps its reference value (the setting's default: the source paper's, or "
            "for the priors the value chosen before the grid) unless another scores more than "
            f"{100 * result['tie_within']:g} point(s) above it (then its best; about the noise "
            "of a difference between two values' scores). A failed or diverged run scores "
            "nothing. The chosen value is the one the method's flagfile trains with."]
  return "\n".join(lines) + "\n"
