"""What the trainer hands the training input pipeline: flags that shape the pairs reach it."""

import os
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from copart_tf.data import pipeline
from copart_tf.training import trainer
from copart_tf.training.config import TrainConfig


class _PipelineReached(Exception):
  pass


def test_trainer_hands_augment_rotation_to_the_training_pipeline(tmp_path):
  # The flag must reach the training pairs (the test split's preview pairs are not augmented).
  for v in range(2):
    folder = tmp_path / "data" / "train" / f"vid{v}"
    os.makedirs(folder)
    for t in range(3):
      Image.fromarray(np.full((16, 16, 3), 40 * t, np.uint8)).save(folder / f"{t:07d}.png")
  config = TrainConfig(
    data_dir=str(tmp_path / "data"),
    model_dir=str(tmp_path / "run"),
    preset="tiny",
    num_parts=2,
    image_size=16,
    batch_size=2,
    train_steps=1,
    augment_rotation_deg=0.0,
  )
  calls = []

  def spy(*args, **kwargs):
    calls.append(kwargs)
    raise _PipelineReached

  with mock.patch.object(pipeline, "make_pair_dataset", side_effect=spy):
    with pytest.raises(_PipelineReached):
      trainer.train(config)
  assert calls[0]["augment"] and calls[0]["rotation_degrees"] == 0.0
