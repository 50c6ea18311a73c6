"""
An incremental cosine codebook: the VQToken clustering of a video whose tokens arrive chunk by chunk.

Offline, a video's tokens are clustered all at once (`quantize_video_tokens`): an hour at 1 frame/s is 2.6 M tokens
of 896 floats at release size, 9.4 GB before clustering starts. Here only one chunk of tokens is held at a time:

- the **first chunk** is clustered by the offline function itself (same settings, same seed), so a video given in one
  chunk gets exactly the offline codebook and index map;
- everything seen is kept as **micro-clusters**: fp64 sums of unit tokens, counts and the position of the first token
  of each, at most `micro_clusters` of them (8 * `max_clusters` by default), and the micro-cluster of every token
  seen in an int16 index map. A token's micro-cluster is fixed when its chunk is folded: the tokens are gone;
- **folding a chunk** clusters the chunk on its own (the offline K-means with `chunk_clusters` centres fitted on a
  sample of the chunk, then every token of the chunk to its most similar centre: the released rule; by default
  4 * `max_clusters` centres, 2 * for a chunk of more than 4 M token values, where assigning every token to each
  centre is the cost of a fold), adds the chunk's clusters to the micro-clusters and merges the cheapest pairs by
  Ward's rule (the exact increase of the distortion, read off sums and counts) until `micro_clusters` are left. New
  content has clusters of its own in the chunk and keeps them when merging it away would cost more than merging
  older micro-clusters;
- the **visible codebook** (`K` within `[min_clusters, max_clusters]`) groups the micro-clusters as the offline
  adaptive search groups its fitted clusters: Ward merges down to `max_clusters` (fixed selection), or down to
  `min_clusters` with the elbow rule on the exact distortion of each candidate `K`; then Lloyd iterations in which
  micro-clusters move whole; clusters are numbered by first appearance in the index map, as offline.

Every step is a function of the state, the chunk and a seed derived from `seed` and the chunk number: the same chunks
give the same codebook. Reading the codebook does not change the state.
"""

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .modeling.vqtoken_kmeans import (
    assign_and_accumulate_torch,
    choose_num_clusters_elbow,
    partition_distortion,
    quantize_video_tokens,
    resolve_backend,
)
from .modeling.vqtoken_kmeans_triton import triton_assign_and_accumulate


STREAM_SELECTION_METHODS = ("fixed", "elbow", "elbow_corrected")
SAMPLE_SIZE = 1024
"""Tokens of a chunk (drawn at random) on which the chunk's own K-means is fitted."""
LARGE_CHUNK_VALUES = 1 << 22
"""A chunk with more token values (tokens x dim) is cut into 2 * max_clusters clusters by default, not 4 *."""
BLOCK_SIZE = 4096
"""Tokens normalised and assigned at a time."""
NORM_EPSILON = 1e-12
"""Smallest norm a token is divided by (as `torch.nn.functional.normalize`)."""
_CHUNK_SEED_STRIDE = 1_000_003
RESTARTS = 4
"""k-means++ seedings tried besides Ward's partition when grouping micro-clusters into the visible codebook."""


@dataclass(frozen=True)
class CodebookSettings:
    """
    What determines an incremental codebook, besides its chunks.

    Attributes:
        tokens_per_frame, hidden_size: shape of a frame's tokens.
        min_clusters, max_clusters, selection_method, max_iterations, tolerance, seed: as the `vqtoken_*` settings of
            the offline clustering (`selection_method` is `"fixed"`, `"elbow"` or `"elbow_corrected"`: the
            silhouette needs every token at once).
        micro_clusters: the most micro-clusters kept between chunks (default, or 0: `8 * max_clusters`).
        chunk_clusters: the clusters each chunk is cut into (default, or 0: see [`clusters_for_chunk`]).
    """

    tokens_per_frame: int
    hidden_size: int
    min_clusters: int = 12
    max_clusters: int = 32
    selection_method: str = "fixed"
    max_iterations: int = 100
    tolerance: float = 1e-4
    seed: int = 0
    micro_clusters: int = 0
    chunk_clusters: int = 0

    def __post_init__(self):
        if self.selection_method not in STREAM_SELECTION_METHODS:
            raise ValueError(
                f"A stream chooses K with selection method {STREAM_SELECTION_METHODS}, not "
                f"{self.selection_method!r}: the silhouette needs every token of the video at once."
            )
        if self.micro_clusters == 0:
            object.__setattr__(self, "micro_clusters", 8 * self.max_clusters)
        for name in (
            "tokens_per_frame",
            "hidden_size",
            "min_clusters",
            "max_clusters",
            "max_iterations",
            "micro_clusters",
            "chunk_clusters",
        ):
            value = getattr(self, name)
            lowest = 0 if name == "chunk_clusters" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ValueError(f"`{name}` must be an integer >= {lowest}, got {value!r}.")
        if self.micro_clusters < self.max_clusters:
            raise ValueError(
                f"`micro_clusters` ({self.micro_clusters}) must be at least `max_clusters` ({self.max_clusters})."
            )

    def clusters_for_chunk(self, num_values: int) -> int:
        """
        The clusters a chunk of `num_values` token values (tokens x dim) is cut into: `chunk_clusters`, or by default
        `4 * max_clusters`, `2 * max_clusters` above [`LARGE_CHUNK_VALUES`] (finer chunk clusters give Ward's merging
        more to choose from; on a large chunk, assigning every token to each of them is what a fold costs).
        """
        if self.chunk_clusters:
            return self.chunk_clusters
        return (2 if num_values > LARGE_CHUNK_VALUES else 4) * self.max_clusters

    @classmethod
    def from_config(cls, config, **stream_settings) -> "CodebookSettings":
        """The settings of a [`VQTokenLlavaOnevisionConfig`] (`micro_clusters`, `chunk_clusters` as given)."""
        return cls(
            tokens_per_frame=config.vqtoken_tokens_per_frame,
            hidden_size=config.text_config.hidden_size,
            min_clusters=config.vqtoken_min_clusters,
            max_clusters=config.vqtoken_max_clusters,
            selection_method=config.vqtoken_selection_method,
            max_iterations=config.vqtoken_max_iterations,
            tolerance=float(config.vqtoken_tolerance),
            seed=config.vqtoken_seed,
            **stream_settings,
        )

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------------------------------
# Building blocks (pure functions)
# ---------------------------------------------------------------------------------------------------------------------


def ward_merges(sums: torch.Tensor, counts: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Greedy Ward merging of clusters from their sums and counts, down to `target` clusters. Merging `a` and `b` raises
    the squared-Euclidean distortion by exactly `W(a, b) = n_a n_b / (n_a + n_b) |c_a - c_b|^2`; each step merges the
    cheapest pair (the lowest `(a, b)` in row-major order on ties, `a < b`). The same merges as `ward_merge_tree` of
    the offline adaptive search, but the costs of a merged cluster come from the Lance-Williams update
    `W(k, a+b) = ((n_k + n_a) W(k, a) + (n_k + n_b) W(k, b) - n_k W(a, b)) / (n_k + n_a + n_b)` (O(clusters) per
    merge instead of O(clusters x dim)), and each row's cheapest partner is kept up to date.

    Args:
        sums (`torch.Tensor` of shape `(num_clusters, dim)`), counts (`torch.Tensor` of shape `(num_clusters,)`):
            member sums and counts, all counts positive.
        target (`int`): clusters left after merging (`1 <= target`).

    Returns:
        merges (`torch.LongTensor` of shape `(num_merges, 2)`): `(kept, merged)` cluster ids of each step, in order;
            `num_merges = max(0, num_clusters - target)`.
        costs (`torch.DoubleTensor` of shape `(num_merges,)`): the distortion increase of each step.
    """
    return ward_merges_from_gram(sum_gram(sums), counts, target)


def ward_merges_from_gram(gram: torch.Tensor, counts: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[`ward_merges`] from the Gram matrix of the sums (see [`sum_gram`]) instead of the sums."""
    num_clusters = counts.shape[0]
    num_merges = max(0, num_clusters - target)
    # a few hundred clusters at most: numpy keeps the per-merge overhead low
    counts = counts.double().cpu().numpy().copy()
    cost = mean_sq_distances(gram, torch.from_numpy(counts)).numpy()
    cost *= counts[:, None] * counts[None, :] / (counts[:, None] + counts[None, :])
    np.fill_diagonal(cost, np.inf)
    row_partner = cost.argmin(axis=1)
    row_min = cost[np.arange(num_clusters), row_partner]
    merges = np.empty((num_merges, 2), dtype=np.int64)
    costs = np.empty(num_merges, dtype=np.float64)
    for step in range(num_merges):
        # the first row holding the smallest cost is the smaller cluster of the cheapest pair
        keep = int(row_min.argmin())
        merged = int(row_partner[keep])
        merges[step] = keep, merged
        costs[step] = cost[keep, merged]
        n_keep, n_merged = counts[keep], counts[merged]
        row = ((counts + n_keep) * cost[keep] + (counts + n_merged) * cost[merged] - counts * costs[step]) / (
            counts + n_keep + n_merged
        )
        counts[keep] += n_merged
        cost[keep, :] = row
        cost[:, keep] = row
        cost[merged, :] = np.inf
        cost[:, merged] = np.inf
        cost[keep, keep] = np.inf
        # rows whose cheapest partner was merged or changed are recomputed; the others may now prefer `keep`
        row_min[merged] = np.inf
        stale = np.flatnonzero((row_partner == merged) | (row_partner == keep))
        stale = np.union1d(stale[stale != merged], [keep])
        row_partner[stale] = cost[stale].argmin(axis=1)
        row_min[stale] = cost[stale, row_partner[stale]]
        column = cost[:, keep]
        cheaper = (column < row_min) | ((column == row_min) & (row_partner > keep))
        row_min = np.where(cheaper, column, row_min)
        row_partner = np.where(cheaper, keep, row_partner)
    return torch.from_numpy(merges), torch.from_numpy(costs)


def groups_after_merges(num_clusters: int, merges: torch.Tensor) -> torch.Tensor:
    """
    The group of every cluster after applying `merges` (from [`ward_merges`]) in order.

    Returns:
        `torch.LongTensor` of shape `(num_clusters,)`: group ids `0..num_groups-1`, in the order of each group's
        smallest cluster id.
    """
    owner = list(range(num_clusters))
    for keep, merged in merges.tolist():
        owner[merged] = keep
    # follow each cluster to the cluster it was last merged into
    for cluster in range(num_clusters):
        root = cluster
        while owner[root] != root:
            root = owner[root]
        owner[cluster] = root
    owner = torch.tensor(owner)
    return torch.unique(owner, return_inverse=True)[1]


def sum_gram(sums: torch.Tensor) -> torch.Tensor:
    """
    `sums @ sums.T` in fp64 on the CPU: `(num_clusters, num_clusters)`. Everything the grouping of micro-clusters
    needs (distances between means, group centres, distortions) is read off it and the counts, without `dim`.
    """
    sums = sums.double().cpu()
    return sums @ sums.T


def mean_sq_distances(gram: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Squared distances `|S_i / n_i - S_j / n_j|^2` between cluster means, from [`sum_gram`] and counts."""
    dots = gram / (counts[:, None] * counts[None, :])
    sq_norms = dots.diagonal()
    return (sq_norms[:, None] + sq_norms[None, :] - 2.0 * dots).clamp_min(0.0)


def group_distortion(gram: torch.Tensor, counts: torch.Tensor, groups: torch.Tensor) -> float:
    """
    Squared-Euclidean distortion of unit tokens grouped as `groups` (each cluster whole in its group):
    `sum_g (m_g - |T_g|^2 / m_g)`, `T_g` and `m_g` the sums and counts of group `g`.
    """
    membership = torch.nn.functional.one_hot(groups).double()
    group_counts = counts @ membership
    group_sq_norms = (membership * (gram @ membership)).sum(0)
    return float((group_counts - group_sq_norms / group_counts).sum())


def group_lloyd(gram: torch.Tensor, counts: torch.Tensor, groups: torch.Tensor, max_iterations: int) -> torch.Tensor:
    """
    Lloyd iterations over clusters that move whole, on the squared-Euclidean distortion that Ward's rule minimises:
    each cluster joins the group centre nearest to its mean, each centre is the mean of its groups' members; stops
    when no cluster moves (or after `max_iterations`). Every step lowers the distortion of the partition. A group that
    loses every cluster disappears.

    Args:
        gram (`torch.DoubleTensor` of shape `(num_clusters, num_clusters)`): [`sum_gram`] of the clusters' sums.
        counts (`torch.DoubleTensor` of shape `(num_clusters,)`).
        groups (`torch.LongTensor` of shape `(num_clusters,)`): initial group of each cluster, ids `0..G-1`.

    Returns:
        `torch.LongTensor` of shape `(num_clusters,)`: final groups, ids `0..G'-1` in the order of the initial ids.
    """
    for _ in range(max_iterations):
        membership = torch.nn.functional.one_hot(groups).double()
        group_counts = counts @ membership
        to_groups = gram @ membership  # S_i . T_g
        group_sq_norms = (membership * to_groups).sum(0)  # |T_g|^2
        # argmin |mean_i - c_g|^2 = argmax (mean_i . c_g - |c_g|^2 / 2), c_g = T_g / m_g
        scores = to_groups / (counts[:, None] * group_counts[None, :]) - 0.5 * group_sq_norms / group_counts.square()
        new_groups = scores.argmax(dim=1)
        if torch.equal(new_groups, groups):
            break
        groups = torch.unique(new_groups, return_inverse=True)[1]
    return torch.unique(groups, return_inverse=True)[1]


def seed_groups(gram: torch.Tensor, counts: torch.Tensor, num_groups: int, generator: torch.Generator) -> torch.Tensor:
    """
    k-means++ over clusters weighted by their counts: the first centre is a cluster mean drawn with probability
    proportional to its count, each next one with probability proportional to count times squared distance to the
    nearest centre so far; every cluster then joins its nearest centre.

    Args:
        gram (`torch.DoubleTensor` of shape `(num_clusters, num_clusters)`): [`sum_gram`] of the clusters' sums.
        counts (`torch.DoubleTensor` of shape `(num_clusters,)`).

    Returns:
        `torch.LongTensor` of shape `(num_clusters,)`: groups `0..G-1` (`G <= num_groups`).
    """
    sq_distances = mean_sq_distances(gram, counts)
    draws = torch.rand(num_groups, generator=generator, dtype=torch.float64)
    chosen = []
    weights = counts
    min_sq_distance = torch.full_like(counts, float("inf"))
    for step in range(num_groups):
        cumulative = weights.cumsum(0)
        index = int(
            torch.searchsorted(cumulative, draws[step : step + 1] * cumulative[-1], right=True).clamp(
                max=counts.shape[0] - 1
            )
        )
        chosen.append(index)
        min_sq_distance = torch.minimum(min_sq_distance, sq_distances[index])
        weights = counts * min_sq_distance
    groups = sq_distances[:, chosen].argmin(dim=1)
    return torch.unique(groups, return_inverse=True)[1]


def cosine_distortion(sums: torch.Tensor, counts: torch.Tensor) -> float:
    """
    Mean cosine distance of unit tokens to the direction of their cluster's mean, `sum_k (n_k - |S_k|) / sum_k n_k`,
    from cluster sums `(K, dim)` and counts `(K,)`.
    """
    sums, counts = sums.double(), counts.double()
    return float((counts - torch.linalg.vector_norm(sums, dim=-1)).sum() / counts.sum())


def select_codebook(
    sums: torch.Tensor, counts: torch.Tensor, first_positions: torch.Tensor, settings: CodebookSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The visible codebook of a set of micro-clusters (see the module docstring).

    Args:
        sums (`torch.DoubleTensor` of shape `(num_micro, dim)`), counts (`torch.DoubleTensor` of shape
            `(num_micro,)`): member sums and counts, all counts positive.
        first_positions (`torch.LongTensor` of shape `(num_micro,)`): position of each micro-cluster's first token in
            the index map (frame-major).

    Returns:
        codebook (`torch.FloatTensor` of shape `(K, dim)`): mean of each cluster's unit tokens.
        cluster_of_micro (`torch.LongTensor` of shape `(num_micro,)`): the cluster of each micro-cluster, clusters
            numbered by first appearance.
    """
    num_micro = counts.shape[0]
    max_clusters = min(settings.max_clusters, num_micro)
    min_clusters = min(settings.min_clusters, max_clusters)
    adaptive = settings.selection_method != "fixed" and max_clusters - min_clusters >= 2
    gram = sum_gram(sums)
    merges, costs = ward_merges_from_gram(gram, counts, min_clusters if adaptive else max_clusters)
    chosen = max_clusters
    if adaptive:
        candidates = list(range(min_clusters, max_clusters + 1))
        # distortion after j merges, j = 0..len(merges): num_micro - j clusters
        distortions = partition_distortion(sums, counts) + torch.cat([costs.new_zeros(1), costs.cumsum(0)])
        candidate_distortions = distortions[[num_micro - k for k in candidates]]
        chosen = choose_num_clusters_elbow(
            candidate_distortions, candidates, settings.selection_method == "elbow_corrected"
        )
    # Lloyd from Ward's partition and from RESTARTS k-means++ seedings; the lowest distortion wins
    generator = torch.Generator().manual_seed(settings.seed)
    starts = [groups_after_merges(num_micro, merges[: num_micro - chosen])]
    starts += [seed_groups(gram, counts, chosen, generator) for _ in range(RESTARTS)]
    refined = [group_lloyd(gram, counts, start, settings.max_iterations) for start in starts]
    distortions = [group_distortion(gram, counts, groups) for groups in refined]
    groups = refined[distortions.index(min(distortions))]
    num_groups = int(groups.max()) + 1
    group_first = torch.full((num_groups,), torch.iinfo(torch.long).max).scatter_reduce_(
        0, groups, first_positions, reduce="amin"
    )
    order = torch.argsort(group_first)
    new_ids = torch.empty_like(order).scatter_(0, order, torch.arange(num_groups))
    cluster_of_micro = new_ids[groups]
    group_sums = torch.zeros(num_groups, sums.shape[1], dtype=torch.float64).index_add_(0, cluster_of_micro, sums)
    group_counts = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, cluster_of_micro, counts)
    return (group_sums / group_counts[:, None]).float(), cluster_of_micro


def assign_in_blocks(
    tokens: torch.Tensor, norms: torch.Tensor, centres: torch.Tensor, backend: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Assigns every token to its most similar centre and sums the unit tokens of each centre, `BLOCK_SIZE` tokens at a
    time (a normalised copy of a whole chunk would double its memory, and allocating it costs more than the work).

    Args:
        tokens (`torch.Tensor` of shape `(num_tokens, dim)`): the chunk's tokens, not normalised.
        norms (`torch.FloatTensor` of shape `(num_tokens,)`): their norms.
        centres (`torch.FloatTensor` of shape `(num_centres, dim)`).
        backend (`str`): K-means backend of the assignment step (`"auto"`, `"torch"`, `"triton"`).

    Returns:
        labels (`torch.LongTensor` of shape `(num_tokens,)`, CPU), sums (`torch.DoubleTensor` of shape
        `(num_centres, dim)`, CPU), counts (`torch.DoubleTensor` of shape `(num_centres,)`, CPU).
    """
    step = (
        triton_assign_and_accumulate
        if resolve_backend(backend, tokens.device, centres.shape[0]) == "triton"
        else (assign_and_accumulate_torch)
    )
    every_centre = torch.ones(1, centres.shape[0], dtype=torch.bool, device=tokens.device)
    labels = []
    sums = torch.zeros(centres.shape[0], centres.shape[1], dtype=torch.float64)
    counts = torch.zeros(centres.shape[0], dtype=torch.float64)
    for start in range(0, tokens.shape[0], BLOCK_SIZE):
        block = tokens[start : start + BLOCK_SIZE].float() / norms[start : start + BLOCK_SIZE, None]
        block_labels, block_sums, block_counts = step(block[None], centres[None], every_centre)
        labels.append(block_labels[0].cpu())
        sums += block_sums[0].double().cpu()
        counts += block_counts[0].double().cpu()
    return torch.cat(labels), sums, counts


def unit_sums(
    tokens: torch.Tensor, norms: torch.Tensor, labels: torch.Tensor, num_clusters: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    fp64 sums of the unit tokens of each cluster and counts, `BLOCK_SIZE` tokens at a time.

    Args:
        tokens (`torch.Tensor` of shape `(num_tokens, dim)`), norms (`torch.FloatTensor` of shape `(num_tokens,)`),
        labels (`torch.LongTensor` of shape `(num_tokens,)`, CPU): the cluster of each token.

    Returns:
        sums (`torch.DoubleTensor` of shape `(num_clusters, dim)`), counts (`torch.DoubleTensor` of shape
        `(num_clusters,)`), on the CPU.
    """
    sums = torch.zeros(num_clusters, tokens.shape[1], dtype=torch.float64)
    for start in range(0, tokens.shape[0], BLOCK_SIZE):
        block = tokens[start : start + BLOCK_SIZE].float() / norms[start : start + BLOCK_SIZE, None]
        sums.index_add_(0, labels[start : start + BLOCK_SIZE], block.cpu().double())
    return sums, torch.bincount(labels, minlength=num_clusters).double()


def chunk_seed(seed: int, chunk: int) -> int:
    """The seed of the draws that fold chunk number `chunk` (0-based) into a codebook of seed `seed`."""
    return (seed * _CHUNK_SEED_STRIDE + chunk) % (1 << 63)


# ---------------------------------------------------------------------------------------------------------------------
# The codebook
# ---------------------------------------------------------------------------------------------------------------------


class IncrementalCodebook:
    """
    The cosine codebook and index map of a video fed chunk by chunk (see the module docstring). `backend` is the
    K-means backend of the first chunk's offline clustering (`"auto"`, `"torch"`, `"triton"`); it does not change the
    result.

    State (all on the CPU): micro-cluster `sums` `(M, D)` fp64, `counts` `(M,)` int64, `first_positions` `(M,)`,
    the micro-cluster of every token of every frame seen (`(num_frames, P)`, int16 up to 32767 micro-clusters), and the
    visible `codebook` `(K, D)` fp32 with `cluster_of_micro` `(M,)`.
    """

    def __init__(self, settings: CodebookSettings, backend: str = "auto"):
        self.settings = settings
        self.backend = backend
        self.num_chunks = 0
        self.sums = torch.zeros(0, settings.hidden_size, dtype=torch.float64)
        self.counts = torch.zeros(0, dtype=torch.long)
        self.first_positions = torch.zeros(0, dtype=torch.long)
        self.codebook = torch.zeros(0, settings.hidden_size)
        self.cluster_of_micro = torch.zeros(0, dtype=torch.long)
        self._index_dtype = torch.int16 if settings.micro_clusters <= torch.iinfo(torch.int16).max else torch.int32
        self._micro_index_map = torch.zeros(0, settings.tokens_per_frame, dtype=self._index_dtype)
        self._num_frames = 0

    @property
    def num_frames(self) -> int:
        return self._num_frames

    @property
    def num_clusters(self) -> int:
        return self.codebook.shape[0]

    @property
    def micro_index_map(self) -> torch.Tensor:
        """The micro-cluster of every token of every frame seen: `(num_frames, tokens_per_frame)`, int16 or int32."""
        return self._micro_index_map[: self._num_frames]

    def index_map(self, frames: torch.Tensor | list[int] | None = None) -> torch.LongTensor:
        """
        The cluster of every token of the frames `frames` (indices into the frames seen; default all), numbered as
        the rows of `codebook`: `(len(frames), tokens_per_frame)`.
        """
        rows = self.micro_index_map if frames is None else self.micro_index_map[torch.as_tensor(frames)]
        return self.cluster_of_micro[rows.long()]

    def check_tokens(self, tokens: torch.Tensor):
        """
        Raises `ValueError` unless `tokens` is a float tensor `(num_frames, tokens_per_frame, hidden_size)`
        (finiteness is checked by [`fold`] on the way).
        """
        expected = (self.settings.tokens_per_frame, self.settings.hidden_size)
        if tokens.ndim != 3 or tuple(tokens.shape[1:]) != expected or tokens.shape[0] == 0:
            raise ValueError(
                f"A chunk's tokens must have shape (num_frames >= 1, {expected[0]}, {expected[1]}), got "
                f"{tuple(tokens.shape)}."
            )
        if not tokens.is_floating_point():
            raise ValueError(f"A chunk's tokens must be floating point, got {tokens.dtype}.")

    @torch.no_grad()
    def fold(self, tokens: torch.Tensor):
        """
        Adds a chunk of frames to the codebook; the chunk is checked before anything changes.

        Args:
            tokens (`torch.Tensor` of shape `(num_frames, tokens_per_frame, hidden_size)`): the projected tokens of
                the chunk's frames, any float dtype and device.
        """
        self.check_tokens(tokens)
        if self._num_frames == 0:
            self._start(tokens)
        else:
            self._fold(tokens)
        self.num_chunks += 1

    def _start(self, tokens: torch.Tensor):
        """
        The first chunk: the offline clustering, unchanged, is the visible codebook. The micro-clusters are its
        clusters split by the chunk's own finer clusters (every pair of an offline cluster and a chunk cluster that
        share a token), so that later chunks build on more than `K` clusters.
        """
        settings = self.settings
        num_frames, tokens_per_frame, dim = tokens.shape
        rows = tokens.reshape(-1, dim)
        quantization = quantize_video_tokens(
            rows[None],
            selection_method=settings.selection_method,
            min_clusters=settings.min_clusters,
            max_clusters=settings.max_clusters,
            max_iterations=settings.max_iterations,
            tolerance=settings.tolerance,
            seed=settings.seed,
            backend=self.backend,
        )
        num_clusters = int(quantization.num_clusters[0])
        offline_labels = quantization.index_maps[0].cpu()
        norms = torch.linalg.vector_norm(rows.float(), dim=-1).clamp_min(NORM_EPSILON)
        chunk_labels, chunk_sums, _ = self._chunk_clusters(rows, norms)
        num_chunk_clusters = chunk_sums.shape[0]
        pairs = offline_labels * num_chunk_clusters + chunk_labels
        if int(torch.unique(pairs).numel()) > settings.micro_clusters:
            pairs = offline_labels * num_chunk_clusters  # over the budget: one micro-cluster per offline cluster
        pair_ids, labels = torch.unique(pairs, return_inverse=True)
        cluster_of_micro = pair_ids // num_chunk_clusters
        self.sums, counts = unit_sums(rows, norms, labels, pair_ids.shape[0])
        self.counts = counts.long()
        self.first_positions = torch.full((pair_ids.shape[0],), labels.shape[0]).scatter_reduce_(
            0, labels, torch.arange(labels.shape[0]), reduce="amin"
        )
        self.codebook = quantization.codebooks[0, :num_clusters].float().cpu()
        self.cluster_of_micro = cluster_of_micro
        self._append_rows(labels.view(num_frames, tokens_per_frame))

    def _chunk_clusters(self, rows: torch.Tensor, norms: torch.Tensor):
        """
        The chunk's own clusters: the offline K-means with [`CodebookSettings.clusters_for_chunk`] centres on a
        sample of the chunk, then every token to its most similar centre.

        Returns:
            labels (`torch.LongTensor` of shape `(num_tokens,)`), sums (`torch.DoubleTensor` of shape `(C, dim)`),
            counts (`torch.DoubleTensor` of shape `(C,)`): `C` non-empty clusters.
        """
        settings = self.settings
        num_tokens = rows.shape[0]
        seed = chunk_seed(settings.seed, self.num_chunks)
        if num_tokens > SAMPLE_SIZE:
            generator = torch.Generator().manual_seed(seed)
            picked = torch.randperm(num_tokens, generator=generator)[:SAMPLE_SIZE].to(rows.device)
            sample = rows[picked].float() / norms[picked, None]
        else:
            sample = rows.float() / norms[:, None]
        fit = quantize_video_tokens(
            sample[None],
            max_clusters=min(settings.clusters_for_chunk(rows.numel()), sample.shape[0]),
            max_iterations=settings.max_iterations,
            tolerance=settings.tolerance,
            seed=seed,
            backend=self.backend,
        )
        centres = fit.codebooks[0, torch.unique(fit.index_maps[0])]
        labels, sums, counts = assign_in_blocks(rows, norms, centres, self.backend)
        kept = counts > 0
        lookup = torch.full((centres.shape[0],), -1, dtype=torch.long)
        lookup[kept] = torch.arange(int(kept.sum()))
        return lookup[labels], sums[kept], counts[kept]

    def _fold(self, tokens: torch.Tensor):
        settings = self.settings
        num_frames, tokens_per_frame, dim = tokens.shape
        rows = tokens.reshape(-1, dim)
        num_tokens = rows.shape[0]
        norms = torch.linalg.vector_norm(rows.float(), dim=-1).clamp_min(NORM_EPSILON)
        if not bool(torch.isfinite(norms).all()):
            raise ValueError("The chunk's tokens contain NaN or infinite values.")
        labels, chunk_sums, chunk_counts = self._chunk_clusters(rows, norms)

        offset = self._num_frames * tokens_per_frame
        end = offset + num_tokens
        chunk_first = torch.full((chunk_counts.shape[0],), end).scatter_reduce_(
            0, labels, torch.arange(offset, end), reduce="amin"
        )
        num_old = self.counts.shape[0]
        sums = torch.cat([self.sums, chunk_sums])
        counts = torch.cat([self.counts.double(), chunk_counts])
        first_positions = torch.cat([self.first_positions, chunk_first])

        # old micro-clusters and the chunk's clusters, merged down to the budget by Ward's rule
        groups = torch.arange(counts.shape[0])
        if counts.shape[0] > settings.micro_clusters:
            merges, _ = ward_merges(sums, counts, settings.micro_clusters)
            groups = groups_after_merges(counts.shape[0], merges)
            num_groups = settings.micro_clusters
            sums = torch.zeros(num_groups, dim, dtype=torch.float64).index_add_(0, groups, sums)
            counts = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, groups, counts)
            first_positions = torch.full((num_groups,), end).scatter_reduce_(0, groups, first_positions, reduce="amin")
        self._relabel(groups[:num_old])
        self.sums, self.counts, self.first_positions = sums, counts.long(), first_positions
        self._append_rows(groups[num_old + labels].view(num_frames, tokens_per_frame))
        self.codebook, self.cluster_of_micro = select_codebook(sums, counts, first_positions, settings)

    def _relabel(self, lookup: torch.Tensor):
        """Maps every stored micro-cluster id `i` to `lookup[i]`, a block of frames at a time."""
        if torch.equal(lookup, torch.arange(lookup.shape[0])):
            return
        block = max(1, (1 << 20) // self.settings.tokens_per_frame)
        for start in range(0, self._num_frames, block):
            rows = self._micro_index_map[start : min(start + block, self._num_frames)]
            rows.copy_(lookup[rows.long()].to(self._index_dtype))

    def _append_rows(self, rows: torch.Tensor):
        needed = self._num_frames + rows.shape[0]
        if needed > self._micro_index_map.shape[0]:
            capacity = max(needed, 2 * self._micro_index_map.shape[0])
            grown = torch.zeros(capacity, self.settings.tokens_per_frame, dtype=self._index_dtype)
            grown[: self._num_frames] = self.micro_index_map
            self._micro_index_map = grown
        self._micro_index_map[self._num_frames : needed] = rows.to(self._index_dtype)
        self._num_frames = needed

    # -----------------------------------------------------------------------------------------------------------------
    # Saving and restoring
    # -----------------------------------------------------------------------------------------------------------------

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The whole state as named CPU tensors (with [`settings`] and `num_chunks`, enough to go on)."""
        return {
            "stream_sums": self.sums.contiguous(),
            "stream_counts": self.counts.contiguous(),
            "stream_first_positions": self.first_positions.contiguous(),
            "stream_index_map": self.micro_index_map.contiguous(),
            "stream_cluster_of_micro": self.cluster_of_micro.contiguous(),
            "stream_codebook": self.codebook.clone(),
        }

    @classmethod
    def from_state_tensors(
        cls, settings: CodebookSettings, num_chunks: int, tensors: dict[str, torch.Tensor], backend: str = "auto"
    ) -> "IncrementalCodebook":
        """Rebuilds a codebook from [`state_tensors`]; raises `ValueError` when they do not fit together."""
        codebook = cls(settings, backend)
        try:
            sums, counts = tensors["stream_sums"].double(), tensors["stream_counts"].long()
            first_positions = tensors["stream_first_positions"].long()
            micro_index_map = tensors["stream_index_map"]
            cluster_of_micro = tensors["stream_cluster_of_micro"].long()
            visible = tensors["stream_codebook"].float()
        except KeyError as error:
            raise ValueError(f"missing stream tensor {error}") from None
        num_micro = counts.shape[0]
        consistent = (
            sums.shape == (num_micro, settings.hidden_size)
            and first_positions.shape == (num_micro,)
            and cluster_of_micro.shape == (num_micro,)
            and micro_index_map.ndim == 2
            and micro_index_map.shape[1] == settings.tokens_per_frame
            and visible.ndim == 2
            and visible.shape[1] == settings.hidden_size
            and num_micro <= settings.micro_clusters
            and bool((counts > 0).all())
            and (
                micro_index_map.numel() == 0
                or 0 <= int(micro_index_map.min()) <= int(micro_index_map.max()) < num_micro
            )
            and (num_micro == 0 or 0 <= int(cluster_of_micro.min()) <= int(cluster_of_micro.max()) < visible.shape[0])
            and int(counts.sum()) == micro_index_map.numel()
        )
        if not consistent:
            raise ValueError("the stream tensors do not fit together (shapes, counts or cluster ids)")
        codebook.sums, codebook.counts, codebook.first_positions = sums, counts, first_positions
        codebook.cluster_of_micro, codebook.codebook = cluster_of_micro, visible
        codebook._append_rows(micro_index_map)
        codebook.num_chunks = num_chunks
        return codebook


__all__ = [
    "CodebookSettings",
    "IncrementalCodebook",
    "STREAM_SELECTION_METHODS",
    "chunk_seed",
    "cosine_distortion",
    "group_distortion",
    "group_lloyd",
    "groups_after_merges",
    "mean_sq_distances",
    "seed_groups",
    "sum_gram",
    "unit_sums",
    "select_codebook",
    "ward_merges",
]
