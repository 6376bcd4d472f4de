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

  Two layouts (see `Preset.decoder_pixel_shuffle`): upsample-then-conv (reference), or convs at
  latent resolution followed by a sub-pixel (depth_to_space) output. Either may stop below full
  resolution and bilinearly resize its 4 output channels (`decoder_output_stride`).

  Example:
  >>> decoder = PartDecoder("tiny")
  >>> images, depth = decoder(tf.zeros([6, 16, 16, 4]))
  >>> images.shape, depth.shape
  (TensorShape([6, 64, 64, 3]), TensorShape([6, 64, 64, 1]))
  """

  def __init__(self, preset="small", image_bias=0.5, **kwargs):
    super().__init__(**kwargs)
    self.preset = get_preset(preset)
    self.image_bias = float(image_bias)
    p = self.preset
    shuffle = p.decoder_pixel_shuffle
    upsampling = shuffle if shuffle else 2 ** (len(p.decoder_channels) - 1)
    if upsampling * p.decoder_output_stride != 4:
      raise ValueError(f"preset {p.name}: the decoder must bring H/4 back to H")
    self._conv_names = layers_lib.add_sublayers(
      self,
      "conv",
      [
        layers_lib.conv_norm_act(
          c, p.decoder_groups if i < len(p.decoder_channels) - 1 else 0, name=f"conv_{i}"
        )
        for i, c in enumerate(p.decoder_channels)
      ],
    )
    # Upsample-then-conv layout: nearest x2 then a 3x3 conv (bilinear resizing's gradient is ~3x
    # slower on CPU, measured, and the following conv smooths the blocks anyway). GroupNorm on
    # every conv but the last, highest-resolution one, where it costs as much
    # as the conv itself.
    # A 1x1 output conv written as Dense (a matmul over the channel axis): oneDNN's 1x1-conv
    # filter gradient on many small maps ran ~10x slower than the equivalent matmul (measured).
    # Part-image channels start at mid-grey (bias 0.5): with Adam's lr-sized steps a zero bias
    # needs ~1/lr steps to reach the images' mean, and until then every reconstruction is too
    # dark (measured: autoencoder L1 0.066 -> 0.032 after 200 steps). Depth logits start at 0.
    self.out = keras.layers.Dense(
      4 * max(shuffle, 1) ** 2,
      # A residual decoder (image_bias 0, see CoPartModel.warp_source_pixels) starts at exactly
      # zero: the pixels it is added to are already right where the poses are.
      kernel_initializer="glorot_uniform" if self.image_bias else "zeros",
      bias_initializer=keras.initializers.Constant(
        ([self.image_bias] * 3 + [0.0]) * max(shuffle, 1) ** 2
      ),
      name="out",
      # float32 under a mixed precision policy too: the softmax masks, the assembly and the
      # losses consume these outputs.
      dtype="float32",
    )

  @property
  def convs(self):
    return layers_lib.sublayers(self, self._conv_names)

  def build(self, input_shape):
    shape = tuple(input_shape)
    shuffle = self.preset.decoder_pixel_shuffle
    for i, layer in enumerate(self.convs):
      if i > 0 and not shuffle:
        shape = (shape[0], shape[1] * 2, shape[2] * 2, shape[3])
      layer.build(shape)
      shape = layer.compute_output_shape(shape)
    self.out.build(shape)
    self.built = True

  def call(self, latents):
    shuffle = self.preset.decoder_pixel_shuffle
    x = latents
    for i, layer in enumerate(self.convs):
      x = layer(x, upsample=i > 0 and not shuffle)
    x = self.out(x)
    if shuffle:
      x = tf.nn.depth_to_space(x, shuffle)
    stride = self.preset.decoder_output_stride
    if stride > 1:
      shape = tf.shape(x)
      x = tf.image.resize(x, [shape[1] * stride, shape[2] * stride], method="bilinear")
    # tf.split, not slicing: the gradient of a strided slice materialises and scatters into a
    # full-size zero tensor (it was 13% of the small preset's training step).
    images, depth = tf.split(x, [3, 1], axis=-1)
    return images, depth
