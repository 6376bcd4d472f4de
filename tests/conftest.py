"""pytest configuration shared by all tests: environment set before TensorFlow loads, import path.

Runs before any test module is imported, so the environment below reaches TensorFlow's C++ runtime.
"""

import os
import sys

# Same defaults as copart_tf/__init__.py, for test modules that import tensorflow first: oneDNN
# kernels on (faster on CPU), and TensorFlow's INFO lines (CPU feature guard, ...) off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

# `import copart_tf` / `import serving` from the source tree, even without `pip install -e .`
# (e.g. `pytest tests` from a plain checkout, or Bazel's runfiles tree).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def pytest_collection_modifyitems(config, items):
  """Drops `tf.test.TestCase.test_session`, a deprecated helper that pytest collects as a test."""
  del config  # Unused.
  items[:] = [item for item in items if item.name != "test_session"]
