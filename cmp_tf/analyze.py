"""Analyses what a trained run's shared representation learned (paper sections 5.3-5.5).

  python -m cmp_tf.analyze --run_dir=DIR [--out=DIR/analysis] [--max_per_modality=1000]
      [--parts=invariance,alignment,units,inversion] [--seed=0]

Parts: invariance (t-SNE and a modality probe), alignment (units that detect the same
object across modalities), units (top-activating examples), inversion (pool5 -> image).
Output in --out, with index.html showing everything; see `cmp_tf.analysis.run_analysis`.
"""

import sys

from absl import app, flags

from cmp_tf import cli
from cmp_tf.analysis import run_analysis

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", "", "A finished run of cmp_tf.train to analyse.")
flags.DEFINE_string("out", "", "Output directory (default <run_dir>/analysis).")
flags.DEFINE_string("data_dir", "", "Dataset; default: the one the run was trained on.")
flags.DEFINE_integer("max_per_modality", run_analysis.DEFAULT_MAX_PER_MODALITY,
                     "At most this many validation examples per modality (a random "
                     "subset); 0: all.")
flags.DEFINE_list("parts", list(run_analysis.PARTS), "Which analyses to run.")
flags.DEFINE_integer("seed", 0, "Seed of the subsets, t-SNE, probe folds and unit choice.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.run_dir:
    print("cmp_tf.analyze: error: --run_dir: give the run directory to analyse",
          file=sys.stderr)
    return 2
  run_analysis.analyze_run(FLAGS.run_dir, out_dir=FLAGS.out or None,
                           max_per_modality=FLAGS.max_per_modality or None,
                           parts=FLAGS.parts, seed=FLAGS.seed,
                           data_dir=FLAGS.data_dir or None)
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.analyze", main)
