import torch

from hf_rtp import AddressableMemory
from hf_rtp.data import ZCA, ImageClassificationData


def toy(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, 4, 4, generator=g)
    base[:, 1] = 0.7 * base[:, 0] + 0.3 * base[:, 1]  # correlated channels, so whitening has work to do
    return base


def test_whitening_follows_the_authors_recipe():
    images = toy()
    zca = ZCA.fit(images, regularization=0.1)
    x = ZCA.normalize_images(images).flatten(1)
    assert torch.allclose(x.mean(1), torch.zeros(len(x), dtype=x.dtype), atol=1e-12)
    assert torch.allclose(x.norm(dim=1), torch.ones(len(x), dtype=x.dtype))
    covariance = x.T @ x / len(x)
    e, v = torch.linalg.eigh(covariance)
    w = v @ torch.diag((e.clamp_min(0) + 0.1 * e.clamp_min(0).mean()).rsqrt()) @ v.T
    torch.testing.assert_close(zca.whiten(images).double().flatten(1), x @ w, rtol=1e-4, atol=1e-5)


def test_unwhiten_inverts_whiten():
    images = toy()
    zca = ZCA.fit(images, regularization=0.1)
    back = zca.unwhiten(zca.whiten(images).double())
    torch.testing.assert_close(back, ZCA.normalize_images(images), rtol=1e-3, atol=1e-4)


def test_memory_stores_zca_round_trips_and_views_pictures(tmp_path):
    images = toy()
    zca = ZCA.fit(images, 0.1)
    data = ImageClassificationData(images=zca.whiten(images), labels=torch.arange(200) % 2, class_names=["a", "b"],
                                   mean=[0.0] * 3, std=[1.0] * 3, name="toy", zca=zca)
    memory = AddressableMemory.for_dataset(data, ipc=2, num_bases=2)
    assert memory.config.zca_regularization == 0.1
    memory.save_pretrained(tmp_path)
    loaded = AddressableMemory.from_pretrained(tmp_path)
    assert torch.equal(loaded.zca_eigenvectors, zca.eigenvectors) and torch.equal(loaded.zca_scales, zca.scales)
    view = loaded.to_viewable(data.images[:3])
    assert view.min() == 0 and view.max() == 1
    expected = ZCA.normalize_images(images[:3]).float().flatten(1)
    expected = (expected - expected.min(1, keepdim=True).values) / (expected.max(1, keepdim=True).values - expected.min(1, keepdim=True).values)
    torch.testing.assert_close(view.flatten(1), expected, atol=1e-3, rtol=0)
    preview = loaded.recall(preview=True)
    assert preview[0]["image"].size == (4, 4)


def test_tiny_regulariser_whitens_to_the_identity():
    """An independent property: with almost no regularisation the whitened training set has identity covariance
    (on the subspace the per-image normalisation leaves: the data span minus the all-ones direction)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4000, 1, 3, 3, generator=g) @ torch.rand(3, 3, generator=g)  # correlated pixels
    white = ZCA.fit(images, regularization=1e-9).whiten(images).double().flatten(1)
    covariance = white.T @ white / len(white)
    eigenvalues = torch.linalg.eigvalsh(covariance)
    assert torch.allclose(eigenvalues[1:], torch.ones(8, dtype=torch.float64), atol=1e-3)  # 9 pixels, one lost to centring
    assert eigenvalues[0].abs() < 1e-3
