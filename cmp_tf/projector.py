"""The shared space in TensorBoard's Embedding Projector: validation examples of every modality.

  python -m cmp_tf.projector --run_dir=DIR [--per_modality=100] [--logdir=DIR/logs/projector]
  tensorboard --logdir DIR     # then the PROJECTOR tab; "Color by: modality" or "category"

Writes tensors.tsv, metadata.tsv, sprite.png and projector_config.pbtxt under the log
dir (`cmp_tf.serving.projector`).
"""

import os
import sys

from absl import flags, logging

from cmp_tf import cli
from cmp_tf import modalities as mod_lib
from cmp_tf.serving import embedders

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Run directory of a finished training run.")
flags.DEFINE_string("logdir", "", "Where to write (default: RUN_DIR/logs/projector).")
flags.DEFINE_integer("per_modality", 100, "Validation examples per modality.")
flags.DEFINE_string("split", "val", "Dataset split to show.")
flags.DEFINE_string("data_dir", "", "The run's dataset (default: the one in run.json).")
flags.DEFINE_enum("backend", embedders.KERAS, list(embedders.BACKENDS),
                  "Embed with the Keras model, the exported SavedModels or auto.")
flags.mark_flag_as_required("run_dir")


def main(argv):
  from cmp_tf.serving import projector

  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    print(f"cmp_tf.projector: error: unexpected arguments: {' '.join(argv[1:])}",
          file=sys.stderr)
    return 2
  if FLAGS.split not in mod_lib.SPLITS:
    print(f"cmp_tf.projector: error: --split must be one of {mod_lib.SPLITS}", file=sys.stderr)
    return 2
  out = projector.write_run_projector(
      FLAGS.run_dir, FLAGS.logdir or None, per_modality=FLAGS.per_modality,
      split=FLAGS.split, data_dir=FLAGS.data_dir or None, backend=FLAGS.backend)
  log_dir = os.path.dirname(out["config"])
  print(f"projector data written to {log_dir}\n  open it with: tensorboard --logdir "
        f"{FLAGS.run_dir} (PROJECTOR tab; color by modality or category)")
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.projector", main)
