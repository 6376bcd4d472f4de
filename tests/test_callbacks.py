"""`callbacks.steps_per_execution`: every step a callback acts on must end an execution."""

from copart_tf.training import callbacks


def test_largest_divisor_of_the_intervals_and_the_ends_up_to_the_cap():
  assert callbacks.steps_per_execution([50, 200, 200, 100], 0, 2400) == 10  # the demo
  assert callbacks.steps_per_execution([2, 2, 10], 4, 20) == 2
  assert callbacks.steps_per_execution([12, 24], 0, 48, cap=10) == 6  # a divisor, not min(12, 10)
  assert callbacks.steps_per_execution([7], 0, 14) == 7


def test_a_run_resumed_or_stopped_at_an_odd_step_runs_one_step_per_execution():
  assert callbacks.steps_per_execution([50, 200, 200], 123, 2400) == 1
  assert callbacks.steps_per_execution([50, 200, 200], 0, 61) == 1  # --stop_after_steps=61
