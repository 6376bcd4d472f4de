"""Training: data, strategy, model, then `model.fit` with the callbacks of `callbacks.py`.

`train(config)` is what `python -m copart_tf.train` runs; tests call it directly. The callbacks
save checkpoints, write TensorBoard summaries and images, re-seed dead parts, report progress,
stop on a NaN loss and on SIGTERM / SIGINT; `fit` runs `steps_per_execution` steps per call, so
the host waits for the device only between executions.

Resume: the checkpoint holds the model, the optimizer (whose `iterations` is the step counter)
and nothing else, because the input pipeline is a pure function of (seed, step): restarting the
same command rebuilds the dataset at the restored step and sees exactly the batches the killed run
would have seen next.
"""

import atexit
import contextlib
import functools
import math
import os
import shutil
import tempfile
import time

import keras
import tensorflow as tf
from absl import logging

from copart_tf.data import pipeline
from copart_tf.errors import ConfigError, DataError, ModelError
from copart_tf.losses import perceptual as perceptual_lib
from copart_tf.model import loading
from copart_tf.model.copart_model import CoPartModel
from copart_tf.ops import affine as affine_lib
from copart_tf.training import callbacks as callbacks_lib
from copart_tf.training import config as config_lib
from copart_tf.training import progress as progress_lib
from copart_tf.training import reseeding, shutdown
from copart_tf.training import strategy as strategy_lib
from copart_tf.training.callbacks import TrainingDivergedError  # noqa: F401 (trainer's API)

# The run dir's files, as `copart_tf.model.loading` reads them: config.json (the flags),
# checkpoints/, and model.json (`loading.write_model_config`).
CONFIG_FILE = loading.CONFIG_FILE
CHECKPOINT_SUBDIR = loading.CHECKPOINT_SUBDIR


def checkpoint_dir(model_dir):
  return os.path.join(model_dir, CHECKPOINT_SUBDIR)


def _check_model_dir_writable(model_dir):
  try:
    os.makedirs(model_dir, exist_ok=True)
    # A unique name: several workers may probe a shared model dir at the same time.
    handle, probe = tempfile.mkstemp(prefix=".write_test-", dir=model_dir)
    os.close(handle)
    os.remove(probe)
  except OSError as error:
    raise ConfigError(f"--model_dir={model_dir}: not writable ({error.strerror})") from None


def _dataset_present(data_dir):
  """A train/ folder, or any non-empty folder (videos split 80/20 at load time)."""
  train_dir = os.path.join(data_dir, "train")
  return os.path.isdir(data_dir) and (os.path.isdir(train_dir) or bool(os.listdir(data_dir)))


def ensure_data(config):
  """Generates the synthetic dataset when `--synthesize_if_missing` is set and data is absent.

  `--synthesize_if_missing` names a pybullet body (``humanoid_mocap``, ``kuka_iiwa``,
  ``laikago``) or a numpy-only ladder dataset (``sprites``, ``figure2d``, no pybullet needed).
  Frames are `--image_size` pixels; the ladder datasets use their own supersampling (4x) and
  ignore `--synth_supersample`, `--synth_background` and `--synth_clips`. The dataset's seed is
  `--synth_seed`, not the training `--seed`, so every seed of a sweep sees the same data.
  """
  train_dir = os.path.join(config.data_dir, "train")
  if _dataset_present(config.data_dir):
    return
  if not config.synthesize_if_missing:
    raise ConfigError(
      f"--data_dir={config.data_dir}: no such dataset (expected {train_dir}/<video>/...); pass "
      "--synthesize_if_missing=humanoid_mocap to generate the synthetic one"
    )
  from copart_tf import synthetic  # pybullet is imported only for the pybullet bodies

  name = config.synthesize_if_missing
  ladder = name in synthetic.LADDER_DATASETS
  total_frames = (config.synth_train_videos + config.synth_test_videos) * config.synth_frames
  logging.info(
    "%s is missing: generating the synthetic %s dataset (%d train + %d test videos x %d frames)",
    config.data_dir,
    name,
    config.synth_train_videos,
    config.synth_test_videos,
    config.synth_frames,
  )
  bar = progress_lib.Progress(total_frames, log_every=max(1, total_frames // 10))

  def report(done, total):
    del total
    bar.update(done, "frames rendered")

  summary = synthetic.synthesize_for_training(
    name,
    config.data_dir,
    train_videos=config.synth_train_videos,
    test_videos=config.synth_test_videos,
    frames=config.synth_frames,
    size=config.image_size,
    seed=config.synth_seed,
    progress=report,
    supersample=None if ladder else config.synth_supersample,
    background=config.synth_background,
    clips=synthetic.resolve_clips(config.synth_clips.split(","))
    if config.synth_clips and name == "humanoid_mocap"
    else None,
  )
  bar.close()
  logging.info("synthetic dataset ready: %s", summary.get("out_dir", config.data_dir))


def wait_for_data(config, timeout_s=6 * 3600, poll_s=10.0):
  """On a non-chief worker: waits while the chief generates the synthetic dataset.

  The generator writes into a temporary folder and renames it when complete, so the dataset
  appears all at once. Without `--synthesize_if_missing` a missing dataset is an error at once.
  """
  if _dataset_present(config.data_dir) or not config.synthesize_if_missing:
    return ensure_data(config)  # present, or the same error as on the chief
  logging.info("waiting for the chief worker to generate %s", config.data_dir)
  deadline = time.monotonic() + timeout_s
  while not _dataset_present(config.data_dir):
    if time.monotonic() > deadline:
      raise DataError(
        f"--data_dir={config.data_dir}: the chief worker did not generate the dataset within "
        f"{timeout_s / 3600:.1f} h (is --data_dir on storage shared by all workers?)"
      )
    time.sleep(poll_s)
  return None


def learning_rate_schedule(config):
  """Constant (the reference), with optional linear warm-up and cosine decay to 0.

  `lr_decay_start` is the fraction of `train_steps` after which the cosine decay starts
  (1.0 = never decay).
  """
  if config.lr_warmup_steps <= 0 and config.lr_decay_start >= 1.0:
    return config.learning_rate
  return _WarmupCosine(
    config.learning_rate, config.lr_warmup_steps, config.lr_decay_start, config.train_steps
  )


class _WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
  def __init__(self, peak, warmup_steps, decay_start, total_steps):
    self.peak = float(peak)
    self.warmup_steps = int(warmup_steps)
    self.decay_start = float(decay_start)
    self.total_steps = int(total_steps)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    warm = tf.minimum(1.0, (step + 1.0) / max(self.warmup_steps, 1))
    start = self.decay_start * self.total_steps
    span = max(self.total_steps - start, 1.0)
    progress = tf.clip_by_value((step - start) / span, 0.0, 1.0)
    cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
    return self.peak * warm * cosine

  def get_config(self):
    return {
      "peak": self.peak,
      "warmup_steps": self.warmup_steps,
      "decay_start": self.decay_start,
      "total_steps": self.total_steps,
    }


def add_warp_affines(dataset, seed, start_step, max_rotation):
  """Adds the equivariance warps W `[B, 2, 3]` to every batch, drawn from (seed, step).

  Drawing W for the whole global batch before the batch is split over replicas keeps the update
  identical whatever the number of replicas.
  """

  def add(step, batch):
    size = tf.shape(batch["source"])[0]
    warp_seed = tf.stack([tf.constant(seed + 104729, tf.int64), step])
    batch = dict(batch)
    batch["warp_affines"] = affine_lib.random_affine(size, warp_seed, max_rotation=max_rotation)
    return batch

  return dataset.enumerate(start=start_step).map(add)


def build_model(config, strategy):
  """Creates and compiles the model under `strategy`, with the perceptual loss resolved."""
  weights, description = perceptual_lib.resolve_vgg_weights(config.vgg_weights)
  if weights is None:
    perceptual = config.perceptual_fallback
    perceptual_lib.log_perceptual_choice(description, perceptual)
  else:
    perceptual = "vgg"
    perceptual_lib.log_perceptual_choice(description, None)
  if config.mixed_precision != "float32":
    keras.mixed_precision.set_global_policy(config.mixed_precision)
  with strategy.scope():
    model = CoPartModel.from_config(config.model_config(perceptual))
    model.build()
    optimizer = keras.optimizers.Adam(
      learning_rate_schedule(config), global_clipnorm=config.clip_grad_norm or None
    )
    model.compile(optimizer=optimizer)
    optimizer.build(model.trainable_variables)
    if perceptual == "vgg":
      model.set_perceptual_loss(perceptual_lib.VGGPerceptualLoss(weights))
  return model, optimizer, perceptual


def restore_or_initialize(model, optimizer, model_dir, keep, write_dir=None):
  """Restores the latest checkpoint in `model_dir` if any. Returns (manager, restored path).

  `write_dir`: where the manager saves, if not model_dir/checkpoints (non-chief workers of
  MultiWorkerMirroredStrategy take part in every save but must not write the chief's files).
  """
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  latest = tf.train.latest_checkpoint(checkpoint_dir(model_dir))
  manager = tf.train.CheckpointManager(
    checkpoint, write_dir or checkpoint_dir(model_dir), max_to_keep=keep
  )
  if latest:
    try:
      checkpoint.restore(latest).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
      raise ModelError(
        f"{latest}: cannot restore this checkpoint into the requested model "
        f"({str(error).splitlines()[0][:200]})"
      ) from None
  return manager, latest


def _vote_counter(strategy, multi_worker):
  """The sum of the workers' stop votes (one process: its own vote; no collective needed)."""
  if not multi_worker:
    return lambda vote: vote

  @tf.function
  def total(vote):
    return strategy.reduce("SUM", strategy.run(tf.identity, args=(vote,)), axis=None)

  return total


def _barrier(strategy):
  """Returns when every worker has called it (a collective)."""

  @tf.function
  def barrier():
    return strategy.reduce("SUM", strategy.run(lambda: tf.identity(tf.ones([]))), axis=None)

  return barrier()


def _fit_multi_worker(model):
  """Works around two failures of Keras 3.15's `fit` under MultiWorkerMirroredStrategy.

  Before training, fit builds the model from a batch it reduces over the workers, which fails for
  a dict batch; build_model has built every layer and the optimizer, so it is skipped. After each
  step fit averages the logs over the workers with `reduce("MEAN", axis=0)`, which fails for
  scalars; the logs get a unit axis for it (the reduced values are scalars again).
  """
  model._maybe_symbolic_build = lambda **_: None  # noqa: SLF001
  train_step = model.train_step
  model.train_step = lambda data: {k: v[None] for k, v in train_step(data).items()}


def _train_pairs(config, replicas, start_step):
  """The training pair dataset from `start_step` on (a pure function of seed and step)."""
  return pipeline.make_pair_dataset(
    config.data_dir,
    "train",
    config.image_size,
    config.batch_size,
    config.seed,
    start_step=start_step,
    augment=config.augment,
    rotation_degrees=config.augment_rotation_deg,
    id_sampling=config.id_sampling,
    on_bad_frame=config.on_bad_frame,
    num_replicas=replicas,
  )


def _batch_images(config, replicas, step):
  """The images the first replica trained on at `step` (the pipeline is a function of the step).

  `model.fit` does not show its batches to callbacks; rebuilding the pipeline at the step gives
  the same batch the re-seeding checked when it ran inside a hand-written loop.
  """
  with pipeline.translate_data_errors():
    batch = next(iter(_train_pairs(config, replicas, step - 1)))
  local = config.batch_size // replicas
  return tf.concat([batch["source"][:local], batch["target"][:local]], 0)


def _chief_checkpoint(config, saved_path, restored):
  """On a non-chief worker: the chief's checkpoint of the last step saved, or None.

  Every worker saves at the same steps (the non-chief into a throw-away dir), so the chief's
  checkpoint of that step has the same name. It is reported only when it is visible here (the
  chief has written it and --model_dir is on storage shared with the chief).
  """
  expected = os.path.basename(saved_path) if saved_path else None
  latest = tf.train.latest_checkpoint(checkpoint_dir(config.model_dir))
  if expected is None:
    return restored
  if latest and os.path.basename(latest) == expected:
    return latest
  logging.info(
    "the chief's %s is not visible in %s (not shared with the chief?)",
    expected,
    checkpoint_dir(config.model_dir),
  )
  return None


def train(config, stop_after_steps=None):
  """Trains (or resumes) according to `config`; returns a summary dict.

  The first SIGTERM or SIGINT (in the main thread) stops the run: outside the training loop with
  `shutdown.Interrupted`; in `fit` after the current execution (of `steps_per_execution` steps), on
  every worker at the same step, with a checkpoint of that step, and the summary's `interrupted`
  names the signal.

  Args:
    config: a `TrainConfig`.
    stop_after_steps: stop early after this many steps of this invocation (tests and benchmarks);
      the run can be resumed later.

  Returns:
    A dict: `step`, `steps_run`, `wall_seconds`, `images_per_second`, `final_losses`,
    `checkpoint` (the chief's latest, on every worker; None if there is none or a non-chief
    cannot see it), `perceptual`, with `interrupted` and `exit_signal` after a signal, and the
    export and evaluation results at the end of a run.

  Raises:
    ConfigError, DataError, ModelError (incl. TrainingDivergedError) with one-line messages;
    `shutdown.Interrupted` for a signal outside the training loop (start-up, export, evaluation).
  """
  config.validate()
  with shutdown.StopSignals() as stops:
    return _train(config, stop_after_steps, stops)


def _train(config, stop_after_steps, stops):
  """`train` under its signal handlers: the strategy, the model dir check, then `_run`."""
  strategy = strategy_lib.make_strategy(
    config.strategy, config.num_cpu_devices, config.cluster_timeout
  )
  # TensorFlow's multi-worker runtime replaces the SIGTERM handler with one that only logs.
  stops.reinstall()
  replicas = strategy.num_replicas_in_sync
  if config.batch_size % replicas:
    raise ConfigError(
      f"--batch_size={config.batch_size} is not divisible by the {replicas} replicas of "
      f"--strategy={config.strategy}"
    )
  chief = strategy_lib.is_chief(strategy)
  existed = os.path.isdir(config.model_dir)
  try:
    before = set(os.listdir(config.model_dir)) if existed else set()
  except OSError:  # unreadable: the check below says so
    before = set()
  _check_model_dir_writable(config.model_dir)
  try:
    return _run(config, strategy, chief, stop_after_steps, stops)
  except BaseException:
    if chief and not tf.train.latest_checkpoint(checkpoint_dir(config.model_dir)):
      _remove_half_made(config.model_dir, existed, before)
    raise


def _remove_half_made(model_dir, existed, before):
  """Removes what a run that failed before its first checkpoint wrote into `model_dir`.

  Such a directory holds only the run's config.json and TensorBoard events; left behind, its
  config.json would make the corrected rerun look like a resume of another model.
  """
  if not existed:
    shutil.rmtree(model_dir, ignore_errors=True)
    logging.info("removed %s: the run stopped before its first checkpoint", model_dir)
    return
  try:
    made = sorted(set(os.listdir(model_dir)) - before)
  except OSError:
    return
  for name in made:
    path = os.path.join(model_dir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      with contextlib.suppress(OSError):
        os.remove(path)
  if made:
    logging.info(
      "removed %s from %s: the run stopped before its first checkpoint", ", ".join(made), model_dir
    )


def _run(config, strategy, chief, stop_after_steps, stops):
  """`train` after the model dir check (its failures before a checkpoint are cleaned up)."""
  multi_worker = config.strategy == "multi_worker"
  replicas = strategy.num_replicas_in_sync
  if chief:
    ensure_data(config)
  else:
    wait_for_data(config)
  config_path = os.path.join(config.model_dir, CONFIG_FILE)
  if os.path.exists(config_path):
    saved = config_lib.TrainConfig.from_json_file(config_path)
    # A config.json without a checkpoint (a run killed before its first one) binds nothing.
    if tf.train.latest_checkpoint(checkpoint_dir(config.model_dir)):
      config_lib.check_compatible(saved, config, config.model_dir)

  # Initial weights and Keras' random layers come from --seed, like the data pipeline: the same
  # command on the same machine starts from the same model (issue 19 §2).
  keras.utils.set_random_seed(config.seed)
  model, optimizer, perceptual = build_model(config, strategy)
  write_dir = None
  if not chief:  # saves like the chief (collectives), into a throw-away dir (TF's MWMS guide)
    write_dir = tempfile.mkdtemp(prefix="copart-worker-checkpoints-")
    atexit.register(shutil.rmtree, write_dir, ignore_errors=True)
  manager, restored = restore_or_initialize(
    model, optimizer, config.model_dir, config.keep_checkpoints, write_dir
  )
  step = int(optimizer.iterations.numpy())
  if restored:
    logging.info("resumed from %s at step %d", restored, step)
    # The checkpoint also restored the optimizer's learning-rate variable: --learning_rate wins.
    rate = learning_rate_schedule(config)
    if not isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
      optimizer.learning_rate = rate
  if chief:
    with open(config_path + ".tmp", "w") as f:  # atomic: other workers may be reading it
      f.write(config.to_json())
    os.replace(config_path + ".tmp", config_path)
    loading.write_model_config(config.model_dir, model)
  if step >= config.train_steps:
    logging.info("already trained: step %d >= --train_steps=%d", step, config.train_steps)

  max_rotation = math.radians(config.equivariance_rotation_deg)
  with pipeline.translate_data_errors():
    dataset = _train_pairs(config, replicas, step)
    try:
      vis_dataset = pipeline.make_pair_dataset(
        config.data_dir, "test", config.image_size, 4, config.seed + 1, augment=False
      )
    except DataError:  # no test split: show training pairs
      vis_dataset = pipeline.make_pair_dataset(
        config.data_dir, "train", config.image_size, 4, config.seed + 1, augment=False
      )
    vis_batch = next(iter(add_warp_affines(vis_dataset, config.seed + 1, 0, max_rotation)))
  dataset = add_warp_affines(dataset, config.seed, step, max_rotation)
  end_step = config.train_steps
  if stop_after_steps is not None:
    end_step = min(end_step, step + int(stop_after_steps))
  # Exactly this invocation's batches: `fit` deletes its iterator when it returns, and an endless
  # pipeline would still be reading ahead then (the deletion waited for those reads: 12-40 s
  # after the last step in 4 of 11 demo runs).
  dataset = dataset.take(max(end_step - step, 0))
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  dataset = dataset.with_options(options)  # fit distributes it (experimental_distribute_dataset)

  writer = (
    tf.summary.create_file_writer(config.model_dir) if chief else tf.summary.create_noop_writer()
  )
  with writer.as_default(step=step):
    tf.summary.text("config", "```\n" + config.to_json() + "\n```")
    tf.summary.text("perceptual_loss", perceptual)

  def latest_checkpoint():  # the chief's (on every worker; a non-chief's own are throw-away)
    return tf.train.latest_checkpoint(checkpoint_dir(config.model_dir))

  first_step = step
  guard = callbacks_lib.DivergenceStop(step, latest_checkpoint, config.learning_rate)
  vote = callbacks_lib.StopVote(step, stops, _vote_counter(strategy, multi_worker))
  saver = callbacks_lib.Checkpoints(
    step, manager, config.checkpoint_every, end_step, latest_checkpoint, config.learning_rate
  )
  progress = progress_lib.Progress(config.train_steps, step, config.log_every)
  callbacks = [guard, callbacks_lib.ProgressLog(step, progress)]
  intervals = [config.log_every, config.checkpoint_every, config.image_every]
  if config.reseed_every and chief:
    intervals.append(config.reseed_every)
    reseeder = reseeding.PartReseeder(config.reseed_min_share)
    images = functools.partial(_batch_images, config, replicas)
    callbacks.append(
      callbacks_lib.Reseeding(
        step, reseeder, config.reseed_every, config.reseed_until, images, writer
      )
    )
  callbacks.append(
    callbacks_lib.ScalarSummaries(step, writer, config.log_every, end_step, config.batch_size)
  )
  if chief:
    callbacks.append(
      callbacks_lib.ImageSummaries(
        step, writer, config.image_every, end_step, vis_batch, config.num_parts
      )
    )
  callbacks += [vote, saver]  # the vote first: a stop saves the step it stopped at
  run_start = time.time()
  if end_step > step:
    # Every step a callback acts on ends an execution; between two, no host-device round trip.
    model.steps_per_execution = callbacks_lib.steps_per_execution(intervals, step, end_step)
    model.jit_compile = config.jit_compile
    if multi_worker:
      _fit_multi_worker(model)
    with pipeline.translate_data_errors(), stops.training_loop():
      # One epoch from the restored step: the step counter is the optimizer's `iterations`
      # (in the checkpoint), and the dataset was rebuilt at that step.
      model.fit(
        dataset,
        epochs=1,
        steps_per_epoch=end_step - step,
        shuffle=False,  # the pipeline shuffles (as a function of the seed and step)
        verbose=0,
        callbacks=callbacks,
      )
  else:
    progress.close()
  step = guard.step
  writer.flush()
  if multi_worker:
    _barrier(strategy)  # every worker is past its last save, so the chief's checkpoint is on disk
  # A signal during the last step counts too: no export / evaluation after it.
  interrupted = vote.voted or stops.requested
  wall = time.time() - run_start
  steps_run = step - first_step
  summary = {
    "step": step,
    "steps_run": steps_run,
    "wall_seconds": wall,
    "images_per_second": steps_run * config.batch_size / wall if steps_run else 0.0,
    "final_losses": guard.logs,
    "checkpoint": latest_checkpoint()
    if chief
    else _chief_checkpoint(config, saver.saved_path, restored),
    "perceptual": perceptual,
  }
  if interrupted:
    own = stops.signum
    summary["interrupted"] = shutdown.signal_name(own) if own else "a signal to another worker"
    summary["exit_signal"] = own or shutdown.signal.SIGTERM
    logging.warning("stopped at step %d (%s)", step, summary["interrupted"])
  elif step >= config.train_steps and chief:
    summary.update(_finish(config, model))
  return summary


def _finish(config, model):
  """Export and evaluation at the end of a run."""
  out = {}
  if config.export_dir:
    from copart_tf.export import saved_model as export_lib

    out["export"] = export_lib.export(model, config.export_dir)
    logging.info("exported SavedModel to %s", out["export"])
  if config.evaluate_at_end:
    try:
      from copart_tf.evaluation import run as eval_run
      from copart_tf.inference import Segmenter

      results = eval_run.evaluate_segmenter(
        Segmenter.from_model(model),
        config.data_dir,
        config.image_size,
        config.num_parts,
        max_fit_frames_per_video=config.eval_fit_frames_per_video or None,
        max_test_frames_per_video=config.eval_test_frames_per_video or None,
        report_dir=os.path.join(config.model_dir, "eval"),
      )
    except DataError as error:
      logging.warning(
        "end-of-run evaluation skipped: %s (ground truth goes in %s; README: 'Bringing your own "
        "labels')",
        error,
        os.path.join(config.data_dir, "labels", "<split>"),
      )
    else:
      out["evaluation"] = eval_run.headline(results)
      out["evaluation_table"] = results["table"]
      out["report_dir"] = os.path.join(config.model_dir, "eval")
  return out
