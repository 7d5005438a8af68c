"""Trains and evaluates every row of the paper's Tables 1-5, then writes one tables.

`reproduce` (`python -m cmp_tf.reproduce --out=DIR`) trains each method exactly as
  python -m cmp_tf.train --flagfile=configs/<method>.flags --run_dir=DIR/runs/<method>
(one process per run, its output also in DIR/logs/<run>.log; `train_flagfiles` are
read after the method's flagfile, so they override it), and with `zero_shot` once
more, with --zero_shot, in DIR/runs/<method>_zeroshot. Every run is
evaluated with `cmp_tf.eval.evaluation` (BL-Individual also with subspace alignment, the
"Subsp. Align. + PlacesNet Finetune" rows), and so is the source network the runs
started from (DIR/source: "BL-PlacesNet" and "Subsp. Align. + PlacesNet").
With `analysis` every normal run is also analysed (`cmp_tf.analysis.run_analysis`, parts invariance
and alignment, into DIR/runs/<run>/analysis), and the report compares the methods by
modality-probe accuracy and aligned-unit fraction.

Resumable: a finished run is not trained again, an unfinished one resumes from its
checkpoints, and an evaluation whose results.json matches the run's weights and the
protocol is kept (so is an analysis whose JSON files match the run's weights). DIR/report.md holds Tables 1-5 in the paper's layout with chance
levels, our Table 1 means and Table 3 beside the paper's, and the wall time of every
row; DIR/results.json holds the same in JSON.
"""

import dataclasses
import os
import subprocess
import sys
import time

from cmp_tf import fileio, finished_run, paths
from cmp_tf import modalities as mod_lib
from cmp_tf.eval import embeddings, tables
from cmp_tf.eval import rows as rows_lib
from cmp_tf.experiments import page, records, report, stops
from cmp_tf.layer_names import FEATURE_LAYERS
from cmp_tf.training import recipes

RUNS_DIR = "runs"
LOGS_DIR = "logs"
SOURCE_DIR = "source"
REPORT_MD = "report.md"
RESULTS_JSON = "results.json"
SA_METHOD = "bl_individual"  # its features make the "Subsp. Align. + PlacesNet Finetune" rows
# One more normal row: BL-Individual with DSC's own upper copied from the source network.
DSC_SOURCE_RUN = "bl_individual_dsc_source"
DSC_SOURCE_ROW = "BL-Individual, DSC upper from the source network"
DSC_SOURCE_FLAGS = ("--dsc_upper_init=source",)


METHOD_GROUPS = {"all": recipes.METHOD_NAMES, "paper": recipes.PAPER_METHODS,
                 "alignment": recipes.ALIGNMENT_METHODS}


def parse_methods(names):
  """Method ids from a list of names and groups: "all" is every method, "paper" the
  paper's eight, "alignment" the five multi-domain alignment methods."""
  names = [n.strip() for n in names if n.strip()]
  expanded = [m for n in names for m in METHOD_GROUPS.get(n, (n,))]
  unknown = [n for n in expanded if n not in recipes.METHODS]
  if unknown or not names:
    raise ValueError(f"--methods: unknown {unknown or 'empty list'}; expected groups "
                     f"{', '.join(METHOD_GROUPS)} or some of {', '.join(recipes.METHOD_NAMES)}")
  return list(dict.fromkeys(expanded))


def method_flagfile(method):
  """The shipped flagfile of a method, configs/<method>.flags; an error if missing."""
  path = paths.CONFIGS_DIR / f"{method}.flags"
  if not path.is_file():
    raise ValueError(f"--methods: {method} has no flagfile {path}")
  return str(path)


def run_name(method, zero_shot, seed=0):
  """runs/<method>[_seed<N>][_zeroshot]: seed 0's runs keep the plain name."""
  return method + (f"_seed{seed}" if seed else "") + ("_zeroshot" if zero_shot else "")


def stage_donors(out_dir, extra=()):
  """Where an experiment's runs look for stages already trained as they would train them
  (`cmp_tf.training.stage_reuse`): the experiment's own runs, then `extra` directories."""
  return [os.path.join(out_dir, RUNS_DIR)] + [os.path.abspath(d) for d in extra]


def train_command(method, zero_shot, run_dir, *, data_dir=None, train_flagfiles=(),
                  fixed_budget=False, seed=None, extra_flags=(), donors=(),
                  python=sys.executable):
  """The `python -m cmp_tf.train` command line of one run (evaluation is done here).
  `fixed_budget`: every stage runs its flagfile's step counts instead of the base
  flagfile's convergence rule; `seed`: the training seed (None: the flagfiles');
  `donors`: its --stage_donors."""
  command = [python, "-m", "cmp_tf.train", f"--flagfile={method_flagfile(method)}"]
  command += [f"--flagfile={f}" for f in train_flagfiles]
  if fixed_budget:
    command.append("--stop_rule=fixed")
  if seed is not None:
    command.append(f"--seed={seed}")
  command += list(extra_flags)
  command += [f"--method={method}", "--zero_shot" if zero_shot else "--nozero_shot",
              f"--run_dir={run_dir}", "--noevaluate", "--noexport"]
  if donors:
    command.append(f"--stage_donors={','.join(donors)}")
  if data_dir:
    command.append(f"--data_dir={data_dir}")
  return command


@dataclasses.dataclass(frozen=True)
class PlannedRun:
  """One training run of a reproduction and the table row it gives."""
  name: str
  method: str
  zero_shot: bool
  seed: int
  row: str
  extra_flags: tuple = ()
  subspace_alignment: bool = False


def plan_runs(methods, *, zero_shot=True, seeds=(0,), seed_methods=None, dsc_source_row=True):
  """Every run, in order: each method normal (then zero-shot); the methods of `seed_methods`
  (None: all) at every seed of `seeds` in the normal setting, the rest and every zero-shot run
  at the first; with `dsc_source_row`, BL-Individual once more with DSC's upper copied from
  the source network (normal, first seed)."""
  seeds = list(dict.fromkeys(seeds))
  if not seeds:
    raise ValueError("--seeds: at least one seed")
  unknown = sorted(set(seed_methods or ()) - set(methods))
  if unknown:
    raise ValueError(f"--seed_methods: {', '.join(unknown)} not among --methods")
  runs = []
  for setting in ([False, True] if zero_shot else [False]):
    for method in methods:
      several = not setting and (seed_methods is None or method in seed_methods)
      for seed in (seeds if several else seeds[:1]):
        runs.append(PlannedRun(run_name(method, setting, seed), method, setting, seed,
                               recipes.METHODS[method].display_name,
                               subspace_alignment=method == SA_METHOD))
      if method == SA_METHOD and dsc_source_row and not setting:
        runs.append(PlannedRun(run_name(DSC_SOURCE_RUN, False, seeds[0]), method, False,
                               seeds[0], DSC_SOURCE_ROW, DSC_SOURCE_FLAGS))
  return runs


def finished_state(run_dir):
  """run.json of a finished run, or None."""
  try:
    return finished_run.check_finished(run_dir)
  except finished_run.RunError:
    return None


def runs_left(out_dir, names):
  """How many of the runs `names` (under out_dir/runs) have not finished."""
  return sum(1 for name in names
             if finished_state(os.path.join(out_dir, RUNS_DIR, name)) is None)


def training_line(name, number, total, left, trained_s):
  """"== training NAME (run k of n; about M min of training left ...)": the estimate is the
  `left` runs at the mean of this invocation's training times `trained_s` (none yet: no
  estimate)."""
  estimate = ""
  if trained_s:
    estimate = (f"; about {left * sum(trained_s) / len(trained_s) / 60:.0f} min of "
                "training left at this invocation's mean per run")
  return f"== training {name} (run {number} of {total}{estimate})"


def run_json(run_dir):
  """run.json of a run directory, finished or not; {} when there is none."""
  path = os.path.join(run_dir, finished_run.RUN_JSON)
  return (fileio.read_json(path) if os.path.isfile(path) else None) or {}


def train_in_turn(command, out_dir, name, names, trained_s, progress):
  """Trains run `name` of the ordered `names` (under out_dir/runs) with `command`, its
  output to out_dir/logs/<name>.log, after the line saying which run of how many it is and
  the time left; appends its training time to `trained_s`. Returns (run.json of the
  finished run or None, exit status)."""
  if progress:
    number = names.index(name) + 1
    left = runs_left(out_dir, names[number - 1:])
    print(f"{training_line(name, number, len(names), left, trained_s)}: {' '.join(command)}",
          flush=True)
  run_started = time.perf_counter()
  rc = train_logged(command, os.path.join(out_dir, LOGS_DIR, f"{name}.log"), progress)
  trained_s.append(time.perf_counter() - run_started)
  return finished_state(os.path.join(out_dir, RUNS_DIR, name)), rc


def train_logged(command, log_path, progress):
  """Runs one training process, its output to `log_path` (and the console); returns rc."""
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  with open(log_path, "a", encoding="utf-8") as log:
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    process = subprocess.Popen(command, cwd=paths.REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace")
    for line in process.stdout:
      log.write(line)
      if progress:
        sys.stdout.write(line)
    return process.wait()


def _same_protocol(results, *, num_queries, seed, layers, sa):
  """Whether evaluation `results` were computed under this protocol."""
  protocol = results.get("protocol", {})
  return (protocol.get("num_queries") == num_queries and protocol.get("seed") == seed
          and results.get("layers") == list(layers)
          and protocol.get("chance") == rows_lib.CHANCE_DEFINITION
          and bool(results.get("subspace_alignment")) == sa)


def _current(results_path, *, digest, num_queries, seed, layers, sa):
  """The kept results.json when it matches these weights and this protocol, else None."""
  if not os.path.isfile(results_path):
    return None
  results = fileio.read_json(results_path)
  same = results.get("weights_digest") == digest and _same_protocol(
      results, num_queries=num_queries, seed=seed, layers=layers, sa=sa)
  return results if same else None


def _usable_record(records_dir, plan, command, *, num_queries, seed):
  """The record of a planned run that has no finished run directory here, when it was
  trained with the same configuration and evaluated under this protocol; else None."""
  record = records.find_run_record(records_dir, plan.name, command[3:])
  if record is None or not record.get("results") or not _same_protocol(
      record["results"], num_queries=num_queries, seed=seed, layers=FEATURE_LAYERS,
      sa=plan.subspace_alignment):
    return None
  return record


def _relabelled(row, label):
  """A recorded report row under this reproduction's label of its run."""
  return None if row is None else {**row, "row": label}


def _evaluate_run(run_dir, *, sa, num_queries, seed, progress):
  from cmp_tf.eval import evaluation as evaluate
  kept = _current(os.path.join(run_dir, evaluate.EVAL_DIR, evaluate.RESULTS_JSON),
                  digest=finished_run.weights_digest(run_dir),
                  num_queries=num_queries, seed=seed, layers=FEATURE_LAYERS, sa=sa)
  if kept is not None:
    return kept, "kept"
  return evaluate.evaluate_run(run_dir, num_queries=num_queries, seed=seed,
                               subspace_alignment=sa, progress=progress), "evaluated"


def _evaluate_source(source_dir, data_dir, out_dir, *, num_queries, seed, progress):
  from cmp_tf.eval import evaluation as evaluate
  kept = _current(os.path.join(out_dir, evaluate.RESULTS_JSON),
                  digest=fileio.file_digest(os.path.join(source_dir, "source.weights.h5")),
                  num_queries=num_queries, seed=seed, layers=["fc7"], sa=True)
  if kept is not None:
    return kept, "kept"
  return evaluate.evaluate_source(source_dir, data_dir=data_dir, out_dir=out_dir,
                                  num_queries=num_queries, seed=seed,
                                  progress=progress), "evaluated"


def _analyse_run(run_dir, entry, *, seed, progress):
  """The run's row of the analysis comparison, or None; sets entry["analyse"(_s)].

  A dataset without ground-truth objects (CMPlaces) gets the modality probe only.
  """
  from cmp_tf.analysis import run_analysis as analyze
  from cmp_tf.errors import DataError
  started = time.perf_counter()
  error = None
  for parts in (analyze.COMPARED_PARTS, ("invariance",)):
    try:
      results, entry["analyse"] = analyze.ensure_analysis(run_dir, parts=parts, seed=seed,
                                                          progress=progress)
    except (ValueError, DataError) as e:
      error = e
      continue
    entry["analyse_s"] = round(time.perf_counter() - started, 1)
    return report.analysis_row(entry["row"], results.get("invariance"),
                                     results.get("alignment"))
  entry["analyse"] = f"failed ({error})"
  return None


def _diagnose_run(run_dir, name, layer="fc7"):
  """The run's alignment diagnostic from the fc7 features its evaluation saved."""
  from cmp_tf.eval import diagnostics, retrieval
  from cmp_tf.eval import evaluation as evaluate
  features_dir = os.path.join(run_dir, evaluate.EVAL_DIR, evaluate.FEATURES_DIR)
  features, labels = {}, {}
  for modality in mod_lib.ALL_MODALITIES:
    path = embeddings.npz_path(features_dir, layer, modality)
    if os.path.isfile(path):
      features[modality], labels[modality], _ = embeddings.load_npz(path)
  scores = retrieval.cross_modal_retrieval(features, labels)
  return report.diagnostic_row(name, diagnostics.alignment_diagnostic(features, labels,
                                                                           scores))


def _take_record(record, plan, entry, label, normal, zero, diagnostics_rows, analysed):
  """Fills a planned run's entry and report rows from its record (`analysed`: None when the
  reproduction analyses nothing)."""
  state = record["run_json"]
  entry["train_s"], entry["reused_s"] = finished_run.train_seconds(state)
  entry.update(train=records.trained_on(record), evaluate="record",
               training=finished_run.training_summary(state),
               settings=finished_run.recipe_settings(state),
               evaluate_s=record["results"]["wall_time_s"]["total"])
  results = record["results"]
  if plan.extra_flags:
    results = report.renamed(results, plan.row)
  entry["table1_mean"] = report.run_table1_mean(results, plan.row)
  (zero if plan.zero_shot else normal).append(results)
  if not plan.zero_shot and record.get("diagnostic"):
    diagnostics_rows.append(_relabelled(record["diagnostic"], label))
  if analysed is not None and not plan.zero_shot and record.get("analysis"):
    entry["analyse"] = "record"
    analysed.append(_relabelled(record["analysis"], entry["row"]))


def _source_rows(runs, out_dir, entries, *, records_dir, num_queries, seed, progress):
  """The source network's results (BL-PlacesNet rows), evaluated here when the network and
  its dataset are on this machine, else from its record; None when neither is (an entry
  says so). Appends the source's entry to `entries`."""
  used = [s for s in runs.values() if s.get("source")]
  if not used:
    return None
  here = [s for s in used if os.path.isdir(s["source"]["directory"])
          and os.path.isdir(s.get("data_dir") or "")]
  entry = {"run": SOURCE_DIR, "row": "BL-PlacesNet, Subsp. Align. + PlacesNet",
           "setting": "both"}
  if here:
    source_dir = here[0]["source"]["directory"]
    if progress:
      print(f"== evaluating the source network {source_dir}", flush=True)
    results, status = _evaluate_source(
        source_dir, here[0].get("data_dir"), os.path.join(out_dir, SOURCE_DIR),
        num_queries=num_queries, seed=seed, progress=progress)
    info = fileio.read_json(os.path.join(source_dir, "source.json"))
    if records_dir:
      records.write_source_record(records_dir, source_dir, results, info)
  else:
    record = records.find_source_record(records_dir, used[0]["source"]["directory"])
    if record is None or not _same_protocol(record["results"], num_queries=num_queries,
                                            seed=seed, layers=["fc7"], sa=True):
      entries.append({**entry, "train": "missing",
                      "evaluate": "not evaluated: the source network is not on this "
                                  "machine and has no record under this protocol"})
      return None
    results, status, info = record["results"], "record", record["source_json"]
  entries.append({**entry, "train": f"source network ({info.get('origin')})",
                  "train_s": (info.get("training") or {}).get("wall_time_s"),
                  "evaluate": status, "evaluate_s": results["wall_time_s"]["total"]})
  return results


def _check_inputs(out_dir, data_dir, train_flagfiles):
  for path in train_flagfiles:
    if not os.path.isfile(path):
      raise ValueError(f"--train_flagfiles: no such file: {path}")
  if data_dir and not os.path.isfile(os.path.join(data_dir, "manifest.json")):
    raise ValueError(f"--data_dir: {data_dir} has no manifest.json; build a dataset with "
                     "python -m cmp_tf.build_data")
  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise ValueError(f"--out: {out_dir} exists and is not a directory")


def reproduce(out_dir, *, methods=recipes.METHOD_NAMES, zero_shot=True, data_dir=None,
              num_queries=None, seed=0, train_flagfiles=(), fixed_budget=False,
              seeds=(0,), seed_methods=None, dsc_source_row=True, records_dir=None,
              donors=(), python=sys.executable, analysis=True, progress=True):
  """Trains and evaluates every row, then writes DIR/report.md and DIR/results.json.

  Args:
    out_dir: the reproduction directory (runs/, logs/, source/, report.md, results.json).
    methods: method ids of `cmp_tf.training.recipes.METHODS`.
    zero_shot: also train every method zero-shot (Tables 4 and 5).
    data_dir: the dataset; default: the trainer's default dataset (built if missing).
    num_queries: None: exact retrieval over all queries; N: N random queries per pair.
    seed: the evaluation seed (random queries, subspace alignment).
    train_flagfiles: flagfiles read by every training run after the method's own.
    fixed_budget: train every run with --stop_rule=fixed (the flagfiles' step counts)
      instead of the convergence rule of configs/base.flags.
    seeds: training seeds (a run's --seed); a row with several shows mean ± std.
    seed_methods: the methods trained at every seed (normal setting); None: all. The
      data, the source network and its priors are the same for every seed.
    dsc_source_row: also train BL-Individual with --dsc_upper_init=source (one more row).
    records_dir: keep a record of every evaluated run and of the source network here
      (`cmp_tf.experiments.records`), and take a run that has no finished directory here
      from its record when it matches (commit the directory to continue on another machine).
    donors: run directories (or directories of them) beside this reproduction's own runs
      whose first stages a run takes when they were trained exactly as it would train them
      (`cmp_tf.training.stage_reuse`; the weights are the same).
    python: the interpreter that runs `cmp_tf.train`.
    analysis: also analyse every normal run (modality probe, unit alignment) and compare.

  Returns:
    The results dict written to DIR/results.json; its "complete" is False when a run
    failed (the report then shows the rows that exist).
  """
  started = time.perf_counter()
  out_dir = os.path.abspath(os.fspath(out_dir))
  data_dir = os.path.abspath(data_dir) if data_dir else None
  train_flagfiles = [os.path.abspath(f) for f in train_flagfiles]
  records_dir = os.path.abspath(records_dir) if records_dir else None
  methods = parse_methods(list(methods))
  _check_inputs(out_dir, data_dir, train_flagfiles)
  planned = plan_runs(methods, zero_shot=zero_shot, seeds=seeds, seed_methods=seed_methods,
                      dsc_source_row=dsc_source_row)
  for method in methods:
    method_flagfile(method)
  several = {(p.row, p.zero_shot) for p in planned
             if sum(q.row == p.row and q.zero_shot == p.zero_shot for q in planned) > 1}

  entries, normal, zero, failures, analysed, diagnostics_rows = [], [], [], [], [], []
  runs, trained_s = {}, []
  for plan in planned:
    run_dir = os.path.join(out_dir, RUNS_DIR, plan.name)
    command = train_command(plan.method, plan.zero_shot, run_dir, data_dir=data_dir,
                            train_flagfiles=train_flagfiles, fixed_budget=fixed_budget,
                            seed=plan.seed, extra_flags=plan.extra_flags,
                            donors=stage_donors(out_dir, donors), python=python)
    label = plan.row + (f" (seed {plan.seed})" if (plan.row, plan.zero_shot) in several
                        else "")
    entry = {"run": plan.name, "method": plan.method, "row": label, "table_row": plan.row,
             "seed": plan.seed, "setting": "zero-shot" if plan.zero_shot else "normal",
             "subspace_alignment": plan.subspace_alignment,
             "run_dir": run_dir, "command": " ".join(command[1:])}
    entries.append(entry)
    state = finished_state(run_dir)
    record = None if state is not None else _usable_record(
        records_dir, plan, command, num_queries=num_queries, seed=seed)
    if record is not None:
      _take_record(record, plan, entry, label, normal, zero, diagnostics_rows,
                   analysed if analysis else None)
      runs[plan.name] = record["run_json"]
      continue
    if state is not None:
      entry["train"] = "kept"
    else:
      state, rc = train_in_turn(command, out_dir, plan.name, [p.name for p in planned],
                                trained_s, progress)
      if rc != 0 or state is None:
        entry["train"] = f"failed (exit status {rc}; see logs/{plan.name}.log)"
        failures.append(plan.name)
        continue
      entry["train"] = "trained"
    entry["train_s"], entry["reused_s"] = finished_run.train_seconds(state)
    entry["training"] = finished_run.training_summary(state)
    entry["settings"] = finished_run.recipe_settings(state)
    runs[plan.name] = state
    if progress:
      print(f"== evaluating {plan.name}", flush=True)
    results, entry["evaluate"] = _evaluate_run(run_dir, sa=plan.subspace_alignment,
                                               num_queries=num_queries, seed=seed,
                                               progress=progress)
    entry["evaluate_s"] = results["wall_time_s"]["total"]
    if plan.extra_flags:
      results = report.renamed(results, plan.row)
    entry["table1_mean"] = report.run_table1_mean(results, plan.row)
    (zero if plan.zero_shot else normal).append(results)
    diagnostic = row = None
    if not plan.zero_shot:
      diagnostic = _diagnose_run(run_dir, label)
      diagnostics_rows.append(diagnostic)
    if analysis and not plan.zero_shot:
      if progress:
        print(f"== analysing {plan.name}", flush=True)
      row = _analyse_run(run_dir, entry, seed=seed, progress=progress)
      if row is not None:
        analysed.append(row)
    if records_dir:
      records.write_run_record(records_dir, plan.name, state, results=results,
                               diagnostic=diagnostic, analysis=row)

  source_dirs = sorted({s["source"]["directory"] for s in runs.values() if s.get("source")})
  source_results = _source_rows(runs, out_dir, entries, records_dir=records_dir,
                                num_queries=num_queries, seed=seed, progress=progress)
  if source_results is not None:
    normal.append(source_results)
    if zero_shot:
      zero.append(source_results)

  stop_rows = [r for e in entries if e["run"] in runs
               for r in stops.stage_rows(
                   e["run"], e["table_row"] + (" (zero-shot)" if e["setting"] == "zero-shot"
                                               else ""), e["seed"], runs[e["run"]])]
  return _write_report(out_dir, entries, normal, zero, source_results, source_dirs, failures,
                       num_queries=num_queries, seed=seed, started=started,
                       analysis_rows=analysed, diagnostic_rows=diagnostics_rows,
                       stop_rows=stop_rows)


def _write_report(out_dir, entries, normal, zero, source_results, source_dirs, failures, *,
                  num_queries, seed, started, analysis_rows=(), diagnostic_rows=(),
                  stop_rows=()):
  fingerprint = report.check_same_data(normal + zero)
  rows = report.merge_rows(normal, zero)
  chance = report.merge_chance(normal, zero)
  any_results = (normal + zero)[0] if normal + zero else None
  num_classes = any_results["num_classes"] if any_results else None
  per_seed = report.seed_rows(normal, zero)
  built = tables.build_tables(rows, chance, num_classes=num_classes, seed_rows=per_seed)
  ratio_values = report.ratios(rows, per_seed)
  for entry in entries:
    entry.setdefault("table_row", entry["row"])  # the row's name in the tables
    if entry.pop("subspace_alignment", False):
      entry["row"] += " (+ Subsp. Align. + PlacesNet Finetune)"
  total = round(time.perf_counter() - started, 1)
  queries = ("exact: every validation example is a query" if num_queries is None
             else f"{num_queries} random queries per pair (seed {seed})")
  preamble = [
      f"Reproduction in {out_dir}; data: {any_results['data_dir'] if any_results else '-'} "
      f"(manifest fingerprint {fingerprint}, {num_classes} categories).",
      f"Retrieval: cosine similarity on validation features, {queries}; non-interpolated "
      "AP with ties broken pessimistically. Tables 1-3 come from the normal runs, Tables 4-5 "
      "from the zero-shot runs; \"PlacesNet\" is our source network (NAT only).",
      "Table 4 is given in both zero-shot protocols: conventional (the argmax over the "
      "held-out categories only, chance 1 / number held out) and generalized (over all "
      "categories). The paper says only \"classification accuracy on the held-out "
      "categories\"; its BL-PlacesNet row (2.2 on SPT and DSC, where that network has "
      "nothing to go on) sits at the 55-way chance of 1.8 rather than the 205-way 0.49, "
      "which suggests the conventional one.",
      f"This invocation took {total:.0f} s; the wall time of every row is at the end.",
  ]
  if failures:
    preamble.append(f"Incomplete: training failed for {', '.join(failures)} (rerun the same "
                    "command to resume).")
  markdown = tables.tables_markdown("Cross-Modal Scene Networks: reproduced Tables 1-5",
                                    preamble, built)
  markdown += "\n" + report.comparison_markdown(rows, per_seed)
  markdown += "\n" + report.ratios_markdown(ratio_values)
  if diagnostic_rows:
    markdown += "\n" + report.diagnostic_markdown(diagnostic_rows)
  if analysis_rows:
    markdown += "\n" + report.analysis_markdown(analysis_rows)
  markdown += "\n" + report.protocol_markdown(entries, rows)
  if stop_rows:
    markdown += "\n" + stops.stops_markdown(stop_rows)
  markdown += "\n" + report.wall_time_markdown(entries)
  markdown += ("\nA run's training time is that of the invocation that finished it; the first "
               "run to need the source network also trained it (or loaded it from the cache).\n")
  markdown += "\nTraining commands (run from the checkout):\n\n" + "".join(
      f"- {e['run']}: `python {e['command']}`\n" for e in entries if "command" in e)
  results = {
      "format_version": 1, "out_dir": out_dir, "complete": not failures,
      "failed_runs": failures, "manifest_fingerprint": fingerprint, "num_classes": num_classes,
      "protocol": any_results["protocol"] if any_results else None, "chance": chance,
      "rows": tables.rows_to_json(rows), "tables": {t.title: t.to_dict() for t in built},
      "ratios": ratio_values, "alignment_diagnostic": list(diagnostic_rows),
      "analysis": list(analysis_rows), "stops": list(stop_rows), "source_dirs": source_dirs,
      "source_evaluation": os.path.join(out_dir, SOURCE_DIR) if source_results else None,
      "runs": entries, "wall_time_s": total,
      "training_seeds": sorted({e["seed"] for e in entries if "seed" in e}),
  }
  fileio.write_json_atomic(os.path.join(out_dir, RESULTS_JSON), results)
  fileio.write_text_atomic(os.path.join(out_dir, REPORT_MD), markdown)
  page.write_reproduction_page(out_dir, rows, per_seed, chance, entries)
  return results
