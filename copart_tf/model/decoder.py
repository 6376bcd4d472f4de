"""The part decoder shared by all parts (background included)."""

import keras
import tensorflow as tf

from copart_tf.model import layers as layers_lib
from copart_tf.model.presets import get_preset


class PartDecoder(keras.layers.Layer):
  """Latent part maps `[N, h, w, C_lat]` -> part images `[N, H, W, 3]` and depth logits `[N, H, W, 1]`.

  Parts are folded into the batch by the caller, so one call decodes every part of every image
  (the reference loops over parts in Python). Part images are linear (not clamped); the masks
  come from a softmax over the depth logits of all parts at a pixel.

  Example:
  >>> decoder = PartDecoder("tiny")
  >>> images, depth = decoder(tf.zeros([6, 16, 16, 4]))
  >>> images.shape, depth.shape
  (TensorShape([6, 64, 64, 3]), TensorShape([6, 64, 64, 1]))
  """

  def __init__(self, preset="small", **kwargs):
    super().__init__(**kwargs)
    self.preset = get_preset(preset)
    p = self.preset
    if 2 ** (len(p.decoder_channels) - 1) * p.decoder_output_stride != 4:
      raise ValueError(
        f"preset {p.name}: decoder upsamplings x output stride must bring H/4 back to H"
      )
    self.convs = [
      layers_lib.conv_norm_act(c, p.decoder_groups, name=f"conv_{i}")
      for i, c in enumerate(p.decoder_channels)
    ]
    # Nearest x2 then a 3x3 conv: bilinear resizing's gradient is ~3x slower on CPU (measured)
    # and the conv that follows smooths the blocks anyway.
    self.upsample = keras.layers.UpSampling2D(2, interpolation="nearest")
    self.out = keras.layers.Conv2D(4, 3, padding="same", name="out")

  def build(self, input_shape):
    shape = tuple(input_shape)
    for i, layer in enumerate(self.convs):
      if i > 0:
        shape = (shape[0], shape[1] * 2, shape[2] * 2, shape[3])
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    self.out.build(shape)
    self.built = True

  def call(self, latents):
    x = latents
    for i, layer in enumerate(self.convs):
      if i > 0:
        x = self.upsample(x)
      x = layer(x)
    x = self.out(x)
    stride = self.preset.decoder_output_stride
    if stride > 1:
      shape = tf.shape(x)
      x = tf.image.resize(x, [shape[1] * stride, shape[2] * stride], method="bilinear")
    return x[..., :3], x[..., 3:]
