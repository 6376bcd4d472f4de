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
