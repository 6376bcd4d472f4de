"""Dead-part re-seeding (`copart_tf.training.reseeding`) on a tiny model, eagerly."""

import keras
import numpy as np
import tensorflow as tf

from copart_tf.errors import ConfigError
from copart_tf.model.copart_model import CoPartModel
from copart_tf.training import config as config_lib
from copart_tf.training import reseeding

K = 4
SIZE = 32


def _model(linear_from="regression"):
  keras.utils.set_random_seed(0)
  # A background offset of -5 lets the parts win pixels at initialisation; a part whose heatmap
  # bias is -100 then claims nothing, so the gate (log-claims, floor log 1e-6) hides it.
  model = CoPartModel(
    num_parts=K,
    preset="tiny",
    image_size=SIZE,
    shift_from="heatmap",
    linear_from=linear_from,
    initial_spread=0.5,
    initial_scale=0.25,
    pose_prior_radius=1.0,
    gate_masks_by_claims=True,
    background_depth_offset=-5.0,
  )
  model.build()
  optimizer = keras.optimizers.Adam(1e-3)
  optimizer.build(model.trainable_variables)
  return model, optimizer


def _images():
  return tf.constant(np.random.default_rng(0).uniform(size=(2, SIZE, SIZE, 3)), tf.float32)


def _counts(model, images):
  labels = model(images)["part_labels"].numpy().reshape(-1)
  return np.bincount(labels, minlength=K + 1)[1:]


def _kill(model, part):
  bias = model.transform_head.heatmap_bias
  values = bias.numpy()
  values[:, part] = -100.0
  bias.assign(values)


class ReseedingTest(tf.test.TestCase):
  def test_copy_part_makes_the_target_decode_like_the_source(self):
    for linear_from in ("regression", "heatmap"):
      model, optimizer = _model(linear_from)
      # Distinct optimizer slots, so that the copy of the slots is seen.
      for variable in model.trainable_variables:
        for slots in (optimizer._momentums, optimizer._velocities):
          slot = slots[optimizer._get_variable_index(variable)]
          slot.assign(tf.random.uniform(slot.shape))
      images = _images()
      reseeding.copy_part(model, optimizer, source=1, target=3)
      enc = model.encode(images)
      self.assertAllClose(enc["affines"][:, 3], enc["affines"][:, 1])
      self.assertAllClose(enc["heatmap_logits"][..., 3], enc["heatmap_logits"][..., 1])
      self.assertAllClose(enc["part_maps"][..., 4, :], enc["part_maps"][..., 2, :])
      self.assertNotAllClose(enc["affines"][:, 0], enc["affines"][:, 1])
      kernel = model.part_map_head.out.kernel
      latent = model.preset.latent_channels
      for slots in (optimizer._momentums, optimizer._velocities):
        slot = slots[optimizer._get_variable_index(kernel)].numpy()
        self.assertAllEqual(slot[..., 4 * latent : 5 * latent], slot[..., 2 * latent : 3 * latent])
        self.assertNotAllClose(
          slot[..., 1 * latent : 2 * latent], slot[..., 2 * latent : 3 * latent]
        )

  def test_a_dead_part_comes_back_split_from_the_largest(self):
    model, optimizer = _model()
    images = _images()
    _kill(model, 2)
    counts = _counts(model, images)
    self.assertEqual(counts[2], 0)
    donor = int(np.argmax(counts))
    pairs = reseeding.PartReseeder(min_share=0.01)(model, optimizer, images)
    self.assertEqual(pairs, [(2, donor)])
    after = _counts(model, images)
    self.assertGreater(after[2], 0.05 * after.sum())
    self.assertGreater(after[donor], 0.05 * after.sum())
    # Split along the donor's principal axis: the two centres are apart.
    centres = model(images)["centers"].numpy()
    self.assertGreater(np.linalg.norm(centres[:, 2] - centres[:, donor], axis=-1).min(), 0.05)

  def test_nothing_to_do_when_every_part_is_alive_or_none_is(self):
    model, optimizer = _model()
    images = _images()
    before = [v.numpy() for v in model.trainable_variables]
    self.assertEqual(reseeding.PartReseeder(min_share=0.01)(model, optimizer, images), [])
    # At the paper's start the background wins every pixel: no live donor, nothing changes.
    model.background_depth_offset = 50.0
    self.assertEqual(_counts(model, images).sum(), 0)
    self.assertEqual(reseeding.PartReseeder(min_share=0.01)(model, optimizer, images), [])
    for old, variable in zip(before, model.trainable_variables, strict=True):
      self.assertAllEqual(old, variable.numpy())

  def test_config_checks(self):
    with self.assertRaisesRegex(ConfigError, "--reseed_every: needs --shift_from=heatmap"):
      config_lib.TrainConfig(reseed_every=100).validate()
    with self.assertRaisesRegex(ConfigError, "--reseed_min_share=0"):
      config_lib.TrainConfig(reseed_every=100, shift_from="heatmap", reseed_min_share=0).validate()
    config_lib.TrainConfig(reseed_every=100, shift_from="heatmap").validate()


if __name__ == "__main__":
  tf.test.main()
