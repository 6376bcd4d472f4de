"""Reference baselines computed on the same frames as the model (pure NumPy).

- ``position k-means``: per image, the pixels the MODEL predicts as foreground are split into K
  clusters of their (x, y) pixel positions. Deterministic: k-means++ initialisation from
  ``numpy.random.default_rng(seed)`` (the same seed for every image), then at most `num_iters`
  Lloyd iterations (stopping early once assignments no longer change); an emptied cluster keeps its
  previous centre. Clusters are ordered by the (y, x) of their centroid (top to bottom, then left to
  right): label 1 is the top-most cluster, so a label means roughly the same region across frames,
  which the fit-split mapping and the landmark regression rely on. Its foreground is the model's, so
  its foreground IoU equals the model's; it is evaluated with the same part IoU and landmark
  protocols. It tells how much of the model's score is explained by position alone.
- ``mean landmark``: every landmark coordinate predicted as its fit-split mean (OLS with an
  intercept only), the floor of the landmark metric.
"""

import numpy as np

from copart_tf.evaluation import metrics

DEFAULT_KMEANS_SEED = 0
DEFAULT_KMEANS_ITERS = 20


def _kmeans_plus_plus(points, k, rng):
  """k-means++ seeding. Returns `[k', 2]` centres, k' = min(k, N)."""
  n = points.shape[0]
  k = min(k, n)
  centres = np.empty((k, points.shape[1]), dtype=np.float64)
  centres[0] = points[rng.integers(n)]
  dist2 = np.sum((points - centres[0]) ** 2, axis=1)
  for i in range(1, k):
    total = dist2.sum()
    if total > 0:
      idx = rng.choice(n, p=dist2 / total)
    else:  # fewer distinct points than clusters
      idx = rng.integers(n)
    centres[i] = points[idx]
    dist2 = np.minimum(dist2, np.sum((points - centres[i]) ** 2, axis=1))
  return centres


def kmeans(points, k, seed=DEFAULT_KMEANS_SEED, num_iters=DEFAULT_KMEANS_ITERS):
  """Deterministic k-means (k-means++ init + Lloyd iterations).

  Args:
    points: `[N, D]` float.
    k: number of clusters.
    seed: seed of the k-means++ initialisation.
    num_iters: maximum number of Lloyd iterations.

  Returns:
    `(centres, assignment)`: `[min(k, N), D]` float64 centres, `[N]` int64 cluster index. Clusters
    are in k-means++ order (not sorted); with fewer distinct points than k some may be empty.
  """
  points = np.asarray(points, dtype=np.float64)
  if points.shape[0] == 0:
    return np.zeros((0, points.shape[1]), dtype=np.float64), np.zeros(0, dtype=np.int64)
  rng = np.random.default_rng(seed)
  centres = _kmeans_plus_plus(points, k, rng)
  assignment = None
  for _ in range(max(1, num_iters)):
    # ||p - c||^2 up to the per-point constant ||p||^2, which does not change the argmin.
    dist2 = np.sum(centres**2, axis=1)[None] - 2.0 * points @ centres.T
    new_assignment = np.argmin(dist2, axis=1)
    if assignment is not None and np.array_equal(new_assignment, assignment):
      break
    assignment = new_assignment
    counts = np.bincount(assignment, minlength=centres.shape[0])
    for d in range(points.shape[1]):
      sums = np.bincount(assignment, weights=points[:, d], minlength=centres.shape[0])
      centres[:, d] = np.where(counts > 0, sums / np.maximum(counts, 1), centres[:, d])
  return centres, assignment.astype(np.int64)


def position_kmeans_labels(
  pred_labels, num_parts, seed=DEFAULT_KMEANS_SEED, num_iters=DEFAULT_KMEANS_ITERS
):
  """The position k-means baseline's label map for one image.

  Args:
    pred_labels: `[H, W]` int, the model's hard labels (only `!= 0` is used).
    num_parts: K, the number of clusters (the model's number of parts).
    seed: k-means++ seed (same for every image).
    num_iters: maximum Lloyd iterations.

  Returns:
    `[H, W]` int32, 0 = background (the model's background), 1..K = clusters ordered by the (y, x)
    of their centroid (label 1 = top-most). Labels of empty clusters do not occur.
  """
  pred_labels = np.asarray(pred_labels)
  out = np.zeros(pred_labels.shape, dtype=np.int32)
  rows, cols = np.nonzero(pred_labels != 0)
  if rows.size == 0:
    return out
  points = np.stack([cols, rows], axis=1).astype(np.float64)  # (x, y)
  _, assignment = kmeans(points, num_parts, seed=seed, num_iters=num_iters)
  # Order by the centroid of the pixels actually assigned (empty clusters go last).
  n_clusters = int(assignment.max()) + 1
  counts = np.bincount(assignment, minlength=n_clusters)
  cx = np.bincount(assignment, weights=points[:, 0], minlength=n_clusters) / np.maximum(counts, 1)
  cy = np.bincount(assignment, weights=points[:, 1], minlength=n_clusters) / np.maximum(counts, 1)
  empty = counts == 0
  order = np.lexsort((cx, cy, empty))  # primary key last: non-empty first, then y, then x
  rank = np.empty(n_clusters, dtype=np.int64)
  rank[order] = np.arange(n_clusters)
  out[rows, cols] = rank[assignment] + 1
  return out


def mean_landmark_baseline(fit_landmarks, fit_visible, test_landmarks, test_visible, frame_size):
  """Predicts every landmark coordinate as its fit-split mean.

  Args:
    fit_landmarks: `[N_fit, L, 2]` (x, y) pixels.
    fit_visible: `[N_fit, L]` bool or None.
    test_landmarks: `[N_test, L, 2]`.
    test_visible: `[N_test, L]` bool or None.
    frame_size: `(H, W)`.

  Returns:
    The `metrics.landmark_errors` dict.
  """
  fit_landmarks = np.asarray(fit_landmarks)
  test_landmarks = np.asarray(test_landmarks)
  return metrics.landmark_regression(
    np.zeros((fit_landmarks.shape[0], 0)),
    fit_landmarks,
    fit_visible,
    np.zeros((test_landmarks.shape[0], 0)),
    test_landmarks,
    test_visible,
    frame_size,
  )
