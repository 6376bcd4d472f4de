"""Every shipped config in configs/ parses with the training CLI's flags and validates.

A config is what users run (`python -m copart_tf.train --flagfile=configs/X.cfg`); a stray line
(a comment that lost its '#', a renamed flag) must fail here, not at the start of someone's run.
"""

import glob
import os

import pytest
from absl import flags

from copart_tf import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.cfg")))


def test_configs_exist():
  assert len(CONFIGS) >= 4, CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_parses_and_validates(path):
  FLAGS = flags.FLAGS
  FLAGS.unparse_flags()  # back to the defaults: no value leaks from the previous config
  try:
    FLAGS(["copart_tf.train", f"--flagfile={path}"])
    config = train.config_from_flags()
    config.validate()
  finally:
    FLAGS.unparse_flags()
  assert config.data_dir and config.model_dir
