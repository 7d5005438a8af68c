"""Trains and evaluates every row of the paper's Tables 1-5, then writes one report.

  python -m cmp_tf.reproduce --out=DIR [--data_dir=DATA] [--methods=all]
      [--zero_shot=true] [--num_queries=N] [--seed=0] [--train_flagfiles=FILE,...]
      [--analysis=true] [--fixed_budget] [--seeds=0,1,2 --seed_methods=bl_individual,c]
      [--records=DIR]

Each method is trained as `python -m cmp_tf.train --flagfile=configs/<method>.flags`
(and once more with --zero_shot), evaluated, and, with --analysis, analysed; the source
network gives the "BL-PlacesNet" rows. Resumable: rerun the same command. DIR/report.md
holds Tables 1-5 in the paper's layout (`cmp_tf.experiments.reproduce`); DIR/report.html shows
them as figures, with Figure 5 for BL-Individual and C (`cmp_tf.experiments.page`).
With --records=DIR every evaluated run leaves a record there (no weights); commit it, and
the same command on another machine takes those runs from their records instead of training
them again (`cmp_tf.experiments.records`).
"""

import os

from absl import app, flags

from cmp_tf import cli
from cmp_tf.experiments import page, reproduce
from cmp_tf.training import recipes

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Reproduction directory.", required=True)
flags.DEFINE_string("data_dir", "", "Dataset; default: the trainer's default dataset.")
flags.DEFINE_list("methods", ["all"], "Methods to train and evaluate, or the groups all, "
                  "paper, alignment: " + ", ".join(recipes.METHOD_NAMES))
flags.DEFINE_boolean("zero_shot", True, "Also train every method zero-shot (Tables 4, 5).")
flags.DEFINE_integer("num_queries", None, "Random queries per pair (the paper: 1000); "
                     "default: every validation example is a query.")
flags.DEFINE_integer("seed", 0, "Seed of the random queries and of subspace alignment.")
flags.DEFINE_list("train_flagfiles", [], "Flagfiles every training run reads after its "
                  "method's configs/<method>.flags (e.g. smaller settings).")
flags.DEFINE_boolean("fixed_budget", False, "Train every run with the flagfiles' fixed step "
                     "counts (--stop_rule=fixed) instead of the convergence rule.")
flags.DEFINE_list("seeds", ["0"], "Training seeds (each run's --seed); the methods of "
                  "--seed_methods are trained at every one (normal setting) and their rows "
                  "show mean ± standard deviation; every other run uses the first. The data, "
                  "the source network and its priors stay the same for every seed.")
flags.DEFINE_list("seed_methods", ["all"], "Methods trained at every seed of --seeds, or all.")
flags.DEFINE_boolean("dsc_source_row", True, "Also train BL-Individual with DSC's upper layers "
                     "copied from the source network (--dsc_upper_init=source), one more row.")
flags.DEFINE_string("records", "", "Directory of run records (JSON, no weights): each "
                    "evaluated run is recorded there, and a run with no finished directory "
                    "here is taken from its record when its configuration matches.")
flags.DEFINE_list("stage_donors", [], "Run directories, or directories of them (another "
                  "experiment's runs/), whose first stages a run takes where they were "
                  "trained exactly as it would train them (cmp_tf.training.stage_reuse; "
                  "the weights are the same); this experiment's own runs always are.")
flags.DEFINE_boolean("analysis", True, "Also analyse every normal run (modality probe, "
                     "unit alignment) and compare the methods in the report.")


def _seeds(values):
  try:
    return [int(v) for v in values]
  except ValueError:
    raise ValueError(f"--seeds: expected integers, got {','.join(values)}") from None


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  seed_methods = (None if FLAGS.seed_methods == ["all"]
                  else reproduce.parse_methods(FLAGS.seed_methods))
  results = reproduce.reproduce(
      FLAGS.out, methods=FLAGS.methods, zero_shot=FLAGS.zero_shot,
      data_dir=FLAGS.data_dir or None, num_queries=FLAGS.num_queries, seed=FLAGS.seed,
      train_flagfiles=FLAGS.train_flagfiles, fixed_budget=FLAGS.fixed_budget,
      seeds=_seeds(FLAGS.seeds), seed_methods=seed_methods,
      dsc_source_row=FLAGS.dsc_source_row, records_dir=FLAGS.records or None,
      donors=FLAGS.stage_donors,
      analysis=FLAGS.analysis)
  print(f"report written to {os.path.join(results['out_dir'], reproduce.REPORT_MD)}; its "
        f"page: {os.path.join(results['out_dir'], page.PAGE_NAME)}", flush=True)
  return 0 if results["complete"] else 1


if __name__ == "__main__":
  cli.run("cmp_tf.reproduce", main)
