"""CoPartModel: encoder, transform head, latent warp, shared decoder and assembly (DESIGN.md §3-5)."""

import inspect
import math

import keras
import tensorflow as tf

from copart_tf.losses import background as background_lib
from copart_tf.losses import concentration as concentration_lib
from copart_tf.losses import discovery as discovery_lib
from copart_tf.losses import equivariance as equivariance_lib
from copart_tf.losses import reconstruction as reconstruction_lib
from copart_tf.losses import transformation as transformation_lib
from copart_tf.model.decoder import PartDecoder
from copart_tf.model.encoder import Encoder
from copart_tf.model.part_map_head import PartMapHead
from copart_tf.model.presets import get_preset
from copart_tf.model.transform_head import TransformHead
from copart_tf.ops import affine as affine_lib
from copart_tf.ops import grid as grid_lib
from copart_tf.ops import warp as warp_lib

# Loss weights: the reference's Tai-Chi configuration (DESIGN.md §5). Every one is a constructor
# argument and a training flag.
DEFAULT_LOSS_WEIGHTS = {
  "l1": 1.0,
  "grad": 5.0,
  "perceptual": 10.0,
  "target_rec": 1.0,
  "source_rec": 0.1,
  "background": 0.5,
  "foreground": 0.5,
  "translation": 1.0,
  "rotation_scale": 0.1,
  "equivariance": 0.02,
  "concentration": 0.35,
  "canonical_concentration": 0.035,
  # Not in the reference (0 keeps the paper's objective): `background_lib.redundancy_loss`.
  "redundancy": 0.0,
  # Not in the reference, needs shift_from="heatmap": `discovery_lib.seek_loss`.
  "seek": 0.0,
  # Not in the reference, needs shift_from="heatmap": `discovery_lib.balance_loss`.
  "balance": 0.0,
  # Not in the reference, needs shift_from="heatmap": `discovery_lib.consistency_loss`.
  "consistency": 0.0,
  # Not in the reference, needs shift_from="heatmap": `discovery_lib.extent_loss`.
  "extent": 0.0,
}

LOSS_TERMS = (
  "total",
  "rec_target",
  "rec_source",
  "l1",
  "grad",
  "perceptual",
  "background",
  "translation",
  "rotation_scale",
  "equivariance",
  "concentration",
  "canonical_concentration",
  "redundancy",
  "seek",
  "balance",
  "consistency",
  "extent",
)


def _to_parts(maps):
  """`[B, h, w, K, C]` -> `[B*K, h, w, C]` (parts folded into the batch)."""
  shape = tf.shape(maps)
  return tf.reshape(tf.transpose(maps, [0, 3, 1, 2, 4]), [-1, shape[1], shape[2], shape[4]])


def _from_parts(folded, batch, num):
  """`[B*K, H, W, C]` -> `[B, H, W, K, C]`."""
  shape = tf.shape(folded)
  unfolded = tf.reshape(folded, [batch, num, shape[1], shape[2], shape[3]])
  return tf.transpose(unfolded, [0, 2, 3, 1, 4])


def _with_coverage(folded):
  """Appends a channel of ones `[N, h, w, C]` -> `[N, h, w, C+1]`.

  Warped along with the latent map, the extra channel becomes the part's coverage: 1 where the
  warp sampled inside the source frame, 0 where it read the zero fill, bilinear in between.
  """
  return tf.concat([folded, tf.ones_like(folded[..., :1])], axis=-1)


def _with_claims(folded, heatmap_logits):
  """Appends each part's claims as its coverage channel: `[B*K, h, w, C]` -> `[B*K, h, w, C+1]`.

  The claims are the softmax over parts of the heatmap logits `[B, h, w, K]` of the image the
  part maps come from. Warped along with the latent map (zero fill outside the frame), the
  channel becomes claims x coverage, and its log is added to the part's depth (`_log_coverage`):
  a part's mask can only be where the part claims the content (see `CoPartModel`
  gate_masks_by_claims).
  """
  claims = tf.nn.softmax(heatmap_logits, axis=-1)[..., None]  # [B, h, w, K, 1]
  return tf.concat([folded, _to_parts(claims)], axis=-1)


BACKGROUND_COLOURS = ("frame_median", "row_median")
# The mean per-channel distance from the plain background at which `_matting_depth` counts a
# pixel of a shaded object as fully covered (no flat part colour to compare with). On the 128 px
# humanoid with row medians, 95 % of the figure's pixels are >= 0.10 from the background and
# 99.5 % of the background's < 0.05 (where the log-odds cross 0).
MATTING_CONTRAST = 0.1


def _background_colours(images, mode="frame_median"):
  """The plain-background estimate of each frame, `[B, S, S, 3]` -> `[B, S, S, 3]`.

  "frame_median": every pixel gets the frame's per-channel median colour. "row_median": each
  row's per-channel median colour (a floor below a wall, or a floor shaded by depth, is plain
  per row, not per frame; both are exact while the objects cover less than half of each row).
  A row median needs a level horizon: the augmentation's rotation tilts it, and on the humanoid
  at 5 degrees the background pixels it misses are half as many as the figure's
  (`benchmarks/background_estimate.py`), so the humanoid configs set --augment_rotation_deg=0.
  """
  shape = tf.shape(images)
  if mode == "row_median":
    median = tf.sort(images, axis=2)[:, :, shape[2] // 2]  # [B, S, 3]
    return tf.broadcast_to(median[:, :, None, :], shape)
  pixels = tf.sort(tf.reshape(images, [shape[0], -1, 3]), axis=1)
  median = pixels[:, shape[1] * shape[2] // 2]  # [B, 3]
  return tf.broadcast_to(median[:, None, None, :], shape)


def _log_coverage(coverage, size):
  """Coverage `[N, h, w, 1]` -> log-coverage `[N, S, S, 1]` added to depth logits.

  Adding log(coverage) to a part's depth makes its mask exactly proportional to its coverage:
  where the warp read only zero fill there is no part (mask 0), instead of whatever the decoder
  makes of an all-zero latent (which showed up as the nested rectangles of every part's window
  in early reconstructions).
  """
  resized = tf.image.resize(coverage, [size, size], method="bilinear")
  return tf.math.log(tf.clip_by_value(resized, 1e-6, 1.0))


def pose_log_prior(affines, size, radius):
  """Log of a Gaussian blob per part, centred on its pose, `[B, K, 2, 3]` -> `[B, S, S, K]`.

  ``-||T_k^-1 u||^2 / (2 radius^2)`` at every pixel centre u: the part's canonical frame seen in
  the image, so the blob has the pose's centre, orientation and extent (A_k A_k^T = the part's
  covariance, so ``radius`` is in standard deviations of the part). Added to a part's depth
  logit it makes the mask fall off away from the pose; inside the blob the decoded depth shapes
  the mask freely. Why: without it, a part's layer is the whole warped source frame and nothing
  but the concentration loss localises its mask, so moving a pose changes the assembly almost
  nowhere and the reconstruction gives the poses no direction (measured on sprites: masks stay on
  the background). With it, a pose carries its mask, and d(reconstruction)/d(pose) points along
  the part's motion from the first step.
  """
  # The prior may move a part but not shrink it: the reconstruction's cheapest way to silence a
  # part whose layer is still wrong is to shrink its pose until the scale saturates at its
  # minimum (0.1, where tanh has no gradient left; measured on sprites: every scale at 0.100 by
  # step 100, masks frozen as a 3 px blob). The extent A is set by the rotation/scale loss.
  affines = tf.concat([tf.stop_gradient(affines[..., :2]), affines[..., 2:]], axis=-1)
  grid = grid_lib.make_grid(size, size, affines.dtype)  # [S, S, 2]
  inverse = affine_lib.invert(affines)  # [B, K, 2, 3] image -> canonical
  canonical = tf.einsum("bkij,hwj->bhwki", inverse[..., :2], grid) + inverse[:, None, None, :, :, 2]
  return -0.5 * tf.reduce_sum(tf.square(canonical), axis=-1) / (radius * radius)


def config_from_settings(settings, perceptual_loss):
  """`CoPartModel.from_config` input from flat training settings (a run's config.json, flags).

  The one mapping from settings to the model: every setting named like a constructor argument
  is that argument; the loss weights (`settings["loss_weights"]`, only the terms this version
  has: a run written before a term was deleted still loads) are the weight arguments; the
  equivariance rotation is given in degrees (`equivariance_rotation_deg`). Settings a run did
  not record keep the constructor's defaults, which is what older runs were trained with.

  Args:
    settings: dict, e.g. `dataclasses.asdict(TrainConfig)` or a run's config.json.
    perceptual_loss: "none" | "pyramid" | "vgg" (resolved by the trainer; "none" to infer).

  Returns:
    dict for `CoPartModel.from_config`.
  """
  arguments = inspect.signature(CoPartModel.__init__).parameters
  config = {name: value for name, value in settings.items() if name in arguments}
  for name, value in settings.get("loss_weights", {}).items():
    if name in DEFAULT_LOSS_WEIGHTS:
      config[name] = float(value)
  if "equivariance_rotation_deg" in settings:
    config["equivariance_rotation"] = math.radians(settings["equivariance_rotation_deg"])
  config["perceptual_loss"] = perceptual_loss
  return config


@keras.saving.register_keras_serializable(package="copart_tf")
class CoPartModel(keras.Model):
  """Unsupervised co-part segmentation through assembly.

  `call()` segments images: each image's part maps are moved to the canonical frame and back
  (or not moved, with `compose_warps`), decoded once per part and assembled; `train_step()`
  implements the full source -> target retargeting objective with one `Mean` tracker per loss
  term.

  Example:
  >>> model = CoPartModel(num_parts=4, preset="tiny", image_size=64)
  >>> out = model(tf.zeros([2, 64, 64, 3]))
  >>> out["masks"].shape, out["affines"].shape
  (TensorShape([2, 64, 64, 5]), TensorShape([2, 4, 2, 3]))

  Args:
    num_parts: K, foreground parts (background is index 0 on top of them).
    preset: architecture preset name (`copart_tf.model.presets`).
    image_size: side of the square model input.
    compose_warps: warp each latent map once with the composed transform instead of going through
      the canonical frame (DESIGN.md §3). Default False, the paper's two-step path.
    perceptual_loss: "none", "pyramid" or "vgg" (then call `set_perceptual_loss` with the VGG
      layer). Its weight is the loss weight "perceptual".
    background_on: "retarget" (reference) or "both" (also the source reconstruction's masks).
    covariance_threshold: zeta of the rotation/scale loss.
    equivariance_rotation: maximum rotation (radians) of the random equivariance warp W.
    part_names: optional K+1 names, [0] = background.
    seed: base seed of the random warps drawn inside `train_step` when the data has none.
    background_warmup_steps: ramp the background loss linearly from 0 to its weight over this
      many optimizer steps (0 = full weight from the start, the reference). Early in training the
      parts cannot yet follow the motion, so a background layer that copies the whole source
      frame reconstructs the target best and the background loss finishes the foreground off
      (measured: every part's mask went to 0 by step 500 on the synthetic humanoid).
    masks_follow_poses: stop the gradient of the translation and rotation/scale losses into the
      poses, so those terms move the masks towards the poses only (the poses then learn from
      reconstruction and equivariance). Default False: mutual, as in the paper.
    mass_epsilon: pixels of mass added to every mask before computing centroids, covariances and
      concentration (bounds the gradients of vanishing parts; see `losses.moments`).
    initial_spread: radius of the disc the initial part centres are spread over (0 = all at the
      image centre, the reference's zero initialisation; see `transform_head.sunflower`).
    background_depth_offset: constant added to the background's depth logit (0 = the paper).
      With a positive offset the masks start on the background (M_0 = e^o / (e^o + K) at
      initialisation), so training begins as a plain autoencoder through the background layer
      instead of an average of K+1 unrelated part images; parts must out-bid it where the
      background cannot explain the target. An experiment (docs/EXPERIMENTS.md).
    auxiliary_warmup_steps: ramp every term except reconstruction (background, translation,
      rotation/scale, equivariance, concentrations) linearly from 0 over this many steps (0 = the
      paper): a reconstruction-only start, so the structural terms act on parts that already
      carry image content. An experiment (docs/EXPERIMENTS.md).
    pose_prior_radius: > 0 adds `pose_log_prior` (a Gaussian of this many part standard
      deviations around each pose) to the part's depth logits; 0 = the paper (no prior).
    shift_from: "regression" (the reference: part centres regressed from flattened features) or
      "heatmap" (soft-argmax of a per-part heatmap; see `TransformHead`).
    warp_source_pixels: add to every part's decoded image the source frame moved by the part's
      motion, and to the background's the plain-background estimate of `background_colour`
      (`_pixel_skip`); False = the paper (all colours decoded from the latent maps).
    initial_scale: the scale every part's pose starts at (`TransformHead`); 1 = the paper.
    linear_from: "regression" (the paper: rotation and scale regressed from flattened features)
      or "heatmap" (needs shift_from="heatmap": read under each part's heatmap; see
      `TransformHead`).
    scale_activation: "tanh" (the paper's range, scales in (0.1, 1.9)) or "log" (a sigmoid over
      log scales in (0.02, 1.9), for parts smaller than a tenth of the frame; see `TransformHead`).
    detach_background_poses: the background terms see the pose prior and the coverage as
      constants, so they shape the masks through the decoded depth only. Why: a part can lower
      its foreground mass by moving its pose out of the frame (the coverage and the prior then
      cut its mask), and the background terms pushed parts that did not yet explain an object
      there (measured on rung A, seed 0: three of four parts parked on the left edge; with this
      option none, fg IoU 0.275 -> 0.311). False = the paper.
    gate_masks_by_claims: needs shift_from="heatmap". Each part's claims (softmax over parts of
      its heatmap logits on the source frame) are moved with its latent map and their log is
      added to its depth, so a part's mask exists only where the part claims the content. Why:
      the masks follow the poses, and a part whose object is absent from a video still has a pose
      (its heatmap must peak somewhere), so it sat on another part's object and split it (rung A:
      parts holding pieces of sprites of every id; docs/EXPERIMENTS.md section 10). With the gate
      the claims, which the seek and consistency terms make decisive and tied to an object,
      decide which part is seen, and the reconstruction trains the claims too. False = the paper.
    flat_part_colours: needs warp_source_pixels. Each part's pixels are one flat colour per
      image (`part_colours`: the source's mean colour under the part's pose prior, weighted by
      how far each pixel is from the median colour, and by the part's claims with
      gate_masks_by_claims) instead of the source moved by the part's motion; the decoder still
      adds its residual. Why: the moved source pixels carry the objects' anti-aliased edges, so
      a part's layer reproduces a pixel its object covers by 20 % exactly and the background's
      does not: the masks took every pixel the object touches, one pixel too large all round
      (oracle poses on rung A: 811 of 841 false positives in that ring). Against a pure colour
      the reconstruction's best mask at such a pixel is the coverage itself (matting), and
      the argmax keeps the pixels the object covers by more than half, the labels' pixel-centre
      convention. False = moved source pixels.
    colour_matting_gain: needs warp_source_pixels. > 0 adds to each part's depth logit the
      matting log-odds of the source pixels moved by the part's motion (`_matting_depth`):
      gain x (2 alpha - 1), where alpha is the pixel's coverage by the part's flat colour over the
      plain background's colour (clipped to [0, 1]; without flat_part_colours, the pixel's
      distance from the background over `MATTING_CONTRAST`). Why: the decoder's depth comes from
      latents at a quarter of the resolution and can only place a boundary to a pixel or so (rung
      A, seed 0: 2951 false positives in the outer ring and 3210 false negatives on the edge);
      the source's own pixels know where each edge is to a fraction of a pixel, and the
      log-odds crosses 0 where the object covers half the pixel, the labels' pixel-centre
      convention. 0 = off (the paper has no such term).
    presence_threshold: needs gate_masks_by_claims and warp_source_pixels. > 0 adds
      log min(1, p / threshold) to every depth logit of a part that claims a share p of the
      frame's content (`_log_presence`), so a part whose object is absent from the frame is not
      seen (0 = off; the paper's parts are always present).
    depth_bound: > 0 bounds every decoded depth logit to (-depth_bound, depth_bound) with a
      scaled tanh (0 = unbounded, the paper). Why: a part the reconstruction once found wrong
      was switched off by the decoder for good (rung A, seed 2, with loss_extent: depth -115 on
      its own sprite, which it claimed and whose colour it had, so the sprite went to the
      background and no gradient through the softmax could bring the part back). Bounded, the
      decoder shapes a mask but cannot veto it (the push that drives a logit down fades as the
      tanh saturates, so it is not driven far past the bound); the claims, the pose prior and
      the matting term decide which part is seen.
    background_colour: the plain-background estimate that `warp_source_pixels` gives the
      background layer and that the matting, presence and flat colours measure content against
      (`_background_colours`): "frame_median" (one colour per frame) or "row_median" (one per
      row: the humanoid scenes' wall above a floor, where one colour per frame left the wall to
      the parts, which moved onto it).
    **loss_weights: overrides of `DEFAULT_LOSS_WEIGHTS`; other kwargs go to keras.Model.
  """

  def __init__(
    self,
    num_parts=10,
    preset="small",
    image_size=128,
    compose_warps=False,
    perceptual_loss="pyramid",
    background_on="retarget",
    covariance_threshold=0.02,
    equivariance_rotation=6.283185307179586,
    part_names=None,
    seed=0,
    initial_spread=0.0,
    background_warmup_steps=0,
    masks_follow_poses=False,
    mass_epsilon=1.0,
    background_depth_offset=0.0,
    auxiliary_warmup_steps=0,
    pose_prior_radius=0.0,
    shift_from="regression",
    warp_source_pixels=False,
    initial_scale=1.0,
    detach_background_poses=False,
    gate_masks_by_claims=False,
    flat_part_colours=False,
    linear_from="regression",
    scale_activation="tanh",
    colour_matting_gain=0.0,
    presence_threshold=0.0,
    depth_bound=0.0,
    background_colour="frame_median",
    **kwargs,
  ):
    weights = dict(DEFAULT_LOSS_WEIGHTS)
    for name in list(kwargs):
      if name in DEFAULT_LOSS_WEIGHTS:
        weights[name] = float(kwargs.pop(name))
    super().__init__(**kwargs)
    if num_parts < 1:
      raise ValueError(f"num_parts must be >= 1, got {num_parts}")
    if image_size % 4:
      raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
    if perceptual_loss not in ("none", "pyramid", "vgg"):
      raise ValueError(f"perceptual_loss must be none|pyramid|vgg, got {perceptual_loss!r}")
    if background_on not in ("retarget", "both"):
      raise ValueError(f"background_on must be retarget|both, got {background_on!r}")
    for term in ("seek", "balance", "consistency", "extent"):
      if weights[term] and shift_from != "heatmap":
        raise ValueError(f'the {term} loss (weight "{term}") needs shift_from="heatmap"')
    if gate_masks_by_claims and shift_from != "heatmap":
      raise ValueError('gate_masks_by_claims needs shift_from="heatmap"')
    if flat_part_colours and not warp_source_pixels:
      raise ValueError("flat_part_colours needs warp_source_pixels")
    if colour_matting_gain and not warp_source_pixels:
      raise ValueError("colour_matting_gain needs warp_source_pixels")
    if presence_threshold and not (gate_masks_by_claims and warp_source_pixels):
      raise ValueError("presence_threshold needs gate_masks_by_claims and warp_source_pixels")
    if depth_bound < 0:
      raise ValueError(f"depth_bound must be >= 0, got {depth_bound}")
    if background_colour not in BACKGROUND_COLOURS:
      raise ValueError(
        f"background_colour must be frame_median|row_median, got {background_colour!r}"
      )
    self.num_parts = int(num_parts)
    self.preset = get_preset(preset)
    self.image_size = int(image_size)
    self.compose_warps = bool(compose_warps)
    self.perceptual_loss = perceptual_loss
    self.background_on = background_on
    self.covariance_threshold = float(covariance_threshold)
    self.equivariance_rotation = float(equivariance_rotation)
    self.loss_weights = weights
    self.seed = int(seed)
    self.initial_spread = float(initial_spread)
    self.background_warmup_steps = int(background_warmup_steps)
    self.masks_follow_poses = bool(masks_follow_poses)
    self.mass_epsilon = float(mass_epsilon)
    self.background_depth_offset = float(background_depth_offset)
    self.auxiliary_warmup_steps = int(auxiliary_warmup_steps)
    self.pose_prior_radius = float(pose_prior_radius)
    self.shift_from = shift_from
    self.warp_source_pixels = bool(warp_source_pixels)
    self.initial_scale = float(initial_scale)
    self.detach_background_poses = bool(detach_background_poses)
    self.gate_masks_by_claims = bool(gate_masks_by_claims)
    self.flat_part_colours = bool(flat_part_colours)
    self.linear_from = linear_from
    self.scale_activation = scale_activation
    self.colour_matting_gain = float(colour_matting_gain)
    self.presence_threshold = float(presence_threshold)
    self.depth_bound = float(depth_bound)
    self.background_colour = background_colour
    self.part_names = list(part_names) if part_names else self.default_part_names(num_parts)
    if len(self.part_names) != num_parts + 1:
      raise ValueError(f"part_names needs {num_parts + 1} names (background first)")

    self.encoder = Encoder(self.preset, name="encoder")
    self.part_map_head = PartMapHead(self.num_parts, self.preset, name="part_map_head")
    self.transform_head = TransformHead(
      self.num_parts,
      self.preset,
      initial_spread=self.initial_spread,
      shift_from=shift_from,
      initial_scale=self.initial_scale,
      linear_from=linear_from,
      scale_activation=scale_activation,
      name="transform_head",
    )
    # With warp_source_pixels the decoded colours are a residual on top of the moved pixels.
    self.decoder = PartDecoder(
      self.preset, image_bias=0.0 if self.warp_source_pixels else 0.5, name="decoder"
    )
    self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_TERMS}
    # Not a loss: the global gradient norm, logged as train/grad_norm (spots instabilities).
    self.grad_norm_tracker = keras.metrics.Mean(name="grad_norm")
    # The VGG layer must not be tracked: it would land in every checkpoint and export.
    object.__setattr__(self, "_perceptual_layer", None)

  @staticmethod
  def default_part_names(num_parts):
    return ["background"] + [f"part_{k}" for k in range(1, num_parts + 1)]

  def set_perceptual_loss(self, layer):
    """Attaches the (frozen, untracked) VGG perceptual loss callable used when perceptual="vgg"."""
    object.__setattr__(self, "_perceptual_layer", layer)

  def get_config(self):
    return {
      **super().get_config(),
      "num_parts": self.num_parts,
      "preset": self.preset.name,
      "image_size": self.image_size,
      "compose_warps": self.compose_warps,
      "perceptual_loss": self.perceptual_loss,
      "background_on": self.background_on,
      "covariance_threshold": self.covariance_threshold,
      "equivariance_rotation": self.equivariance_rotation,
      "part_names": list(self.part_names),
      "seed": self.seed,
      "initial_spread": self.initial_spread,
      "background_warmup_steps": self.background_warmup_steps,
      "masks_follow_poses": self.masks_follow_poses,
      "mass_epsilon": self.mass_epsilon,
      "background_depth_offset": self.background_depth_offset,
      "auxiliary_warmup_steps": self.auxiliary_warmup_steps,
      "pose_prior_radius": self.pose_prior_radius,
      "shift_from": self.shift_from,
      "warp_source_pixels": self.warp_source_pixels,
      "initial_scale": self.initial_scale,
      "detach_background_poses": self.detach_background_poses,
      "gate_masks_by_claims": self.gate_masks_by_claims,
      "colour_matting_gain": self.colour_matting_gain,
      "presence_threshold": self.presence_threshold,
      "depth_bound": self.depth_bound,
      "background_colour": self.background_colour,
      "flat_part_colours": self.flat_part_colours,
      "linear_from": self.linear_from,
      "scale_activation": self.scale_activation,
      **self.loss_weights,
    }

  @classmethod
  def from_config(cls, config):
    return cls(**config)

  def build_from_config(self, config):
    """`keras.saving.load_model`: the model builds from its own config (`build()` needs no shapes)."""
    del config
    self.build()

  @property
  def metrics(self):
    return list(self.trackers.values()) + [self.grad_norm_tracker]

  def build(self, input_shape=None):
    s = self.image_size
    self.encoder.build((None, s, s, 3))
    features = self.encoder.compute_output_shape((None, s, s, 3))
    self.part_map_head.build(features)
    self.transform_head.build(features)
    self.decoder.build((None, s // 4, s // 4, self.preset.latent_channels))
    self.built = True

  # ---------------------------------------------------------------- building blocks

  def encode(self, images, part_maps=True):
    """Encoder pass.

    Args:
      images: `[B, S, S, 3]` in [0, 1].
      part_maps: also run the part-map head (the target passes of training need only poses).

    Returns:
      dict: affines `[B, K, 2, 3]`, cos_sin/scale/shift `[B, K, 2]`, heatmap_logits
      `[B, S/4, S/4, K]` with `shift_from="heatmap"`, and part_maps `[B, S/4, S/4, K+1, C_lat]`
      when requested.
    """
    features = self.encoder(images)
    out = dict(self.transform_head(features))
    if part_maps:
      out["part_maps"] = self.part_map_head(features)
    return out

  def _fold_foreground(self, maps, heatmap_logits):
    """Foreground part maps `[B, h, w, K+1, C]` -> `[B*K, h, w, C+1]` with their coverage channel
    (ones, or the claims with `gate_masks_by_claims`; heatmap_logits `[B, h, w, K]`)."""
    folded = _to_parts(maps[..., 1:, :])
    if self.gate_masks_by_claims:
      return _with_claims(folded, heatmap_logits)
    return _with_coverage(folded)

  def _warp_parts(self, folded_maps, affines_out_to_in):
    """Warps folded part maps `[B*K, h, w, C]` by `[B, K, 2, 3]` output->input maps."""
    return warp_lib.warp_affine(folded_maps, tf.reshape(affines_out_to_in, [-1, 2, 3]))

  def _pixel_skip(self, images, background, part_motion=(None,), colours=None, moved=None):
    """The pixels added to the decoded part images with `warp_source_pixels`.

    Why: the decoder has to learn every colour from scratch, and a flat background colour that
    varies per video took it hundreds of steps (capacity check on sprites with colourful
    backgrounds: autoencoder L1 0.099 after 300 steps vs 0.0099 on grey ones), so no part's layer
    ever showed its object before the background had won. With the source's own pixels moved by
    the part's motion, a part whose pose follows its object shows that object from the first
    step; the decoder adds a residual, and the depth decides which layer is seen. The background
    gets only the plain-background estimate (`_background_colours`, the frame's median colour by
    default: exact on a plain background while the object covers less than half the frame): it
    must not start as a copy of the source, whose objects would then sit at their old places in
    every retargeted frame. (On the 128 px humanoid the wall above the floor is then left to the
    parts, which move onto it: `background_colour="row_median"` there.)

    Args:
      images: source frames `[B, S, S, 3]`.
      background: their `_background_colours` `[B, S, S, 3]`.
      part_motion: a sequence of `[B, K, 2, 3]` output -> input maps of the parts' pixels, or
        None (not moved), one per group of part images decoded together.
      colours: `[B, K, 3]` flat part colours (`part_colours`) in place of the moved pixels
        (a flat colour is the same under any motion), or None.
      moved: the moved pixels `[B*K, S, S, 3]` of each group if the caller has them.

    Returns:
      `[B + G*B*K, S, S, 3]`: background rows first, then each group's parts folded into the
      batch (the order of `forward_pair`'s single decoder call).
    """
    shape = tf.shape(images)
    if colours is not None:
      flat = tf.broadcast_to(
        tf.reshape(colours, [-1, 1, 1, 3]), [shape[0] * self.num_parts, shape[1], shape[2], 3]
      )
      return tf.concat([background] + [flat] * len(part_motion), axis=0)
    if moved is None:
      moved = [self._moved_pixels(images, m) for m in part_motion]
    return tf.concat([background] + list(moved), axis=0)

  def part_colours(self, images, affines, heatmap_logits=None, background=None):
    """Each part's flat colour in each image (`flat_part_colours`), `[B, K, 3]`.

    The mean colour of the frame under the part's pose prior (`pose_log_prior` with
    `pose_prior_radius`, 1 if that is 0), each pixel weighted by its distance from the plain
    background estimate (so the plain background and the objects' anti-aliased edges count
    little) and, with `gate_masks_by_claims`, by the part's claims. The weights are constants
    except the claims: the reconstruction then tells a part that claims two colours which one it
    shows (with the claims constant too, rung A seeds 0 / 1 fell from part IoU 0.755 / 0.629
    to 0.389 / 0.584: docs/EXPERIMENTS.md section 11).

    Args:
      images: `[B, S, S, 3]` source frames.
      affines: `[B, K, 2, 3]` the parts' poses in those frames.
      heatmap_logits: `[B, S/4, S/4, K]`, needed with `gate_masks_by_claims`.
      background: the frames' `_background_colours` `[B, S, S, 3]` if the caller has them
        (computed otherwise).
    """
    if background is None:
      background = _background_colours(images, self.background_colour)
    content = tf.reduce_mean(tf.abs(images - background), -1)
    radius = self.pose_prior_radius or 1.0
    weight = tf.exp(pose_log_prior(affines, self.image_size, radius)) * content[..., None]
    weight = tf.stop_gradient(weight)  # [B, S, S, K]
    if self.gate_masks_by_claims:
      claims = tf.nn.softmax(heatmap_logits, axis=-1)
      weight *= tf.image.resize(claims, [self.image_size, self.image_size], method="bilinear")
    total = tf.einsum("bhwk,bhwc->bkc", weight, images)
    return total / (tf.reduce_sum(weight, axis=[1, 2])[..., None] + 1e-6)

  def _moved_pixels(self, images, motion):
    """`[B, S, S, 3]` frames moved by `[B, K, 2, 3]` part motions (None: not moved) -> `[B*K, S, S, 3]`."""
    parts = tf.repeat(images, self.num_parts, axis=0)
    if motion is None:
      return parts
    return warp_lib.warp_affine(parts, tf.reshape(motion, [-1, 2, 3]))

  def _decode(self, folded_maps, images, part_motion=(None,), affines=None, heatmap_logits=None):
    """One decoder call for all maps `[N, h, w, C]` -> (part images `[N,S,S,3]`, depth `[N,S,S,1]`).

    With `depth_bound`, the decoded depth is bounded first. With `warp_source_pixels`, the part
    images get `_pixel_skip(images, ...)` added (with `flat_part_colours`, the `part_colours` of
    the parts at their source poses `affines` `[B, K, 2, 3]` and source heatmap logits), and the
    parts' depth (not the background's) `_matting_depth` per group of `part_motion` with
    `colour_matting_gain` and `_log_presence` with `presence_threshold`.
    """
    part_images, depth = self.decoder(folded_maps)
    if self.depth_bound:
      depth = self.depth_bound * tf.tanh(depth / self.depth_bound)
    if self.warp_source_pixels:
      background = _background_colours(images, self.background_colour)  # one sort, all uses
      colours = moved = None
      if self.flat_part_colours:
        colours = self.part_colours(images, affines, heatmap_logits, background)
      else:  # warped once, for the skip and the matting
        moved = [self._moved_pixels(images, m) for m in part_motion]
      part_images += self._pixel_skip(images, background, part_motion, colours, moved)
      batch = tf.shape(images)[0]
      bg_depth, parts_depth = tf.split(depth, [batch, -1], axis=0)
      if self.colour_matting_gain:
        pixels = moved or [None] * len(part_motion)
        matting = [
          self._matting_depth(images, background, colours, m, p)
          for m, p in zip(part_motion, pixels, strict=True)
        ]
        parts_depth += tf.concat(matting, axis=0)
      if self.presence_threshold:
        presence = self._log_presence(images, background, heatmap_logits)
        parts_depth += tf.tile(tf.reshape(presence, [-1, 1, 1, 1]), [len(part_motion), 1, 1, 1])
      depth = tf.concat([bg_depth, parts_depth], axis=0)
    return part_images, depth

  def _log_presence(self, images, background, heatmap_logits):
    """log min(1, p_k / presence_threshold), p_k the part's share of the content, `[B, K]`.

    p_k is `discovery_lib.claimed_shares` against the plain background estimate `background`
    `[B, S, S, 3]`, a constant. Why: on rung A (1-4 sprites per video, K = 4) a part whose
    sprite is absent still has a heatmap peak; it sat in the background cells next to another
    sprite, whose claims the bilinear upsampling leaks onto that sprite's edge pixels, and with
    its colour taken from those pixels it showed there (seed 0: 5-22 % of the red ellipse in
    every video without the violet one). Measured there: p = 0.001-0.003 for absent parts,
    >= 0.05 for present ones.
    """
    shares = discovery_lib.claimed_shares(heatmap_logits, images, background)
    ratio = tf.stop_gradient(shares) / self.presence_threshold
    return tf.math.log(tf.clip_by_value(ratio, 1e-3, 1.0))

  def _matting_depth(self, images, background, colours, motion, pixels=None):
    """The matting log-odds of each part's moved source pixels (`colour_matting_gain`).

    gain x (2 alpha - 1), 0 where the part covers half the pixel, with alpha the pixel P's
    coverage by the part over the plain background's colour m there (clipped to [0, 1]):
    - with flat part colours c, alpha = <P - m, c - m> / |c - m|^2 (exact on an anti-aliased
      edge between the two; a part whose colour is the background's gets alpha 0 everywhere, the
      0.01 in the denominator);
    - without (shaded objects), alpha = mean |P - m| / `MATTING_CONTRAST`: a pixel that differs
      from the background by less than half that is more background than object.

    Args:
      images: source frames `[B, S, S, 3]`.
      background: their `_background_colours` `[B, S, S, 3]` (moved with the pixels).
      colours: `[B, K, 3]` flat part colours, or None.
      motion: `[B, K, 2, 3]` output -> input map of the parts' pixels, or None (not moved).
      pixels: `_moved_pixels(images, motion)` if the caller has them.

    Returns:
      `[B*K, S, S, 1]`, the parts folded into the batch.
    """
    if pixels is None:
      pixels = self._moved_pixels(images, motion)  # [B*K, S, S, 3]
    still = self.background_colour == "frame_median"
    if colours is not None and still:
      # The same arithmetic per image rather than per pixel: rung A's identity is chaotic in the
      # last bit (the per-pixel form, equal up to rounding, took the learning test's multi-sprite
      # identity from 0.939 to 0.484), so the measured path is kept bit for bit.
      median = tf.repeat(background[:, 0, 0, :], self.num_parts, axis=0)  # [B*K, 3]
      direction = tf.reshape(colours, [-1, 3]) - median
      along = tf.einsum("nhwc,nc->nhw", pixels - median[:, None, None, :], direction)
      alpha = along / (tf.reduce_sum(tf.square(direction), -1)[:, None, None] + 0.01)
    else:
      # One colour per frame is the same under any motion (and not zero-filled off the frame).
      plain = self._moved_pixels(background, None if still else motion)
      if colours is None:
        alpha = tf.reduce_mean(tf.abs(pixels - plain), -1) / MATTING_CONTRAST
      else:
        direction = tf.reshape(colours, [-1, 1, 1, 3]) - plain
        along = tf.reduce_sum((pixels - plain) * direction, -1)
        alpha = along / (tf.reduce_sum(tf.square(direction), -1) + 0.01)
    return self.colour_matting_gain * (2.0 * tf.clip_by_value(alpha, 0.0, 1.0) - 1.0)[..., None]

  @staticmethod
  def assemble(part_images, depth):
    """Masks = softmax over parts of depth; image = sum_k M_k P_k.

    Args:
      part_images: `[B, S, S, K+1, 3]`.
      depth: `[B, S, S, K+1]`.

    Returns:
      (masks `[B, S, S, K+1]`, image `[B, S, S, 3]`).
    """
    masks = tf.nn.softmax(depth, axis=-1)
    return masks, tf.reduce_sum(masks[..., None] * part_images, axis=-2)

  def _foreground_depth(self, folded_depth, coverage, affines, batch):
    """Depth logits of the foreground parts `[B*K, S, S, 1]` -> `[B, S, S, K]`.

    Adds the log-coverage of each part's warped latent and, with `pose_prior_radius`, the pose
    prior of `affines` `[B, K, 2, 3]` (the poses the parts were moved to).
    """
    depth = folded_depth + _log_coverage(coverage, self.image_size)
    depth = _from_parts(depth, batch, self.num_parts)[..., 0]
    if self.pose_prior_radius > 0:
      depth += pose_log_prior(affines, self.image_size, self.pose_prior_radius)
    return depth

  def _decode_layers(
    self, maps, warped, images, poses, part_motion=(None,), affines=None, heatmap_logits=None
  ):
    """Decodes the background and G groups of moved parts into G stacks of K+1 layers.

    The block `call`, `_retarget` and `forward_pair` share: the coverage channel split off the
    moved latents, one decoder call (the background first, decoded once and shared by every
    group), the background's `background_depth_offset`, each group's foreground depth
    (`_foreground_depth`: log-coverage and pose prior) and the background put in front of each
    group's parts.

    Args:
      maps: part maps `[B, h, w, K+1, C_lat]`; only the background's `[..., 0, :]` is read.
      warped: `[G*B*K, h, w, C_lat+1]` the groups' moved foreground latents with their coverage
        channel last (`_fold_foreground`, then `_warp_parts`), group after group.
      images: `[B, S, S, 3]` the frames the maps come from (`_decode`'s pixel skip).
      poses: G poses `[B, K, 2, 3]`, where each group's parts were moved to (`_foreground_depth`).
      part_motion: G output -> input motions `[B, K, 2, 3]` (or None: not moved) of the groups'
        pixels (`_decode`).
      affines: `[B, K, 2, 3]` the source poses (`_decode`, for `flat_part_colours`).
      heatmap_logits: `[B, h, w, K]` of the source, or None (`_decode`).

    Returns:
      (background depth `[B, S, S, 1]` with the offset, list of G dicts): ``part_images``
      `[B, S, S, K+1, 3]` and ``depth`` `[B, S, S, K+1]` (background first), ``foreground_depth``
      `[B, S, S, K]` (``depth[..., 1:]``), and the inputs of `_foreground_depth`: ``decoded``
      `[B*K, S, S, 1]` (the parts' decoded depth) and ``coverage`` `[B*K, h, w, 1]`.
    """
    batch = tf.shape(images)[0]
    k = self.num_parts
    groups = len(poses)
    latents, coverage = tf.split(warped, [self.preset.latent_channels, 1], axis=-1)
    part_images, depth = self._decode(
      tf.concat([maps[..., 0, :], latents], axis=0), images, part_motion, affines, heatmap_logits
    )
    # tf.split rather than slicing: cheap gradients (see PartDecoder.call).
    bg_images, fg_images = tf.split(part_images, [batch, groups * batch * k], axis=0)
    bg_depth, fg_depth = tf.split(depth, [batch, groups * batch * k], axis=0)
    bg_depth += self.background_depth_offset
    split_images = tf.split(fg_images, groups, axis=0)
    split_decoded = tf.split(fg_depth, groups, axis=0)
    split_coverage = tf.split(coverage, groups, axis=0)
    # Every group's foreground depth before any group's layers: the order the ops were made in
    # before this helper existed. Interleaving them changed the graph-mode gradients in the last
    # bit (measured with compose_warps and pose_prior_radius), and training trajectories depend
    # on the last bit.
    foreground = [
      self._foreground_depth(decoded, group_coverage, group_poses, batch)
      for decoded, group_coverage, group_poses in zip(
        split_decoded, split_coverage, poses, strict=True
      )
    ]
    layers = []
    for group_images, decoded, group_coverage, foreground_depth in zip(
      split_images, split_decoded, split_coverage, foreground, strict=True
    ):
      layers.append(
        {
          "part_images": tf.concat(
            [bg_images[..., None, :], _from_parts(group_images, batch, k)], axis=-2
          ),
          "depth": tf.concat([bg_depth, foreground_depth], axis=-1),
          "foreground_depth": foreground_depth,
          "decoded": decoded,
          "coverage": group_coverage,
        }
      )
    return bg_depth, layers

  # ---------------------------------------------------------------- inference

  def call(self, images, training=False):
    """Segments images (the source-reconstruction path of training).

    Args:
      images: `[B, S, S, 3]` float32 in [0, 1], S = `image_size`.
      training: unused (no layer behaves differently).

    Returns:
      dict with masks `[B,S,S,K+1]`, part_labels int32 `[B,S,S]`, depth `[B,S,S,K+1]`, part_images
      `[B,S,S,K+1,3]`, reconstruction `[B,S,S,3]`, affines `[B,K,2,3]`, centers `[B,K,2]`
      (normalised x, y), cos_sin and scale `[B,K,2]`.
    """
    del training
    enc = self.encode(images)
    maps = enc["part_maps"]
    fg = self._fold_foreground(maps, enc.get("heatmap_logits"))
    if not self.compose_warps:
      canonical = self._warp_parts(fg, enc["affines"])
      fg = self._warp_parts(canonical, affine_lib.invert(enc["affines"]))
    _, (layers,) = self._decode_layers(
      maps,
      fg,
      images,
      [enc["affines"]],
      affines=enc["affines"],
      heatmap_logits=enc.get("heatmap_logits"),
    )
    part_images, depth = layers["part_images"], layers["depth"]
    masks, reconstruction = self.assemble(part_images, depth)
    return {
      "masks": masks,
      "part_labels": tf.argmax(depth, axis=-1, output_type=tf.int32),
      "depth": depth,
      "part_images": part_images,
      "reconstruction": reconstruction,
      "affines": enc["affines"],
      "centers": enc["shift"],
      "cos_sin": enc["cos_sin"],
      "scale": enc["scale"],
    }

  def animate(self, source_images, driving_images):
    """Re-poses the source's parts by the driving frames' poses (the reference's "driving_image").

    Args:
      source_images: `[B, S, S, 3]`.
      driving_images: `[B, S, S, 3]`.

    Returns:
      dict: image `[B, S, S, 3]`, masks `[B, S, S, K+1]`, part_labels `[B, S, S]`.
    """
    src = self.encode(source_images)
    drv = self.encode(driving_images, part_maps=False)
    out = self._retarget(
      source_images,
      src["part_maps"],
      src["affines"],
      drv["affines"],
      src.get("heatmap_logits"),
    )
    masks, image = self.assemble(out["part_images"], out["depth"])
    return {
      "image": image,
      "masks": masks,
      "part_labels": tf.argmax(out["depth"], axis=-1, output_type=tf.int32),
    }

  def _retarget(self, images, maps, source_affines, target_affines, heatmap_logits=None):
    """The source's parts moved to the target poses: `_decode_layers`' dict of one group."""
    fg = self._fold_foreground(maps, heatmap_logits)
    motion = affine_lib.compose(source_affines, affine_lib.invert(target_affines))
    if self.compose_warps:
      moved = self._warp_parts(fg, motion)
    else:
      canonical = self._warp_parts(fg, source_affines)
      moved = self._warp_parts(canonical, affine_lib.invert(target_affines))
    _, (layers,) = self._decode_layers(
      maps, moved, images, [target_affines], [motion], source_affines, heatmap_logits
    )
    return layers

  # ---------------------------------------------------------------- training

  def _training_warps(self, maps, source_affines, target_affines, heatmap_logits=None):
    """The foreground latents one training step decodes, with their coverage channel.

    Args:
      maps: part maps `[B, h, w, K+1, C_lat]` of the source.
      source_affines, target_affines: `[B, K, 2, 3]`.
      heatmap_logits: `[B, h, w, K]` of the source (for `gate_masks_by_claims`).

    Returns:
      `[3*B*K, h, w, C_lat+1]`: source reconstruction, retargeted, canonical (in that order).
    """
    fg = self._fold_foreground(maps, heatmap_logits)
    canonical = self._warp_parts(fg, source_affines)  # V*(c) = V^s(T^s c)
    if self.compose_warps:
      source_rec = fg
      retarget = self._warp_parts(
        fg, affine_lib.compose(source_affines, affine_lib.invert(target_affines))
      )
    else:
      source_rec = self._warp_parts(canonical, affine_lib.invert(source_affines))
      retarget = self._warp_parts(canonical, affine_lib.invert(target_affines))
    return tf.concat([source_rec, retarget, canonical], axis=0)

  def forward_pair(self, source, target, warp_affines):
    """Everything one training step needs (DESIGN.md §4).

    Args:
      source: `[B, S, S, 3]`.
      target: `[B, S, S, 3]`, same video, later frame.
      warp_affines: `[B, 2, 3]` random W; the warped target is I_w(u) = I_t(W u).

    Returns:
      dict of tensors: source/target reconstructions and masks, canonical masks, poses.
    """
    batch = tf.shape(source)[0]
    k = self.num_parts
    warped_image = warp_lib.warp_affine(target, warp_affines, padding="border")
    # One trunk + transform-head pass over the three images; part maps for the source only.
    features = self.encoder(tf.concat([source, target, warped_image], axis=0))
    poses = self.transform_head(features)
    source_affines = poses["affines"][:batch]
    target_affines = poses["affines"][batch : 2 * batch]
    warped_affines = poses["affines"][2 * batch :]
    maps = self.part_map_head(features[:batch])

    # One decoder call: background once (never warped, shared by both assemblies), then the
    # source-reconstruction, retargeted and canonical part maps.
    logits = poses.get("heatmap_logits")
    source_logits = None if logits is None else logits[:batch]
    warped = self._training_warps(maps, source_affines, target_affines, source_logits)
    motion = affine_lib.compose(source_affines, affine_lib.invert(target_affines))
    identity = affine_lib.identity([batch, k], source_affines.dtype)
    bg_depth, (src, tgt, can) = self._decode_layers(
      maps,
      warped,
      source,
      [source_affines, target_affines, identity],
      [None, motion, source_affines],
      source_affines,
      source_logits,
    )
    src_images, tgt_images = src["part_images"], tgt["part_images"]
    source_masks, source_rec_image = self.assemble(src_images, src["depth"])
    target_masks, target_rec_image = self.assemble(tgt_images, tgt["depth"])
    background_masks = target_masks  # what the background terms see
    if self.detach_background_poses:
      # The same masks, with the pose-dependent prior and coverage as constants.
      view = self._foreground_depth(
        tgt["decoded"],
        tf.stop_gradient(tgt["coverage"]),
        tf.stop_gradient(target_affines),
        batch,
      )
      background_masks = tf.nn.softmax(tf.concat([bg_depth, view], axis=-1), axis=-1)
    # Canonical masks: each canonical part assembled against the background alone, since all
    # canonical parts sit at the frame centre and a joint softmax would make them compete.
    canonical_masks = tf.sigmoid(can["foreground_depth"] - bg_depth)

    outputs = {
      "source_reconstruction": source_rec_image,
      "target_reconstruction": target_rec_image,
      "source_masks": source_masks,
      "source_part_images": src_images,
      "target_masks": target_masks,
      "target_part_images": tgt_images,
      "background_masks": background_masks,
      "canonical_masks": canonical_masks,
      "source_affines": source_affines,
      "target_affines": target_affines,
      "warped_affines": warped_affines,
      "target_scale": poses["scale"][batch : 2 * batch],
      "target_cos_sin": poses["cos_sin"][batch : 2 * batch],
    }
    if "heatmap_logits" in poses:
      outputs["source_heatmap_logits"] = poses["heatmap_logits"][:batch]
      outputs["target_heatmap_logits"] = poses["heatmap_logits"][batch : 2 * batch]
    return outputs

  def _perceptual_fn(self):
    if self.perceptual_loss == "none":
      return None
    if self.perceptual_loss == "pyramid":
      return reconstruction_lib.pyramid_loss
    if self._perceptual_layer is None:
      raise ValueError(
        'perceptual_loss="vgg" needs set_perceptual_loss(VGGPerceptualLoss(...)) first'
      )
    return self._perceptual_layer

  def compute_losses(self, source, target, warp_affines, outputs):
    """All loss terms (DESIGN.md §5) as a dict of scalars, including the weighted "total"."""
    w = self.loss_weights
    perceptual = self._perceptual_fn()
    rec_t = reconstruction_lib.reconstruction_terms(
      target, outputs["target_reconstruction"], perceptual
    )
    rec_s = reconstruction_lib.reconstruction_terms(
      source, outputs["source_reconstruction"], perceptual
    )

    def weighted(terms):
      value = w["l1"] * terms["l1"] + w["grad"] * terms["grad"]
      if "perceptual" in terms:
        value += w["perceptual"] * terms["perceptual"]
      return value

    rec_target = weighted(rec_t)
    rec_source = weighted(rec_s)
    target_masks = outputs["target_masks"]
    background = background_lib.background_loss(
      outputs["background_masks"], w["background"], w["foreground"]
    )
    if self.background_on == "both":
      background += background_lib.background_loss(
        outputs["source_masks"], w["background"], w["foreground"]
      )
    if self.background_warmup_steps > 0 and self.optimizer is not None:
      ramp = tf.cast(self.optimizer.iterations, background.dtype) / self.background_warmup_steps
      background *= tf.minimum(ramp, 1.0)
    fg_target = target_masks[..., 1:]
    pose_targets = outputs["target_affines"]
    if self.masks_follow_poses:
      pose_targets = tf.stop_gradient(pose_targets)
    eps = self.mass_epsilon
    translation = transformation_lib.translation_loss(fg_target, pose_targets, eps)
    rotation_scale = transformation_lib.rotation_scale_loss(
      fg_target, pose_targets, self.covariance_threshold, eps
    )
    equivariance = equivariance_lib.equivariance_loss(
      outputs["warped_affines"], outputs["target_affines"], warp_affines
    )
    concentration = concentration_lib.concentration_loss(
      outputs["source_masks"][..., 1:], eps
    ) + concentration_lib.concentration_loss(fg_target, eps)
    canonical = concentration_lib.canonical_concentration_loss(outputs["canonical_masks"], eps)
    zero = tf.zeros([], background.dtype)
    redundancy = zero
    if w["redundancy"]:
      redundancy = background_lib.redundancy_loss(
        outputs["source_masks"], outputs["source_part_images"], source
      ) + background_lib.redundancy_loss(
        outputs["background_masks"], outputs["target_part_images"], target
      )

    def on_both_frames(loss_fn):
      """A discovery term on the source and the target (heatmap logits, frame, background)."""
      return loss_fn(
        outputs["source_heatmap_logits"], source, outputs["source_part_images"][..., 0, :]
      ) + loss_fn(
        outputs["target_heatmap_logits"], target, outputs["target_part_images"][..., 0, :]
      )

    seek = on_both_frames(discovery_lib.seek_loss) if w["seek"] else zero
    balance = on_both_frames(discovery_lib.balance_loss) if w["balance"] else zero
    consistency = on_both_frames(discovery_lib.consistency_loss) if w["consistency"] else zero
    extent = zero
    if w["extent"]:
      extent = discovery_lib.extent_loss(
        outputs["source_heatmap_logits"],
        outputs["source_affines"],
        source,
        outputs["source_part_images"][..., 0, :],
        eps,
      ) + discovery_lib.extent_loss(
        outputs["target_heatmap_logits"],
        outputs["target_affines"],
        target,
        outputs["target_part_images"][..., 0, :],
        eps,
      )
    auxiliary = (
      background
      + w["redundancy"] * redundancy
      + w["seek"] * seek
      + w["balance"] * balance
      + w["consistency"] * consistency
      + w["extent"] * extent
      + w["translation"] * translation
      + w["rotation_scale"] * rotation_scale
      + w["equivariance"] * equivariance
      + w["concentration"] * concentration
      + w["canonical_concentration"] * canonical
    )
    if self.auxiliary_warmup_steps > 0 and self.optimizer is not None:
      ramp = tf.cast(self.optimizer.iterations, auxiliary.dtype) / self.auxiliary_warmup_steps
      auxiliary *= tf.minimum(ramp, 1.0)
    total = w["target_rec"] * rec_target + w["source_rec"] * rec_source + auxiliary
    return {
      "total": total,
      "rec_target": rec_target,
      "rec_source": rec_source,
      "l1": rec_t["l1"],
      "grad": rec_t["grad"],
      "perceptual": rec_t.get("perceptual", zero),
      "background": background,
      "translation": translation,
      "rotation_scale": rotation_scale,
      "equivariance": equivariance,
      "concentration": concentration,
      "canonical_concentration": canonical,
      "redundancy": redundancy,
      "seek": seek,
      "balance": balance,
      "consistency": consistency,
      "extent": extent,
    }

  def _warp_affines_for(self, data, batch):
    if isinstance(data, dict) and "warp_affines" in data:
      return tf.cast(data["warp_affines"], tf.float32)
    # No per-example W from the input pipeline: derive it from the step counter.
    step = tf.cast(self.optimizer.iterations if self.optimizer else 0, tf.int32)
    replica = tf.distribute.get_replica_context()
    replica_id = replica.replica_id_in_sync_group if replica is not None else 0
    seed = tf.stack([tf.constant(self.seed, tf.int32) + 7919 * tf.cast(replica_id, tf.int32), step])
    return affine_lib.random_affine(batch, seed, max_rotation=self.equivariance_rotation)

  def _unpack(self, data):
    if isinstance(data, dict):
      return data["source"], data["target"]
    return data[0], data[1]

  def train_step(self, data):
    source, target = self._unpack(data)
    warp_affines = self._warp_affines_for(data, tf.shape(source)[0])
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    with tf.GradientTape() as tape:
      outputs = self.forward_pair(source, target, warp_affines)
      losses = self.compute_losses(source, target, warp_affines, outputs)
      # Keras 3 sums gradients over replicas; each replica's loss is a mean over its own batch.
      scaled = losses["total"] / tf.cast(replicas, losses["total"].dtype)
      if hasattr(self.optimizer, "scale_loss"):  # mixed_float16: LossScaleOptimizer (compile)
        scaled = self.optimizer.scale_loss(scaled)  # its apply() unscales the gradients
    gradients = tape.gradient(scaled, self.trainable_variables)
    self.optimizer.apply(gradients, self.trainable_variables)
    for name, value in losses.items():
      self.trackers[name].update_state(value)
    self.grad_norm_tracker.update_state(tf.linalg.global_norm(gradients))
    logs = {name: tracker.result() for name, tracker in self.trackers.items()}
    logs["grad_norm"] = self.grad_norm_tracker.result()
    return logs

  def test_step(self, data):
    source, target = self._unpack(data)
    warp_affines = self._warp_affines_for(data, tf.shape(source)[0])
    outputs = self.forward_pair(source, target, warp_affines)
    losses = self.compute_losses(source, target, warp_affines, outputs)
    for name, value in losses.items():
      self.trackers[name].update_state(value)
    return {name: tracker.result() for name, tracker in self.trackers.items()}
