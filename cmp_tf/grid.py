"""The grid of every method's extra hyperparameter (the priors' lambda of B and C, lambda of
CORAL, MMD, DANN and CDANN, the contrastive temperature), scored on the dev split.

  python -m cmp_tf.grid --out=DIR [--methods=b_gaussian,b_gmm,c,alignment] [--records=DIR]
      [--data_dir=DATA]

Each method is trained at three values a factor of 10 apart around its flagfile's, at its own
learning rate, and scored by the dev split's cross-modal mAP; DIR/grid.md gives every score
and each method's value (`cmp_tf.experiments.hparam_grid`). Resumable: rerun the same
command; with --records=DIR (committed), on another machine too.
"""

import os

from absl import app, flags

from cmp_tf import cli
from cmp_tf.experiments import hparam_grid

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Grid directory.", required=True)
flags.DEFINE_list("methods", ["b_gaussian", "b_gmm", "c", "alignment"],
                  "Methods with an extra hyperparameter, or the groups all, paper, alignment: "
                  + ", ".join(hparam_grid.HYPERPARAMETERS))
flags.DEFINE_string("data_dir", "", "Dataset; default: the trainer's default dataset.")
flags.DEFINE_list("stage_donors", [], "Run directories, or directories of them (another "
                  "experiment's runs/), whose first stages a run takes where they were "
                  "trained exactly as it would train them (cmp_tf.training.stage_reuse; "
                  "the weights are the same); this experiment's own runs always are.")
flags.DEFINE_string("records", "", "Directory of run records (JSON, no weights): each scored "
                    "run is recorded there, and a run with no finished directory here is "
                    "taken from its record when its configuration matches.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  result = hparam_grid.grid(FLAGS.out, methods=FLAGS.methods, data_dir=FLAGS.data_dir or None,
                            records_dir=FLAGS.records or None,
                            donors=FLAGS.stage_donors)
  print(f"grid written to {os.path.join(FLAGS.out, hparam_grid.GRID_MD)}; chosen: "
        + ", ".join(f"{m} {v:g}" if v is not None else f"{m} -"
                    for m, v in result["chosen"].items()), flush=True)
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.grid", main)
