"""Difficulty report of a built dataset: how far a linear classifier on raw inputs gets,
per modality (cmp_tf.data.difficulty).

  python -m cmp_tf.report_data --data_dir=DIR [--modalities=nat,dsc] [--max_train=3000]
"""

from absl import app, flags

from cmp_tf import cli
from cmp_tf.data import difficulty

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "A built dataset directory.")
flags.DEFINE_list("modalities", [], "Modalities to report (default: all built).")
flags.DEFINE_integer("max_train", difficulty.DEFAULT_MAX_TRAIN, "Training examples per "
                     "modality, subsampled when there are more.")
flags.DEFINE_integer("seed", 0, "Seed of the subsample and the classifier.")
flags.DEFINE_boolean("write", True, "Also write DIR/difficulty.json.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.data_dir:
    raise ValueError("--data_dir: required")
  if FLAGS.max_train < 1:
    raise ValueError(f"--max_train: must be >= 1, got {FLAGS.max_train}")
  result = difficulty.difficulty_report(FLAGS.data_dir, modalities=FLAGS.modalities or None,
                                        max_train=FLAGS.max_train, seed=FLAGS.seed)
  print(difficulty.format_report(result))
  if FLAGS.write:
    difficulty.write_report(FLAGS.data_dir, result)
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.report_data", main)
