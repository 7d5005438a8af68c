"""The source network ("Places-CNN" stand-in) and the activation priors fitted on it.

The source is a NAT-only network (shared upper) trained from scratch on the NAT
training data, or loaded from a local weights file. It is cached under
`<cache_dir>/source/<key>/`, where the key is a digest of the dataset manifest and
the source settings (or of the weights file), and every method reuses it. The
priors (Gaussian, GMM; pool5/fc6/fc7) are fitted on its activations over NAT
training examples and cached as .npz files beside it. Every cache file is written
atomically, and a file lock keeps two processes from training one source at once.
"""

import contextlib
import dataclasses
import hashlib
import inspect
import json
import math
import os
import time

import numpy as np
import tensorflow as tf

from cmp_tf import cpu, fileio, finished_run, priors
from cmp_tf import modalities as mod_lib
from cmp_tf.data import input_pipeline
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.fileio import file_digest
from cmp_tf.models import cross_modal
from cmp_tf.models import variants as variants_lib
from cmp_tf.training import checkpoints, recipes, stages, trainer
from cmp_tf.training import strategy as strategy_lib

# Bumped whenever the same settings would train other weights (initialisation, data order),
# so that a source network cached by an earlier version is never reused for them.
TRAJECTORY_VERSION = 2  # 2: seeded per-layer initializers, one input stream per stage
WEIGHTS_NAME = "source.weights.h5"
INFO_NAME = "source.json"
FIT_BATCH = 256


@dataclasses.dataclass(frozen=True)
class SourceSettings:
  """Everything the source network's weights depend on."""
  image_variant: str
  image_size: int
  dropout: float
  steps: int
  learning_rate: float
  momentum: float
  weight_decay: float
  batch_size: int
  seed: int
  # Replicas in sync: the global batch is batch_size x replicas, and sums over replicas
  # round differently. (The checkpoint interval does not change the weights.)
  replicas: int = 1
  weights_file: str = ""  # a local weights file replaces training

  def key(self, fingerprint):
    """Digest of the data, the settings and the variant's definition (not only its name),
    so a changed architecture never meets weights cached for another."""
    settings = dataclasses.asdict(self)
    if self.weights_file:
      # Only the architecture and the file's content matter for a loaded source.
      settings = {"image_variant": self.image_variant, "image_size": self.image_size,
                  "weights_digest": file_digest(self.weights_file)}
    architecture = dataclasses.asdict(variants_lib.get_variant(self.image_variant))
    text = json.dumps({"manifest": fingerprint, "architecture": architecture, **settings,
                       **({} if self.weights_file else {"trajectory": TRAJECTORY_VERSION})},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_lock(path, enabled=True):
  """An exclusive lock on a cache entry while it is filled (another process waits);
  disabled in multi-worker runs, whose workers must all train together."""
  if not enabled:
    return contextlib.nullcontext()
  return fileio.exclusive_lock(path, what=f"the cache entry {os.path.dirname(path)}",
                               wait=True)


def source_spec(manifest, settings):
  return stages.model_spec(manifest=manifest, modalities=(mod_lib.NAT,),
                           image_variant=settings.image_variant,
                           image_size=settings.image_size, dropout=settings.dropout,
                           share_upper=True)


class SourceNetwork:
  """The cached source network of one dataset and setting: its model, info and priors."""

  def __init__(self, directory, model, info):
    self.directory = directory
    self.model = model
    self.info = info

  def prior_path(self, kind, layer, fit_settings):
    text = json.dumps(fit_settings, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return os.path.join(self.directory, "priors", f"{kind}-{layer}-{digest}.npz")


def ensure_source(*, data_dir, manifest, settings, cache_dir, strategy, loop):
  """The source network, trained (or loaded) and cached if it is not cached yet."""
  fingerprint = manifest_lib.fingerprint(manifest)
  key = settings.key(fingerprint)
  directory = os.path.join(os.fspath(cache_dir), "source", key)
  spec = source_spec(manifest, settings)
  weights = os.path.join(directory, WEIGHTS_NAME)
  with file_lock(os.path.join(directory, ".lock"),
                 enabled=not strategy_lib.is_multiworker(strategy)):
    if not os.path.exists(weights):
      if settings.weights_file:
        model = stages.build_model(spec, strategy, settings.seed)
        finished_run.load_weights(model, settings.weights_file)
        info = {"origin": "weights_file", "weights_file": os.path.abspath(settings.weights_file)}
      else:
        model, info = _train_source(spec, settings, data_dir=data_dir, directory=directory,
                                    strategy=strategy, loop=loop)
      info.update(stages.validation_accuracy(model, data_dir, (mod_lib.NAT,),
                                             image_size=settings.image_size))
      info.update(key=key, manifest_fingerprint=fingerprint,
                  settings=dataclasses.asdict(settings), spec=spec.to_config())
      # The weights file marks a finished source: it is written last.
      fileio.write_json_atomic(os.path.join(directory, INFO_NAME), info)
      checkpoints.save_weights_atomic(model, weights)
      print(f"source network cached in {directory}: NAT val accuracy "
            f"{info['val_accuracy'][mod_lib.NAT]:.3f}", flush=True)
    else:
      model = stages.build_model(spec, strategy, settings.seed)
      finished_run.load_weights(model, weights)
      info = fileio.read_json(os.path.join(directory, INFO_NAME), {})
      print(f"source network from cache {directory}", flush=True)
  return SourceNetwork(directory, model, info)


def _train_source(spec, settings, *, data_dir, directory, strategy, loop):
  stage = recipes.source_stage(steps=settings.steps, learning_rate=settings.learning_rate,
                               momentum=settings.momentum, weight_decay=settings.weight_decay)
  model = stages.build_model(spec, strategy, settings.seed)
  writer = tf.summary.create_file_writer(os.path.join(directory, "logs"))
  job = stages.stage_job(
      stage, model, index=0, per_replica_batch=settings.batch_size,
      make_dataset=stages.dataset_factory(
          strategy, data_dir=data_dir, modalities=stage.modalities,
          per_replica_batch=settings.batch_size, image_size=settings.image_size,
          exclude_categories=(), seed=settings.seed, stage_key="source"),
      checkpoint_dir=strategy_lib.worker_path(os.path.join(directory, "ckpt")), loop=loop,
      summary_writer=writer)
  result = trainer.run_stage(job, strategy)
  writer.close()
  return model, {"origin": "trained", "training": result, "runtime": cpu.describe()}


def _fit_defaults(function):
  """The fitting function's keyword defaults (floors, shrinkage ...): part of a prior's key."""
  return {name: p.default for name, p in inspect.signature(function).parameters.items()
          if p.default is not inspect.Parameter.empty}


def fit_settings(kind, *, num_samples, seed, gmm_components=None, gmm_max_iter=None):
  """The options a cached prior depends on (besides the source network)."""
  settings = {"kind": kind, "num_samples": int(num_samples), "seed": int(seed)}
  if kind == recipes.GMM:
    settings.update(_fit_defaults(priors.fit_gmm), num_components=int(gmm_components),
                    max_iter=int(gmm_max_iter), seed=int(seed))
  else:
    settings.update(_fit_defaults(priors.fit_gaussian))
  return settings


def source_activations(source, data_dir, *, layers, num_samples, image_size, seed):
  """{layer: float32 [N, D]} of the source over `num_samples` shuffled NAT training examples."""
  encoder = cross_modal.feature_model(source.model, mod_lib.NAT)

  @tf.function
  def features_of(x):
    out = encoder(x, training=False)
    return {layer: out[layer] for layer in layers}

  ds = input_pipeline.modality_dataset(data_dir, mod_lib.NAT, "train", batch_size=FIT_BATCH,
                                       training=True, image_size=image_size, seed=seed)
  batches = {layer: [] for layer in layers}
  for x, _ in ds.take(math.ceil(num_samples / FIT_BATCH)):
    for layer, value in features_of(x).items():
      batches[layer].append(value.numpy())
  return {layer: np.concatenate(v)[:num_samples].astype(np.float32)
          for layer, v in batches.items()}


def ensure_priors(source, data_dir, uses, *, image_size, num_samples, seed, gmm_components,
                  gmm_max_iter):
  """{(kind, layer): PriorParams} for the PriorUses `uses`, fitted and cached if missing."""
  wanted = sorted({(u.kind, u.layer) for u in uses})
  result, todo = {}, []
  for kind, layer in wanted:
    opts = fit_settings(kind, num_samples=num_samples, seed=seed,
                        gmm_components=gmm_components, gmm_max_iter=gmm_max_iter)
    path = source.prior_path(kind, layer, opts)
    if os.path.exists(path):
      result[(kind, layer)] = priors.load_prior(path)
    else:
      todo.append((kind, layer, opts, path))
  if not todo:
    return result
  with file_lock(os.path.join(source.directory, ".priors.lock")):
    for kind, layer, _, path in todo:
      if os.path.exists(path):  # fitted by another process meanwhile
        result[(kind, layer)] = priors.load_prior(path)
    todo = [t for t in todo if (t[0], t[1]) not in result]
    if not todo:
      return result
    layers = sorted({layer for _, layer, _, _ in todo})
    started = time.perf_counter()
    activations = source_activations(source, data_dir, layers=layers,
                                     num_samples=num_samples, image_size=image_size,
                                     seed=seed)
    print(f"source activations on {num_samples} NAT examples: "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    for kind, layer, opts, path in todo:
      started = time.perf_counter()
      if kind == recipes.GAUSSIAN:
        params = priors.fit_gaussian(activations[layer], layer=layer)
      else:
        params = priors.fit_gmm(activations[layer], layer=layer,
                                num_components=opts["num_components"], seed=seed,
                                max_iter=opts["max_iter"])
      priors.save_prior(path, params)
      print(f"fitted {kind} prior on {layer} ({activations[layer].shape[1]} dims): "
            f"{time.perf_counter() - started:.1f} s -> {path}", flush=True)
      result[(kind, layer)] = params
  return result
