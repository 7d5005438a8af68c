"""Exports a finished run as one SavedModel per modality, laid out for TF Serving.

  python -m cmp_tf.export --run_dir=DIR [--version=N] [--overwrite] [--benchmark]

Writes DIR/export/<modality>/<version>/ and TF Serving model config files; see
`cmp_tf.serving.export` for the layout and `cmp_tf.serving.signatures` for the
signatures. Without --version the newest version is reused when it holds the same
weights, otherwise the next number is written.
"""

import os
import sys

from absl import flags, logging

from cmp_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Run directory of a finished training run.")
flags.DEFINE_integer("version", None, "Version number to write (default: reuse the newest "
                     "if it holds the same weights, else the next number).")
flags.DEFINE_boolean("overwrite", False, "Replace an existing --version.")
flags.DEFINE_string("data_dir", "", "The run's dataset (default: the one in run.json).")
flags.DEFINE_boolean("benchmark", False, "Then time every signature on a batch of "
                     "--benchmark_batch on CPU and print the latencies.")
flags.DEFINE_integer("benchmark_batch", 32, "Batch size of --benchmark.")
flags.mark_flag_as_required("run_dir")


def main(argv):
  from cmp_tf.serving import export

  logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    print(f"cmp_tf.export: error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
    return 2
  if FLAGS.benchmark_batch < 1:
    print("cmp_tf.export: error: --benchmark_batch must be >= 1", file=sys.stderr)
    return 2
  summary = export.export_run(FLAGS.run_dir, FLAGS.version, data_dir=FLAGS.data_dir or None,
                              overwrite=FLAGS.overwrite)
  print(f"export: version {summary['version']} of {', '.join(summary['modalities'])}; "
        f"TF Serving config: {os.path.join(summary['export_dir'], export.MODELS_CONFIG)}")
  if FLAGS.benchmark:
    from cmp_tf.serving import benchmark
    results = benchmark.benchmark_export(summary["export_dir"], summary["version"],
                                         batch_size=FLAGS.benchmark_batch)
    print(benchmark.format_results(results, FLAGS.benchmark_batch))
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.export", main)
