"""`copart_tf.model.loading`: building a model from a run's model.json (or an older config.json)."""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from copart_tf.model import loading
from copart_tf.model.copart_model import CoPartModel, config_from_settings


def _from_run_config(config):
  """What loading does for a run written before model.json: the trainer's own mapping."""
  return loading.model_from_config(config_from_settings(config, "none"))


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
    model = _from_run_config(config)
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
    model = _from_run_config(config)
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
    model = _from_run_config(config)
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


class ModelConfigTest(tf.test.TestCase):
  def _model(self):
    keras.utils.set_random_seed(3)
    model = CoPartModel.from_config(
      config_from_settings(
        {"num_parts": 2, "preset": "tiny", "image_size": 32, "shift_from": "heatmap"}, "none"
      )
    )
    model.build()
    return model

  def test_model_json_wins_over_config_json(self):
    # The run dir's model.json (model.get_config()) is what the model is rebuilt from.
    model = self._model()
    run = self.get_temp_dir()
    with open(os.path.join(run, loading.CONFIG_FILE), "w") as f:
      json.dump({"num_parts": 5, "preset": "tiny", "image_size": 32}, f)
    with open(os.path.join(run, loading.MODEL_CONFIG_FILE), "w") as f:
      json.dump(model.get_config(), f)
    rebuilt = loading.model_from_config(loading.read_model_config(run))
    self.assertEqual((rebuilt.num_parts, rebuilt.shift_from), (2, "heatmap"))

  def test_a_model_json_that_is_not_json_is_one_line_error(self):
    run = self.get_temp_dir()
    with open(os.path.join(run, loading.MODEL_CONFIG_FILE), "w") as f:
      f.write("{not json")
    with self.assertRaisesRegex(Exception, r"model\.json: not valid JSON"):
      loading.read_model_config(run)

  def test_keras_file_round_trip(self):
    # Registered for Keras serialization: a .keras file rebuilds the same model and weights.
    model = self._model()
    for weight in model.weights:  # not what a fresh model of the same seed would start from
      weight.assign(weight + 0.01)
    images = tf.random.stateless_uniform([1, 32, 32, 3], seed=[4, 5])
    path = os.path.join(self.get_temp_dir(), "model.keras")
    model.save(path)
    clone = keras.saving.load_model(path)
    self.assertIsInstance(clone, CoPartModel)
    self.assertEqual(clone.get_config(), model.get_config())
    self.assertLen(clone.weights, len(model.weights))
    for mine, theirs in zip(model.weights, clone.weights, strict=True):
      np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    self.assertAllClose(clone(images)["masks"], model(images)["masks"])
