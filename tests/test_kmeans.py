import logging

import pytest
import torch

from vqtoken.modeling.vqtoken_kmeans import (
    assign_and_accumulate_torch,
    choose_num_clusters_elbow,
    cosine_silhouettes,
    kmeans_plus_plus,
    lloyd,
    number_clusters_by_first_appearance,
    quantize_video_tokens,
    ward_merge_tree,
)


def unit(x):
    return torch.nn.functional.normalize(x, dim=-1)


def blobs(num_clusters, per_cluster, dim, spread, seed):
    """Tokens around `num_clusters` random directions; returns `(tokens [N, D], true labels [N])`."""
    generator = torch.Generator().manual_seed(seed)
    centres = unit(torch.randn(num_clusters, dim, generator=generator))
    labels = torch.arange(num_clusters).repeat_interleave(per_cluster)
    tokens = centres[labels] + spread * torch.randn(len(labels), dim, generator=generator)
    return tokens, labels


def released_lloyd_float64(tokens, centroids, max_iterations, tolerance):
    """The released update and stop rule, one video, written plainly in float64."""
    x = unit(tokens.double())
    c = centroids.double().clone()
    labels = None
    for _ in range(max_iterations):
        labels = torch.stack([torch.argmax(torch.stack([x[i] @ c[j] for j in range(len(c))])) for i in range(len(x))])
        new_c = c.clone()
        for j in range(len(c)):
            members = x[labels == j]
            if len(members):
                new_c[j] = members.mean(0)
        shift = torch.sqrt(((new_c - c) ** 2).sum())
        c = new_c
        if shift < tolerance:
            break
    return labels, c


def test_assignment_and_sums_match_float64_reference():
    tokens = unit(torch.randn(2, 37, 16, dtype=torch.float64)).float()
    centroids = unit(torch.randn(2, 5, 16)).float()
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    labels, sums, counts = assign_and_accumulate_torch(tokens, centroids, mask)
    similarity = tokens.double() @ centroids.double().transpose(1, 2)
    similarity[~mask[:, None, :].expand_as(similarity)] = -torch.inf
    assert torch.equal(labels, similarity.argmax(-1))
    assert labels[1].max() < 3
    for video in range(2):
        for cluster in range(5):
            members = tokens[video][labels[video] == cluster].double()
            assert counts[video, cluster] == len(members)
            torch.testing.assert_close(sums[video, cluster].double(), members.sum(0), atol=1e-5, rtol=1e-5)


def test_kmeans_plus_plus_is_seeded_batch_invariant_and_picks_tokens():
    tokens = unit(torch.randn(3, 50, 8))
    first = kmeans_plus_plus(tokens, 6, seed=3)
    assert torch.equal(first, kmeans_plus_plus(tokens, 6, seed=3))
    assert not torch.equal(first, kmeans_plus_plus(tokens, 6, seed=4))
    assert torch.equal(first[1:2], kmeans_plus_plus(tokens[1:2], 6, seed=3))
    for video in range(3):
        exact_match = (first[video][:, None, :] == tokens[video][None, :, :]).all(-1)
        assert bool(exact_match.any(dim=1).all())
        assert len({tuple(row.tolist()) for row in first[video]}) == 6


def test_lloyd_matches_released_algorithm_in_float64():
    tokens, _ = blobs(4, 15, 12, spread=0.4, seed=0)
    tokens = unit(tokens)[None]
    centroids = kmeans_plus_plus(tokens, 4, seed=0)
    mask = torch.ones(1, 4, dtype=torch.bool)
    labels, sums, counts, _ = lloyd(tokens, centroids, mask, max_iterations=100, tolerance=1e-4, backend="torch")
    reference_labels, reference_centroids = released_lloyd_float64(tokens[0], centroids[0], 100, 1e-4)
    assert torch.equal(labels[0], reference_labels)
    torch.testing.assert_close((sums / counts[..., None])[0].double(), reference_centroids, atol=1e-5, rtol=1e-5)


def test_codebook_and_index_map_are_consistent_and_deterministic():
    tokens, _ = blobs(5, 20, 16, spread=0.3, seed=1)
    tokens = 3.0 * tokens[None]  # the projector's scale: the codebook is built from unit tokens
    first = quantize_video_tokens(tokens, max_clusters=5)
    second = quantize_video_tokens(tokens, max_clusters=5)
    assert torch.equal(first.codebooks, second.codebooks) and torch.equal(first.index_maps, second.index_maps)
    x = unit(tokens[0].double())
    for cluster in range(5):
        members = x[first.index_maps[0] == cluster]
        expected = members.mean(0) if len(members) else torch.zeros(16, dtype=torch.float64)
        torch.testing.assert_close(first.codebooks[0, cluster].double(), expected, atol=1e-6, rtol=1e-5)


def test_clusters_are_renumbered_by_first_appearance_on_a_hand_built_case():
    codebooks = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [0.0, 0.0]]])
    # cluster 2 opens the video, then 0, then 3; cluster 1 is empty and row 4 is padding (K = 4 for this video)
    index_maps = torch.tensor([[2, 2, 0, 3, 0, 2]])
    renumbered_codebooks, renumbered_maps = number_clusters_by_first_appearance(codebooks, index_maps)
    assert renumbered_maps.tolist() == [[0, 0, 1, 2, 1, 0]]
    assert renumbered_codebooks[0, :, 0].tolist() == [2.0, 0.0, 3.0, 1.0, 0.0]


def test_quantized_clusters_are_numbered_by_first_appearance_whatever_the_seed():
    tokens, _ = blobs(4, 10, 32, spread=0.05, seed=2)
    tokens = tokens[torch.randperm(40, generator=torch.Generator().manual_seed(0))][None]
    results = [quantize_video_tokens(tokens, max_clusters=4, seed=seed) for seed in range(4)]
    for result in results:
        labels = result.index_maps[0].tolist()
        first_ids = list(dict.fromkeys(labels))
        assert first_ids == list(range(len(first_ids)))

    # seeds that find the same partition (as sets of tokens) give the same numbering and codebook
    def partition(result):
        labels = result.index_maps[0]
        return {frozenset(torch.nonzero(labels == cluster).flatten().tolist()) for cluster in labels.unique().tolist()}

    same = [result for result in results[1:] if partition(result) == partition(results[0])]
    assert len(same) >= 2
    for result in same:
        assert torch.equal(result.index_maps, results[0].index_maps)
        torch.testing.assert_close(result.codebooks, results[0].codebooks, atol=1e-6, rtol=0)


def test_a_video_gets_the_same_result_alone_and_in_a_batch():
    videos = torch.stack([blobs(k, 48 // k, 16, spread=0.35, seed=k)[0] for k in (3, 4, 6)])
    for method in ("fixed", "elbow", "elbow_corrected", "silhouette"):
        batch = quantize_video_tokens(videos, selection_method=method, min_clusters=2, max_clusters=8)
        for video in range(3):
            alone = quantize_video_tokens(
                videos[video : video + 1], selection_method=method, min_clusters=2, max_clusters=8
            )
            assert torch.equal(alone.num_clusters[0], batch.num_clusters[video])
            assert torch.equal(alone.index_maps[0], batch.index_maps[video])
            torch.testing.assert_close(alone.codebooks[0], batch.codebooks[video], atol=0, rtol=0)


def test_empty_cluster_keeps_its_centroid_and_gives_a_zero_codebook_row():
    tokens = unit(torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]]]))
    # the third centroid points away from every token: it never wins a token
    centroids = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]])
    labels, sums, counts, _ = lloyd(tokens, centroids, torch.ones(1, 3, dtype=torch.bool), 10, 1e-4, "torch")
    assert counts[0].tolist() == [2.0, 2.0, 0.0]
    assert torch.equal(sums[0, 2], torch.zeros(2))
    assert labels[0].tolist() == [0, 0, 1, 1]


def test_more_clusters_than_tokens_is_capped_with_a_warning(caplog):
    tokens = torch.randn(1, 5, 8)
    with caplog.at_level(logging.WARNING):
        result = quantize_video_tokens(tokens, max_clusters=12)
    assert "only 5 tokens" in caplog.text
    assert int(result.num_clusters[0]) == 5
    # every token is its own cluster: each codebook row is one unit token
    torch.testing.assert_close(result.codebooks[0, result.index_maps[0]], unit(tokens[0]), atol=1e-6, rtol=1e-6)


def test_identical_tokens_fall_in_one_cluster():
    token = torch.randn(8)
    result = quantize_video_tokens(token.expand(1, 30, 8).clone(), max_clusters=4)
    assert result.index_maps.unique().tolist() == [0]
    torch.testing.assert_close(result.codebooks[0, 0], unit(token), atol=1e-6, rtol=1e-6)
    assert torch.equal(result.codebooks[0, 1:], torch.zeros(3, 8))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_features_raise_naming_the_video(bad):
    tokens = torch.randn(3, 10, 4)
    tokens[2, 4, 1] = bad
    with pytest.raises(ValueError, match=r"video\(s\) \[2\]"):
        quantize_video_tokens(tokens, max_clusters=3)


def test_elbow_rules_on_a_hand_made_curve():
    candidates = list(range(12, 33))
    # steep until K = 17, flat after: d1 jumps from -10 to -1 between K=16->17 and K=17->18
    distortions = torch.tensor([100.0 - 10 * i for i in range(6)] + [50.0 - 1 * i for i in range(1, 16)])
    d2 = torch.diff(torch.diff(distortions))
    index = int(d2.argmax())
    assert index == 4
    assert choose_num_clusters_elbow(distortions, candidates, corrected=False) == max(12, index + 4) == 12
    assert choose_num_clusters_elbow(distortions, candidates, corrected=True) == candidates[index + 1] == 17
    # a knee late in the range: the released offset caps the choice at 22
    late = torch.tensor([200.0 - 8 * i for i in range(19)] + [50.0, 49.5])
    assert choose_num_clusters_elbow(late, candidates, corrected=False) == 22
    assert choose_num_clusters_elbow(late, candidates, corrected=True) == 31


def test_ward_merge_distortions_are_exact():
    tokens, _ = blobs(6, 10, 8, spread=0.5, seed=2)
    x = unit(tokens)[None]
    labels, sums, counts, _ = lloyd(
        x, kmeans_plus_plus(x, 6, 0), torch.ones(1, 6, dtype=torch.bool), 50, 1e-4, "torch"
    )
    groups, distortions = ward_merge_tree(sums[0], counts[0], min_clusters=2)
    assert groups.shape == (5, 6)
    for row, distortion in zip(groups, distortions):
        merged = row[labels[0]]
        assert int(row.max()) + 1 == len(set(merged.tolist())) or counts[0].eq(0).any()
        expected = sum(
            ((x[0][merged == g].double() - x[0][merged == g].double().mean(0)) ** 2).sum() for g in merged.unique()
        )
        torch.testing.assert_close(distortion, expected, atol=1e-6, rtol=1e-6)
    assert bool((distortions[1:] >= distortions[:-1] - 1e-9).all())


def naive_cosine_silhouette(x, labels):
    distance = 1 - x @ x.T
    scores = []
    for i in range(len(x)):
        own = labels == labels[i]
        if own.sum() == 1:
            scores.append(0.0)
            continue
        intra = distance[i][own].sum() / (own.sum() - 1)
        inter = min(distance[i][labels == j].mean() for j in labels.unique() if j != labels[i])
        scores.append(float((inter - intra) / max(inter, intra)))
    return sum(scores) / len(scores)


def test_silhouette_matches_the_quadratic_definition():
    tokens, _ = blobs(4, 8, 6, spread=0.6, seed=3)
    x = unit(tokens.double()).float()
    labels = torch.arange(4).repeat_interleave(8)
    labels[3] = 1  # an impure cluster
    sums = torch.zeros(4, 6).index_add_(0, labels, x)
    groups = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 2], [0, 1, 1, 1]])
    scores = cosine_silhouettes(x, labels, sums, groups)
    for row, score in zip(groups, scores):
        expected = naive_cosine_silhouette(x.double(), row[labels])
        assert abs(float(score) - expected) < 1e-6


def test_adaptive_methods_find_well_separated_clusters():
    tokens, _ = blobs(5, 30, 32, spread=0.05, seed=4)
    for method in ("silhouette", "elbow_corrected"):
        result = quantize_video_tokens(tokens[None], selection_method=method, min_clusters=2, max_clusters=9)
        assert int(result.num_clusters[0]) == 5, method
    released = quantize_video_tokens(tokens[None], selection_method="elbow", min_clusters=2, max_clusters=9)
    # released rule: index of the largest second difference (K=5 sits at index 2) plus 4
    assert int(released.num_clusters[0]) == 6


def test_backend_choice_knows_the_triton_cluster_limit():
    import pytest

    from vqtoken.modeling.vqtoken_kmeans import TRITON_MAX_CLUSTERS, resolve_backend
    from vqtoken.modeling.vqtoken_kmeans_triton import is_triton_available

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert TRITON_MAX_CLUSTERS == 128
    assert resolve_backend("auto", cpu, 32) == "torch"
    assert resolve_backend("auto", cuda, 129) == "torch"
    assert resolve_backend("auto", cuda, 128) == ("triton" if is_triton_available() else "torch")
    assert resolve_backend("torch", cuda, 500) == "torch"
    if is_triton_available():
        with pytest.raises(ValueError, match="runs at most 128 clusters, asked for 129"):
            resolve_backend("triton", cuda, 129)
    with pytest.raises(ValueError, match="vqtoken_kmeans_backend"):
        resolve_backend("faiss", cpu, 8)
