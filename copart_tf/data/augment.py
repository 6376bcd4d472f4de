"""Frame preprocessing and pair augmentation (DESIGN.md §5), stateless and graph-friendly.

Every op here is plain TensorFlow, works eagerly and inside `tf.data` (tested both ways), and
draws its randomness only from an explicit stateless seed, so the training pipeline can derive it
from (seed, example index).

Pair augmentation (`augment_pair`) applies ONE draw to both frames of a pair, in this order:

1. time flip with probability 0.5: swap source and target;
2. rotation by U(-10, 10) degrees about the image centre, bilinear, ``REFLECT`` fill (mirror
   across the border: no black corners and no smeared edge rows; the corners the rotation
   exposes are at most ~9 % of the side at 10 degrees);
3. colour jitter 0.1, in a fixed order: brightness (multiply by U(0.9, 1.1)), contrast (scale
   around each frame's per-channel mean by U(0.9, 1.1)), saturation (U(0.9, 1.1)), hue (shift by
   U(-0.1, 0.1) of the colour wheel); then clip to [0, 1].

Resizing to the model size uses area averaging when both sides shrink and antialiased bilinear
otherwise (upscaling, or mixed), never nearest neighbour (the reference uses nearest).
"""

import math

import tensorflow as tf

ROTATION_DEGREES = 10.0
JITTER = 0.1
TIME_FLIP_PROB = 0.5


def to_float_image(image):
  """uint8 / uint16 / float image -> float32 in [0, 1] (`tf.image.convert_image_dtype`)."""
  image = tf.convert_to_tensor(image)
  if image.dtype == tf.float32:
    return image
  return tf.image.convert_image_dtype(image, tf.float32)


def resize_image(image, size):
  """Resizes one frame to `size` x `size` with area (downscale) / bilinear (upscale) sampling.

  Args:
    image: `[H, W, C]` (or `[B, H, W, C]`) uint8 or float; H and W may be dynamic.
    size: output side S (int).

  Returns:
    float32 `[S, S, C]` (or `[B, S, S, C]`), values in the input's [0, 1] range.
  """
  image = to_float_image(image)
  shape = tf.shape(image)
  h, w = shape[-3], shape[-2]

  def area():
    return tf.image.resize(image, [size, size], method="area")

  def bilinear():
    return tf.image.resize(image, [size, size], method="bilinear", antialias=True)

  def same():
    return tf.identity(image)

  out = tf.case(
    [
      (tf.logical_and(tf.equal(h, size), tf.equal(w, size)), same),
      (tf.logical_and(h >= size, w >= size), area),
    ],
    default=bilinear,
  )
  static = image.shape.as_list()
  out.set_shape(static[:-3] + [size, size, static[-1]])
  return out


def rotation_transforms(angles, height, width):
  """Projective transform rows rotating images about their centre.

  Args:
    angles: `[B]` float32, radians (counter-clockwise on screen: y points down).
    height: image height H.
    width: image width W.

  Returns:
    `[B, 8]` float32 rows for `ImageProjectiveTransformV3` (output pixel -> input pixel, pixel
    centres at integer coordinates).
  """
  angles = tf.cast(angles, tf.float32)
  cx = (tf.cast(width, tf.float32) - 1.0) / 2.0
  cy = (tf.cast(height, tf.float32) - 1.0) / 2.0
  c, s = tf.cos(angles), tf.sin(angles)
  # input = R(angle) (output - centre) + centre
  a0, a1 = c, -s
  b0, b1 = s, c
  a2 = cx - a0 * cx - a1 * cy
  b2 = cy - b0 * cx - b1 * cy
  zeros = tf.zeros_like(angles)
  return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=-1)


def rotate_images(images, angle, fill_mode="REFLECT"):
  """Rotates a batch of images by the same angle about their centre (bilinear).

  Args:
    images: `[B, H, W, C]` float32.
    angle: scalar float32, radians.
    fill_mode: ``"REFLECT"`` (default), ``"NEAREST"`` (edge), ``"WRAP"`` or ``"CONSTANT"``.

  Returns:
    `[B, H, W, C]` float32.
  """
  images = tf.convert_to_tensor(images, tf.float32)
  shape = tf.shape(images)
  transform = rotation_transforms(tf.reshape(angle, [1]), shape[1], shape[2])
  out = tf.raw_ops.ImageProjectiveTransformV3(
    images=images,
    transforms=transform,
    output_shape=shape[1:3],
    fill_value=tf.constant(0.0, tf.float32),
    interpolation="BILINEAR",
    fill_mode=fill_mode,
  )
  out.set_shape(images.shape)
  return out


def color_jitter(images, brightness, contrast, saturation, hue):
  """Applies the same colour change to every image of a batch.

  Args:
    images: `[B, H, W, 3]` float32 in [0, 1].
    brightness: scalar multiplicative factor (1 = unchanged).
    contrast: scalar contrast factor around each image's per-channel mean (1 = unchanged).
    saturation: scalar saturation factor (1 = unchanged).
    hue: scalar hue shift in [-0.5, 0.5] (0 = unchanged).

  Returns:
    `[B, H, W, 3]` float32 in [0, 1].
  """
  images = tf.clip_by_value(images * brightness, 0.0, 1.0)
  images = tf.clip_by_value(tf.image.adjust_contrast(images, contrast), 0.0, 1.0)
  images = tf.clip_by_value(tf.image.adjust_saturation(images, saturation), 0.0, 1.0)
  images = tf.image.adjust_hue(images, hue)
  return tf.clip_by_value(images, 0.0, 1.0)


def augment_pair(
  source,
  target,
  seed,
  rotation_degrees=ROTATION_DEGREES,
  jitter=JITTER,
  time_flip_prob=TIME_FLIP_PROB,
):
  """Augments a (source, target) pair with one random draw shared by both frames.

  Args:
    source: `[S, S, 3]` float32 in [0, 1].
    target: `[S, S, 3]` float32 in [0, 1].
    seed: `[2]` int32/int64 stateless seed; the same seed gives the same output.
    rotation_degrees: maximum absolute rotation (0 disables).
    jitter: colour jitter strength for brightness, contrast, saturation and hue (0 disables).
    time_flip_prob: probability of swapping source and target.

  Returns:
    (source, target), each `[S, S, 3]` float32 in [0, 1].
  """
  u = tf.random.stateless_uniform([6], seed=seed, dtype=tf.float32)
  pair = tf.stack([source, target], axis=0)  # [2, S, S, 3]
  flip = u[0] < time_flip_prob
  pair = tf.where(flip, tf.reverse(pair, axis=[0]), pair)
  if rotation_degrees:
    angle = (2.0 * u[1] - 1.0) * (rotation_degrees * math.pi / 180.0)
    pair = rotate_images(pair, angle)
  if jitter:
    pair = color_jitter(
      pair,
      brightness=1.0 + jitter * (2.0 * u[2] - 1.0),
      contrast=1.0 + jitter * (2.0 * u[3] - 1.0),
      saturation=1.0 + jitter * (2.0 * u[4] - 1.0),
      hue=jitter * (2.0 * u[5] - 1.0),
    )
  pair = tf.clip_by_value(pair, 0.0, 1.0)
  return pair[0], pair[1]
