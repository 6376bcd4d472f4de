"""pybullet is optional: without it the pybullet bodies fail with a one-line ConfigError naming the
flag and the extra to install, and the numpy-only ladder datasets (sprites, figure2d) still work.

pybullet is hidden by ``sys.modules[name] = None`` (``import pybullet`` then raises ImportError, as
when it is not installed), in a subprocess so that this process's modules stay untouched.
"""

import json
import os
import subprocess
import sys
import tempfile
import tomllib
import unittest
from unittest import mock

from copart_tf.errors import ConfigError
from copart_tf.synthetic import scene as scene_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300  # seconds per subprocess; the machine may be shared with a training run
HINT = "needs pybullet: pip install copart_tf[synthetic] (or pybullet)"
PYBULLET_MODULES = ("pybullet", "pybullet_data", "pybullet_utils")
# Runs first in every subprocess: pybullet looks uninstalled.
HIDE_PYBULLET = f"import sys\nfor _name in {PYBULLET_MODULES!r}:\n  sys.modules[_name] = None\n"


def _run(code, *args):
  """Runs `code` after HIDE_PYBULLET in a fresh interpreter (cwd = the checkout)."""
  return subprocess.run(
    [sys.executable, "-c", HIDE_PYBULLET + code, *args],
    capture_output=True,
    text=True,
    cwd=ROOT,
    timeout=TIMEOUT,
  )


def _result(proc):
  """The JSON printed after ``RESULT `` by a subprocess."""
  line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT ") :])


class WithoutPybulletTest(unittest.TestCase):
  def setUp(self):
    self._tmp = tempfile.TemporaryDirectory()
    self.tmp = self._tmp.name

  def tearDown(self):
    self._tmp.cleanup()

  def test_require_pybullet_is_a_one_line_config_error(self):
    with mock.patch.dict(sys.modules, {name: None for name in PYBULLET_MODULES}):
      with self.assertRaises(ConfigError) as caught:
        scene_lib.require_pybullet("--body=humanoid_mocap")
    self.assertEqual(str(caught.exception), f"--body=humanoid_mocap {HINT}")

  def test_library(self):
    """synthesize_dataset: pybullet bodies fail at once (nothing written), ladder data works."""
    code = (
      "import json, os\n"
      "from copart_tf import synthetic\n"
      "from copart_tf.errors import ConfigError\n"
      "tmp = sys.argv[1]\n"
      "out = {}\n"
      "for name in ('sprites', 'figure2d'):\n"
      "  s = synthetic.synthesize_dataset(name, os.path.join(tmp, name), 2, 1, 3, size=32)\n"
      "  out[name] = [s['body'], s['frames']]\n"
      "for fn in (synthetic.synthesize_dataset, synthetic.synthesize_for_training):\n"
      "  for body in ('humanoid_mocap', 'kuka_iiwa'):\n"
      "    try:\n"
      "      fn(body, os.path.join(tmp, body), 1, 0, 1)\n"
      "      out[fn.__name__ + ':' + body] = 'no error'\n"
      "    except ConfigError as e:\n"
      "      out[fn.__name__ + ':' + body] = str(e)\n"
      "out['written'] = sorted(os.listdir(tmp))\n"
      "out['pybullet'] = sys.modules.get('pybullet') is not None\n"
      "print('RESULT ' + json.dumps(out))\n"
    )
    proc = _run(code, self.tmp)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(
      _result(proc),
      {
        "sprites": ["sprites", 9],
        "figure2d": ["figure2d", 9],
        "synthesize_dataset:humanoid_mocap": f"--body=humanoid_mocap {HINT}",
        "synthesize_dataset:kuka_iiwa": f"--body=kuka_iiwa {HINT}",
        "synthesize_for_training:humanoid_mocap": f"--synthesize_if_missing=humanoid_mocap {HINT}",
        "synthesize_for_training:kuka_iiwa": f"--synthesize_if_missing=kuka_iiwa {HINT}",
        "written": ["figure2d", "sprites"],  # no dataset or partial folder of the bodies
        "pybullet": False,
      },
    )
    for name in ("sprites", "figure2d"):
      self.assertTrue(os.path.isfile(os.path.join(self.tmp, name, "meta.json")), name)

  def test_cli(self):
    """`python -m copart_tf.synthetic`: one ``error:`` line and exit 2; --body=sprites works."""
    run_cli = "import runpy\nrunpy.run_module('copart_tf.synthetic', run_name='__main__')\n"
    out = os.path.join(self.tmp, "humanoid")
    proc = _run(run_cli, "--body=humanoid_mocap", f"--out={out}")
    self.assertEqual(proc.returncode, 2, proc.stderr)
    self.assertEqual(proc.stderr.strip().splitlines(), [f"error: --body=humanoid_mocap {HINT}"])
    self.assertFalse(os.path.exists(out))
    out = os.path.join(self.tmp, "sprites")
    proc = _run(
      run_cli,
      "--body=sprites",
      f"--out={out}",
      "--train_videos=1",
      "--test_videos=1",
      "--frames=2",
      "--size=32",
    )
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(json.loads(proc.stdout[proc.stdout.index("{") :])["frames"], 4)

  def test_trainer(self):
    """The training CLI's --synthesize_if_missing (`ensure_data`): the error names that flag."""
    code = (
      "import json, os\n"
      "from copart_tf.errors import ConfigError\n"
      "from copart_tf.training import config as config_lib\n"
      "from copart_tf.training import trainer\n"
      "tmp = sys.argv[1]\n"
      "out = {}\n"
      "def config(name):\n"
      "  return config_lib.TrainConfig(\n"
      "    data_dir=os.path.join(tmp, name), synthesize_if_missing=name, image_size=32,\n"
      "    synth_train_videos=1, synth_test_videos=1, synth_frames=2)\n"
      "try:\n"
      "  trainer.ensure_data(config('humanoid_mocap'))\n"
      "  out['humanoid_mocap'] = 'no error'\n"
      "except ConfigError as e:\n"
      "  out['humanoid_mocap'] = str(e)\n"
      "trainer.ensure_data(config('sprites'))\n"
      "out['written'] = sorted(os.listdir(tmp))\n"
      "out['pybullet'] = sys.modules.get('pybullet') is not None\n"
      "print('RESULT ' + json.dumps(out))\n"
    )
    proc = _run(code, self.tmp)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertEqual(
      _result(proc),
      {
        "humanoid_mocap": f"--synthesize_if_missing=humanoid_mocap {HINT}",
        "written": ["sprites"],
        "pybullet": False,
      },
    )
    self.assertTrue(os.path.isdir(os.path.join(self.tmp, "sprites", "train")))


class PackagingTest(unittest.TestCase):
  def test_pybullet_is_the_synthetic_extra(self):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
      project = tomllib.load(f)["project"]
    self.assertFalse([d for d in project["dependencies"] if d.startswith("pybullet")])
    self.assertEqual(project["optional-dependencies"]["synthetic"], ["pybullet>=3.2.6"])


if __name__ == "__main__":
  unittest.main()
