"""The grid of every method's extra hyperparameter (the priors' lambda of B and C, lambda of
CORAL, MMD, DANN and CDANN, the contrastive temperature), scored on the dev split.

  python -m cmp_tf.grid --out=DIR [--methods=b_gaussian,b_gmm,c,alignment] [--records=DIR]
      [--data_dir=DATA]
  python -m cmp_tf.grid --noise_of=RUN_DIR,RUN_DIR,...   # how noisy the score is

Each method is trained at three values a factor of 10 apart around its reference (its source
paper's) value, at its own learning rate, and scored by the dev split's cross-modal mAP;
DIR/grid.md gives every score and each method's value to put in its flagfile (`cmp_tf.experiments.hparam_grid`). Resumable: rerun the same
command; with --records=DIR (committed), on another machine too. --noise_of prints, for
finished runs, each dev score's standard error over its queries and the paired standard error
of every difference: the noise that `hparam_grid.TIE_WITHIN` is set from.
"""

import os

from absl import app, flags

from cmp_tf import cli
from cmp_tf.experiments import hparam_grid

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Grid directory.")
flags.DEFINE_list("noise_of", [], "Finished run directories: instead of training, print each "
                  "one's dev score with its standard error over the dev queries, and every "
                  "two runs' difference with its paired standard error.")
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
  if FLAGS.noise_of:
    return _print_noise(FLAGS.noise_of)
  if not FLAGS.out:
    raise app.UsageError("--out: required (the grid's directory), unless --noise_of is given")
  result = hparam_grid.grid(FLAGS.out, methods=FLAGS.methods, data_dir=FLAGS.data_dir or None,
                            records_dir=FLAGS.records or None,
                            donors=FLAGS.stage_donors)
  print(f"grid written to {os.path.join(FLAGS.out, hparam_grid.GRID_MD)}; chosen: "
        + ", ".join(f"{m} {v:g}" if v is not None else f"{m} -"
                    for m, v in result["chosen"].items()), flush=True)
  return 0


def _print_noise(run_dirs):
  noise = hparam_grid.score_noise({os.path.basename(os.path.normpath(d)):
                                   hparam_grid.dev_query_scores(d) for d in run_dirs})
  print("dev cross-modal mAP of fc7 (percent): score ± its standard error over the queries")
  for name, run in noise["runs"].items():
    print(f"  {name}: {100 * run['score']:.2f} ± {100 * run['se']:.2f}")
  print("differences ± their paired standard error (the same queries)")
  for pair in noise["differences"]:
    print(f"  {' - '.join(pair['runs'])}: {100 * pair['difference']:+.2f} ± "
          f"{100 * pair['paired_se']:.2f}")
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.grid", main)
