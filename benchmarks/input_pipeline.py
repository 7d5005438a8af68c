"""The training input stream alone against what a training step consumes.

  python -m benchmarks.input_pipeline [--data_dir=DIR] [--batch_size=32] [--variant=alexnet_small]

On the dataset of configs/c.flags (default: the one cmp_tf.train builds in the cache),
with its settings (all five modalities, 32 per modality, MirroredStrategy), times in
interleaved rounds:
  - stream: the distributed joint training dataset of `cmp_tf.data.input_pipeline`
    exactly as the trainer reads it (decoded once per process, kept in memory);
  - decode stream: the same with no in-memory copy (every PNG decoded every epoch,
    what a dataset too large for the memory budget gets), timed over two whole epochs
    of the largest modality, creation included;
  - train (real input): the trainer's step of method C's two stages fed by the stream;
  - train (fixed batch): the same steps on one repeated batch (input costs nothing).
Also the one-time cost of decoding the training set into memory. Target: the stream
sustains at least 3x the examples/s the training step consumes.
"""

import dataclasses
import os
import sys
import time

from absl import app, flags

from benchmarks import common, harness
from cmp_tf import paths

FLAGS = flags.FLAGS
TARGET_RATIO = 3.0
STAGES = ("tune", "free_statreg")  # method C's stages (configs/c.flags)


def define_flags():
  flags.DEFINE_string("data_dir", str(paths.DEFAULT_CACHE_DIR / "data" / "data_default"),
                      "Dataset directory (default: where cmp_tf.train builds configs/"
                      "data_default.flags).")
  flags.DEFINE_list("modalities", ["nat", "clp", "spt", "ldr", "dsc"], "Modalities.")
  flags.DEFINE_integer("batch_size", 32, "Examples per modality per step (configs/c.flags).")
  flags.DEFINE_string("variant", "alexnet_small", "Image variant of the training step.")
  flags.DEFINE_integer("steps", 20, "Batches (or training steps) per timed round.")
  flags.DEFINE_integer("rounds", 3, "Interleaved rounds; the best is reported.")
  flags.DEFINE_string("out", "", "Results JSON; empty: benchmarks/results/input_pipeline.json.")


def _distributed_stream(strategy, data_dir, modalities, batch_size, image_size, seed,
                        cache_budget_bytes):
  from cmp_tf.data import input_pipeline

  def dataset_fn(context):
    return input_pipeline.joint_dataset(
        data_dir, modalities, batch_size=batch_size, image_size=image_size, seed=seed,
        input_context=context, cache_budget_bytes=cache_budget_bytes)

  return strategy.distribute_datasets_from_function(dataset_fn)


def _decode_every_epoch(strategy, data_dir, modalities, batch_size, image_size, epochs):
  """The stream without the in-memory copy, over whole epochs of the largest modality.

  Its shuffle buffer holds a whole epoch, so it decodes an epoch before the first batch
  and then none until the next epoch: only whole epochs, creation included, give its rate.
  """
  from cmp_tf.data import input_pipeline
  largest = max(input_pipeline.count(data_dir, m, "train") for m in modalities)
  batches = max(1, epochs * -(-largest // batch_size))
  per_batch = batch_size * strategy.num_replicas_in_sync * len(modalities)

  def read():
    iterator = iter(_distributed_stream(strategy, data_dir, modalities, batch_size,
                                        image_size, seed=1, cache_budget_bytes=0))
    for _ in range(batches):
      next(iterator)

  wall, cpu = common.time_once(read)
  return {"epochs": epochs, "batches": batches, "seconds": wall,
          "examples_per_s": batches * per_batch / wall, "ms_per_batch": wall / batches * 1e3,
          "cpu_ms_per_batch": cpu / batches * 1e3}


def _reader(iterator, steps):
  def read():
    for _ in range(steps):
      next(iterator)
  return read


def run_benchmark(*, data_dir, modalities, batch_size, variant, steps, rounds, stages=STAGES,
                  log=print):
  """Returns the results dict (examples/s of each stream and step, and the ratio);
  `stages`: which of method C's stages to train."""
  from cmp_tf.data import input_pipeline
  from cmp_tf.data import manifest as manifest_lib
  from cmp_tf.training import strategy as strategy_lib

  manifest = manifest_lib.read_manifest(data_dir)
  strategy = strategy_lib.make_strategy("mirrored")
  image_size = manifest["image_size"]
  size = harness.Size(variant=variant, image_size=image_size,
                      num_classes=len(manifest["categories"]), batch_size=batch_size,
                      gmm_components=100, source_batch_size=2 * batch_size,
                      text_dim=manifest["vector_dim"])
  examples_per_batch = batch_size * strategy.num_replicas_in_sync * len(modalities)

  input_pipeline.clear_memory()
  start = time.perf_counter()
  stream = iter(_distributed_stream(strategy, data_dir, modalities, batch_size, image_size,
                                    seed=0, cache_budget_bytes=input_pipeline.
                                    DEFAULT_CACHE_BUDGET_BYTES))
  next(stream)
  cold_s = time.perf_counter() - start
  train_examples = sum(input_pipeline.count(data_dir, m, "train") for m in modalities)
  log(f"decoded {train_examples} training examples into memory in {cold_s:.1f} s "
      f"(once per process)", flush=True)

  # The stream reads more batches per round, so that the batches its prefetch buffer
  # filled while other rounds ran weigh little.
  reads = 5 * steps
  functions = {"stream": _reader(stream, reads)}
  stage_steps = {}
  for name, stage in harness.method_stages("c", modalities):
    if name not in stages:
      continue
    feed = iter(_distributed_stream(strategy, data_dir, modalities, batch_size, image_size,
                                    seed=2, cache_budget_bytes=input_pipeline.
                                    DEFAULT_CACHE_BUDGET_BYTES))
    for label, iterator in ((f"train {name} (real input)", feed),
                            (f"train {name} (fixed batch)", None)):
      step = harness.build_stage_step(label, stage, size, strategy, input_iterator=iterator)
      step.run()
      step.run()
      stage_steps[label] = step
      functions[label] = harness.run_steps(step, steps)
  timings = common.interleaved(functions, rounds, per={
      name: reads if name == "stream" else steps for name in functions})
  rates = {name: examples_per_batch / t.summary()["best"] for name, t in timings.items()}
  decode = _decode_every_epoch(strategy, data_dir, modalities, batch_size, image_size,
                               epochs=2)
  rates["decode_stream"] = decode["examples_per_s"]
  # The most demanding consumer: the fastest stage fed by the stream.
  consumed = max(rate for name, rate in rates.items() if name.endswith("(real input)"))
  results = {
      "data_dir": os.path.abspath(data_dir), "modalities": list(modalities),
      "batch_size": batch_size, "examples_per_batch": examples_per_batch,
      "size": dataclasses.asdict(size), "cold_decode_s": cold_s,
      "train_examples_decoded": train_examples,
      "examples_per_s": rates,
      "ms_per_batch": {**{name: t.summary()["best"] * 1e3 for name, t in timings.items()},
                       "decode_stream": decode["ms_per_batch"]},
      "cpu_ms_per_batch": {**{name: t.summary()["cpu_best"] * 1e3
                              for name, t in timings.items()},
                           "decode_stream": decode["cpu_ms_per_batch"]},
      "decode_stream": decode,
      "training_consumes_examples_per_s": consumed,
      "stream_over_training": rates["stream"] / consumed,
      "decode_stream_over_training": rates["decode_stream"] / consumed,
      "target_ratio": TARGET_RATIO, "load_average": common.load_average()}
  return results


def format_results(r):
  lines = [f"{r['examples_per_batch']} examples per batch ({len(r['modalities'])} modalities x "
           f"{r['batch_size']}), {r['data_dir']}",
           f"one-time decode of {r['train_examples_decoded']} training examples: "
           f"{r['cold_decode_s']:.1f} s"]
  for name, rate in r["examples_per_s"].items():
    lines.append(f"  {name:40s} {rate:9.0f} examples/s  ({r['ms_per_batch'][name]:7.1f} ms "
                 f"per batch, {r['cpu_ms_per_batch'][name]:7.1f} ms CPU)")
  verdict = "met" if r["stream_over_training"] >= r["target_ratio"] else "MISSED"
  lines.append(f"stream / training: {r['stream_over_training']:.1f}x (target >= "
               f"{r['target_ratio']:g}x: {verdict}); decoding every epoch instead: "
               f"{r['decode_stream_over_training']:.1f}x")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not os.path.isfile(os.path.join(FLAGS.data_dir, "manifest.json")):
    raise app.UsageError(
        f"--data_dir: no dataset at {FLAGS.data_dir}; build it with python -m "
        f"cmp_tf.build_data --flagfile=configs/data_default.flags --data_dir={FLAGS.data_dir}")
  if FLAGS.batch_size < 1 or FLAGS.steps < 1 or FLAGS.rounds < 1:
    raise app.UsageError("--batch_size, --steps and --rounds must be >= 1")
  common.quiet_tensorflow()
  print(f"load average {common.load_average()}", flush=True)
  results = run_benchmark(data_dir=FLAGS.data_dir, modalities=FLAGS.modalities,
                          batch_size=FLAGS.batch_size, variant=FLAGS.variant,
                          steps=FLAGS.steps, rounds=FLAGS.rounds)
  print(format_results(results), flush=True)
  common.write_results(FLAGS.out or common.default_out("input_pipeline"), "input_pipeline",
                       results, sys.argv)


if __name__ == "__main__":
  define_flags()
  app.run(main)
