"""Every shipped config in configs/ parses with the training CLI's flags and validates.

A config is what users run (`python -m copart_tf.train --flagfile=configs/X.cfg`); a stray line
(a comment that lost its '#', a renamed flag) must fail here, not at the start of someone's run.
"""

import glob
import os

import pytest
from absl import flags

from copart_tf import train
from copart_tf.errors import ConfigError
from copart_tf.training.config import TrainConfig

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


@pytest.mark.parametrize("term", ["seek", "balance", "consistency", "extent"])
def test_discovery_terms_without_heatmap_shifts_are_a_one_line_config_error(term):
  config = TrainConfig(data_dir="d", model_dir="m")
  config.loss_weights[term] = 1.0
  with pytest.raises(ConfigError, match=f"--loss_{term}=1.0: needs --shift_from=heatmap"):
    config.validate()
  config.shift_from = "heatmap"
  config.validate()


def test_claims_gate_without_heatmap_shifts_is_a_one_line_config_error():
  config = TrainConfig(data_dir="d", model_dir="m", gate_masks_by_claims=True)
  with pytest.raises(ConfigError, match="--gate_masks_by_claims: needs --shift_from=heatmap"):
    config.validate()
  config.shift_from = "heatmap"
  config.validate()
  assert config.model_config("none")["gate_masks_by_claims"]


def test_matting_and_presence_need_their_inputs_as_one_line_config_errors():
  config = TrainConfig(data_dir="d", model_dir="m", colour_matting_gain=4.0)
  with pytest.raises(ConfigError, match="--colour_matting_gain: needs --warp_source_pixels"):
    config.validate()
  config = TrainConfig(data_dir="d", model_dir="m", presence_threshold=0.03)
  with pytest.raises(ConfigError, match="--presence_threshold: needs --gate_masks_by_claims"):
    config.validate()
  config.shift_from = "heatmap"
  config.gate_masks_by_claims = config.warp_source_pixels = config.flat_part_colours = True
  config.colour_matting_gain = 4.0
  config.validate()
  kwargs = config.model_config("none")
  assert (kwargs["colour_matting_gain"], kwargs["presence_threshold"]) == (4.0, 0.03)


def test_background_colour_is_checked_and_reaches_the_model():
  config = TrainConfig(data_dir="d", model_dir="m", background_colour="mean")
  with pytest.raises(ConfigError, match="--background_colour='mean': frame_median or row_median"):
    config.validate()
  config.background_colour = "row_median"
  config.validate()
  assert config.model_config("none")["background_colour"] == "row_median"


@pytest.mark.parametrize("degrees", [-1.0, 181.0])
def test_augment_rotation_out_of_range_is_a_one_line_config_error(degrees):
  config = TrainConfig(data_dir="d", model_dir="m", augment_rotation_deg=degrees)
  with pytest.raises(ConfigError, match=f"--augment_rotation_deg={degrees}: must be in"):
    config.validate()


def test_negative_synth_seed_is_a_one_line_config_error():
  config = TrainConfig(data_dir="d", model_dir="m", synth_seed=-1)
  with pytest.raises(ConfigError, match="--synth_seed=-1: must be >= 0"):
    config.validate()
