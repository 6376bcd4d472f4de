"""The Keras callbacks of a training run: what `model.fit` does between two executions.

`trainer.train` runs one `model.fit` epoch from the restored step to the last step of this
invocation, `steps_per_execution` steps per call of the compiled train function. Keras calls
`on_train_batch_end` once per execution with the model's logs: the running means of the loss
terms (and the gradient norm) since the trackers were last reset. The callbacks turn Keras' batch
index into the global step (the optimizer's `iterations`), so each of their intervals must be a
multiple of `steps_per_execution` (see `steps_per_execution`).
"""

import math
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from copart_tf.errors import ModelError
from copart_tf.ops import affine as affine_lib
from copart_tf.training import visualize

# An execution is the unit of stopping on a signal and of host-device round trips: 10 steps keep
# the stop within seconds on a CPU (0.4-1.2 s per step of the demo) and the host out of a GPU's
# way.
MAX_STEPS_PER_EXECUTION = 10


class TrainingDivergedError(ModelError):
  """The loss became NaN or Inf; the last good checkpoint is kept."""


def steps_per_execution(intervals, start_step, end_step, cap=MAX_STEPS_PER_EXECUTION):
  """The largest N <= `cap` that divides every interval, `start_step` and `end_step`.

  Then every step a callback acts on (a multiple of its interval, the last step) ends an
  execution. A run resumed at an odd step (e.g. after a signal) runs one step per execution.
  """
  common = 0
  for value in (*intervals, start_step, end_step):
    common = math.gcd(common, int(value))
  return max(n for n in range(1, cap + 1) if common % n == 0)


class StepCallback(keras.callbacks.Callback):
  """Calls `on_step(step, logs)` after each execution with the global step just finished."""

  def __init__(self, start_step):
    super().__init__()
    self.start_step = int(start_step)

  def on_train_batch_end(self, batch, logs=None):
    # One epoch from the restored step: `batch` is the index of the execution's last step.
    self.on_step(self.start_step + batch + 1, logs or {})

  def on_step(self, step, logs):
    raise NotImplementedError


class DivergenceStop(StepCallback):
  """Raises `TrainingDivergedError` when the loss is not finite; keeps the last step and logs.

  The logs are means since the last reset, so a NaN or Inf of any step of the execution shows.
  """

  def __init__(self, start_step, latest_checkpoint, learning_rate):
    super().__init__(start_step)
    self.latest_checkpoint = latest_checkpoint
    self.learning_rate = learning_rate
    self.step = self.start_step
    self.logs = {}

  def on_step(self, step, logs):
    total = logs["total"]
    if not math.isfinite(total):
      raise TrainingDivergedError(
        f"the loss became {total} at step {step}; stopped without saving. The last good "
        f"checkpoint is {self.latest_checkpoint() or '(none yet)'}; try a lower "
        f"--learning_rate (now {self.learning_rate})"
      )
    self.step, self.logs = step, dict(logs)


class ProgressLog(StepCallback):
  """Drives a `progress.Progress` bar (a log line per interval when not on a terminal)."""

  def __init__(self, start_step, progress):
    super().__init__(start_step)
    self.progress = progress

  def on_step(self, step, logs):
    self.progress.update(step, f"loss {logs['total']:.4f}")

  def on_train_end(self, logs=None):
    self.progress.close()


class Reseeding(StepCallback):
  """Runs the dead-part `PartReseeder` every `every` steps up to step `until`.

  `images(step)` returns the images to check (those of the batch step `step` trained on).
  """

  def __init__(self, start_step, reseeder, every, until, images, writer):
    super().__init__(start_step)
    self.reseeder = reseeder
    self.every = every
    self.until = until
    self.images = images
    self.writer = writer

  def on_step(self, step, logs):
    if step % self.every or step > self.until:
      return
    pairs = self.reseeder(self.model, self.model.optimizer, self.images(step))
    for dead, donor in pairs:
      logging.info(
        "step %d: part %d won no pixels, re-seeded from part %d", step, dead + 1, donor + 1
      )
    with self.writer.as_default(step=step):
      tf.summary.scalar("train/reseeded_parts", len(pairs))


class ScalarSummaries(StepCallback):
  """Every `every` steps and at `end_step`: the loss terms, grad norm, learning rate and speed.

  Tags: `loss/<term>`, `train/grad_norm`, `train/learning_rate`, `train/steps_per_sec`,
  `train/images_per_sec`. Resets the model's trackers, so each value is the interval's mean.
  """

  def __init__(self, start_step, writer, every, end_step, batch_size):
    super().__init__(start_step)
    self.writer = writer
    self.every = every
    self.end_step = end_step
    self.batch_size = batch_size

  def on_train_begin(self, logs=None):
    self.interval_start, self.interval_first = time.time(), self.start_step

  def on_step(self, step, logs):
    if step % self.every and step != self.end_step:
      return
    elapsed = max(time.time() - self.interval_start, 1e-9)
    steps = step - self.interval_first
    with self.writer.as_default(step=step):
      for name, value in logs.items():
        tf.summary.scalar("train/grad_norm" if name == "grad_norm" else f"loss/{name}", value)
      rate = self.model.optimizer.learning_rate
      tf.summary.scalar(
        "train/learning_rate", float(np.asarray(rate() if callable(rate) else rate))
      )
      tf.summary.scalar("train/steps_per_sec", steps / elapsed)
      tf.summary.scalar("train/images_per_sec", steps * self.batch_size / elapsed)
    self.interval_start, self.interval_first = time.time(), step
    for tracker in self.model.metrics:
      tracker.reset_state()


def write_images(writer, model, vis_batch, step, num_parts):
  """The image grid (`visualize.training_grid`) and pose histograms of `vis_batch`."""
  outputs = model.forward_pair(vis_batch["source"], vis_batch["target"], vis_batch["warp_affines"])
  outputs = {k: v.numpy() for k, v in outputs.items()}
  grid = visualize.training_grid(
    vis_batch["source"].numpy(), vis_batch["target"].numpy(), outputs, num_parts
  )
  theta, _, _ = affine_lib.to_pose(outputs["target_affines"])
  with writer.as_default(step=step):
    tf.summary.image(
      "parts/source|target|source_rec|retargeted|overlay|axes",
      grid[None],
      description="one row per example; columns as named",
    )
    tf.summary.histogram("poses/scale", outputs["target_scale"])
    tf.summary.histogram("poses/rotation_deg", np.degrees(theta.numpy()))
    tf.summary.histogram("poses/center_x", outputs["target_affines"][..., 0, 2])
    tf.summary.histogram("poses/center_y", outputs["target_affines"][..., 1, 2])


class ImageSummaries(StepCallback):
  """Every `every` steps and at `end_step`: `write_images` of the fixed preview batch."""

  def __init__(self, start_step, writer, every, end_step, vis_batch, num_parts):
    super().__init__(start_step)
    self.writer = writer
    self.every = every
    self.end_step = end_step
    self.vis_batch = vis_batch
    self.num_parts = num_parts

  def on_step(self, step, logs):
    if step % self.every == 0 or step == self.end_step:
      write_images(self.writer, self.model, self.vis_batch, step, self.num_parts)


class StopVote(StepCallback):
  """Stops the fit after the execution in which a stop signal reached this or another worker.

  `total_votes(vote)` sums a float over all workers (a collective every worker calls after every
  execution, so all see the same sum and stop after the same step).
  """

  def __init__(self, start_step, stops, total_votes):
    super().__init__(start_step)
    self.stops = stops
    self.total_votes = total_votes
    self.voted = False

  def on_step(self, step, logs):
    if float(self.total_votes(tf.constant(1.0 if self.stops.requested else 0.0))) > 0:
      self.voted = True
      self.model.stop_training = True


def all_finite(variables):
  return bool(tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables]))


class Checkpoints(StepCallback):
  """Saves every `every` steps, at `end_step` and when the fit stops early (a signal).

  Non-finite weights are never saved: the loss logged for a step was computed before its update,
  so the weights are checked before each save.
  """

  def __init__(self, start_step, manager, every, end_step, latest_checkpoint, learning_rate):
    super().__init__(start_step)
    self.manager = manager
    self.every = every
    self.end_step = end_step
    self.latest_checkpoint = latest_checkpoint
    self.learning_rate = learning_rate
    self.saved_path = None

  def on_step(self, step, logs):
    if step % self.every and step != self.end_step and not self.model.stop_training:
      return
    if not all_finite(self.model.trainable_variables):
      raise TrainingDivergedError(
        f"the weights became non-finite at step {step} (loss {logs['total']}); stopped without "
        f"saving. The last good checkpoint is {self.latest_checkpoint() or '(none yet)'}; try a "
        f"lower --learning_rate (now {self.learning_rate})"
      )
    self.saved_path = self.manager.save(checkpoint_number=step)
    logging.info("checkpoint %s", self.saved_path)
