"""Builds a dataset directory: sharded TFRecords per modality and split, then manifest.json.

  python -m cmp_tf.build_data --flagfile=configs/data_default.flags --data_dir=DIR [--seed=S]
  python -m cmp_tf.build_data --flagfile=configs/data_tiny.flags --data_dir=DIR
  python -m cmp_tf.build_data --source=cmplaces --cmplaces_root=ROOT --data_dir=DIR [--skip_bad]
  python -m cmp_tf.build_data --source=folders --folders_root=ROOT --data_dir=DIR
      [--workers=N | --beam_options='--runner=FlinkRunner --flink_master=HOST:8081']

Everything is checked first (flags, paths, category names, every CMPlaces label
file and the files it lists); only then are records rendered or decoded. A failed
build leaves nothing behind; the same seed gives byte-identical TFRecords, whatever
the number of workers (cmp_tf.data.build). Every flag but --data_dir is a field of
cmp_tf.data.build_config.BuildConfig.
"""

import sys

from absl import app, flags

from cmp_tf import cli
from cmp_tf.data import build
from cmp_tf.data.build_config import BuildConfig

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Output dataset directory.")
cli.define_flags(BuildConfig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  config = cli.config_from_flags(BuildConfig).validated()
  build.build_dataset(FLAGS.data_dir, config, argv=sys.argv)
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.build_data", main)
