"""The training configuration: one dataclass that the absl flags fill in."""

import dataclasses
import json
import os

from copart_tf.errors import ConfigError
from copart_tf.model.copart_model import DEFAULT_LOSS_WEIGHTS, config_from_settings
from copart_tf.model.presets import PRESETS
from copart_tf.model.transform_head import SCALE_RANGES


@dataclasses.dataclass
class TrainConfig:
  """Everything `copart_tf.training.trainer.train` needs. Field names match the flags."""

  data_dir: str = "data/humanoid"
  model_dir: str = "runs/demo"
  train_steps: int = 1000
  batch_size: int = 8
  num_parts: int = 10
  image_size: int = 128
  preset: str = "small"
  strategy: str = "default"
  num_cpu_devices: int = 1
  cluster_timeout: float = 300.0
  learning_rate: float = 5e-5
  lr_warmup_steps: int = 0
  lr_decay_start: float = 1.0
  clip_grad_norm: float = 0.0
  vgg_weights: str = "auto"
  perceptual_fallback: str = "pyramid"
  export_dir: str = ""
  seed: int = 0
  compose_warps: bool = False
  initial_spread: float = 0.0
  background_warmup_steps: int = 0
  masks_follow_poses: bool = False
  background_depth_offset: float = 0.0
  auxiliary_warmup_steps: int = 0
  pose_prior_radius: float = 0.0
  shift_from: str = "regression"
  warp_source_pixels: bool = False
  initial_scale: float = 1.0
  detach_background_poses: bool = False
  gate_masks_by_claims: bool = False
  flat_part_colours: bool = False
  colour_matting_gain: float = 0.0
  presence_threshold: float = 0.0
  depth_bound: float = 0.0
  background_colour: str = "frame_median"
  reseed_every: int = 0
  reseed_until: int = 1000
  reseed_min_share: float = 0.01
  linear_from: str = "regression"
  scale_activation: str = "tanh"
  background_on: str = "retarget"
  covariance_threshold: float = 0.02
  equivariance_rotation_deg: float = 360.0
  augment: bool = True
  augment_rotation_deg: float = 10.0
  id_sampling: bool = False
  on_bad_frame: str = "fail"
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  log_every: int = 50
  image_every: int = 500
  jit_compile: bool = False
  mixed_precision: str = "float32"
  synthesize_if_missing: str = ""
  synth_train_videos: int = 40
  synth_test_videos: int = 10
  synth_frames: int = 64
  synth_supersample: int = 2
  synth_background: str = "plain"
  synth_clips: str = "upright"
  # The generated dataset's own seed, not --seed: a dataset made on the first run of a seed
  # sweep would otherwise depend on which seed ran first (the sixteenth session's numbers were
  # measured on seed-0 data, a seed-1 first run made another dataset).
  synth_seed: int = 0
  evaluate_at_end: bool = True
  eval_fit_frames_per_video: int = 16
  eval_test_frames_per_video: int = 0
  loss_weights: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS))

  def validate(self):
    """Raises ConfigError (one line naming the flag) for values that cannot work."""
    if self.preset not in PRESETS:
      raise ConfigError(f"--preset={self.preset!r} is not one of {', '.join(sorted(PRESETS))}")
    if self.num_parts < 1:
      raise ConfigError(f"--num_parts={self.num_parts}: K must be at least 1")
    if self.image_size < 16 or self.image_size % 16:
      raise ConfigError(f"--image_size={self.image_size}: must be a multiple of 16, >= 16")
    if self.train_steps < 1:
      raise ConfigError(f"--train_steps={self.train_steps}: must be >= 1")
    if self.batch_size < 1:
      raise ConfigError(f"--batch_size={self.batch_size}: must be >= 1")
    if not 0 <= self.augment_rotation_deg <= 180:
      raise ConfigError(
        f"--augment_rotation_deg={self.augment_rotation_deg}: must be in [0, 180] degrees"
      )
    if self.synth_seed < 0:
      raise ConfigError(f"--synth_seed={self.synth_seed}: must be >= 0")
    if self.strategy == "mirrored" and self.num_cpu_devices < 1:
      raise ConfigError(
        f"--num_cpu_devices={self.num_cpu_devices}: --strategy=mirrored needs at least 1 "
        "(the number of logical CPU devices to mirror over when there is no GPU)"
      )
    if not self.cluster_timeout > 0:
      raise ConfigError(f"--cluster_timeout={self.cluster_timeout}: must be > 0 seconds")
    if self.learning_rate <= 0:
      raise ConfigError(f"--learning_rate={self.learning_rate}: must be > 0")
    if self.perceptual_fallback not in ("pyramid", "none"):
      raise ConfigError(f"--perceptual_fallback={self.perceptual_fallback!r}: pyramid or none")
    if self.background_on not in ("retarget", "both"):
      raise ConfigError(f"--background_on={self.background_on!r}: retarget or both")
    if self.shift_from not in ("regression", "heatmap"):
      raise ConfigError(f"--shift_from={self.shift_from!r}: regression or heatmap")
    if self.linear_from not in ("regression", "heatmap"):
      raise ConfigError(f"--linear_from={self.linear_from!r}: regression or heatmap")
    if self.linear_from == "heatmap" and self.shift_from != "heatmap":
      raise ConfigError("--linear_from=heatmap: needs --shift_from=heatmap")
    for term in ("seek", "balance", "consistency", "extent"):
      if self.loss_weights.get(term) and self.shift_from != "heatmap":
        raise ConfigError(f"--loss_{term}={self.loss_weights[term]}: needs --shift_from=heatmap")
    if self.gate_masks_by_claims and self.shift_from != "heatmap":
      raise ConfigError("--gate_masks_by_claims: needs --shift_from=heatmap")
    if self.flat_part_colours and not self.warp_source_pixels:
      raise ConfigError("--flat_part_colours: needs --warp_source_pixels")
    if self.colour_matting_gain < 0:
      raise ConfigError(f"--colour_matting_gain={self.colour_matting_gain}: must be >= 0")
    if self.colour_matting_gain and not self.warp_source_pixels:
      raise ConfigError("--colour_matting_gain: needs --warp_source_pixels")
    if self.depth_bound < 0:
      raise ConfigError(f"--depth_bound={self.depth_bound}: must be >= 0")
    if self.background_colour not in ("frame_median", "row_median"):
      raise ConfigError(
        f"--background_colour={self.background_colour!r}: frame_median or row_median"
      )
    if self.reseed_every < 0:
      raise ConfigError(f"--reseed_every={self.reseed_every}: must be >= 0")
    if self.reseed_every and self.shift_from != "heatmap":
      raise ConfigError("--reseed_every: needs --shift_from=heatmap")
    if self.reseed_every and self.strategy == "multi_worker":
      raise ConfigError("--reseed_every: not with --strategy=multi_worker (workers would differ)")
    if not 0 < self.reseed_min_share < 1:
      raise ConfigError(f"--reseed_min_share={self.reseed_min_share}: must be in (0, 1)")
    if not 0 <= self.presence_threshold < 1:
      raise ConfigError(f"--presence_threshold={self.presence_threshold}: must be in [0, 1)")
    if self.presence_threshold and not (self.gate_masks_by_claims and self.warp_source_pixels):
      raise ConfigError(
        "--presence_threshold: needs --gate_masks_by_claims and --warp_source_pixels"
      )
    if self.scale_activation not in SCALE_RANGES:
      raise ConfigError(f"--scale_activation={self.scale_activation!r}: tanh or log")
    low, high = SCALE_RANGES[self.scale_activation]
    if not low < self.initial_scale < high:
      raise ConfigError(
        f"--initial_scale={self.initial_scale}: must be in ({low}, {high}) with "
        f"--scale_activation={self.scale_activation}"
      )
    if self.pose_prior_radius < 0:
      raise ConfigError(f"--pose_prior_radius={self.pose_prior_radius}: must be >= 0")
    if self.on_bad_frame not in ("fail", "skip"):
      raise ConfigError(f"--on_bad_frame={self.on_bad_frame!r}: fail or skip")
    if self.mixed_precision not in ("float32", "mixed_float16", "mixed_bfloat16"):
      raise ConfigError(
        f"--mixed_precision={self.mixed_precision!r}: float32, mixed_float16 or mixed_bfloat16"
      )
    for name in ("checkpoint_every", "log_every", "image_every", "keep_checkpoints"):
      if getattr(self, name) < 1:
        raise ConfigError(f"--{name}={getattr(self, name)}: must be >= 1")
    if not self.data_dir:
      raise ConfigError("--data_dir is required")
    if not self.model_dir:
      raise ConfigError("--model_dir is required")

  def model_config(self, perceptual):
    """`CoPartModel.from_config` input for this configuration (`config_from_settings`)."""
    return config_from_settings(dataclasses.asdict(self), perceptual)

  def to_json(self):
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

  @classmethod
  def from_json_file(cls, path):
    with open(path) as f:
      try:
        values = json.load(f)
      except ValueError as error:
        raise ConfigError(f"{path}: not valid JSON ({error}); fix or delete it") from None
    known = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})


# What must agree between a checkpoint and the run that restores it.
ARCHITECTURE_FIELDS = ("num_parts", "preset", "image_size")


def check_compatible(saved, current, model_dir):
  """Raises ConfigError when `model_dir` holds a checkpoint of a different architecture."""
  for name in ARCHITECTURE_FIELDS:
    if getattr(saved, name) != getattr(current, name):
      raise ConfigError(
        f"{os.path.join(model_dir, 'config.json')}: the checkpoint in --model_dir was trained with "
        f"--{name}={getattr(saved, name)}, this run asks for --{name}={getattr(current, name)}; "
        "use another --model_dir or the same value"
      )
