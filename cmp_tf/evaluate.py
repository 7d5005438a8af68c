"""Evaluates a trained run, or the source network, into the paper's Tables 1-5.

  python -m cmp_tf.evaluate --run_dir=DIR [--layers=pool5,fc6,fc7] [--num_queries=N]
      [--seed=0] [--subspace_alignment]
  python -m cmp_tf.evaluate --source_dir=DIR [--data_dir=DATA] [--out_dir=OUT]

A run gets Tables 1-3 (and 4-5 when trained zero-shot) in DIR/eval: tables.md,
results.json and the features used. --source_dir evaluates the cached source network
(the "BL-PlacesNet" and "Subsp. Align. + PlacesNet" rows). See `cmp_tf.eval.evaluation`.
"""

import sys

from absl import app, flags

from cmp_tf import cli
from cmp_tf.eval import evaluation
from cmp_tf.layer_names import FEATURE_LAYERS

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", "", "A finished run of cmp_tf.train to evaluate.")
flags.DEFINE_string("source_dir", "", "Evaluate the cached source network instead: its "
                    "directory, or a run directory whose run.json names it.")
flags.DEFINE_string("data_dir", "", "Dataset; default: the one the run was trained on.")
flags.DEFINE_string("out_dir", "", "Output of --source_dir (default <source>/eval); a run "
                    "always writes to <run_dir>/eval.")
flags.DEFINE_list("layers", list(FEATURE_LAYERS), "Layers of Table 3.")
flags.DEFINE_integer("num_queries", None, "Random queries per pair (the paper: 1000); "
                     "default: every validation example is a query.")
flags.DEFINE_integer("seed", 0, "Seed of the random queries and of subspace alignment.")
flags.DEFINE_boolean("subspace_alignment", False, "Also the subspace-alignment rows on "
                     "this run's fc7 (for BL-Individual: Subsp. Align. + PlacesNet Finetune).")
flags.DEFINE_integer("sa_components", evaluation.SA_COMPONENTS,
                     "Subspace size d of subspace alignment.")
flags.DEFINE_integer("batch_size", 128, "Examples per forward pass.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if bool(FLAGS.run_dir) == bool(FLAGS.source_dir):
    print("cmp_tf.evaluate: error: give exactly one of --run_dir and --source_dir",
          file=sys.stderr)
    return 2
  if FLAGS.run_dir:
    if FLAGS.out_dir:
      raise ValueError("--out_dir: a run is always evaluated into <run_dir>/eval")
    evaluation.evaluate_run(FLAGS.run_dir, layers=FLAGS.layers, num_queries=FLAGS.num_queries,
                            seed=FLAGS.seed, subspace_alignment=FLAGS.subspace_alignment,
                            sa_components=FLAGS.sa_components,
                            data_dir=FLAGS.data_dir or None, batch_size=FLAGS.batch_size)
  else:
    evaluation.evaluate_source(FLAGS.source_dir, data_dir=FLAGS.data_dir or None,
                               out_dir=FLAGS.out_dir or None, num_queries=FLAGS.num_queries,
                               seed=FLAGS.seed, sa_components=FLAGS.sa_components,
                               batch_size=FLAGS.batch_size)
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.evaluate", main)
