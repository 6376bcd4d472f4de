"""benchmarks/pose_oracles.py: the recipe and data spec derived from a flagfile, and one smoke run.

The smoke run trains both checks for 2 steps on a tiny sprites dataset that `run` generates from a
tiny flagfile (configs/sprites.cfg with fewer videos and the tiny preset); the file takes about a
minute on a busy 2-core machine.
"""

import json
import os
import tempfile
import unittest

import benchmark_scripts

from copart_tf.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPRITES_CFG = os.path.join(ROOT, "configs", "sprites.cfg")


oracles = benchmark_scripts.load("pose_oracles")


def sprites_cfg_values():
  """The flags of configs/sprites.cfg as written (name -> raw value; bare booleans -> "true")."""
  values = {}
  with open(SPRITES_CFG) as f:
    for line in f:
      line = line.strip()
      if line.startswith("--"):
        name, _, value = line[2:].partition("=")
        values[name] = value or "true"
  return values


class DeriveTest(unittest.TestCase):
  def setUp(self):
    self.cfg = sprites_cfg_values()
    self.config = oracles.read_config(SPRITES_CFG)
    self.recipe = oracles.derive_recipe(self.config, SPRITES_CFG)

  def test_recipe_is_what_sprites_cfg_says(self):
    recipe, cfg = self.recipe, self.cfg
    self.assertEqual(recipe["pose_prior_radius"], float(cfg["pose_prior_radius"]))
    self.assertEqual(recipe["initial_scale"], float(cfg["initial_scale"]))
    self.assertEqual(recipe["redundancy"], float(cfg["loss_redundancy"]))
    self.assertEqual(recipe["source_rec"], float(cfg["loss_source_rec"]))
    self.assertEqual(recipe["background_warmup_steps"], int(cfg["background_warmup_steps"]))
    self.assertEqual(recipe["preset"], cfg["preset"])
    self.assertEqual(recipe["shift_from"], cfg["shift_from"])
    self.assertEqual(recipe["num_parts"], int(cfg["num_parts"]))
    self.assertEqual(recipe["image_size"], int(cfg["image_size"]))
    self.assertIs(recipe["warp_source_pixels"], "warp_source_pixels" in cfg)
    self.assertIs(recipe["compose_warps"], "compose_warps" in cfg)
    self.assertEqual(recipe["perceptual_loss"], "pyramid")

  def test_pose_only_terms_and_the_claims_gate_are_off(self):
    self.assertGreater(float(self.cfg["loss_seek"]), 0)  # on in the config, off in the recipe
    self.assertGreater(float(self.cfg["loss_consistency"]), 0)
    self.assertIn("gate_masks_by_claims", self.cfg)
    for term in ("seek", "consistency", "extent", "equivariance"):
      self.assertEqual(self.recipe[term], 0.0, term)
    self.assertIs(self.recipe["gate_masks_by_claims"], False)
    self.assertEqual(self.recipe["presence_threshold"], 0.0)

  def test_data_spec_is_what_sprites_cfg_says(self):
    self.assertEqual(
      oracles.derive_data_spec(self.config),
      {
        "train_videos": int(self.cfg["synth_train_videos"]),
        "test_videos": int(self.cfg["synth_test_videos"]),
        "frames": int(self.cfg["synth_frames"]),
        "size": int(self.cfg["image_size"]),
        "seed": int(self.cfg.get("seed", 0)),
      },
    )

  def test_absl_flags_are_left_at_their_defaults(self):
    from absl import flags

    self.assertFalse(flags.FLAGS.is_parsed())

  def test_bad_configs_are_config_errors(self):
    with tempfile.TemporaryDirectory(prefix="pose_oracles_test-") as tmp:
      cases = {
        "vgg.cfg": ("--vgg_weights=auto", "--vgg_weights=auto"),
        "typo.cfg": ("--no_such_flag=1", "no_such_flag"),
      }
      for name, (line, message) in cases.items():
        path = os.path.join(tmp, name)
        with open(path, "w") as f:
          f.write(f"--flagfile={SPRITES_CFG}\n{line}\n")
        with self.assertRaisesRegex(ConfigError, message):
          oracles.derive_recipe(oracles.read_config(path), path)
      with self.assertRaisesRegex(ConfigError, "no such flagfile"):
        oracles.read_config(os.path.join(tmp, "missing.cfg"))


class SmokeTest(unittest.TestCase):
  def test_two_steps_of_both_checks(self):
    with tempfile.TemporaryDirectory(prefix="pose_oracles_test-") as tmp:
      config = os.path.join(tmp, "tiny.cfg")
      with open(config, "w") as f:
        f.write(
          f"--flagfile={SPRITES_CFG}\n--synth_train_videos=3\n--synth_test_videos=2\n"
          "--synth_frames=8\n--preset=tiny\n"
        )
      data_dir = os.path.join(tmp, "sprites")  # missing: generated from the config's spec
      json_out = os.path.join(tmp, "oracles.json")
      argv = [
        f"--config={config}",
        f"--data_dir={data_dir}",
        "--steps=2",
        "--batch_size=2",
        f"--json_out={json_out}",
      ]
      self.assertEqual(oracles.main(argv), 0)
      with open(json_out) as f:
        results = json.load(f)
      self.assertEqual(results["config"]["config"], config)
      self.assertEqual(
        results["data_spec"],
        {"train_videos": 3, "test_videos": 2, "frames": 8, "size": 64, "seed": 0},
      )
      self.assertEqual(results["data"]["train_videos"], 3)
      self.assertEqual(results["data"]["test_videos"], 2)
      self.assertEqual(results["recipe"]["preset"], "tiny")
      self.assertEqual(results["recipe"]["consistency"], 0.0)
      self.assertEqual(results["recipe"]["num_parts"], results["data"]["num_sprites"])
      oracle = results["checks"]["oracle"]
      self.assertEqual(oracle["steps"], 2)
      self.assertGreaterEqual(oracle["metrics"]["fg_iou"], 0.0)
      self.assertLessEqual(oracle["metrics"]["fg_iou"], 1.0)
      self.assertEqual(len(oracle["metrics"]["part_iou"]), results["data"]["num_sprites"])
      m = oracle["metrics"]
      self.assertLessEqual(m["false_positive_ring_px"], m["false_positive_px"])
      self.assertLessEqual(m["false_negative_edge_px"], m["false_negative_px"])
      supervised = results["checks"]["supervised"]
      self.assertGreater(supervised["metrics"]["centre_error_px"], 0.0)
      self.assertGreater(supervised["metrics"]["covariance_l1"], 0.0)


if __name__ == "__main__":
  unittest.main()
