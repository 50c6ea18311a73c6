# Copyright 2026 The VQToken for Transformers authors. Licensed under the Apache License, Version 2.0.
"""
Triton kernels of the cosine K-means step: assign every token to its most similar centroid and sum the members of
every cluster, for a batch of videos of different lengths in one launch.

The step is memory-bound (a video's tokens are read, the N x K similarity matrix is tiny per token), so it is organised
to read the tokens as few times as possible and to keep everything else on chip:

1. `_assign_accumulate_kernel`, grid `(batch, num_splits)`: each program owns a contiguous segment of one video's
   tokens.
   - phase 1, per block of `BLOCK_N` tokens: the dot products with every (padded, masked) centroid are accumulated over
     `BLOCK_D` slices of the feature dimension into a `[BLOCK_N, BLOCK_K]` register tile, the arg-max is taken there
     (lowest index on ties, like `torch.argmax`) and only the int64 label is written; the similarity matrix never
     reaches memory. Cluster counts accumulate in registers.
   - phase 2, per `BLOCK_D` slice: the segment's tokens are read a second time (from L2 when the segment fits; not
     yet measured on a GPU) and summed per cluster with a one-hot product into a `[BLOCK_K, BLOCK_D]` fp32 register
     tile, written once to a per-program partial buffer.
2. `_reduce_partials_kernel`, grid `(batch, num_clusters, cdiv(dim, BLOCK_D))`: sums the partial buffers over the
   splits in a fixed order. No float atomics anywhere, so the sums have the same bits on every run.

The number of tokens of each video is read from an int32 `offsets` tensor on the device, so a new video length does
not recompile anything, and nothing in a step synchronises with the host: a loop of steps can be captured in a CUDA
graph. Block sizes come from a small fixed heuristic (`_choose_blocks`), not from `triton.autotune`.

On a machine without a GPU the kernels run in Triton's interpreter (`TRITON_INTERPRET=1` set before this module is
imported); without `triton` installed the module still imports and `is_triton_available()` is False.
"""

import os

import torch


try:
    import triton
    import triton.language as tl

    _TRITON_AVAILABLE = True
except ImportError:  # the torch backend is used instead
    triton = None
    tl = None
    _TRITON_AVAILABLE = False


MAX_CLUSTERS = 128
_HALF_DTYPES = (torch.float16, torch.bfloat16)
_SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def is_triton_available() -> bool:
    """Whether the `triton` package could be imported (the kernels also need a CUDA device or `TRITON_INTERPRET=1`)."""
    return _TRITON_AVAILABLE


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


if _TRITON_AVAILABLE:
    # runtime sizes are not specialised (divisibility by 16, equality to 1): a new length never recompiles
    @triton.jit(do_not_specialize=["num_clusters", "tokens_per_split", "num_splits"])
    def _assign_accumulate_kernel(
        tokens_ptr,  # [total_tokens, dim], fp32 / fp16 / bf16, row-major
        offsets_ptr,  # [batch + 1] int32: video b owns rows offsets[b] .. offsets[b + 1] - 1
        centroids_ptr,  # [batch, num_clusters, dim] fp32, contiguous
        mask_ptr,  # [batch, num_clusters] uint8 (a bool tensor viewed as bytes)
        labels_ptr,  # out [total_tokens] int64
        partial_sums_ptr,  # out [batch, num_splits, BLOCK_K, dim] fp32
        partial_counts_ptr,  # out [batch, num_splits, BLOCK_K] fp32
        num_clusters,
        dim,
        tokens_per_split,  # runtime int, a multiple of BLOCK_N
        num_splits,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_D: tl.constexpr,
        DOT_IN_INPUT_DTYPE: tl.constexpr,
    ):
        """
        Fused assignment and per-segment accumulation for the tokens `[segment_start, segment_end)` of video
        `program_id(0)`, segment `program_id(1)`.

        `DOT_IN_INPUT_DTYPE`: multiply half-precision tokens by centroids rounded to the same type (tensor cores, fp32
        accumulation); otherwise everything is converted to fp32 on load and multiplied in IEEE fp32.
        """
        video = tl.program_id(0)
        split = tl.program_id(1)
        video_start = tl.load(offsets_ptr + video).to(tl.int64)
        video_end = tl.load(offsets_ptr + video + 1).to(tl.int64)
        segment_start = video_start + split.to(tl.int64) * tokens_per_split
        segment_end = tl.minimum(segment_start + tokens_per_split, video_end)

        k_range = tl.arange(0, BLOCK_K)
        n_range = tl.arange(0, BLOCK_N)
        d_range = tl.arange(0, BLOCK_D)
        k_valid = k_range < num_clusters
        cluster_exists = tl.load(mask_ptr + video * num_clusters + k_range, mask=k_valid, other=0) != 0
        centroid_rows = centroids_ptr + (video * num_clusters + k_range).to(tl.int64) * dim

        # phase 1: labels and counts
        counts = tl.zeros([BLOCK_K], dtype=tl.float32)
        for block_start in range(segment_start, segment_end, BLOCK_N):
            rows = block_start + n_range
            row_valid = rows < segment_end
            similarity = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
            for d_start in range(0, dim, BLOCK_D):
                cols = d_start + d_range
                col_valid = cols < dim
                x = tl.load(
                    tokens_ptr + rows[:, None] * dim + cols[None, :],
                    mask=row_valid[:, None] & col_valid[None, :],
                    other=0.0,
                )
                c = tl.load(
                    centroid_rows[:, None] + cols[None, :], mask=k_valid[:, None] & col_valid[None, :], other=0.0
                )
                if DOT_IN_INPUT_DTYPE:
                    similarity = tl.dot(x, tl.trans(c.to(x.dtype)), similarity)
                else:
                    similarity = tl.dot(
                        x.to(tl.float32), tl.trans(c.to(tl.float32)), similarity, input_precision="ieee"
                    )
            similarity = tl.where(cluster_exists[None, :], similarity, float("-inf"))
            labels = tl.argmax(similarity, axis=1, tie_break_left=True).to(tl.int64)
            tl.store(labels_ptr + rows, labels, mask=row_valid)
            one_hot = (labels[:, None] == k_range[None, :]) & row_valid[:, None]
            counts += tl.sum(one_hot.to(tl.float32), axis=0)
        partial_index = video.to(tl.int64) * num_splits + split
        tl.store(partial_counts_ptr + partial_index * BLOCK_K + k_range, counts)

        # the labels written above are read back by other threads of this program
        tl.debug_barrier()

        # phase 2: per-cluster sums of this segment, one BLOCK_D slice of the feature dimension at a time
        partial_rows = partial_sums_ptr + (partial_index * BLOCK_K + k_range).to(tl.int64) * dim
        for d_start in range(0, dim, BLOCK_D):
            cols = d_start + d_range
            col_valid = cols < dim
            sums = tl.zeros([BLOCK_K, BLOCK_D], dtype=tl.float32)
            for block_start in range(segment_start, segment_end, BLOCK_N):
                rows = block_start + n_range
                row_valid = rows < segment_end
                labels = tl.load(labels_ptr + rows, mask=row_valid, other=-1)
                x = tl.load(
                    tokens_ptr + rows[:, None] * dim + cols[None, :],
                    mask=row_valid[:, None] & col_valid[None, :],
                    other=0.0,
                )
                one_hot_t = k_range[:, None] == labels[None, :]  # [BLOCK_K, BLOCK_N]
                if DOT_IN_INPUT_DTYPE:
                    # 0/1 times a half value is exact; the sum is fp32
                    sums = tl.dot(one_hot_t.to(x.dtype), x, sums)
                else:
                    sums = tl.dot(one_hot_t.to(tl.float32), x.to(tl.float32), sums, input_precision="ieee")
            tl.store(partial_rows[:, None] + cols[None, :], sums, mask=col_valid[None, :])

    @triton.jit(do_not_specialize=["num_clusters", "num_splits"])
    def _reduce_partials_kernel(
        partial_sums_ptr,  # [batch, num_splits, BLOCK_K, dim] fp32
        partial_counts_ptr,  # [batch, num_splits, BLOCK_K] fp32
        sums_ptr,  # out [batch, num_clusters, dim] fp32
        counts_ptr,  # out [batch, num_clusters] fp32
        num_clusters,
        dim,
        num_splits,
        BLOCK_K: tl.constexpr,
        BLOCK_D: tl.constexpr,
    ):
        """Sums the partial results of the splits of video `program_id(0)`, cluster `program_id(1)`, feature slice
        `program_id(2)`, in split order (deterministic), and the cluster's count."""
        video = tl.program_id(0).to(tl.int64)
        cluster = tl.program_id(1)
        d_block = tl.program_id(2)
        cols = d_block * BLOCK_D + tl.arange(0, BLOCK_D)
        col_valid = cols < dim
        total = tl.zeros([BLOCK_D], dtype=tl.float32)
        count = tl.zeros([1], dtype=tl.float32)
        for split in range(0, num_splits):
            partial_index = (video * num_splits + split) * BLOCK_K + cluster
            total += tl.load(partial_sums_ptr + partial_index * dim + cols, mask=col_valid, other=0.0)
            count += tl.load(partial_counts_ptr + partial_index + tl.zeros([1], dtype=tl.int64))
        output_row = video * num_clusters + cluster
        tl.store(sums_ptr + output_row * dim + cols, total, mask=col_valid)
        # every feature slice stores the same count: identical values, no race on the result
        tl.store(counts_ptr + output_row + tl.zeros([1], dtype=tl.int64), count)


def _next_power_of_two(value: int) -> int:
    return 1 << max(0, (value - 1).bit_length())


def _choose_blocks(max_tokens: int, batch_size: int, num_clusters: int, dim: int, device: torch.device) -> dict:
    """
    Fixed block sizes and work split (no autotuning: `triton.autotune` needs a GPU driver and would sync).

    - `BLOCK_K`: the number of clusters padded to a power of two, at least 16 (the smallest `tl.dot` tile).
    - `BLOCK_N` tokens per block: 64, or 32 when `BLOCK_K` is 128 to bound the register tile.
    - `BLOCK_D`: 64, so D = 896 (14 x 64), 1152 (18 x 64) and every multiple of 64 need no masked tail.
    - `num_splits`: segments per video, so that about four programs per streaming multiprocessor (16 in the
      interpreter) are in flight, but with at least `4 * BLOCK_K` tokens per segment so that the partial buffer
      (`BLOCK_K x dim` fp32 per program) stays well below the size of the tokens it summarises.
    """
    block_k = max(16, _next_power_of_two(num_clusters))
    block_n = 32 if block_k > 64 else 64
    block_d = 64 if dim >= 64 else max(16, _next_power_of_two(dim))
    if device.type == "cuda":
        target_programs = 4 * torch.cuda.get_device_properties(device).multi_processor_count
        num_warps = 8 if block_k >= 64 else 4
    else:
        target_programs = 16
        num_warps = 4
    max_tokens = max(max_tokens, 1)
    min_tokens_per_split = max(block_n, 4 * block_k)
    splits = max(1, min(-(-target_programs // batch_size), -(-max_tokens // min_tokens_per_split)))
    tokens_per_split = -(-max_tokens // splits)
    tokens_per_split = -(-tokens_per_split // block_n) * block_n
    splits = -(-max_tokens // tokens_per_split)
    return {
        "BLOCK_N": block_n,
        "BLOCK_K": block_k,
        "BLOCK_D": block_d,
        "num_splits": splits,
        "tokens_per_split": tokens_per_split,
        "num_warps": num_warps,
    }


def _default_dot_in_input_dtype(dtype: torch.dtype, device: torch.device) -> bool:
    # half-precision dots on tensor cores for half tokens on a GPU; the interpreter has no bf16 arithmetic
    return dtype in _HALF_DTYPES and device.type == "cuda" and not _interpreting()


def triton_assign_and_accumulate_packed(
    tokens: torch.Tensor,
    offsets: torch.Tensor,
    centroids: torch.Tensor,
    cluster_mask: torch.Tensor,
    max_tokens: int | None = None,
    dot_in_input_dtype: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    One Lloyd half-step for a batch of videos of different lengths packed in one tensor (two kernel launches, no host
    synchronisation).

    Args:
        tokens (`torch.Tensor` of shape `(total_tokens, dim)`): the unit-normalised tokens of all videos, one after
            the other; fp32, fp16 or bf16 (sums are accumulated in fp32).
        offsets (`torch.IntTensor` of shape `(batch + 1,)`): video `b` owns rows `offsets[b]:offsets[b + 1]`;
            non-decreasing, `offsets[0] = 0`, `offsets[-1] = total_tokens`. Read on the device only.
        centroids (`torch.Tensor` of shape `(batch, num_clusters, dim)`): current centroids (used in fp32).
        cluster_mask (`torch.BoolTensor` of shape `(batch, num_clusters)`): which centroids exist for each video.
        max_tokens (`int`, *optional*): an upper bound on the length of a video, used to split the work; defaults to
            `total_tokens` (always correct, but splits a batch of many short videos less evenly).
        dot_in_input_dtype (`bool`, *optional*): for fp16 / bf16 tokens, compute the similarities with the centroids
            rounded to the token dtype (tensor cores). Defaults to True for half tokens on a GPU, else False.

    Returns:
        labels (`torch.LongTensor` of shape `(total_tokens,)`): index of the most similar existing centroid, the
            lowest index on ties.
        sums (`torch.FloatTensor` of shape `(batch, num_clusters, dim)`): fp32 sums of the tokens of each cluster.
        counts (`torch.FloatTensor` of shape `(batch, num_clusters)`): number of tokens of each cluster.
    """
    if not _TRITON_AVAILABLE:
        raise RuntimeError("The Triton K-means kernels need the `triton` package.")
    if tokens.ndim != 2 or centroids.ndim != 3 or cluster_mask.shape != centroids.shape[:2]:
        raise ValueError(
            f"Expected tokens (total_tokens, dim), centroids (batch, num_clusters, dim) and cluster_mask "
            f"(batch, num_clusters); got {tuple(tokens.shape)}, {tuple(centroids.shape)}, {tuple(cluster_mask.shape)}."
        )
    if tokens.dtype not in _SUPPORTED_DTYPES:
        raise ValueError(f"tokens must be fp32, fp16 or bf16, got {tokens.dtype}.")
    batch_size, num_clusters, dim = centroids.shape
    if tokens.shape[1] != dim:
        raise ValueError(f"tokens have dim {tokens.shape[1]} but centroids have dim {dim}.")
    if offsets.shape != (batch_size + 1,):
        raise ValueError(f"offsets must have shape ({batch_size + 1},), got {tuple(offsets.shape)}.")
    if not 1 <= num_clusters <= MAX_CLUSTERS:
        raise ValueError(f"The Triton kernels take 1 to {MAX_CLUSTERS} clusters, got {num_clusters}.")
    total_tokens = tokens.shape[0]
    device = tokens.device
    if dot_in_input_dtype is None:
        dot_in_input_dtype = _default_dot_in_input_dtype(tokens.dtype, device)
    dot_in_input_dtype = bool(dot_in_input_dtype) and tokens.dtype in _HALF_DTYPES

    tokens = tokens.contiguous()
    offsets = offsets.to(device=device, dtype=torch.int32).contiguous()
    centroids = centroids.to(device=device, dtype=torch.float32).contiguous()
    mask_bytes = cluster_mask.to(device=device, dtype=torch.bool).contiguous().view(torch.uint8)
    blocks = _choose_blocks(total_tokens if max_tokens is None else max_tokens, batch_size, num_clusters, dim, device)
    block_k, num_splits = blocks["BLOCK_K"], blocks["num_splits"]

    labels = torch.empty(total_tokens, dtype=torch.long, device=device)
    partial_sums = torch.empty(batch_size, num_splits, block_k, dim, dtype=torch.float32, device=device)
    partial_counts = torch.empty(batch_size, num_splits, block_k, dtype=torch.float32, device=device)
    sums = torch.empty(batch_size, num_clusters, dim, dtype=torch.float32, device=device)
    counts = torch.empty(batch_size, num_clusters, dtype=torch.float32, device=device)
    if batch_size == 0:
        return labels, sums, counts

    _assign_accumulate_kernel[(batch_size, num_splits)](
        tokens,
        offsets,
        centroids,
        mask_bytes,
        labels,
        partial_sums,
        partial_counts,
        num_clusters,
        dim,
        blocks["tokens_per_split"],
        num_splits,
        BLOCK_N=blocks["BLOCK_N"],
        BLOCK_K=block_k,
        BLOCK_D=blocks["BLOCK_D"],
        DOT_IN_INPUT_DTYPE=dot_in_input_dtype,
        num_warps=blocks["num_warps"],
    )
    reduce_block_d = min(256, _next_power_of_two(dim))
    _reduce_partials_kernel[(batch_size, num_clusters, triton.cdiv(dim, reduce_block_d))](
        partial_sums,
        partial_counts,
        sums,
        counts,
        num_clusters,
        dim,
        num_splits,
        BLOCK_K=block_k,
        BLOCK_D=reduce_block_d,
        num_warps=4,
    )
    return labels, sums, counts


def triton_assign_and_accumulate(
    tokens: torch.Tensor, centroids: torch.Tensor, cluster_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Triton version of `assign_and_accumulate_torch`, same contract: assign every token to its most similar existing
    centroid and sum the members of each cluster.

    Args:
        tokens (`torch.Tensor` of shape `(batch, num_tokens, dim)`): unit-normalised tokens, fp32, fp16 or bf16.
        centroids (`torch.Tensor` of shape `(batch, num_clusters, dim)`): current centroids (used in fp32).
        cluster_mask (`torch.BoolTensor` of shape `(batch, num_clusters)`): which centroids exist for each video.

    Returns:
        labels (`torch.LongTensor` of shape `(batch, num_tokens)`), sums (`torch.FloatTensor` of shape
        `(batch, num_clusters, dim)`, fp32), counts (`torch.FloatTensor` of shape `(batch, num_clusters)`).
    """
    if tokens.ndim != 3:
        raise ValueError(f"tokens must have shape (batch, num_tokens, dim), got {tuple(tokens.shape)}.")
    batch_size, num_tokens, dim = tokens.shape
    offsets = torch.arange(0, batch_size + 1, device=tokens.device, dtype=torch.int32) * num_tokens
    labels, sums, counts = triton_assign_and_accumulate_packed(
        tokens.reshape(batch_size * num_tokens, dim), offsets, centroids, cluster_mask, max_tokens=num_tokens
    )
    return labels.view(batch_size, num_tokens), sums, counts


__all__ = [
    "MAX_CLUSTERS",
    "is_triton_available",
    "triton_assign_and_accumulate",
    "triton_assign_and_accumulate_packed",
]
