"""The learning-rate sweep: every method trained at every candidate rate under the base
flagfile's convergence rule, each scored by its dev accuracy, never by the validation split.

  python -m cmp_tf.sweep --out=DIR [--learning_rates=0.001,0.01,0.003] [--methods=all]

Run i of method m at rate r is `python -m cmp_tf.train --flagfile=configs/<m>.flags
--learning_rate=<r> --run_dir=DIR/runs/<m>_lr<r>` (resumable like any run). A method's
score at a rate is the mean, over its modalities, of the final stage's best dev accuracy;
a run that diverges or fails scores nothing. The rule applied to every method alike: each
method gets the smallest rate whose score is within `TIE_WITHIN` of its best score (scores
closer than the dev split's noise are ties). DIR/sweep.md and DIR/sweep.json hold every score
and the choice, of this invocation's methods and of those an earlier one swept there.
"""

import os
import re
import time

from cmp_tf import fileio, finished_run
from cmp_tf.experiments import records, reproduce
from cmp_tf.training import config as config_lib
from cmp_tf.training import recipes

DEFAULT_RATES = (0.001, 0.01, 0.003)
# Scores this close (mean dev accuracy) are ties: about one standard error of the mean of five
# modalities' dev accuracies at 150 examples each (sqrt(0.6 * 0.4 / 150) / sqrt(5) = 0.018).
# A rate that wins by less has not been shown better; the smaller one is the safer choice (at
# the default data's rates, 1e-2 diverged or lost a branch at other seeds where 3e-3 did not).
TIE_WITHIN = 0.02
SWEEP_JSON = "sweep.json"
SWEEP_MD = "sweep.md"


def swept_methods(methods):
  """The methods with a stage that starts from the source network (the rate this sweep
  sets is theirs; a from-scratch recipe trains at --scratch_learning_rate)."""
  settings = config_lib.TrainConfig(modalities=["nat", "clp"]).recipe_settings()
  return [m for m in methods if recipes.build_recipe(m, settings).needs_source]


def run_dir_name(method, rate):
  return f"{method}_lr{rate:g}"


def score(state):
  """Mean dev accuracy of the final stage's best evaluation, or None."""
  summary = finished_run.training_summary(state)
  return summary[-1]["dev_mean"] if summary else None


def choose(scores, tie_within=TIE_WITHIN):
  """{method: value}: each method's smallest value whose score is within `tie_within` of its
  best score; None if none scored."""
  chosen = {}
  for method, by_value in scores.items():
    ran = {v: s for v, s in by_value.items() if s is not None}
    best = max(ran.values(), default=None)
    chosen[method] = (min(v for v, s in ran.items() if s >= best - tie_within - 1e-12)
                      if ran else None)
  return chosen


def earlier_results(json_path, methods, known):
  """({method: {value: score}}, runs) that an earlier invocation wrote to `json_path` (a
  sweep's or a grid's JSON) for the methods of `known` other than `methods`, so that the
  report of a directory holds every method run there, not only the last invocation's."""
  if not os.path.isfile(json_path):
    return {}, []
  earlier = fileio.read_json(json_path)
  kept = [m for m in earlier.get("methods", []) if m in known and m not in methods]
  scores = {m: {float(v): s for v, s in earlier["scores"][m].items()} for m in kept}
  return scores, [r for r in earlier.get("runs", []) if r["method"] in kept]


def sweep(out_dir, *, methods, rates=DEFAULT_RATES, data_dir=None, train_flagfiles=(),
          records_dir=None, donors=(), progress=True):
  """Trains every (method, rate) not finished yet, rate by rate; writes the report.
  `train_flagfiles` are read by every run after its method's flagfile; `records_dir` keeps
  a record of every finished or diverged run and supplies the runs recorded there with the
  same configuration (`cmp_tf.experiments.records`); a run takes the stages that one of its
  own runs or of `donors` trained as it would (`reproduce.stage_donors`)."""
  started = time.perf_counter()
  out_dir = os.path.abspath(os.fspath(out_dir))
  records_dir = os.path.abspath(records_dir) if records_dir else None
  methods = swept_methods(reproduce.parse_methods(list(methods)))
  rates = [float(r) for r in rates]
  if not rates or any(not r > 0 for r in rates):
    raise ValueError(f"--learning_rates: expected positive rates, got {rates}")
  planned = [run_dir_name(method, rate) for rate in rates for method in methods]
  scores, runs = earlier_results(os.path.join(out_dir, SWEEP_JSON), methods, recipes.METHODS)
  scores.update({m: {} for m in methods})
  trained_s = []
  for rate in rates:
    for method in methods:
      name = run_dir_name(method, rate)
      run_dir = os.path.join(out_dir, reproduce.RUNS_DIR, name)
      command = reproduce.train_command(method, False, run_dir, data_dir=data_dir,
                                        train_flagfiles=train_flagfiles,
                                        donors=reproduce.stage_donors(out_dir, donors))
      command.append(f"--learning_rate={rate}")
      state = reproduce.finished_state(run_dir)
      status = "kept"
      record = None if state is not None else records.find_run_record(
          records_dir, name, command[3:])
      if record is not None:
        state = record["run_json"] if record["run_json"].get("status") == "complete" else None
        status = records.trained_on(record) if state else _failure_of(record["run_json"])
      elif state is None and _failure(run_dir).startswith("diverged"):
        status = _failure(run_dir)  # a diverged run is a result: not trained again
      elif state is None:
        state, rc = reproduce.train_in_turn(command, out_dir, name, planned, trained_s,
                                            progress)
        status = "trained" if state is not None else _failure(run_dir, rc)
      scores[method][rate] = score(state) if state is not None else None
      if records_dir and record is None and (state or status.startswith("diverged")):
        records.write_run_record(records_dir, name, state or reproduce.run_json(run_dir))
      runs.append({"method": method, "rate": rate, "run_dir": run_dir, "status": status,
                   "score": scores[method][rate],
                   "training": finished_run.training_summary(state) if state else None,
                   "train_s": finished_run.train_seconds(state)[0] if state else None})
      _write(out_dir, [m for m in recipes.METHODS if m in scores], rates, scores, runs,
             started)
  return _write(out_dir, [m for m in recipes.METHODS if m in scores], rates, scores, runs,
                started)


def _failure_of(state, rc=None):
  """"diverged: <message>" when run.json `state` says so, else "failed (...)"."""
  if state and state.get("status") == "diverged":
    return f"diverged: {state.get('error', '')}"
  return f"failed (exit status {rc})" if rc is not None else "failed"


def _failure(run_dir, rc=None):
  return _failure_of(reproduce.run_json(run_dir), rc)


def _write(out_dir, methods, rates, scores, runs, started):
  chosen = choose(scores)
  result = {"format_version": 1, "rates": rates, "methods": methods,
            "scores": {m: {f"{r:g}": s for r, s in by.items()} for m, by in scores.items()},
            "chosen": chosen, "runs": runs,
            "wall_time_s": round(time.perf_counter() - started, 1)}
  os.makedirs(out_dir, exist_ok=True)
  fileio.write_json_atomic(os.path.join(out_dir, SWEEP_JSON), result)
  fileio.write_text_atomic(os.path.join(out_dir, SWEEP_MD), sweep_markdown(result))
  return result


def sweep_markdown(result):
  """Mean dev accuracy (percent) per method and rate, steps of every stage, the choice."""
  rates = result["rates"]
  lines = ["# Learning-rate sweep (mean dev accuracy, percent)", "",
           "| Method | " + " | ".join(f"lr {r:g}" for r in rates) + " | chosen |",
           "|---|" + "---:|" * (len(rates) + 1)]
  steps = {(r["method"], r["rate"]): r for r in result["runs"]}
  for method in result["methods"]:
    cells = []
    for rate in rates:
      s = result["scores"][method].get(f"{rate:g}")
      run = steps.get((method, rate))
      stages = " + ".join(str(st["steps"]) for st in (run or {}).get("training") or [])
      if s is None:
        status = (run or {}).get("status", "")
        step = re.search(r"at step (\d+)", status)
        cells.append(f"diverged (step {step.group(1)})" if status.startswith("diverged") and step
                     else "diverged" if status.startswith("diverged") else "-")
      else:
        cells.append(f"{100 * s:.1f}" + (f" ({stages} steps)" if stages else ""))
    chosen = result["chosen"].get(method)
    lines.append(f"| {recipes.METHODS[method].display_name} | " + " | ".join(cells)
                 + f" | {'-' if chosen is None else f'{chosen:g}'} |")
  lines += ["", "Score: the final stage's best mean dev accuracy over its modalities under the "
            "convergence rule of configs/base.flags; each method takes the smallest rate whose "
            f"score is within {100 * TIE_WITHIN:g} points of its best (closer scores are "
            "ties: about one standard error of the dev mean). A failed or diverged run "
            "scores nothing."]
  return "\n".join(lines) + "\n"
