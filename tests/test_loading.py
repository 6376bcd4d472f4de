"""`copart_tf.model.loading`: building a model from a run's config.json."""

import tensorflow as tf

from copart_tf.model import loading


class ModelFromRunConfigTest(tf.test.TestCase):
  def test_loss_terms_this_version_lacks_are_ignored(self):
    # A run written by a version that had a loss term since deleted still loads for inference.
    config = {
      "num_parts": 2,
      "preset": "tiny",
      "image_size": 32,
      "detach_background_poses": True,
      "loss_weights": {"background": 0.3, "a_deleted_term": 1.0},
    }
    model = loading.model_from_run_config(config)
    self.assertEqual(model.loss_weights["background"], 0.3)
    self.assertNotIn("a_deleted_term", model.loss_weights)
    self.assertTrue(model.detach_background_poses)
    self.assertEqual(model(tf.zeros([1, 32, 32, 3]))["masks"].shape, [1, 32, 32, 3])

  def test_claims_gate_is_read_from_the_run_config_and_round_trips(self):
    config = {
      "num_parts": 2,
      "preset": "tiny",
      "image_size": 32,
      "shift_from": "heatmap",
      "gate_masks_by_claims": True,
      "loss_weights": {"claims": 1.0, "consistency": 10.0},  # "claims": deleted in session 7
    }
    model = loading.model_from_run_config(config)
    self.assertTrue(model.gate_masks_by_claims)
    self.assertEqual(model.loss_weights["consistency"], 10.0)
    clone = type(model).from_config(model.get_config())
    self.assertTrue(clone.gate_masks_by_claims)
    images = tf.random.stateless_uniform([1, 32, 32, 3], seed=[1, 2])
    self.assertEqual(model(images)["masks"].shape, [1, 32, 32, 3])

  def test_rung_a_options_are_read_from_the_run_config_and_round_trip(self):
    # A run config of sprites.cfg's eighth-session recipe (flat colours, heatmap-read rotation and
    # scale, log scales, matting, presence) must rebuild the same model for inference, not the defaults.
    config = {
      "num_parts": 2,
      "preset": "tiny",
      "image_size": 32,
      "shift_from": "heatmap",
      "warp_source_pixels": True,
      "gate_masks_by_claims": True,
      "flat_part_colours": True,
      "linear_from": "heatmap",
      "scale_activation": "log",
      "colour_matting_gain": 4.0,
      "presence_threshold": 0.03,
      "depth_bound": 5.0,
      "background_colour": "row_median",
      "initial_scale": 0.05,  # below the tanh range: only valid with log scales
    }
    model = loading.model_from_run_config(config)
    for clone in (model, type(model).from_config(model.get_config())):
      self.assertTrue(clone.flat_part_colours)
      self.assertEqual(clone.linear_from, "heatmap")
      self.assertEqual(clone.scale_activation, "log")
      self.assertEqual((clone.colour_matting_gain, clone.presence_threshold), (4.0, 0.03))
      self.assertEqual((clone.depth_bound, clone.background_colour), (5.0, "row_median"))
    out = model(tf.random.stateless_uniform([1, 32, 32, 3], seed=[1, 2]))
    self.assertAllClose(out["scale"], tf.fill([1, 2, 2], 0.05), atol=1e-5)


if __name__ == "__main__":
  tf.test.main()
