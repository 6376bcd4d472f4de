"""copart_tf.model.layers: why sublayers are attributes (`add_sublayers`), and the model's checkpoint.

Keras 3 on the TensorFlow backend leaves layers held in Python lists out of `tf.train.Checkpoint`'s
object graph, which the trainer's checkpoints, resume and every loader use. The first test pins
that Keras behaviour: when it fails, Keras tracks lists and `add_sublayers` can be deleted.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from copart_tf.model import layers as layers_lib
from copart_tf.model.copart_model import CoPartModel


class _InList(keras.layers.Layer):
  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.blocks = [keras.layers.Dense(3), keras.layers.Dense(3)]

  def call(self, x):
    for block in self.blocks:
      x = block(x)
    return x


class _AsAttributes(keras.layers.Layer):
  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self._names = layers_lib.add_sublayers(self, "block", [keras.layers.Dense(3) for _ in "ab"])

  def call(self, x):
    for block in layers_lib.sublayers(self, self._names):
      x = block(x)
    return x


def _saved_variables(layer, directory):
  layer(tf.zeros([1, 3]))
  path = tf.train.Checkpoint(layer=layer).save(os.path.join(directory, "ckpt"))
  return [name for name, _ in tf.train.list_variables(path) if name.startswith("layer/")]


class ListHeldLayersTest(tf.test.TestCase):
  def test_keras_still_leaves_list_held_layers_out_of_checkpoints(self):
    self.assertEmpty(_saved_variables(_InList(), self.get_temp_dir()))

  def test_add_sublayers_puts_them_in_the_checkpoint(self):
    saved = _saved_variables(_AsAttributes(), self.get_temp_dir())
    self.assertLen(saved, 4)  # two kernels, two biases

  def test_the_model_checkpoint_holds_every_weight(self):
    keras.utils.set_random_seed(0)
    model = CoPartModel(num_parts=2, preset="tiny", image_size=32, perceptual_loss="none")
    model.build()
    path = tf.train.Checkpoint(model=model).save(os.path.join(self.get_temp_dir(), "ckpt"))
    restored = CoPartModel(num_parts=2, preset="tiny", image_size=32, perceptual_loss="none")
    restored.build()
    for weight in restored.weights:
      weight.assign(tf.zeros_like(weight))
    tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
    for mine, theirs in zip(model.weights, restored.weights, strict=True):
      np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
