"""One training run from a TrainConfig: data, source network, priors, every stage of a recipe.

The run directory:
  flags.txt            the effective flags (usable as --flagfile to resume or repeat)
  run.json             method, recipe, data, per-stage results and validation accuracy
  logs/                TensorBoard summaries of every stage (global step on the x axis)
  ckpt/stage_<i>/      checkpoints of stage i (model, optimizer, step)
  stage_<i>.weights.h5 stage i's final weights (without prior layers)
  final.weights.h5     the trained model, without prior layers
  spec.json            CrossModalSpec of final.weights.h5 (models.spec.CrossModalSpec.from_config)
  .lock                held (flock) by the training that uses the directory
Running the same command again resumes: finished stages are loaded, the current
one continues from its newest checkpoint. `cmp_tf.finished_run` reads a finished run.
"""

import contextlib
import os
import time

import tensorflow as tf

from cmp_tf import cpu, fileio, finished_run
from cmp_tf import modalities as mod_lib
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.finished_run import FINAL_WEIGHTS, FLAGS_TXT, RUN_JSON, SPEC_JSON
from cmp_tf.seeds import derive_seed
from cmp_tf.training import checkpoints, drift, recipes, stage_reuse, stages, trainer
from cmp_tf.training import config as config_lib
from cmp_tf.training import source as source_lib
from cmp_tf.training import strategy as strategy_lib

LOCK_NAME = ".lock"
# Settings that do not change the trained weights; they may differ when resuming.
_BOOKKEEPING = ("evaluate", "export", "log_every", "keep_checkpoints", "checkpoint_every",
                "run_dir", "data_dir", "data_config", "cache_dir", "stage_donors")


class RunMismatchError(ValueError):
  """The run directory holds a run made with other settings."""


def ensure_dataset(config, data_build):
  """The dataset directory; the default one is built from `data_build` (the BuildConfig
  of --data_config, read by the command) when it is missing."""
  data_dir = config.resolved_data_dir()
  if os.path.isfile(os.path.join(data_dir, manifest_lib.MANIFEST_NAME)):
    return str(data_dir)
  if not config.data_is_default:
    raise config_lib.ConfigError("data_dir", f"{data_dir} has no manifest.json")
  if data_build is None:
    raise config_lib.ConfigError("data_config", f"no dataset in {data_dir} and no build "
                                 "configuration to make one from")
  from cmp_tf.data import build  # the scene generator is only needed to build
  started = time.perf_counter()
  build.ensure_dataset(str(data_dir), data_build, origin=str(config.resolved_data_config()))
  print(f"dataset built in {time.perf_counter() - started:.0f} s", flush=True)
  return str(data_dir)


def _comparable(config_dict):
  return {k: v for k, v in config_dict.items() if k not in _BOOKKEEPING}


def open_run(run_dir, config, fingerprint, flags_text, chief=True, runtime=None):
  """Loads or starts run.json; a run made with other settings is an error. `runtime`
  (cmp_tf.cpu.describe()) is recorded; resuming on another one is said and recorded."""
  path = os.path.join(run_dir, RUN_JSON)
  state = fileio.read_json(path)
  if state is not None:
    old, new = _comparable(state.get("config", {})), _comparable(config.to_dict())
    diff = config_lib.settings_diff(old, new)
    if state.get("manifest_fingerprint") != fingerprint:
      diff.append("(dataset content)")
    if diff:
      details = ", ".join(f"--{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff
                          if not k.startswith("("))
      raise RunMismatchError(
          f"{run_dir} holds a run with other settings ({details or ', '.join(diff)}); "
          "use a new --run_dir, or the flags in its flags.txt to resume it")
    print(f"resuming the run in {run_dir}", flush=True)
    _note_other_runtime(state, runtime)
    state.pop("error", None)
    if state.get("status") != "complete":
      state["status"] = "running"
  else:
    recipe = config.recipe()
    state = {"method": config.method, "method_name": recipe.display_name,
             "zero_shot": config.zero_shot, "status": "running",
             "recipe": recipe.to_dict(), "config": config.to_dict(),
             "data_dir": str(config.resolved_data_dir()), "manifest_fingerprint": fingerprint,
             "runtime": runtime, "stages": []}
  if chief:
    os.makedirs(run_dir, exist_ok=True)
    fileio.write_text_atomic(os.path.join(run_dir, FLAGS_TXT), flags_text)
    fileio.write_json_atomic(path, state)
  return state


def _note_other_runtime(state, runtime):
  """Kernels, threads and CPU set the float arithmetic: a run resumed on others goes on,
  but no longer as an uninterrupted run would; run.json lists where it was resumed."""
  first = state.get("runtime")
  if not runtime or not first:
    return
  changed = cpu.arithmetic_changes(first, runtime)
  if changed:
    print("note: resumed with other " + ", ".join(
        f"{k} ({first.get(k)} -> {runtime[k]})" for k in changed) + "; the rest of the "
        "run is not what an uninterrupted run would have computed", flush=True)
    state.setdefault("resumed_with_other_runtime", []).append(runtime)


def _setup(config, data_build):
  """(strategy, data_dir) in the order TensorFlow needs: devices, data, then the strategy."""
  if config.strategy == "multiworker":
    # Collective ops must be set up before any other TensorFlow op, and the workers
    # cannot all build one dataset: it has to exist already.
    strategy = strategy_lib.make_strategy(config.strategy)
    data_dir = str(config.resolved_data_dir())
    if not os.path.isfile(os.path.join(data_dir, manifest_lib.MANIFEST_NAME)):
      raise config_lib.ConfigError("strategy", f"a multi-worker run needs a built dataset; "
                                   f"build {data_dir} first (python -m cmp_tf.build_data)")
  else:
    strategy_lib.configure_cpu_replicas(config.cpu_replicas)  # before any TensorFlow op
    data_dir = ensure_dataset(config, data_build)
    strategy = strategy_lib.make_strategy(config.strategy, config.cpu_replicas)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  return strategy, data_dir


def loop_settings(config, progress):
  """The loop settings of every stage of the run (the source network's included)."""
  return stages.LoopSettings(checkpoint_every=config.checkpoint_every,
                             keep_checkpoints=config.keep_checkpoints,
                             log_every=config.log_every, jit_compile=config.jit_compile,
                             progress=progress)


def _source_and_priors(config, recipe, *, data_dir, manifest, strategy, progress):
  """(source network or None, {(kind, layer): PriorParams}) the recipe needs."""
  if not recipe.needs_source:
    return None, {}
  settings = source_lib.SourceSettings(
      image_variant=config.image_variant, image_size=config.resolved_image_size,
      dropout=config.dropout, steps=config.source_steps,
      learning_rate=config.source_learning_rate, momentum=config.momentum,
      weight_decay=config.weight_decay, batch_size=config.source_batch_size,
      seed=config.source_seed, replicas=strategy.num_replicas_in_sync,
      weights_file=config.source_weights)
  source = source_lib.ensure_source(
      data_dir=data_dir, manifest=manifest, settings=settings, cache_dir=config.cache_dir,
      strategy=strategy, loop=loop_settings(config, progress))
  uses = [u for s in recipe.stages for u in s.priors]
  fitted = {}
  if uses:
    fitted = source_lib.ensure_priors(
        source, data_dir, uses, image_size=config.resolved_image_size,
        num_samples=config.prior_samples, seed=config.source_seed,
        gmm_components=config.gmm_components, gmm_max_iter=config.gmm_max_iter)
  return source, fitted


def _train_stage(config, index, stage, *, init_from, source, fitted, manifest, data_dir,
                 run_dir, strategy, writer, offset, progress):
  """Trains one stage; returns (its result for run.json, its weights without priors)."""
  image_size = config.resolved_image_size
  common = dict(manifest=manifest, modalities=stage.modalities,
                image_variant=config.image_variant, image_size=image_size,
                dropout=config.dropout, share_upper=stage.share_upper)
  weights = stages.prior_weights(stage, fitted, per_dimension=config.prior_per_dimension)
  prior_arg = {u.layer: (fitted[(u.kind, u.layer)], weights[u.layer]) for u in stage.priors}
  model = stages.build_model(
      stages.model_spec(**common, priors=prior_arg, exposed_layers=stage.aligned_layers),
      strategy, derive_seed(config.seed, "stage", index))
  discriminators = stages.build_discriminators(
      stage, model, strategy, derive_seed(config.seed, "stage", index, "alignment"))
  if stage.init != recipes.INIT_SCRATCH:
    stages.copy_weights(init_from, model, from_source=stage.init == recipes.INIT_SOURCE,
                        modalities=stage.modalities, fresh_upper=config.fresh_upper)
  start_weights = drift.snapshot(model)
  heldout = tuple(manifest["heldout_categories"])
  excluded = heldout if config.zero_shot else ()
  evaluate_dev = None
  if stage.plateau is not None or manifest_lib.has_dev_split(manifest, stage.modalities):
    evaluate_dev = stages.dev_evaluator(data_dir, stage.modalities, image_size=image_size,
                                        exclude_categories=excluded)
  job = stages.stage_job(
      stage, model, index=index, per_replica_batch=config.batch_size,
      make_dataset=stages.dataset_factory(
          strategy, data_dir=data_dir, modalities=stage.modalities,
          per_replica_batch=config.batch_size, image_size=image_size,
          exclude_categories=excluded, seed=config.seed, stage_key=f"stage{index}"),
      checkpoint_dir=strategy_lib.worker_path(os.path.join(run_dir, "ckpt", f"stage_{index}")),
      loop=loop_settings(config, progress), prior_weights=weights, global_step_offset=offset,
      summary_writer=writer,
      evaluate_dev=evaluate_dev if stage.plateau is not None else None,
      discriminators=discriminators)
  result = trainer.run_stage(job, strategy)
  if "dev_accuracy" not in result and evaluate_dev is not None:
    result["dev_accuracy"] = {m: scores.accuracy for m, scores in evaluate_dev(model).items()}
  result["drift"] = {"from_stage_start": drift.relative_drift(model, start_weights)}
  if source is not None:
    result["drift"]["from_source"] = drift.from_source(model, source.model, source.weights)
  result["drift_by_kind"] = {k: drift.by_kind(v) for k, v in result["drift"].items()}
  result.update(stages.validation_accuracy(model, data_dir, stage.modalities,
                                           image_size=image_size, heldout_categories=heldout))
  plain = stages.build_model(stages.model_spec(**common), strategy, config.seed)
  stages.copy_weights(model, plain, from_source=False, modalities=stage.modalities)
  return result, plain


def check_writable(path, flag):
  """A ConfigError naming `flag` when `path` cannot be created or written (its nearest
  existing ancestor is a file, or not writable); checked before anything is written."""
  path = os.path.abspath(os.fspath(path))
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise config_lib.ConfigError(flag, f"cannot create {path}: {existing} is a file, not a "
                                 "directory")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise config_lib.ConfigError(flag, f"{existing} is not writable, so {path} cannot be "
                                 "written; choose another directory")


def check_run_paths(config):
  """The run directory, the cache and a dataset still to be built can all be written."""
  check_writable(config.resolved_run_dir(), "run_dir")
  check_writable(config.cache_dir, "cache_dir")
  if config.data_is_default and not os.path.isfile(
      os.path.join(config.resolved_data_dir(), manifest_lib.MANIFEST_NAME)):
    check_writable(config.resolved_data_dir(), "cache_dir")


def run_lock(run_dir):
  """The exclusive lock of a run directory (a second training there fails at once);
  taken only by the chief of a multi-worker run, whose workers share the directory."""
  if not strategy_lib.is_chief():
    return contextlib.nullcontext()
  return fileio.exclusive_lock(os.path.join(os.fspath(run_dir), LOCK_NAME),
                               what=f"the run directory {run_dir}")


def run_training(config, *, data_build=None, flags_text="", progress=True):
  """Trains config.method end to end; returns the run directory (a str). `data_build` (a
  BuildConfig) makes the default dataset when it is not built yet.

  Holds the run directory's lock throughout; a failure or divergence is recorded in
  run.json ("status": "failed" / "diverged", with the message) before it is raised."""
  config.validate()
  run_dir = str(config.resolved_run_dir())
  check_run_paths(config)
  with run_lock(run_dir):
    return _run_training(config, run_dir, data_build=data_build, flags_text=flags_text,
                         progress=progress)


def _run_training(config, run_dir, *, data_build, flags_text, progress):
  started = time.perf_counter()
  strategy, data_dir = _setup(config, data_build)
  chief = strategy_lib.is_chief()
  manifest = manifest_lib.read_manifest(data_dir)
  recipe = config.recipe()
  used = sorted({m for stage in recipe.stages for m in stage.modalities}
                | ({mod_lib.NAT} if recipe.needs_source else set()))
  manifest_lib.verify_shards(manifest, data_dir, used)
  if any(s.plateau for s in recipe.stages) and not manifest_lib.has_dev_split(manifest, used):
    raise config_lib.ConfigError(
        "stop_rule", f"plateau needs a dev split, and the dataset in {data_dir} has none "
        "for some of the modalities; rebuild it with --dev_per_category > 0 "
        "(python -m cmp_tf.build_data), or use --stop_rule=fixed")
  fingerprint, runtime = manifest_lib.fingerprint(manifest), cpu.describe()
  state = open_run(run_dir, config, fingerprint, flags_text, chief=chief, runtime=runtime)
  if config.stage_donors and chief and config.strategy != "multiworker" and not state["stages"]:
    _reuse_stages(config, run_dir, state, recipe, fingerprint=fingerprint, runtime=runtime)
  try:
    return _train_stages(config, run_dir, state, recipe, strategy=strategy, data_dir=data_dir,
                         manifest=manifest, chief=chief, started=started, progress=progress)
  except BaseException as e:
    if chief:
      diverged = isinstance(e, trainer.NonFiniteLossError)
      state.update(status="diverged" if diverged else "failed",
                   error=f"{type(e).__name__}: {e}")
      fileio.write_json_atomic(os.path.join(run_dir, RUN_JSON), state)
    raise


def _reuse_stages(config, run_dir, state, recipe, *, fingerprint, runtime):
  """Takes the first stages from the --stage_donors run that trained them as this one would."""
  donor, shared = stage_reuse.find_donor(
      config.stage_donors, run_dir, config=config, recipe=recipe, fingerprint=fingerprint,
      runtime=runtime, ignored=_BOOKKEEPING)
  if donor is None:
    return
  for index, result in enumerate(stage_reuse.adopt(state, run_dir, donor, shared)):
    print(f"stage {index} ({result['name']}) taken from {donor}, which trained it as this "
          f"run would ({result.get('steps')} steps, {result.get('wall_time_s')} s there)",
          flush=True)


def _train_stages(config, run_dir, state, recipe, *, strategy, data_dir, manifest, chief,
                  started, progress):
  print(f"{recipe.display_name}{' (zero-shot)' if config.zero_shot else ''}: "
        f"{len(recipe.stages)} stage(s), {strategy.num_replicas_in_sync} replica(s), "
        f"run dir {run_dir}", flush=True)
  source, fitted = _source_and_priors(config, recipe, data_dir=data_dir, manifest=manifest,
                                      strategy=strategy, progress=progress)
  if source is not None:
    state["source"] = {"directory": source.directory, "origin": source.info.get("origin"),
                       "nat_val_accuracy": source.info.get("val_accuracy", {}).get(mod_lib.NAT)}

  source_ref = None
  if source is not None:
    source_ref = drift.Reference(source.model, drift.snapshot(source.model))
  writer = tf.summary.create_file_writer(os.path.join(run_dir, "logs")) if chief else None
  previous, offset = None, 0
  results = list(state.get("stages", []))
  for index, stage in enumerate(recipe.stages):
    stage_weights = os.path.join(run_dir, f"stage_{index}.weights.h5")
    if (index < len(results) and results[index].get("status") == "complete"
        and os.path.exists(stage_weights)):
      previous = stages.build_model(
          stages.model_spec(manifest=manifest, modalities=stage.modalities,
                            image_variant=config.image_variant,
                            image_size=config.resolved_image_size, dropout=config.dropout,
                            share_upper=stage.share_upper), strategy, config.seed)
      finished_run.load_weights(previous, stage_weights)
      print(f"stage {index} ({stage.name}) already complete", flush=True)
    else:
      init_from = source.model if stage.init == recipes.INIT_SOURCE else previous
      result, previous = _train_stage(
          config, index, stage, init_from=init_from, source=source_ref, fitted=fitted,
          manifest=manifest,
          data_dir=data_dir, run_dir=run_dir, strategy=strategy, writer=writer,
          offset=offset, progress=progress)
      result.update(index=index, name=stage.name, status="complete",
                    weights=os.path.basename(stage_weights))
      results[index:index + 1] = [result]
      state["stages"] = results
      if chief:
        checkpoints.save_weights_atomic(previous, stage_weights)
        fileio.write_json_atomic(os.path.join(run_dir, RUN_JSON), state)
      _print_stage(index, stage, result)
    offset += results[index].get("steps", stage.steps)
  if writer is not None:
    writer.close()

  if chief:
    checkpoints.save_weights_atomic(previous, os.path.join(run_dir, FINAL_WEIGHTS))
    fileio.write_json_atomic(os.path.join(run_dir, SPEC_JSON),
                                  stages.without_priors(previous.spec).to_config())
    state.pop("error", None)
    state.update(status="complete", final={"weights": FINAL_WEIGHTS, "spec": SPEC_JSON},
                 val_accuracy=results[-1].get("val_accuracy"),
                 train_wall_time_s=round(time.perf_counter() - started, 1))
    fileio.write_json_atomic(os.path.join(run_dir, RUN_JSON), state)
  return run_dir


def _print_stage(index, stage, result):
  accs = ", ".join(f"{m.upper()} {a:.3f}" for m, a in result["val_accuracy"].items())
  print(f"stage {index} ({stage.name}) done in {result['wall_time_s']:.0f} s "
        f"({result['examples_per_s']} examples/s); validation accuracy: {accs}", flush=True)
  if result.get("val_accuracy_heldout"):
    held = ", ".join(f"{m.upper()} {a:.3f}" for m, a in result["val_accuracy_heldout"].items())
    print(f"  on held-out categories: {held}", flush=True)

