"""The prior layer under MirroredStrategy on two logical CPUs.

Runs in a subprocess: logical devices must be configured before TensorFlow starts.
Two ways are checked: `model.fit` under the strategy, and a custom step whose
per-replica gradient function is XLA-compiled. (`compile(jit_compile=True)` with
`fit` under MirroredStrategy on logical CPUs fails inside TensorFlow with "Trying to
access resource ... located in device CPU:1 from device CPU:0", with or without
priors; see https://www.tensorflow.org/xla/known_issues.)
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from cmp_tf.models.cross_modal import build_cross_modal_model
    from cmp_tf.models.spec import CrossModalSpec
    from cmp_tf.priors import fit_gaussian, fit_gmm

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    kwargs = dict(modalities=("nat", "dsc"), num_classes=3, image_variant="alexnet_tiny",
                  text_dim=8)
    base = CrossModalSpec(**kwargs)
    priors = {"pool5": (fit_gmm(rng.random((100, base.pool5_size)), layer="pool5",
                                num_components=3), 0.01),
              "fc7": (fit_gaussian(rng.random((100, base.fc_units)), layer="fc7"), 0.01)}
    spec = CrossModalSpec(priors=priors, **kwargs)
    x = {"nat": rng.random((32, 32, 32, 3)).astype("float32"),
         "dsc": rng.standard_normal((32, 8)).astype("float32")}
    y = {"nat": rng.integers(0, 3, 32), "dsc": rng.integers(0, 3, 32)}
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report = {"replicas": strategy.num_replicas_in_sync}

    with strategy.scope():
      model = build_cross_modal_model(spec)
      model.compile(optimizer=keras.optimizers.SGD(1e-3),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(ds, steps_per_epoch=3, epochs=2, shuffle=False, verbose=0).history
    report["fit_loss"] = history["loss"]
    report["fit_cross_entropy"] = [a + b for a, b in zip(history["nat_loss"],
                                                         history["dsc_loss"])]

    with strategy.scope():
      model = build_cross_modal_model(spec)
      optimizer = keras.optimizers.SGD(1e-3)
      optimizer.build(model.trainable_variables)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                               reduction="sum")

    @tf.function(jit_compile=True)
    def gradients(x, y):
      with tf.GradientTape() as tape:
        out = model(x, training=True)
        ce = tf.add_n([cross_entropy(y[m], out[m]) for m in out]) / 8.0
        prior = tf.add_n(model.losses)
        loss = (ce + prior) / strategy.num_replicas_in_sync
      return ce, prior, tape.gradient(loss, model.trainable_variables)

    @tf.function
    def step(batch):
      def replica_step(x, y):
        ce, prior, grads = gradients(x, y)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return ce, prior
      ce, prior = strategy.run(replica_step, args=batch)
      return (strategy.reduce("MEAN", ce, axis=None), strategy.reduce("MEAN", prior, axis=None))

    batches = iter(strategy.experimental_distribute_dataset(ds.unbatch().batch(16)))
    report["xla_steps"] = [[float(v) for v in step(next(batches))] for _ in range(3)]
    print(json.dumps(report))
""")


@pytest.mark.slow
def test_prior_trains_under_mirrored_strategy():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["replicas"] == 2
  for total, cross_entropy in zip(report["fit_loss"], report["fit_cross_entropy"]):
    assert abs(total) < 1e30  # finite
    assert abs(total - cross_entropy) > 1e-3  # the priors' losses are in the total
  for cross_entropy, prior in report["xla_steps"]:
    assert abs(cross_entropy) < 1e30 and abs(prior) < 1e30 and prior != 0
