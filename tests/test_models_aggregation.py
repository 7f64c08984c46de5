"""BoW, VLAD and Fisher Vectors (thesis Eqs. 2.4-2.11) against hand values and naive loops."""

import math

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.mixture import GaussianMixture

from irbook.models import aggregation as A
from irbook.models.extract import pool_maps

# Two images, C = 3, H x W = 2 x 2 (T = 4 local descriptors each), K = 2 visual words.
CENTROIDS = torch.tensor([[0.0, 0.0, 0.0], [4.0, 4.0, 4.0]], dtype=torch.float64)
IMAGE_1 = [[1, 0, 0], [0, 1, 0], [5, 4, 4], [4, 4, 3]]  # words 0, 0, 1, 1
IMAGE_2 = [[0, 0, 1], [1, 1, 1], [1, 0, 1], [3, 5, 4]]  # words 0, 0, 0, 1


def maps_from(*images) -> torch.Tensor:
    """Maps (B, C, 2, 2) whose local descriptor t sits at row t // 2, column t % 2."""
    return torch.stack([torch.tensor(d, dtype=torch.float64).T.reshape(3, 2, 2) for d in images])


def hand_descriptors() -> torch.Tensor:
    return torch.tensor([IMAGE_1, IMAGE_2], dtype=torch.float64)


def random_descriptors(seed=0, shape=(3, 10, 4)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def clustered(seed=0, per_cluster=60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = np.concatenate([c + 0.3 * rng.standard_normal((per_cluster, 2)) for c in centres])
    return points, centres


def by_position(centres) -> np.ndarray:
    """Centres of :func:`clustered` in a fixed order: (0, 0), (10, 0), (0, 10)."""
    centres = np.asarray(centres)
    return centres[np.argsort(centres[:, 0] + 2 * centres[:, 1])]


def naive_nearest(x: np.ndarray, centroids: np.ndarray) -> int:
    distances = [sum((x[i] - c[i]) ** 2 for i in range(len(x))) for c in centroids]
    return int(np.argmin(distances))


def l2(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v)
    return v / norm if norm > 0 else v


# ------------------------------------------------------------------------ local descriptors
def test_local_descriptors_are_the_columns_of_the_maps_in_row_major_order():
    maps = torch.arange(2 * 3 * 2 * 5, dtype=torch.float64).reshape(2, 3, 2, 5)
    got = A.local_descriptors(maps)
    assert got.shape == (2, 10, 3)
    for b in range(2):
        for h in range(2):
            for w in range(5):
                assert got[b, h * 5 + w].tolist() == maps[b, :, h, w].tolist()
    np.testing.assert_allclose(A.local_descriptors(maps, normalize=True).norm(dim=-1), 1.0)
    assert A.local_descriptors(maps_from(IMAGE_1, IMAGE_2)).tolist() == [IMAGE_1, IMAGE_2]


# ------------------------------------------------------------------------------------ BoW
def test_bow_counts_by_hand():
    counts = A.bow(hand_descriptors(), CENTROIDS, normalize=False)
    np.testing.assert_allclose(counts, [[2 / 4, 2 / 4], [3 / 4, 1 / 4]])  # Eq. 2.4: 1/T
    normalised = A.bow(hand_descriptors(), CENTROIDS)
    np.testing.assert_allclose(normalised, [[1 / math.sqrt(2)] * 2,
                                            [3 / math.sqrt(10), 1 / math.sqrt(10)]])


def test_bow_matches_a_loop_over_descriptors():
    descriptors, centroids = random_descriptors(1), random_descriptors(2, (5, 4))
    got = A.bow(descriptors, centroids, normalize=False)
    for b, image in enumerate(descriptors.numpy()):
        histogram = np.zeros(5)
        for x in image:
            histogram[naive_nearest(x, centroids.numpy())] += 1
        np.testing.assert_allclose(got[b], histogram / len(image), rtol=1e-12)


# ----------------------------------------------------------------------------------- VLAD
def test_vlad_residual_sums_by_hand():
    raw = A.vlad(hand_descriptors(), CENTROIDS, intra_norm=False, power_norm=False,
                 normalize=False)
    # Image 1: word 0 gets (1,0,0) + (0,1,0); word 1 gets (5,4,4) - c1 + (4,4,3) - c1.
    # Image 2: word 0 gets (0,0,1) + (1,1,1) + (1,0,1); word 1 gets (3,5,4) - c1.
    np.testing.assert_allclose(raw, [[1 / 4, 1 / 4, 0, 1 / 4, 0, -1 / 4],
                                     [2 / 4, 1 / 4, 3 / 4, -1 / 4, 1 / 4, 0]])
    normalised = A.vlad(hand_descriptors(), CENTROIDS, power_norm=False)
    np.testing.assert_allclose(normalised[0], [0.5, 0.5, 0, 0.5, 0, -0.5], atol=1e-12)
    word_0 = np.array([2, 1, 3]) / math.sqrt(14)
    word_1 = np.array([-1, 1, 0]) / math.sqrt(2)
    np.testing.assert_allclose(normalised[1], np.r_[word_0, word_1] / math.sqrt(2), atol=1e-12)


def test_vlad_matches_a_loop_with_every_normalisation():
    descriptors, centroids = random_descriptors(3), random_descriptors(4, (1, 3, 4))[0]
    got = A.vlad(descriptors, centroids, intra_norm=True, power_norm=True)
    for b, image in enumerate(descriptors.numpy()):
        words = np.zeros((3, 4))
        for x in image:
            k = naive_nearest(x, centroids.numpy())
            words[k] += x - centroids[k].numpy()
        encoding = np.concatenate([l2(w) for w in words])
        encoding = np.sign(encoding) * np.sqrt(np.abs(encoding))
        np.testing.assert_allclose(got[b], l2(encoding), rtol=1e-10, atol=1e-12)


def test_vlad_power_normalisation_changes_the_result_and_keeps_empty_words_zero():
    descriptors = hand_descriptors()
    centroids = torch.cat([CENTROIDS, torch.full((1, 3), 100.0, dtype=torch.float64)])
    with_power = A.vlad(descriptors, centroids)
    without = A.vlad(descriptors, centroids, power_norm=False)
    assert not torch.allclose(with_power, without)
    assert with_power.shape == (2, 9) and with_power[:, 6:].abs().max() == 0


# ------------------------------------------------------------------------- Fisher Vectors
def sklearn_mixture(seed=0) -> tuple[GaussianMixture, np.ndarray]:
    points = np.concatenate([clustered(seed)[0], clustered(seed + 1)[0] * 0.5 + 1.0])
    mixture = GaussianMixture(2, covariance_type="diag", random_state=seed).fit(points)
    return mixture, points


def gmm_of(mixture: GaussianMixture) -> A.DiagonalGMM:
    return A.DiagonalGMM(*(torch.tensor(a) for a in (mixture.weights_, mixture.means_,
                                                     mixture.covariances_)))


def test_gmm_posteriors_equal_sklearn_predict_proba():
    mixture, points = sklearn_mixture()
    got = A.gmm_posteriors(torch.tensor(points[:50]), gmm_of(mixture))
    np.testing.assert_allclose(got, mixture.predict_proba(points[:50]), atol=1e-10)


def test_fisher_vector_matches_a_loop_over_the_formula():
    mixture, points = sklearn_mixture()
    images = [points[:7] + 0.5, points[100:107]]  # T = 7, C = 2, K = 2
    got = A.fisher_vector(torch.tensor(np.stack(images)), gmm_of(mixture), power_norm=False,
                          normalize=False, include_weights=True)
    w, mu, sigma = mixture.weights_, mixture.means_, np.sqrt(mixture.covariances_)
    for b, image in enumerate(images):
        gamma = mixture.predict_proba(image)
        g_w, g_mu, g_sigma = np.zeros(2), np.zeros((2, 2)), np.zeros((2, 2))
        for t, x in enumerate(image):
            for k in range(2):
                g_w[k] += gamma[t, k] - w[k]
                g_mu[k] += gamma[t, k] * (x - mu[k]) / sigma[k]
                g_sigma[k] += gamma[t, k] * (((x - mu[k]) / sigma[k]) ** 2 - 1)
        T = len(image)
        expected = np.concatenate([g_w / (T * np.sqrt(w)),
                                   (g_mu / (T * np.sqrt(w)[:, None])).ravel(),
                                   (g_sigma / (T * np.sqrt(2 * w)[:, None])).ravel()])
        np.testing.assert_allclose(got[b], expected, rtol=1e-9, atol=1e-12)


def test_fisher_vector_default_is_power_and_l2_normalised_means_and_variances():
    mixture, points = sklearn_mixture()
    descriptors, gmm = torch.tensor(points[:9]), gmm_of(mixture)
    raw = A.fisher_vector(descriptors, gmm, power_norm=False, normalize=False)
    got = A.fisher_vector(descriptors, gmm)
    assert got.shape == (2 * 2 * 2,) == (A.embedding_dim("fv", gmm),)
    np.testing.assert_allclose(got, l2(np.sign(raw.numpy()) * np.sqrt(np.abs(raw.numpy()))))
    reweighted = A.DiagonalGMM(torch.tensor([0.9, 0.1], dtype=torch.float64), gmm.means,
                               gmm.variances)
    assert not torch.allclose(A.fisher_vector(descriptors, reweighted), got)


def test_fit_diagonal_gmm_equals_sklearn_with_the_same_seed():
    points = clustered(5)[0]
    gmm = A.fit_diagonal_gmm(torch.tensor(points), 3, seed=7)
    reference = GaussianMixture(3, covariance_type="diag", random_state=7).fit(points)
    np.testing.assert_allclose(gmm.weights, reference.weights_, rtol=1e-10)
    np.testing.assert_allclose(gmm.means, reference.means_, rtol=1e-10)
    np.testing.assert_allclose(gmm.variances, reference.covariances_, rtol=1e-10)
    assert gmm.means.dtype == torch.float64 and gmm.num_components == 3 and gmm.dim == 2


# ------------------------------------------------------------------------------- k-means
def test_kmeans_codebook_is_deterministic_per_seed_and_close_to_sklearn():
    points, centres = clustered(0)
    first = A.kmeans_codebook(torch.tensor(points, dtype=torch.float32), 3, seed=3)
    again = A.kmeans_codebook(torch.tensor(points, dtype=torch.float32), 3, seed=3)
    assert torch.equal(first, again) and first.dtype == torch.float32
    reference = KMeans(3, n_init=1, random_state=0).fit(points).cluster_centers_
    np.testing.assert_allclose(by_position(first), by_position(reference), atol=1e-4)
    np.testing.assert_allclose(by_position(first), centres, atol=0.15)


def test_kmeans_codebook_depends_on_the_seed():
    points = np.random.default_rng(0).standard_normal((200, 4))
    assert not np.allclose(A.kmeans_codebook(points, 8, seed=0), A.kmeans_codebook(points, 8,
                                                                                  seed=1))


# ---------------------------------------------------------------- maps -> descriptors (B, D)
@pytest.mark.parametrize("method", A.AGGREGATIONS)
def test_embed_maps_equals_the_function_on_the_local_descriptors(method):
    maps = torch.relu(random_descriptors(6, (2, 4, 3, 5)))
    # Words learned on other maps: a word learned on these would have residuals ~0 here.
    codebook = A.fit_codebook(torch.relu(random_descriptors(60, (4, 4, 3, 5))), method, k=3)
    got = A.embed_maps(maps, method, codebook)
    assert got.shape == (2, A.embedding_dim(method, codebook))
    function = {"bow": A.bow, "vlad": A.vlad, "fv": A.fisher_vector}[method]
    for b in range(2):
        single = function(A.local_descriptors(maps[b : b + 1])[0], codebook)
        np.testing.assert_allclose(got[b], single, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.norm(dim=1), 1.0, rtol=1e-10)
    module = A.LocalAggregation(method, codebook)
    pooled = pool_maps([maps[0].float(), maps[1, :, :2].float()], module.float())
    np.testing.assert_allclose(pooled[0], got[0].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pooled[1], module(maps[1:, :, :2].float())[0], rtol=1e-6)


def test_fit_codebook_pools_descriptors_of_maps_of_different_sizes():
    maps = [random_descriptors(7, (4, 3, 5)), random_descriptors(8, (4, 2, 2))]
    codebook = A.fit_codebook(maps, "vlad", k=4, seed=2, normalize_descriptors=True)
    pooled = torch.cat([A.local_descriptors(m[None], normalize=True)[0] for m in maps])
    assert torch.equal(codebook, A.kmeans_codebook(pooled, 4, seed=2))


@pytest.mark.parametrize("method", ["vlad", "fv"])
def test_gradients_flow_to_the_maps_without_nan(method):
    maps = torch.relu(random_descriptors(9, (2, 3, 3, 3))).requires_grad_()
    codebook = A.fit_codebook(maps.detach(), method, k=4, seed=0)
    if method == "vlad":  # an empty word, where the signed square root sits at zero
        codebook = torch.cat([codebook, torch.full((1, 3), 50.0, dtype=torch.float64)])
    A.embed_maps(maps, method, codebook).sum().backward()
    assert torch.isfinite(maps.grad).all() and maps.grad.abs().sum() > 0


# ------------------------------------------------------------------------- invalid inputs
def test_codebook_fitting_refuses_bad_inputs():
    points = np.zeros((5, 2))
    with pytest.raises(ValueError, match="k must be at most"):
        A.kmeans_codebook(points, 6)
    with pytest.raises(ValueError, match="k must be an integer"):
        A.fit_diagonal_gmm(points, 0)
    with pytest.raises(ValueError, match="finite"):
        A.kmeans_codebook(np.array([[0.0, np.nan], [1.0, 1.0]]), 1)
    with pytest.raises(ValueError, match=r"shape \(M, C\)"):
        A.kmeans_codebook(np.zeros((2, 3, 4)), 1)
    with pytest.raises(ValueError, match="method must be one of bow, vlad, fv"):
        A.fit_codebook(torch.zeros(1, 2, 3, 3), "fisher", 2)


def test_embeddings_refuse_bad_inputs():
    descriptors = hand_descriptors()
    with pytest.raises(ValueError, match=r"\(T, C\) or \(B, T, C\)"):
        A.bow(descriptors[0, 0], CENTROIDS)
    with pytest.raises(ValueError, match="finite"):
        A.vlad(torch.full((4, 3), float("nan"), dtype=torch.float64), CENTROIDS)
    with pytest.raises(ValueError, match="dimension 2 but the descriptors have 3"):
        A.vlad(descriptors, CENTROIDS[:, :2])
    with pytest.raises(ValueError, match=r"feature maps \(B, C, H, W\)"):
        A.embed_maps(descriptors, "bow", CENTROIDS)
    with pytest.raises(ValueError, match="needs a DiagonalGMM"):
        A.embed_maps(maps_from(IMAGE_1), "fv", CENTROIDS)
    with pytest.raises(ValueError, match="must sum to 1"):
        A.DiagonalGMM(torch.ones(2), torch.zeros(2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="variances must be > 0|must be > 0"):
        A.DiagonalGMM(torch.full((2,), 0.5), torch.zeros(2, 3), torch.zeros(2, 3))
