"""Dead-part re-seeding: a part that wins no pixel is made a copy of the largest part, then split.

Why: on the 128 px humanoid (rung C) two or three of the ten parts die early in most runs: they
win no pixel, their claims fall to e^-8, their decoded depth sits at the bound and their pose
leaves the figure, and no loss term brings them back (the gradient through a softmax is
proportional to what the part already has; docs/EXPERIMENTS.md section 15). The live parts then
share the figure among fewer parts than it has limbs: the arms end in a torso-and-arm blob and
the forearms on the background. k-means meets the same trap (an empty cluster) and the usual
remedy is to split the largest cluster; the VQ-VAE literature restarts dead codes the same way.

How: every weight that belongs to one foreground part (its heatmap, its slice of the part-map
head's output conv, its rotation / scale outputs, and the optimizer's slots of all of them) is
copied from the donor, the part that wins the most foreground pixels, into the dead part. The
copy decodes the donor's latent map, so it starts where the donor is, with the donor's depth,
and the assembled image does not change (each of the two now takes half of the donor's mask).
The two are told apart by a ramp on their heatmap-bias logits along the donor's principal axis
(+ for one, - for the other, `split_logit` at one standard deviation of the donor's pixels):
each starts with one end of the donor's region, and the reconstruction decides where the cut
ends up (a region with two independent motions cannot be followed by one pose).

Needs `shift_from="heatmap"` (the heatmap bias is where the split is written).

Example:
>>> reseeder = PartReseeder(min_share=0.01)
>>> pairs = reseeder(model, optimizer, images)  # [(dead, donor), ...], 0-based part indices
"""

import numpy as np

from copart_tf.ops import grid as grid_lib


def part_weight_slices(model):
  """Every weight of one foreground part: `(variable, width, offset)`.

  Foreground part k (0-based) owns channels `[offset + k * width, offset + (k + 1) * width)` of
  the variable's last axis.
  """
  head = model.transform_head
  k = model.num_parts
  latent = model.preset.latent_channels
  slices = []
  if head.heatmap is not None:
    slices += [(head.heatmap.kernel, 1, 0), (head.heatmap.bias, 1, 0), (head.heatmap_bias, 1, 0)]
  for layer, width in ((head.rotation, 2), (head.scale, 2), (head.shift, 2), (head.linear_map, 4)):
    if layer is not None:
      slices += [(layer.kernel, width, 0), (layer.bias, width, 0)]
  out = model.part_map_head.out  # K + 1 groups of latent channels, background first
  slices += [(out.kernel, latent, latent), (out.bias, latent, latent)]
  for variable, width, offset in slices:
    if variable.shape[-1] != offset + width * k:
      raise ValueError(f"{variable.path}: last axis {variable.shape[-1]}, expected {k} parts")
  return slices


def _optimizer_slots(optimizer, variable):
  """The optimizer's per-variable slot variables of `variable` (Adam: momentum and velocity)."""
  if optimizer is None:
    return []
  index = optimizer._get_variable_index(variable)  # noqa: SLF001 (Keras 3 has no public API)
  return [
    slots[index]
    for name in ("_momentums", "_velocities")
    if (slots := getattr(optimizer, name, None))
  ]


def copy_part(model, optimizer, source, target):
  """Copies foreground part `source`'s weights and optimizer slots onto part `target` (0-based)."""
  for variable, width, offset in part_weight_slices(model):
    src = slice(offset + source * width, offset + (source + 1) * width)
    dst = slice(offset + target * width, offset + (target + 1) * width)
    for holder in [variable, *_optimizer_slots(optimizer, variable)]:
      values = holder.numpy()
      values[..., dst] = values[..., src]
      holder.assign(values)


def _principal_axis(points):
  """Centroid `[2]`, unit principal axis `[2]` and the standard deviation along it of `[N, 2]`."""
  centre = points.mean(axis=0)
  covariance = np.cov((points - centre).T) + 1e-6 * np.eye(2)
  values, vectors = np.linalg.eigh(covariance)
  return centre, vectors[:, -1], float(np.sqrt(values[-1]))


class PartReseeder:
  """Re-seeds dead parts from the largest one (see the module docstring).

  Args:
    min_share: a part that wins less than this fraction of the predicted foreground pixels of
      the checked images is dead.
    split_logit: the heatmap-bias ramp that splits the donor from its copy, in logits at one
      standard deviation of the donor's pixels along its principal axis.
  """

  def __init__(self, min_share=0.01, split_logit=1.0):
    if not 0 < min_share < 1:
      raise ValueError(f"min_share must be in (0, 1), got {min_share}")
    self.min_share = float(min_share)
    self.split_logit = float(split_logit)

  def __call__(self, model, optimizer, images):
    """Checks `images` `[B, S, S, 3]`; returns the `(dead, donor)` pairs re-seeded (0-based)."""
    if model.transform_head.heatmap is None:
      raise ValueError('dead-part re-seeding needs shift_from="heatmap"')
    labels = model(images)["part_labels"].numpy()  # [B, S, S], 0 = background
    counts = np.bincount(labels.reshape(-1), minlength=model.num_parts + 1)[1:]
    shares = counts / max(counts.sum(), 1)
    dead = [int(k) for k in np.flatnonzero(shares < self.min_share)]
    pairs = []
    taken = set(dead)
    for part in dead:
      live = [k for k in np.argsort(-counts) if k not in taken and counts[k] > 0]
      if not live:
        break
      donor = int(live[0])
      taken.add(donor)  # one split per donor per check: its half is not yet known
      copy_part(model, optimizer, donor, part)
      self._split(model, labels == donor + 1, donor, part)
      pairs.append((part, donor))
    return pairs

  def _split(self, model, donor_pixels, donor, part):
    """Ramps the two parts' heatmap-bias logits apart along the donor's principal axis."""
    size = donor_pixels.shape[-1]
    grid = grid_lib.make_grid_np(size, size)  # [S, S, 2]
    points = np.broadcast_to(grid, donor_pixels.shape + (2,))[donor_pixels]  # [N, 2]
    if len(points) < 3:
      return
    centre, axis, spread = _principal_axis(points.astype(np.float64))
    bias = model.transform_head.heatmap_bias
    cells = int(round(np.sqrt(bias.shape[0])))
    cell_grid = grid_lib.make_grid_np(cells, cells).reshape(-1, 2)
    ramp = self.split_logit * ((cell_grid - centre) @ axis) / max(spread, 1e-3)
    values = bias.numpy()
    values[:, donor] += ramp
    values[:, part] -= ramp
    bias.assign(values)
