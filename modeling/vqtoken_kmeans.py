# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Cosine K-means over the visual tokens of a batch of videos, and the choice of the number of clusters.

Everything here works on unit-normalised fp32 tokens of shape `[batch, num_tokens, dim]` and follows the released
VQToken procedure: k-means++ initialisation, assignment by the largest cosine similarity, centroids as the (not
re-normalised) mean of their members, an empty cluster keeps its centroid, stop when the Frobenius norm of the centroid
shift falls below a tolerance. What differs from the release is how the work is organised:

- the initialisation draws from a seeded generator, so results are deterministic, and every video of a batch draws the
  same numbers as it would alone;
- the videos of a batch are clustered together;
- adaptive selection fits K-means once, at the largest candidate, and scores every smaller candidate by merging
  centroids with Ward's rule (the exact distortion of each merged partition, read off cluster sums and counts); the
  chosen partition is then refined with Lloyd iterations instead of being refitted from scratch.

The assignment-and-accumulation step, the only part that touches all tokens, has a torch implementation here and a
Triton one in `vqtoken_kmeans_triton.py`.
"""

import logging
from dataclasses import dataclass

import torch

from .vqtoken_choices import VQTOKEN_KMEANS_BACKENDS, VQTOKEN_SELECTION_METHODS
from .vqtoken_kmeans_triton import MAX_CLUSTERS as TRITON_MAX_CLUSTERS
from .vqtoken_kmeans_triton import is_triton_available, triton_assign_and_accumulate


logger = logging.getLogger(__name__)

KMEANS_PLUS_PLUS_EPSILON = 1e-6


@dataclass
class VideoQuantization:
    """
    Result of quantizing the tokens of a batch of videos.

    Attributes:
        codebooks (`torch.FloatTensor` of shape `(batch, max_clusters, dim)`):
            Per video, the mean of the unit-normalised tokens of each cluster; an empty cluster gives a zero vector.
            Rows past `num_clusters[i]` are zero.
        index_maps (`torch.LongTensor` of shape `(batch, num_tokens)`):
            The cluster id of every token.
        num_clusters (`torch.LongTensor` of shape `(batch,)`):
            The number of clusters chosen for each video.
    """

    codebooks: torch.Tensor
    index_maps: torch.Tensor
    num_clusters: torch.Tensor


def assign_and_accumulate_torch(
    tokens: torch.Tensor, centroids: torch.Tensor, cluster_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    One Lloyd half-step: assign every token to its most similar centroid and sum the members of each cluster.

    Args:
        tokens (`torch.FloatTensor` of shape `(batch, num_tokens, dim)`): unit-normalised tokens, fp32.
        centroids (`torch.FloatTensor` of shape `(batch, num_clusters, dim)`): current centroids, fp32.
        cluster_mask (`torch.BoolTensor` of shape `(batch, num_clusters)`): which centroids exist for each video.

    Returns:
        labels (`torch.LongTensor` of shape `(batch, num_tokens)`): index of the most similar existing centroid, the
            lowest index on ties.
        sums (`torch.FloatTensor` of shape `(batch, num_clusters, dim)`): fp32 sum of the tokens of each cluster.
        counts (`torch.FloatTensor` of shape `(batch, num_clusters)`): number of tokens of each cluster.
    """
    batch_size, num_tokens, dim = tokens.shape
    num_clusters = centroids.shape[1]
    similarities = torch.bmm(tokens, centroids.transpose(1, 2))
    similarities = similarities.masked_fill(~cluster_mask[:, None, :], float("-inf"))
    labels = similarities.argmax(dim=-1)
    if tokens.device.type == "cpu":
        # index_add_ runs sequentially on the CPU: fast and deterministic
        flat_labels = (labels + torch.arange(batch_size, device=tokens.device)[:, None] * num_clusters).reshape(-1)
        sums = tokens.new_zeros(batch_size * num_clusters, dim).index_add_(0, flat_labels, tokens.reshape(-1, dim))
        sums = sums.view(batch_size, num_clusters, dim)
    else:
        # a one-hot product sums in a fixed order, unlike atomics
        one_hot = torch.nn.functional.one_hot(labels, num_clusters).to(tokens.dtype)
        sums = torch.bmm(one_hot.transpose(1, 2), tokens)
    counts = torch.zeros(batch_size, num_clusters, device=tokens.device, dtype=torch.float32)
    counts.scatter_add_(1, labels, torch.ones_like(labels, dtype=torch.float32))
    return labels, sums, counts


def resolve_backend(backend: str, device: torch.device, num_clusters: int) -> str:
    """
    The backend that runs a fit of `num_clusters` centroids on `device`: `"auto"` is Triton for CUDA tensors when
    Triton is installed and `num_clusters` is within its kernels' limit (`MAX_CLUSTERS`), torch otherwise;
    `"triton"` refuses, with the reason, what its kernels cannot run.
    """
    if backend not in VQTOKEN_KMEANS_BACKENDS:
        raise ValueError(f"`vqtoken_kmeans_backend` must be one of {VQTOKEN_KMEANS_BACKENDS}, got {backend!r}.")
    if backend == "auto":
        usable = device.type == "cuda" and is_triton_available() and num_clusters <= TRITON_MAX_CLUSTERS
        return "triton" if usable else "torch"
    if backend == "triton" and not is_triton_available():
        raise RuntimeError(
            "`vqtoken_kmeans_backend='triton'` needs the `triton` package (and a CUDA device, or "
            "TRITON_INTERPRET=1 on the CPU); install triton or use 'torch' / 'auto'."
        )
    if backend == "triton" and num_clusters > TRITON_MAX_CLUSTERS:
        raise ValueError(
            f"`vqtoken_kmeans_backend='triton'` runs at most {TRITON_MAX_CLUSTERS} clusters, "
            f"asked for {num_clusters}: "
            "use 'torch' or 'auto' (which falls back to torch above that)."
        )
    return backend


def kmeans_plus_plus(tokens: torch.Tensor, num_clusters: int, seed: int) -> torch.Tensor:
    """
    k-means++ seeding: the first centroid is a uniformly drawn token, each next one a token drawn with probability
    proportional to its squared Euclidean distance to the nearest chosen centroid, plus 1e-6.

    The random numbers come from a CPU generator seeded with `seed`; every video of the batch uses the same numbers,
    so a video gets the same centroids alone or in a batch, on any device.

    Args:
        tokens (`torch.FloatTensor` of shape `(batch, num_tokens, dim)`): unit-normalised tokens.
        num_clusters (`int`): number of centroids to draw, at most `num_tokens`.
        seed (`int`): seed of the draw.

    Returns:
        `torch.FloatTensor` of shape `(batch, num_clusters, dim)`: the initial centroids.
    """
    batch_size, num_tokens, dim = tokens.shape
    generator = torch.Generator().manual_seed(seed)
    draws = torch.rand(num_clusters, generator=generator, dtype=torch.float64).to(tokens.device)
    batch_index = torch.arange(batch_size, device=tokens.device)

    first = torch.clamp((draws[0] * num_tokens).long(), max=num_tokens - 1).expand(batch_size)
    centroids = [tokens[batch_index, first]]
    min_sq_distance = torch.full((batch_size, num_tokens), float("inf"), device=tokens.device)
    for step in range(1, num_clusters):
        # |x - c|^2 = |x|^2 + |c|^2 - 2 x.c with |x| = |c| = 1 (centroids are tokens here)
        similarity = torch.bmm(tokens, centroids[-1][:, :, None]).squeeze(-1)
        min_sq_distance = torch.minimum(min_sq_distance, (2.0 - 2.0 * similarity).clamp_min(0.0))
        weights = (min_sq_distance + KMEANS_PLUS_PLUS_EPSILON).double()
        cumulative = weights.cumsum(dim=-1)
        targets = draws[step] * cumulative[:, -1:]
        chosen = torch.searchsorted(cumulative, targets, right=True).squeeze(-1).clamp(max=num_tokens - 1)
        centroids.append(tokens[batch_index, chosen])
    return torch.stack(centroids, dim=1)


def lloyd(
    tokens: torch.Tensor,
    centroids: torch.Tensor,
    cluster_mask: torch.Tensor,
    max_iterations: int,
    tolerance: float,
    backend: str,
    stop_early: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Lloyd iterations with the released update and stop rule, for every video of the batch at once. A video whose
    centroid shift fell below `tolerance` is frozen while the others go on, so its result does not depend on the batch.

    Args:
        tokens (`torch.FloatTensor` of shape `(batch, num_tokens, dim)`): unit-normalised tokens, fp32.
        centroids (`torch.FloatTensor` of shape `(batch, num_clusters, dim)`): initial centroids.
        cluster_mask (`torch.BoolTensor` of shape `(batch, num_clusters)`): which centroids exist for each video.
        max_iterations (`int`): iteration cap.
        tolerance (`float`): stop threshold on the Frobenius norm of the centroid shift.
        backend (`str`): `"torch"` or `"triton"`.
        stop_early (`bool`): `True` leaves the loop once every video has converged, which reads a flag from the device
            each iteration. `False` always runs `max_iterations` steps with no host synchronisation, so the loop can
            be captured in a CUDA graph; frozen videos make the results equal.

    Returns:
        labels (`torch.LongTensor` of shape `(batch, num_tokens)`): assignment of the last iteration.
        sums (`torch.FloatTensor` of shape `(batch, num_clusters, dim)`), counts (`torch.FloatTensor` of shape
            `(batch, num_clusters)`): member sums and counts of those labels.
        num_iterations (`torch.LongTensor` of shape `(batch,)`): iterations each video ran.
    """
    step = triton_assign_and_accumulate if backend == "triton" else assign_and_accumulate_torch
    batch_size = tokens.shape[0]
    converged = torch.zeros(batch_size, dtype=torch.bool, device=tokens.device)
    num_iterations = torch.zeros(batch_size, dtype=torch.long, device=tokens.device)
    labels = sums = counts = None
    for _ in range(max_iterations):
        new_labels, new_sums, new_counts = step(tokens, centroids, cluster_mask)
        means = new_sums / new_counts.clamp_min(1.0)[..., None]
        new_centroids = torch.where(new_counts[..., None] > 0, means, centroids)
        shift = torch.linalg.vector_norm((new_centroids - centroids).flatten(1), dim=-1)
        active = ~converged
        if labels is None:
            labels, sums, counts = new_labels, new_sums, new_counts
        else:
            labels = torch.where(active[:, None], new_labels, labels)
            sums = torch.where(active[:, None, None], new_sums, sums)
            counts = torch.where(active[:, None], new_counts, counts)
        centroids = torch.where(active[:, None, None], new_centroids, centroids)
        num_iterations += active.long()
        converged |= shift < tolerance
        if stop_early and bool(converged.all()):
            break
    return labels, sums, counts, num_iterations


def partition_distortion(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """
    Sum of squared Euclidean distances of unit tokens to the mean of their cluster, from cluster sums and counts:
    `sum_i |x_i - c|^2 = n - |S|^2 / n` per cluster.

    Args:
        sums (`torch.FloatTensor` of shape `(..., num_clusters, dim)`), counts (`torch.FloatTensor` of shape
            `(..., num_clusters)`).

    Returns:
        `torch.FloatTensor` of shape `(...)`.
    """
    sums = sums.double()
    counts = counts.double()
    return (counts - (sums * sums).sum(-1) / counts.clamp_min(1.0)).sum(-1)


def ward_merge_tree(sums: torch.Tensor, counts: torch.Tensor, min_clusters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Greedy Ward merging of one video's clusters, from `num_clusters` down to `min_clusters`. Merging clusters `a` and
    `b` raises the distortion by exactly `n_a n_b / (n_a + n_b) |c_a - c_b|^2`; each step merges the cheapest pair.

    Args:
        sums (`torch.FloatTensor` of shape `(num_clusters, dim)`), counts (`torch.FloatTensor` of shape
            `(num_clusters,)`): member sums and counts of the fitted clusters.
        min_clusters (`int`): where merging stops.

    Returns:
        groups (`torch.LongTensor` of shape `(num_clusters - min_clusters + 1, num_clusters)`): row `j` maps each
            fitted cluster to its group in the partition with `num_clusters - j` groups (ids `0..num_clusters-j-1`,
            numbered by first appearance).
        distortions (`torch.DoubleTensor` of shape `(num_clusters - min_clusters + 1,)`): distortion of each partition.
    """
    num_clusters = counts.shape[0]
    sums = sums.double().clone()
    counts = counts.double().clone()
    alive = torch.ones(num_clusters, dtype=torch.bool, device=sums.device)
    owner = torch.arange(num_clusters, device=sums.device)
    distortion = partition_distortion(sums, counts)
    groups = [owner.clone()]
    distortions = [distortion]
    for _ in range(num_clusters - min_clusters):
        means = sums / counts.clamp_min(1.0)[:, None]
        sq_distance = torch.cdist(means, means).square()
        pair_counts = counts[:, None] * counts[None, :]
        total_counts = (counts[:, None] + counts[None, :]).clamp_min(1.0)
        cost = pair_counts / total_counts * sq_distance
        valid = alive[:, None] & alive[None, :]
        valid &= torch.ones_like(valid).triu(diagonal=1)
        cost = cost.masked_fill(~valid, float("inf"))
        flat = int(cost.argmin())
        keep, merged = divmod(flat, num_clusters)
        distortion = distortion + cost[keep, merged]
        sums[keep] += sums[merged]
        counts[keep] += counts[merged]
        alive[merged] = False
        owner = torch.where(owner == merged, torch.full_like(owner, keep), owner)
        groups.append(owner.clone())
        distortions.append(distortion)
    groups = torch.stack([torch.unique(row, return_inverse=True)[1] for row in groups])
    return groups, torch.stack(distortions)


def choose_num_clusters_elbow(distortions: torch.Tensor, candidates: list[int], corrected: bool) -> int:
    """
    Elbow of the distortion curve `distortions[i]` of `candidates[i]` (ascending K, at least three candidates).

    `d1` are the successive differences and `d2` the differences of `d1`; `i = argmax(d2)`.
    - released (`corrected=False`): `K = max(min_clusters, i + 4)`, exactly the rule of the released VQToken code,
      which adds offsets to an index: with candidates 12..32 it can only return K in [12, 22];
    - corrected: `K = candidates[i + 1]`, the candidate at which the second difference is taken.
    """
    d1 = distortions[1:] - distortions[:-1]
    d2 = d1[1:] - d1[:-1]
    index = int(d2.argmax())
    if corrected:
        return candidates[index + 1]
    return min(max(candidates[0], index + 4), candidates[-1])


def cosine_silhouettes(
    tokens: torch.Tensor, base_labels: torch.Tensor, base_sums: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """
    Mean cosine silhouette of every candidate partition of one video, in O(N K D) through cluster sums.

    With unit tokens, the mean cosine distance of `x` to the members of cluster `j` is `1 - x.S_j / n_j` (and
    `1 - (x.S_a - 1) / (n_a - 1)` to the other members of its own cluster `a`). A token alone in its cluster scores 0.
    The similarities `x.S` to the fitted clusters are computed once; a merged cluster's are their sums.

    Args:
        tokens (`torch.FloatTensor` of shape `(num_tokens, dim)`): unit-normalised tokens.
        base_labels (`torch.LongTensor` of shape `(num_tokens,)`): fitted cluster of every token.
        base_sums (`torch.FloatTensor` of shape `(num_fitted, dim)`): member sums of the fitted clusters.
        groups (`torch.LongTensor` of shape `(num_candidates, num_fitted)`): fitted cluster -> group, per candidate.

    Returns:
        `torch.DoubleTensor` of shape `(num_candidates,)`.
    """
    base_similarity = (tokens @ base_sums.T).double()
    num_fitted = base_sums.shape[0]
    base_counts = torch.bincount(base_labels, minlength=num_fitted).double()
    scores = []
    for row in groups:
        num_groups = int(row.max()) + 1
        membership = torch.nn.functional.one_hot(row, num_groups).double()
        similarity = base_similarity @ membership
        counts = base_counts @ membership
        labels = row[base_labels]
        own_count = counts[labels]
        own_similarity = similarity.gather(1, labels[:, None]).squeeze(1)
        intra = 1.0 - (own_similarity - 1.0) / (own_count - 1.0).clamp_min(1.0)
        inter = 1.0 - similarity / counts.clamp_min(1.0)
        inter = inter.masked_fill(torch.nn.functional.one_hot(labels, num_groups).bool() | (counts == 0), float("inf"))
        nearest = inter.min(dim=1).values
        silhouette = (nearest - intra) / torch.maximum(nearest, intra).clamp_min(1e-12)
        silhouette = torch.where((own_count > 1) & torch.isfinite(nearest), silhouette, torch.zeros_like(silhouette))
        scores.append(silhouette.mean())
    return torch.stack(scores)


def quantize_video_tokens(
    tokens: torch.Tensor,
    *,
    selection_method: str = "fixed",
    min_clusters: int = 12,
    max_clusters: int = 32,
    max_iterations: int = 100,
    tolerance: float = 1e-4,
    seed: int = 0,
    backend: str = "auto",
) -> VideoQuantization:
    """
    Cosine K-means of each video's tokens into a codebook and a token-hash index map. Clusters are numbered by first
    appearance in the index map (see [`number_clusters_by_first_appearance`]).

    Args:
        tokens (`torch.Tensor` of shape `(batch, num_tokens, dim)`): the visual tokens of each video, any float dtype.
            They are converted to fp32 and unit-normalised.
        selection_method (`str`): `"fixed"`, `"elbow"`, `"elbow_corrected"` or `"silhouette"` (see
            [`VQTokenLlavaOnevisionConfig`]). The released `silhouette` score ignored the labels and always returned
            the smallest candidate; this one is a real cosine silhouette.
        min_clusters, max_clusters (`int`): candidate range; `fixed` uses `max_clusters`. Both are capped at
            `num_tokens` (a warning is logged): a video cannot have more non-empty clusters than tokens.
        max_iterations, tolerance: Lloyd stop rule of every fit.
        seed (`int`): seed of the k-means++ draw.
        backend (`str`): `"auto"`, `"torch"` or `"triton"`.

    Returns:
        [`VideoQuantization`].

    Raises:
        `ValueError` if a video's tokens hold NaN or infinite values.
    """
    if tokens.ndim != 3:
        raise ValueError(f"`tokens` must have shape (batch, num_tokens, dim), got {tuple(tokens.shape)}.")
    batch_size, num_tokens, dim = tokens.shape
    finite = torch.isfinite(tokens).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        raise ValueError(f"The visual tokens of video(s) {bad} of the batch contain NaN or infinite values.")
    if num_tokens == 0:
        raise ValueError("Cannot cluster a video with no visual tokens.")
    if max_clusters > num_tokens:
        logger.warning(
            "Asked for up to %d clusters but a video has only %d tokens: using at most %d clusters.",
            max_clusters,
            num_tokens,
            num_tokens,
        )
    max_clusters = min(max_clusters, num_tokens)
    min_clusters = min(min_clusters, max_clusters)
    if selection_method not in VQTOKEN_SELECTION_METHODS:
        raise ValueError(f"`selection_method` must be one of {VQTOKEN_SELECTION_METHODS}, got {selection_method!r}.")
    backend = resolve_backend(backend, tokens.device, max_clusters)
    tokens = torch.nn.functional.normalize(tokens.float(), dim=-1)

    all_clusters = torch.ones(batch_size, max_clusters, dtype=torch.bool, device=tokens.device)
    centroids = kmeans_plus_plus(tokens, max_clusters, seed)
    labels, sums, counts, _ = lloyd(tokens, centroids, all_clusters, max_iterations, tolerance, backend)
    num_clusters = torch.full((batch_size,), max_clusters, dtype=torch.long, device=tokens.device)

    adaptive = selection_method != "fixed" and max_clusters - min_clusters >= 2
    if adaptive:
        candidates = list(range(min_clusters, max_clusters + 1))
        refine_centroids = torch.zeros_like(sums)
        for video in range(batch_size):
            groups, distortions = ward_merge_tree(sums[video], counts[video], min_clusters)
            # groups[j] holds max_clusters - j groups: reverse to ascending K
            groups, distortions = groups.flip(0), distortions.flip(0)
            if selection_method == "silhouette":
                scores = cosine_silhouettes(tokens[video], labels[video], sums[video], groups)
                chosen = candidates[int(scores.argmax())]
            else:
                chosen = choose_num_clusters_elbow(distortions, candidates, selection_method == "elbow_corrected")
            membership = torch.nn.functional.one_hot(groups[chosen - min_clusters], chosen).to(sums.dtype)
            group_sums = membership.T @ sums[video]
            group_counts = membership.T @ counts[video]
            refine_centroids[video, :chosen] = group_sums / group_counts.clamp_min(1.0)[:, None]
            num_clusters[video] = chosen
        cluster_mask = torch.arange(max_clusters, device=tokens.device)[None, :] < num_clusters[:, None]
        labels, sums, counts, _ = lloyd(tokens, refine_centroids, cluster_mask, max_iterations, tolerance, backend)

    codebooks = sums / counts.clamp_min(1.0)[..., None]
    codebooks, labels = number_clusters_by_first_appearance(codebooks, labels)
    return VideoQuantization(codebooks=codebooks, index_maps=labels, num_clusters=num_clusters)


def number_clusters_by_first_appearance(
    codebooks: torch.Tensor, index_maps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Renumbers each video's clusters in the order in which their first token appears in the index map (frame by
    frame, raster order within a frame); clusters without tokens keep their relative order after those with tokens.

    K-means numbers clusters in the order of its random seeding, so the same partition can come out under any of K!
    numberings. Fixing one makes the index map a canonical segmentation of the video (the background that opens the
    first frame is cluster 0, a later object gets a later id), which the VQ-Attention reads as numbers, and puts the
    codebook in order of appearance. The released code left the seeding order, which is an arbitrary one of these
    numberings.

    Args:
        codebooks (`torch.FloatTensor` of shape `(batch, num_clusters, dim)`)
        index_maps (`torch.LongTensor` of shape `(batch, num_tokens)`): values in `[0, num_clusters)`.

    Returns:
        codebooks (`torch.FloatTensor` of shape `(batch, num_clusters, dim)`), index_maps (`torch.LongTensor` of shape
        `(batch, num_tokens)`): the same clusters and partition, renumbered.
    """
    batch_size, num_tokens = index_maps.shape
    num_clusters, dim = codebooks.shape[1:]
    cluster_ids = torch.arange(num_clusters, device=index_maps.device).expand(batch_size, -1)
    positions = torch.arange(num_tokens, device=index_maps.device).expand(batch_size, -1)
    first_position = torch.full((batch_size, num_clusters), num_tokens, dtype=torch.long, device=index_maps.device)
    first_position.scatter_reduce_(1, index_maps, positions, reduce="amin")
    order = torch.argsort(first_position * num_clusters + cluster_ids, dim=1)
    new_ids = torch.empty_like(order).scatter_(1, order, cluster_ids)
    codebooks = codebooks.gather(1, order[..., None].expand(-1, -1, dim))
    return codebooks, new_ids.gather(1, index_maps)


__all__ = [
    "VideoQuantization",
    "assign_and_accumulate_torch",
    "choose_num_clusters_elbow",
    "cosine_silhouettes",
    "kmeans_plus_plus",
    "lloyd",
    "number_clusters_by_first_appearance",
    "partition_distortion",
    "quantize_video_tokens",
    "ward_merge_tree",
]
