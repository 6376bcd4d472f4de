"""A training run that fails on bad data before its first checkpoint leaves nothing behind.

Calls `copart_tf.training.trainer.train` in-process on a two-video dataset of 16x16 frames with
the `tiny` preset (a few seconds): the first run meets a corrupt frame, the corrected rerun with
another --num_parts must then train in the same --model_dir.
"""

import os

import numpy as np
import pytest
from PIL import Image

from copart_tf.errors import DataError
from copart_tf.training import config as config_lib
from copart_tf.training import trainer


def _dataset(root):
  for v in range(2):
    os.makedirs(root / "train" / f"v{v}")
    for t in range(3):
      frame = np.full((16, 16, 3), (40 * t, 80 * v, 128), np.uint8)
      Image.fromarray(frame).save(root / "train" / f"v{v}" / f"{t:07d}.png")
  bad = root / "train" / "v1" / "0000001.png"
  good = bad.read_bytes()
  bad.write_bytes(good[:-20])  # header intact, pixels cut: fails when decoded
  return bad, good


def _config(data_dir, model_dir, **overrides):
  values = dict(
    data_dir=str(data_dir),
    model_dir=str(model_dir),
    train_steps=1,
    batch_size=2,
    num_parts=2,
    image_size=16,
    preset="tiny",
    vgg_weights="none",
    perceptual_fallback="none",
    evaluate_at_end=False,
    checkpoint_every=1,
    log_every=1,
    image_every=100,
  )
  values.update(overrides)
  return config_lib.TrainConfig(**values)


def test_failed_first_run_leaves_no_model_dir_and_rerun_trains(tmp_path):
  bad, good = _dataset(tmp_path / "data")
  model_dir = tmp_path / "runs" / "mine"
  with pytest.raises(DataError, match="0000001.png"):
    trainer.train(_config(tmp_path / "data", model_dir))
  assert not model_dir.exists()  # the run created it and saved no checkpoint: gone
  bad.write_bytes(good)
  summary = trainer.train(_config(tmp_path / "data", model_dir, num_parts=3))
  assert summary["checkpoint"] and summary["step"] == 1


def test_failed_run_in_existing_dir_removes_only_what_it_wrote(tmp_path):
  bad, good = _dataset(tmp_path / "data")
  model_dir = tmp_path / "mine"
  model_dir.mkdir()
  (model_dir / "notes.txt").write_text("the user's own file")
  with pytest.raises(DataError, match="0000001.png"):
    trainer.train(_config(tmp_path / "data", model_dir))
  assert sorted(os.listdir(model_dir)) == ["notes.txt"]


def test_config_json_without_checkpoint_does_not_block_another_architecture(tmp_path):
  bad, good = _dataset(tmp_path / "data")
  bad.write_bytes(good)
  model_dir = tmp_path / "mine"
  model_dir.mkdir()
  # What a run killed before its first checkpoint leaves: config.json only.
  (model_dir / "config.json").write_text(_config(tmp_path / "data", model_dir).to_json())
  summary = trainer.train(_config(tmp_path / "data", model_dir, num_parts=3))
  assert summary["checkpoint"]
