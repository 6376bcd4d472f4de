"""Runs `python -m copart_tf.train`, then dumps the trained weights (for subprocess tests).

  python tests/train_worker.py OUT.npz --model_dir=... [any copart_tf.train flag ...]

Exits with the training CLI's exit code. On success OUT.npz holds
- `step`: the optimizer's step counter at the end,
- `mem_<i>`: this process's in-memory `model.weights` after training,
- on the chief only: `checkpoint`, the latest checkpoint in `--model_dir`, and `ckpt_<i>`, the
  weights read back from it into a freshly built model.

With COPART_TEST_CHIEF_SAVE_DELAY=<seconds> in the environment, every save into `--model_dir`
(the chief's) starts that much later: the other worker must still report the chief's final
checkpoint, not the one before it.
"""

import os
import time

import numpy as np
import tensorflow as tf
from absl import app, flags

from copart_tf import train
from copart_tf.model import loading
from copart_tf.training import strategy as strategy_lib
from copart_tf.training import trainer

_captured = {}


def _capture(module, name):
  """Wraps `module.name` so the objects it is called with / returns are kept in `_captured`."""
  original = getattr(module, name)

  def wrapper(*args, **kwargs):
    result = original(*args, **kwargs)
    _captured[name] = (args, result)
    return result

  setattr(module, name, wrapper)


def _dump(out_path):
  (model, optimizer, *_), _ = _captured["restore_or_initialize"]
  _, strategy = _captured["make_strategy"]
  arrays = {"step": np.int64(optimizer.iterations.numpy())}
  for i, weight in enumerate(model.weights):
    arrays[f"mem_{i}"] = np.asarray(weight.numpy())
  if strategy_lib.is_chief(strategy):
    model_dir = flags.FLAGS.model_dir
    path = tf.train.latest_checkpoint(trainer.checkpoint_dir(model_dir))
    fresh = loading.model_from_config(loading.read_model_config(model_dir))
    status = tf.train.Checkpoint(model=fresh).restore(path)
    status.expect_partial().assert_existing_objects_matched()
    arrays["checkpoint"] = np.array(path)
    for i, weight in enumerate(fresh.weights):
      arrays[f"ckpt_{i}"] = np.asarray(weight.numpy())
  np.savez(out_path + ".tmp.npz", **arrays)
  os.replace(out_path + ".tmp.npz", out_path)


def _delay_chief_saves(seconds):
  original = tf.train.CheckpointManager.save

  def save(self, *args, **kwargs):
    chief_dir = trainer.checkpoint_dir(flags.FLAGS.model_dir)
    if os.path.abspath(self.directory) == os.path.abspath(chief_dir):
      time.sleep(seconds)
    return original(self, *args, **kwargs)

  tf.train.CheckpointManager.save = save


def main(argv):
  if len(argv) != 2:
    raise app.UsageError("usage: train_worker.py OUT.npz --flag=value ...")
  code = train.main(argv[:1])
  if code == 0:
    _dump(argv[1])
  return code


if __name__ == "__main__":
  _capture(strategy_lib, "make_strategy")
  _capture(trainer, "restore_or_initialize")
  if os.environ.get("COPART_TEST_CHIEF_SAVE_DELAY"):
    _delay_chief_saves(float(os.environ["COPART_TEST_CHIEF_SAVE_DELAY"]))
  app.run(main)
