"""Perceptual loss on VGG-19 features, and the choice of weights when offline."""

import os

import keras
import tensorflow as tf
from absl import logging

from copart_tf.errors import ConfigError

# relu1_1 .. relu5_1: in Keras' VGG19 the ReLU is fused into the conv layers.
VGG_LAYERS = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
VGG_LAYER_WEIGHTS = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)
KERAS_VGG_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
# Keras' ImageNet VGG weights were trained on Caffe-style inputs: BGR, 0-255, mean subtracted.
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


def keras_cache_path():
  """Where `keras.applications.VGG19(weights="imagenet")` keeps its download."""
  base = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
  return os.path.join(base, "models", KERAS_VGG_FILE)


def resolve_vgg_weights(vgg_weights):
  """Turns the `--vgg_weights` flag into what VGG19 should load.

  Args:
    vgg_weights: "auto" (the Keras cache file if present, else None), "imagenet" (Keras download),
      "random" (random init: same cost, no ImageNet knowledge; benchmarks), "none", or a path to
      vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5.

  Returns:
    (weights, description): `weights` is "imagenet", "random", a file path, or None when the
    perceptual term cannot be computed with ImageNet features.
  """
  if vgg_weights in (None, "", "none"):
    return None, "disabled (--vgg_weights=none)"
  if vgg_weights == "auto":
    cached = keras_cache_path()
    if os.path.exists(cached):
      return cached, f"ImageNet VGG-19 from the Keras cache {cached}"
    return None, f"ImageNet VGG-19 weights not found at {cached} (offline machine?)"
  if vgg_weights == "imagenet":
    return "imagenet", "ImageNet VGG-19 (Keras download)"
  if vgg_weights == "random":
    return "random", "VGG-19 with RANDOM weights (benchmark setting, not a perceptual loss)"
  if not os.path.exists(vgg_weights):
    raise ConfigError(
      f"--vgg_weights={vgg_weights}: file not found (expected {KERAS_VGG_FILE}, or one of "
      "auto|imagenet|random|none)"
    )
  return vgg_weights, f"VGG-19 weights from {vgg_weights}"


class VGGPerceptualLoss(keras.layers.Layer):
  """sum_i w_i mean |phi_i(I) - phi_i(I_hat)| over VGG-19 relu1_1 .. relu5_1 (paper Eq. 6).

  Real and reconstructed images go through VGG in one batched call; the real features are
  constants. Frozen: the VGG weights are never trained.

  Example:
  >>> loss = VGGPerceptualLoss(weights="random")
  >>> float(loss(tf.zeros([1, 32, 32, 3]), tf.zeros([1, 32, 32, 3])))
  0.0

  Args:
    weights: "imagenet", "random" or a path to the Keras notop .h5 file.
  """

  def __init__(self, weights="imagenet", **kwargs):
    super().__init__(trainable=False, **kwargs)
    load = None if weights == "random" else weights
    try:
      vgg = keras.applications.VGG19(include_top=False, weights=load, input_shape=(None, None, 3))
    except Exception as error:  # download failures and bad files surface as many types
      raise ConfigError(
        f"--vgg_weights={weights}: could not load VGG-19 weights ({error})"
      ) from None
    vgg.trainable = False
    outputs = [vgg.get_layer(name).output for name in VGG_LAYERS]
    self.features = keras.Model(vgg.input, outputs, name="vgg19_features")
    self.features.trainable = False

  def _preprocess(self, images):
    bgr = images[..., ::-1] * 255.0
    return bgr - tf.constant(_CAFFE_BGR_MEAN, dtype=images.dtype)

  def call(self, images, reconstructions):
    batch = tf.shape(images)[0]
    both = self._preprocess(tf.concat([images, reconstructions], axis=0))
    total = 0.0
    for weight, features in zip(VGG_LAYER_WEIGHTS, self.features(both), strict=True):
      features = tf.cast(features, tf.float32)  # VGG may run in bfloat16 (mixed precision)
      real = tf.stop_gradient(features[:batch])
      fake = features[batch:]
      total += weight * tf.reduce_mean(tf.abs(real - fake))
    return total


def log_perceptual_choice(description, fallback):
  """Logs loudly (WARNING, framed) when training without ImageNet perceptual features."""
  if fallback is None:
    logging.info("Perceptual loss: %s", description)
    return
  bar = "!" * 78
  logging.warning(
    "\n%s\n  PERCEPTUAL LOSS: %s.\n  Training with the fallback '%s' instead.\n"
    "  Pass --vgg_weights=/path/to/%s for the paper's loss.\n%s",
    bar,
    description,
    fallback,
    KERAS_VGG_FILE,
    bar,
  )
