"""The learning-rate sweep of the methods that start from the source network.

  python -m cmp_tf.sweep --out=DIR [--learning_rates=0.001,0.01,0.003] [--methods=all]
      [--data_dir=DATA] [--records=DIR]

Each method is trained at each rate under the base flagfile's convergence rule and scored
by its dev accuracy; DIR/sweep.md gives every score and each method's rate
(`cmp_tf.experiments.lr_sweep`). Resumable: rerun the same command; with --records=DIR
(committed), on another machine too (`cmp_tf.experiments.records`).
"""

import os

from absl import app, flags

from cmp_tf import cli
from cmp_tf.experiments import lr_sweep
from cmp_tf.training import recipes

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Sweep directory.", required=True)
flags.DEFINE_list("learning_rates", [f"{r:g}" for r in lr_sweep.DEFAULT_RATES],
                  "Candidate rates, trained in this order.")
flags.DEFINE_list("methods", ["all"], "Methods, or the groups all, paper, alignment: "
                  + ", ".join(recipes.METHOD_NAMES))
flags.DEFINE_string("data_dir", "", "Dataset; default: the trainer's default dataset.")
flags.DEFINE_list("stage_donors", [], "Run directories, or directories of them (another "
                  "experiment's runs/), whose first stages a run takes where they were "
                  "trained exactly as it would train them (cmp_tf.training.stage_reuse; "
                  "the weights are the same); this experiment's own runs always are.")
flags.DEFINE_string("records", "", "Directory of run records (JSON, no weights): each "
                    "finished or diverged run is recorded there, and a run with no finished "
                    "directory here is taken from its record when its configuration matches.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    rates = [float(r) for r in FLAGS.learning_rates]
  except ValueError:
    raise ValueError(f"--learning_rates: not numbers: {FLAGS.learning_rates}") from None
  result = lr_sweep.sweep(FLAGS.out, methods=FLAGS.methods, rates=rates,
                          data_dir=FLAGS.data_dir or None, records_dir=FLAGS.records or None,
                          donors=FLAGS.stage_donors)
  print(f"sweep written to {os.path.join(FLAGS.out, lr_sweep.SWEEP_MD)}; chosen: "
        + ", ".join(f"{m} {r:g}" if r else f"{m} -" for m, r in result["chosen"].items()),
        flush=True)
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.sweep", main)
