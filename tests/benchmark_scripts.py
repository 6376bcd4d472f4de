"""Loads a script of benchmarks/ as a module, for the tests of its functions.

The scripts are not a package (each runs as ``python benchmarks/X.py``), so a test imports one by
path. Where benchmarks/ is not next to tests/ (e.g. Bazel runfiles without //benchmarks) the
calling test file is skipped, with the reason.
"""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
  """`benchmarks/<name>.py` as a module named ``<name>_under_test``.

  Args:
    name: the script's file name without ``.py``, e.g. ``"quality_ladder"``.

  Returns:
    The executed module. Skips the calling test module when the file is absent.
  """
  path = os.path.join(ROOT, "benchmarks", name + ".py")
  if not os.path.isfile(path):
    pytest.skip(f"{path} is not here (not a source checkout)", allow_module_level=True)
  spec = importlib.util.spec_from_file_location(f"{name}_under_test", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
