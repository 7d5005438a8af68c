"""Training-step throughput of one image branch with the shared upper part.

  python -m benchmarks.model --variant=alexnet_small --batch_size=64 \
      --priors=none,gmm --jit=false,true

Times forward + backward + SGD update of a NAT-only network on random inputs, with
or without K-component GMM priors (random values) on pool5, fc6 and fc7, as a
`tf.function` with and without XLA. Reports wall time and process CPU time per
step: on a shared machine the CPU time is the steadier number.
"""

import time

import numpy as np
from absl import app, flags

from cmp_tf.layer_names import FEATURE_LAYERS

_VARIANT = flags.DEFINE_string("variant", "alexnet_small", "Image variant.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Examples per step.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps per configuration.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed rounds; the best round is reported.")
_PRIORS = flags.DEFINE_list("priors", ["none", "gmm"], "none, gmm and/or gaussian.")
_JIT = flags.DEFINE_list("jit", ["false", "true"], "jit_compile settings to time.")
_COMPONENTS = flags.DEFINE_integer("num_components", 100, "K of the GMM priors.")
_CLASSES = flags.DEFINE_integer("num_classes", 30, "Classifier width.")


def random_priors(spec, kind, num_components, rng):
  from cmp_tf.priors import PriorParams
  priors = {}
  for layer in FEATURE_LAYERS:
    dim = spec.layer_dim(layer)
    if kind == "gmm":
      arrays = {"logits": rng.standard_normal(num_components),
                "means": rng.random((num_components, dim)),
                "variances": rng.uniform(0.5, 1.5, (num_components, dim))}
    else:
      arrays = {"mean": rng.random(dim), "scale_tril": np.eye(dim)}
    priors[layer] = (PriorParams(kind, layer, arrays), 1e-3)
  return priors


def time_config(variant, kind, jit, args):
  import keras
  import tensorflow as tf

  from cmp_tf.models.cross_modal import build_cross_modal_model
  from cmp_tf.models.flops import count_flops
  from cmp_tf.models.spec import CrossModalSpec
  rng = np.random.default_rng(0)
  spec = CrossModalSpec(modalities=("nat",), num_classes=args["classes"], image_variant=variant)
  if kind != "none":
    spec = CrossModalSpec(modalities=("nat",), num_classes=args["classes"],
                          image_variant=variant,
                          priors=random_priors(spec, kind, args["components"], rng))
  model = build_cross_modal_model(spec)
  optimizer = keras.optimizers.SGD(1e-3, momentum=0.9)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  batch = args["batch"]
  x = {"nat": tf.random.uniform((batch, spec.image_size, spec.image_size, 3))}
  y = tf.random.uniform((batch,), 0, spec.num_classes, tf.int32)

  @tf.function(jit_compile=jit)
  def step(x, y):
    with tf.GradientTape() as tape:
      loss = loss_fn(y, model(x, training=True)["nat"])
      if model.losses:
        loss += tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  start = time.perf_counter()
  step(x, y).numpy()
  compile_s = time.perf_counter() - start
  best_wall = best_cpu = float("inf")
  for _ in range(args["repeats"]):
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(args["steps"]):
      loss = step(x, y)
    loss.numpy()
    best_wall = min(best_wall, (time.perf_counter() - wall) / args["steps"])
    best_cpu = min(best_cpu, (time.process_time() - cpu) / args["steps"])
  return {"variant": variant, "priors": kind, "jit": jit, "compile_s": compile_s,
          "wall_ms": best_wall * 1e3, "cpu_ms": best_cpu * 1e3,
          "examples_per_s": batch / best_wall, "flops": count_flops(spec, "nat"),
          "params": model.count_params()}


def main(argv):
  del argv
  args = {"batch": _BATCH.value, "steps": _STEPS.value, "repeats": _REPEATS.value,
          "components": _COMPONENTS.value, "classes": _CLASSES.value}
  for kind in _PRIORS.value:
    if kind not in ("none", "gmm", "gaussian"):
      raise app.UsageError(f"--priors: unknown prior {kind!r}; use none, gmm or gaussian")
  jits = []
  for value in _JIT.value:
    if value.lower() not in ("true", "false"):
      raise app.UsageError(f"--jit: expected true or false, got {value!r}")
    jits.append(value.lower() == "true")
  print(f"batch {args['batch']}, best of {args['repeats']} x {args['steps']} steps")
  for kind in _PRIORS.value:
    for jit in jits:
      r = time_config(_VARIANT.value, kind, jit, args)
      print(f"{r['variant']:14s} priors={r['priors']:8s} jit={str(r['jit']):5s} "
            f"{r['wall_ms']:7.1f} ms/step wall ({r['examples_per_s']:6.0f} ex/s), "
            f"{r['cpu_ms']:7.1f} ms CPU, compile {r['compile_s']:5.1f} s, "
            f"{r['flops'] / 1e6:.1f} MFLOPs/example forward, {r['params']:,} params",
            flush=True)


if __name__ == "__main__":
  app.run(main)
