"""Adam whose per-variable update is TensorFlow's fused `ResourceApplyAdam` kernel."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="copart_tf")
class FusedAdam(keras.optimizers.Adam):
  """`keras.optimizers.Adam` with the same maths, slots and checkpoints, updated by one fused op.

  Keras 3's Adam updates each variable with ~10 separate element-wise ops (two `assign_add`s,
  a square, a sqrt, a division, ...), each a full pass over the variable. On the paper preset's
  127M parameters that was ~1.5 s of op time per step on the 2-core CPU; the fused kernel makes
  one multithreaded pass (benchmarks/optimizer_update.py prints both). The update is identical:
  m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
  var <- var - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)
  (tests/test_train.py compares it with Keras' Adam). AMSGrad falls back to Keras' update.

  Example:
  >>> optimizer = FusedAdam(learning_rate=1e-4)
  >>> variable = keras.Variable([1.0, 2.0])
  >>> optimizer.apply([tf.constant([0.5, -0.5])], [variable])
  """

  def update_step(self, gradient, variable, learning_rate):
    if self.amsgrad:
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    index = self._get_variable_index(variable)
    momentum = self._momentums[index]
    velocity = self._velocities[index]
    step = tf.cast(self.iterations + 1, dtype)
    beta_1 = tf.cast(self.beta_1, dtype)
    beta_2 = tf.cast(self.beta_2, dtype)
    # Under tf.distribute, `variable` is this device's component and the slots' `handle` is
    # the component of the device being updated (DistributedVariable.handle in update()).
    tf.raw_ops.ResourceApplyAdam(
      var=variable.handle,
      m=momentum.handle,
      v=velocity.handle,
      beta1_power=tf.pow(beta_1, step),
      beta2_power=tf.pow(beta_2, step),
      lr=tf.cast(learning_rate, dtype),
      beta1=beta_1,
      beta2=beta_2,
      epsilon=tf.cast(self.epsilon, dtype),
      grad=tf.cast(gradient, dtype),
      use_locking=False,
    )
