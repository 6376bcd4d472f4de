"""Reconstruction loss (paper Eq. 5-6): L1 + image-gradient L1 + perceptual."""

import tensorflow as tf


def l1_loss(images, reconstructions):
  """mean |I - I_hat| over all pixels and channels. Inputs `[B, H, W, 3]`; returns a scalar."""
  return tf.reduce_mean(tf.abs(images - reconstructions))


def image_gradients(images):
  """Forward differences along x and y: `[B, H, W, C]` -> (`[B, H, W-1, C]`, `[B, H-1, W, C]`)."""
  dx = images[:, :, 1:, :] - images[:, :, :-1, :]
  dy = images[:, 1:, :, :] - images[:, :-1, :, :]
  return dx, dy


def gradient_loss(images, reconstructions):
  """mean |dx I - dx I_hat| + mean |dy I - dy I_hat|. Returns a scalar."""
  dx, dy = image_gradients(images)
  dx_hat, dy_hat = image_gradients(reconstructions)
  return tf.reduce_mean(tf.abs(dx - dx_hat)) + tf.reduce_mean(tf.abs(dy - dy_hat))


def pyramid_loss(images, reconstructions, levels=4):
  """Multi-scale L1 on an average-pooled image pyramid (the offline perceptual fallback).

  Scales 1/2 .. 1/2^levels (the full scale is already the L1 term), equally weighted. Coarse scales
  reward getting a part's colour mass to the right place even when it is off by a few pixels,
  which is the role the perceptual loss plays early in training.

  Returns a scalar.
  """
  total = 0.0
  x, y = images, reconstructions
  for _ in range(levels):
    x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
    y = tf.nn.avg_pool2d(y, 2, 2, "VALID")
    total += tf.reduce_mean(tf.abs(x - y))
  return total / levels


def reconstruction_terms(images, reconstructions, perceptual=None):
  """The terms of L(I, I_hat), unweighted.

  Args:
    images: real images `[B, H, W, 3]` (treated as constants).
    reconstructions: `[B, H, W, 3]`.
    perceptual: optional callable (images, reconstructions) -> scalar.

  Returns:
    dict with "l1", "grad" and, if `perceptual` is given, "perceptual" scalars.
  """
  images = tf.stop_gradient(images)
  terms = {
    "l1": l1_loss(images, reconstructions),
    "grad": gradient_loss(images, reconstructions),
  }
  if perceptual is not None:
    terms["perceptual"] = perceptual(images, reconstructions)
  return terms
