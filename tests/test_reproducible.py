"""The same training command gives the same model (issue 19 §2, and the learning test's margin).

Initial weights, data sampling, augmentation and the equivariance warps all come from `--seed`;
two short runs with the same seed must end with identical weights, and a different seed must
change them (so the test fails if the seed is ignored, e.g. weights drawn from the global RNG).
"""

import os
import tempfile

import numpy as np
import tensorflow as tf

from copart_tf.synthetic import sprites
from copart_tf.training import config as config_lib
from copart_tf.training import trainer


def _final_weights(data_dir, model_dir, seed):
  config = config_lib.TrainConfig(
    data_dir=data_dir,
    model_dir=model_dir,
    preset="tiny",
    num_parts=2,
    image_size=32,
    batch_size=2,
    train_steps=3,
    seed=seed,
    vgg_weights="none",
    checkpoint_every=3,
    log_every=3,
    image_every=100,
    evaluate_at_end=False,
  )
  trainer.train(config)
  reader = tf.train.load_checkpoint(trainer.checkpoint_dir(model_dir))
  # Keras 3 models are tracked through the optimizer's list of the variables it trains.
  names = sorted(
    name
    for name in reader.get_variable_to_shape_map()
    if name.startswith("optimizer/_trainable_variables/") and "OPTIMIZER_SLOT" not in name
  )
  return {name: reader.get_tensor(name) for name in names}


class ReproducibleTrainingTest(tf.test.TestCase):
  def test_same_seed_same_weights_other_seed_other_weights(self):
    with tempfile.TemporaryDirectory() as tmp:
      data = os.path.join(tmp, "data")
      sprites.synthesize_sprites_dataset(
        data, train_videos=2, test_videos=1, frames=4, seed=0, contact_sheet=False
      )
      first = _final_weights(data, os.path.join(tmp, "a"), seed=0)
      again = _final_weights(data, os.path.join(tmp, "b"), seed=0)
      other = _final_weights(data, os.path.join(tmp, "c"), seed=1)
    self.assertNotEmpty(first)
    self.assertEqual(sorted(first), sorted(again))
    for name, value in first.items():
      np.testing.assert_array_equal(value, again[name], err_msg=name)
    self.assertTrue(any(not np.array_equal(v, other[k]) for k, v in first.items()))


if __name__ == "__main__":
  tf.test.main()
