"""The source tree is clean for `ruff check` and `ruff format --check` (config: pyproject.toml)."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ruff():
  """The command that runs ruff, or None when ruff is not installed."""
  if importlib.util.find_spec("ruff") is not None:
    return [sys.executable, "-m", "ruff"]
  path = shutil.which("ruff")
  return [path] if path else None


def _run(args):
  ruff = _ruff()
  if ruff is None:
    pytest.skip("ruff is not installed (pip install -r requirements-dev.txt)")
  if not os.path.exists(os.path.join(ROOT, "pyproject.toml")):
    pytest.skip(f"{ROOT} is not a source checkout (no pyproject.toml)")
  return subprocess.run(
    [*ruff, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
  )


def _files(output):
  """The files named by ruff's concise output (`path:line:col: code message` lines)."""
  return sorted(set(re.findall(r"^(\S+?):\d+:\d+: ", output, re.MULTILINE)))


def test_ruff_check():
  result = _run(["check", "--no-cache", "--output-format=concise", "."])
  if result.returncode != 0:
    files = _files(result.stdout)
    pytest.fail(
      f"`ruff check` found problems in {len(files)} file(s): {', '.join(files)}\n"
      f"(fix with `make format` or by hand)\n{result.stdout}{result.stderr}"
    )


def test_ruff_format():
  result = _run(["format", "--check", "--no-cache", "--output-format=concise", "."])
  if result.returncode != 0:
    files = _files(result.stdout)
    pytest.fail(
      f"`ruff format --check` would reformat {len(files)} file(s): {', '.join(files)}\n"
      f"(fix with `make format`)\n{result.stdout}{result.stderr}"
    )


def test_every_package_has_a_bazel_build_file():
  """Each Python package has a BUILD file, and copart_tf's subpackages are in //copart_tf."""
  with open(os.path.join(ROOT, "copart_tf", "BUILD")) as f:
    root_build = f.read()
  problems = []
  for top in ("copart_tf", "serving"):
    for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
      dirnames[:] = [d for d in dirnames if d != "__pycache__"]
      if "__init__.py" not in filenames:
        continue
      package = os.path.relpath(dirpath, ROOT)
      if "BUILD" not in filenames:
        problems.append(f"{package}: no BUILD file (copy a sibling's, e.g. copart_tf/ops/BUILD)")
      if package.count(os.sep) == 1 and top == "copart_tf" and f'"//{package}"' not in root_build:
        problems.append(f"{package}: missing from the deps of //copart_tf (copart_tf/BUILD)")
  assert not problems, "Bazel BUILD files out of date:\n" + "\n".join(problems)
