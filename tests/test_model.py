"""Tests of CoPartModel: shapes, assembly, warp paths, training, numerical safety, config."""

import json
import time

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from copart_tf.model import copart_model
from copart_tf.model.copart_model import CoPartModel
from copart_tf.ops import affine as affine_lib


def _images(batch, size, seed=0):
  return tf.constant(np.random.default_rng(seed).random((batch, size, size, 3)), tf.float32)


def _model(num_parts=2, size=32, seed=0, **kwargs):
  preset = kwargs.pop("preset", "tiny")
  keras.utils.set_random_seed(seed)
  model = CoPartModel(num_parts=num_parts, preset=preset, image_size=size, **kwargs)
  model.build()
  return model


def _scene(shift):
  """A 32x32 frame: two coloured squares on grey, the first moved right by `shift` pixels."""
  image = np.full((32, 32, 3), 0.2, np.float32)
  image[8:16, 6 + shift : 14 + shift] = [0.9, 0.2, 0.1]
  image[18:26, 14 : 22 - shift // 2] = [0.1, 0.3, 0.9]
  return image


def _warp(batch):
  theta = 0.3
  return np.tile(
    np.array(
      [
        [
          [0.95 * np.cos(theta), -0.9 * np.sin(theta), 0.05],
          [0.95 * np.sin(theta), 0.9 * np.cos(theta), -0.03],
        ]
      ],
      np.float32,
    ),
    (batch, 1, 1),
  )


class OutputTest(tf.test.TestCase, parameterized.TestCase):
  @parameterized.named_parameters(
    ("tiny_k1", "tiny", 1),
    ("tiny_k4", "tiny", 4),
    ("tiny_k10", "tiny", 10),
    ("small_k4", "small", 4),
  )
  def test_output_shapes(self, preset, k):
    model = _model(num_parts=k, size=64, preset=preset)
    out = model(_images(2, 64))
    expected = {
      "masks": (2, 64, 64, k + 1),
      "part_labels": (2, 64, 64),
      "depth": (2, 64, 64, k + 1),
      "part_images": (2, 64, 64, k + 1, 3),
      "reconstruction": (2, 64, 64, 3),
      "affines": (2, k, 2, 3),
      "centers": (2, k, 2),
      "cos_sin": (2, k, 2),
      "scale": (2, k, 2),
    }
    self.assertEqual({key: tuple(value.shape) for key, value in out.items()}, expected)
    self.assertEqual(out["part_labels"].dtype, tf.int32)
    self.assertEqual(out["masks"].dtype, tf.float32)
    # At initialisation every part pose is the identity (rotation (1, 0), scale 1, shift 0).
    self.assertAllClose(out["affines"], affine_lib.identity([2, k]), atol=1e-6)
    self.assertLen(model.part_names, k + 1)
    self.assertEqual(model.part_names[0], "background")

  def test_masks_and_labels(self):
    model = _model(num_parts=4, size=32)
    out = model(_images(3, 32, seed=2))
    self.assertAllClose(tf.reduce_sum(out["masks"], axis=-1), tf.ones([3, 32, 32]), atol=1e-5)
    self.assertAllGreaterEqual(out["masks"], 0.0)
    self.assertAllEqual(out["part_labels"], tf.argmax(out["masks"], axis=-1, output_type=tf.int32))
    self.assertAllEqual(out["part_labels"], tf.argmax(out["depth"], axis=-1, output_type=tf.int32))
    self.assertAllClose(out["masks"], tf.nn.softmax(out["depth"], axis=-1), atol=1e-6)
    # The reconstruction is the mask-weighted sum of the part images.
    assembled = tf.reduce_sum(out["masks"][..., None] * out["part_images"], axis=-2)
    self.assertAllClose(out["reconstruction"], assembled, atol=1e-5)
    self.assertAllEqual(out["centers"], out["affines"][..., 2])

  def test_background_depth_offset_shifts_only_the_background_logit(self):
    plain = _model(num_parts=4, size=32)
    offset = _model(num_parts=4, size=32, background_depth_offset=3.0)
    offset.set_weights(plain.get_weights())
    images = _images(2, 32, seed=5)
    a, b = plain(images), offset(images)
    self.assertAllClose(b["depth"][..., 0], a["depth"][..., 0] + 3.0, atol=1e-5)
    self.assertAllClose(b["depth"][..., 1:], a["depth"][..., 1:], atol=1e-5)
    self.assertAllClose(tf.reduce_sum(b["masks"], axis=-1), tf.ones([2, 32, 32]), atol=1e-5)
    self.assertGreater(float(tf.reduce_mean(b["masks"][..., 0])), 0.5)
    self.assertEqual(offset.get_config()["background_depth_offset"], 3.0)

  def test_animate_shapes(self):
    model = _model(num_parts=3, size=32)
    out = model.animate(_images(2, 32, seed=3), _images(2, 32, seed=4))
    self.assertEqual(out["image"].shape, (2, 32, 32, 3))
    self.assertEqual(out["masks"].shape, (2, 32, 32, 4))
    self.assertEqual(out["part_labels"].shape, (2, 32, 32))

  def test_paper_preset(self):
    keras.utils.set_random_seed(0)
    model = CoPartModel(num_parts=10, preset="paper", image_size=128)
    model.build()
    encoder = model.encoder.count_params()
    heads = model.part_map_head.count_params() + model.transform_head.count_params()
    print(
      f"\npaper preset (K=10): encoder {encoder:,}, heads {heads:,}, encoder+heads "
      f"{encoder + heads:,}, decoder {model.decoder.count_params():,}, total {model.count_params():,}"
    )
    # DESIGN.md §3: about 111M encoder parameters at the reference widths.
    self.assertBetween(encoder + heads, 90e6, 140e6)
    out = model(tf.zeros([1, 128, 128, 3]))
    self.assertEqual(out["masks"].shape, (1, 128, 128, 11))
    self.assertEqual(out["affines"].shape, (1, 10, 2, 3))
    self.assertTrue(np.all(np.isfinite(out["reconstruction"].numpy())))

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "num_parts"):
      CoPartModel(num_parts=0, preset="tiny")
    with self.assertRaisesRegex(ValueError, "multiple of 4"):
      CoPartModel(num_parts=2, preset="tiny", image_size=30)
    with self.assertRaisesRegex(ValueError, "perceptual_loss"):
      CoPartModel(num_parts=2, preset="tiny", perceptual_loss="lpips")
    with self.assertRaisesRegex(ValueError, "part_names"):
      CoPartModel(num_parts=2, preset="tiny", part_names=["background", "a"])


class WarpPathTest(tf.test.TestCase):
  def test_compose_warps_agree_at_initialisation(self):
    two_step = _model(num_parts=3, size=32, compose_warps=False)
    composed = _model(num_parts=3, size=32, seed=1, compose_warps=True)
    composed.set_weights(two_step.get_weights())
    images = _images(2, 32, seed=5)
    # All T are the identity at init, so going through the canonical frame resamples at the
    # pixel centres: both paths decode the same latent maps.
    out_a, out_b = two_step(images), composed(images)
    for key in ("masks", "reconstruction", "part_images", "affines"):
      self.assertAllClose(out_a[key], out_b[key], atol=1e-4)
    warp = tf.constant(_warp(2))
    pair_a = two_step.forward_pair(images, images[::-1], warp)
    pair_b = composed.forward_pair(images, images[::-1], warp)
    for key in (
      "source_reconstruction",
      "target_reconstruction",
      "source_masks",
      "target_masks",
      "canonical_masks",
      "warped_affines",
    ):
      self.assertAllClose(pair_a[key], pair_b[key], atol=1e-4, msg=key)
    losses_a = two_step.compute_losses(images, images[::-1], warp, pair_a)
    losses_b = composed.compute_losses(images, images[::-1], warp, pair_b)
    for key in copart_model.LOSS_TERMS:
      self.assertAllClose(losses_a[key], losses_b[key], atol=1e-4, msg=key)

  def test_paths_differ_once_poses_move(self):
    # Sanity check that the flag does switch paths: with rotated poses the two-step path
    # resamples twice (a blur) and the outputs are no longer identical.
    two_step = _model(num_parts=2, size=32, compose_warps=False)
    composed = _model(num_parts=2, size=32, compose_warps=True)
    composed.set_weights(two_step.get_weights())
    for model in (two_step, composed):
      model.transform_head.rotation.bias.assign([0.8, 0.6, 0.6, -0.8])
    images = _images(1, 32, seed=6)
    diff = tf.reduce_max(
      tf.abs(two_step(images)["reconstruction"] - composed(images)["reconstruction"])
    )
    self.assertGreater(float(diff), 1e-5)


class TrainingTest(tf.test.TestCase):
  def test_train_step_overfits_one_pair(self):
    model = _model(num_parts=2, size=32)
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    # Build the optimizer first so the tf.function traces once (variable creation retraces).
    model.optimizer.build(model.trainable_variables)
    data = {
      "source": tf.constant(_scene(0)[None]),
      "target": tf.constant(_scene(4)[None]),
      "warp_affines": tf.constant(_warp(1)),
    }
    step = tf.function(model.train_step, autograph=False)

    @tf.function(autograph=False)
    def evaluate(d):
      outputs = model.forward_pair(d["source"], d["target"], d["warp_affines"])
      return model.compute_losses(d["source"], d["target"], d["warp_affines"], outputs)

    before = {key: float(value) for key, value in evaluate(data).items()}
    start = time.time()
    for _ in range(300):
      logs = step(data)
    after = {key: float(value) for key, value in evaluate(data).items()}
    print(
      f"\noverfit: total {before['total']:.3f} -> {after['total']:.3f} in {time.time() - start:.1f}s"
    )
    self.assertEqual(set(logs), set(copart_model.LOSS_TERMS) | {"grad_norm"})
    self.assertEqual(int(model.optimizer.iterations), 300)
    # The concentration/background terms of uniform initial masks form a floor that only falls
    # once parts become compact, so the total falls less than the reconstruction.
    self.assertGreater(before["total"] / after["total"], 2.5)
    self.assertGreater(before["rec_target"] / after["rec_target"], 5.0)
    self.assertTrue(all(np.isfinite(v) for v in after.values()))

  def test_auxiliary_warmup_ramps_every_non_reconstruction_term(self):
    model = _model(num_parts=2, size=32, auxiliary_warmup_steps=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.optimizer.build(model.trainable_variables)
    source, target = tf.constant(_scene(0)[None]), tf.constant(_scene(4)[None])
    warp = tf.constant(_warp(1))
    outputs = model.forward_pair(source, target, warp)
    w = model.loss_weights

    def totals():
      terms = model.compute_losses(source, target, warp, outputs)
      reconstruction = w["target_rec"] * terms["rec_target"] + w["source_rec"] * terms["rec_source"]
      return float(terms["total"]), float(reconstruction)

    total, reconstruction = totals()  # step 0: reconstruction only
    self.assertAllClose(total, reconstruction, rtol=1e-6)
    model.optimizer.iterations.assign(5)  # half-way: half of the auxiliary terms
    half, _ = totals()
    model.optimizer.iterations.assign(20)  # past the ramp: everything
    full, _ = totals()
    self.assertGreater(full, reconstruction)
    self.assertAllClose(half - reconstruction, 0.5 * (full - reconstruction), rtol=1e-5)

  @staticmethod
  def _assert_finite(test, values, what):
    for name, value in values:
      test.assertIsNotNone(value, f"{what} {name} is None")
      test.assertTrue(np.all(np.isfinite(np.asarray(value))), f"{what} {name} is not finite")

  def test_black_and_white_frames_are_finite(self):
    model = _model(num_parts=3, size=32, background_on="both")
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    black, white = tf.zeros([2, 32, 32, 3]), tf.ones([2, 32, 32, 3])
    # Source and target differ, so both extremes go through both the source and target paths.
    for source, target in ((black, white), (white, black)):
      warp = tf.constant(_warp(2))
      with tf.GradientTape() as tape:
        outputs = model.forward_pair(source, target, warp)
        losses = model.compute_losses(source, target, warp, outputs)
      gradients = tape.gradient(losses["total"], model.trainable_variables)
      self._assert_finite(self, losses.items(), "loss")
      names = [v.path for v in model.trainable_variables]
      self._assert_finite(self, zip(names, gradients, strict=True), "gradient")
    # One eager train_step, with W drawn by the model (tuple input, no warp_affines).
    logs = model.train_step((black, white))
    self._assert_finite(self, logs.items(), "tracked loss")
    self._assert_finite(self, [(v.path, v.numpy()) for v in model.variables], "variable")


class ConfigTest(tf.test.TestCase):
  def test_config_round_trip(self):
    model = CoPartModel(
      num_parts=3,
      preset="tiny",
      image_size=32,
      compose_warps=True,
      perceptual_loss="none",
      background_on="both",
      covariance_threshold=0.05,
      equivariance_rotation=1.0,
      part_names=["background", "head", "arm", "leg"],
      seed=7,
      equivariance=0.05,
      grad=2.0,
    )
    config = model.get_config()
    json.dumps(config)  # plain Python values only
    self.assertEqual(config["equivariance"], 0.05)
    self.assertEqual(config["grad"], 2.0)
    self.assertEqual(config["l1"], copart_model.DEFAULT_LOSS_WEIGHTS["l1"])
    clone = CoPartModel.from_config(config)
    self.assertEqual(clone.get_config(), config)
    self.assertEqual(clone.part_names, ["background", "head", "arm", "leg"])
    self.assertTrue(clone.compose_warps)
    self.assertEqual(clone.loss_weights, model.loss_weights)
    # Same architecture: the weights transfer and give the same outputs.
    model.build()
    clone.build()
    clone.set_weights(model.get_weights())
    images = _images(1, 32, seed=8)
    self.assertAllClose(model(images)["masks"], clone(images)["masks"], atol=1e-6)

  def test_a_tracker_per_loss_term(self):
    model = CoPartModel(num_parts=2, preset="tiny", image_size=32)
    names = [metric.name for metric in model.metrics]
    # One Mean per loss term, then the gradient-norm tracker (logged as train/grad_norm).
    self.assertEqual(names, list(copart_model.LOSS_TERMS) + ["grad_norm"])
    self.assertTrue(all(isinstance(metric, keras.metrics.Mean) for metric in model.metrics))
    for term in (
      "total",
      "rec_target",
      "rec_source",
      "l1",
      "grad",
      "perceptual",
      "background",
      "translation",
      "rotation_scale",
      "equivariance",
      "concentration",
      "canonical_concentration",
    ):
      self.assertIn(term, names)


if __name__ == "__main__":
  tf.test.main()
