"""Synthetic co-part datasets with exact ground truth (part labels, landmarks, poses).

Two kinds, one entry point (`synthesize_dataset`, also ``python -m copart_tf.synthetic`` and the
training CLI's ``--synthesize_if_missing``):

* pybullet bodies (``humanoid_mocap``, ``kuka_iiwa``, ``laikago``) rendered with TinyRenderer.
  They need pybullet, the ``synthetic`` extra (``pip install copart_tf[synthetic]``; the pinned
  requirements.txt of ``make setup`` has it). pybullet is imported only when such a body is
  rendered; without it they fail with a one-line `ConfigError`.
* numpy-only "quality ladder" datasets (`LADDER_DATASETS`: ``sprites``, ``figure2d``), which need
  no pybullet.

Modules:

* `dataset`: `synthesize_dataset` (the FOMM layout + side-car writer of the pybullet bodies, and
  the dispatch to the ladder datasets), `resolve_clips`; ``__main__``: its command line.
* `bodies`: the pybullet bodies (URDFs, part groupings, landmarks) and their motions (mocap clips,
  random trajectories).
* `scene`: the pybullet world (the only module that imports pybullet); `render`: one video
  (camera, appearance, supersampled rendering, labels, landmark visibility); `camera`: camera
  geometry; `appearance`: body, floor and sky colours; `sheet`: contact sheets.
* `sprites`, `figure2d`: the ladder datasets (sprites also holds the shape rasteriser and the
  dataset writer they share).
"""

from copart_tf.synthetic.dataset import (
  DATASET_NAMES,
  LADDER_DATASETS,
  ladder_generator,
  resolve_clips,
  synthesize_dataset,
  synthesize_for_training,
)
from copart_tf.synthetic.scene import PYBULLET_INSTALL_HINT, require_pybullet

__all__ = [
  "DATASET_NAMES",
  "LADDER_DATASETS",
  "PYBULLET_INSTALL_HINT",
  "ladder_generator",
  "require_pybullet",
  "resolve_clips",
  "synthesize_dataset",
  "synthesize_for_training",
]
