import json
import math

import pytest
import torch
from safetensors.torch import save_file

import hf_rtp  # noqa: F401
from hf_rtp import AddressableMemory, AddressableMemoryConfig, CheckpointError
from transformers import AutoModel

NAMES = ["zero", "one", "two", "three"]


def bilinear_matrix(n_out: int, n_in: int) -> torch.Tensor:
    """Interpolation weights of bilinear resizing with align_corners=False, written out from its definition."""
    u = torch.zeros(n_out, n_in, dtype=torch.float64)
    for o in range(n_out):
        src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(math.floor(src), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        lam = src - i0
        u[o, i0] += 1 - lam
        u[o, i1] += lam
    return u


def eqn2_by_hand(memory: AddressableMemory, y: torch.Tensor, i: int) -> torch.Tensor:
    """x_i = upsample((y^T A_i) [b_1; ...; b_K]) for one query vector y, with loops and the formula."""
    cfg = memory.config
    bases = memory.bases.detach().double()
    if memory.addressing is None:
        a_i = torch.zeros(cfg.query_dim, cfg.num_bases, dtype=torch.float64)
        for m in range(cfg.num_classes):
            a_i[m, m * cfg.images_per_query + i] = 1
    else:
        a_i = memory.addressing.detach().double()[i]
    coefficients = y.double() @ a_i  # (K,)
    small = sum(coefficients[k] * bases[k] for k in range(cfg.num_bases))
    c, h, w = cfg.image_shape
    uh, uw = bilinear_matrix(h, small.shape[1]), bilinear_matrix(w, small.shape[2])
    return torch.stack([uh @ small[ch] @ uw.T for ch in range(c)])


@pytest.fixture
def memory():
    cfg = AddressableMemoryConfig(
        image_shape=[3, 8, 12], class_names=NAMES, num_bases=5, images_per_query=3, downsample=2,
        mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3],
    )
    return AddressableMemory(cfg)


def test_labels_recall_matches_eqn2_by_hand(memory):
    images, labels = memory(labels=torch.tensor([2, 0, 3]))
    assert images.shape == (9, 3, 8, 12)
    assert labels.tolist() == [2, 2, 2, 0, 0, 0, 3, 3, 3]
    for q, label in enumerate([2, 0, 3]):
        y = torch.nn.functional.one_hot(torch.tensor(label), 4)
        for i in range(3):
            torch.testing.assert_close(images[3 * q + i].double(), eqn2_by_hand(memory, y, i), rtol=1e-5, atol=1e-6)


def test_continuous_queries_match_eqn2_and_one_hot_queries_match_labels(memory):
    queries = torch.randn(2, 4)
    images, labels = memory(queries=queries)
    assert labels is None and images.shape == (6, 3, 8, 12)
    for q in range(2):
        for i in range(3):
            torch.testing.assert_close(images[3 * q + i].double(), eqn2_by_hand(memory, queries[q], i), rtol=1e-5, atol=1e-6)
    by_label = memory(labels=torch.tensor([1, 3])).images
    torch.testing.assert_close(memory(queries=torch.eye(4)[[1, 3]]).images, by_label)


def test_image_indices_pick_addressing_matrices(memory):
    full = memory(labels=torch.tensor([1, 2])).images.view(2, 3, 3, 8, 12)
    picked = memory(labels=torch.tensor([1, 2]), image_indices=torch.tensor([[2, 0], [1, 1]])).images.view(2, 2, 3, 8, 12)
    torch.testing.assert_close(picked[0], full[0, [2, 0]])
    torch.testing.assert_close(picked[1], full[1, [1, 1]])


def test_one_hot_memory_is_the_per_class_synthetic_set():
    cfg = AddressableMemoryConfig.for_budget((1, 6, 6), NAMES, ipc=2, downsample=1, addressing="one_hot")
    memory = AddressableMemory(cfg)
    assert memory.addressing is None and cfg.num_bases == 8
    images, labels = memory(labels=torch.arange(4))
    torch.testing.assert_close(images, memory.bases.detach())  # image i of class c is base c*r + i
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    y = torch.tensor([0.0, 1.0, 0.0, 0.5])
    torch.testing.assert_close(memory(queries=y[None]).images[1].double(), eqn2_by_hand(memory, y, 1))
    assert set(dict(memory.named_parameters())) == {"bases"}


def test_initialisation_is_xavier_uniform_on_the_authors_layout(memory):
    k, d = 5, 3 * 4 * 6
    assert memory.bases.abs().max() <= math.sqrt(6 / (k + d))
    assert memory.addressing.abs().max() <= math.sqrt(6 / (3 * 4 + k))
    assert memory.bases.std() > 0.3 * math.sqrt(6 / (k + d)) / math.sqrt(3)  # not left at zero


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(labels=torch.tensor([4])), r"\[0, 4\)"),
        (dict(labels=torch.tensor([-1])), r"\[0, 4\)"),
        (dict(labels=torch.tensor([0.0, 1.0])), "integer"),
        (dict(labels=torch.tensor([[0, 1]])), "1-D"),
        (dict(queries=torch.randn(2, 3)), r"\(N, 4\)"),
        (dict(queries=torch.ones(2, 4, dtype=torch.long)), "float"),
        (dict(labels=torch.tensor([0]), image_indices=torch.tensor([[3]])), r"\[0, 3\)"),
        (dict(), "exactly one"),
        (dict(labels=torch.tensor([0]), queries=torch.randn(1, 4)), "exactly one"),
    ],
)
def test_bad_queries_are_refused_by_name(memory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        memory(**kwargs)


def test_save_load_round_trip_is_bit_exact_and_auto_model_loads_it(memory, tmp_path):
    memory.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"model.safetensors", "config.json"}
    loaded = AddressableMemory.from_pretrained(tmp_path)
    auto = AutoModel.from_pretrained(tmp_path)
    assert type(auto) is AddressableMemory
    for other in (loaded, auto):
        assert torch.equal(other.bases, memory.bases) and torch.equal(other.addressing, memory.addressing)
        assert other.config.to_diff_dict() == memory.config.to_diff_dict()
    assert torch.equal(auto(labels=torch.arange(4)).images, memory(labels=torch.arange(4)).images)


def _saved(memory, path):
    memory.save_pretrained(path)
    return path


def test_missing_weights_file(memory, tmp_path):
    (_saved(memory, tmp_path) / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        AddressableMemory.from_pretrained(tmp_path)


def test_missing_config_file(memory, tmp_path):
    (_saved(memory, tmp_path) / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        AddressableMemory.from_pretrained(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_weights_file(memory, tmp_path, damage):
    weights = _saved(memory, tmp_path) / "model.safetensors"
    if damage == "garbage":
        weights.write_bytes(b"\x00not a safetensors file" * 8)
    else:
        weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt"):
        AddressableMemory.from_pretrained(tmp_path)


def test_config_weights_mismatch(memory, tmp_path):
    config_file = _saved(memory, tmp_path) / "config.json"
    config = json.loads(config_file.read_text())
    config["num_bases"] = 7
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"'bases' has shape \(5, 3, 4, 6\) but the config asks for \(7, 3, 4, 6\)"):
        AddressableMemory.from_pretrained(tmp_path)


def test_missing_and_unexpected_tensors(memory, tmp_path):
    weights = _saved(memory, tmp_path) / "model.safetensors"
    save_file({"bases": memory.bases.detach(), "extra": torch.zeros(2)}, weights, metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing tensor 'addressing'.*unexpected tensor 'extra'"):
        AddressableMemory.from_pretrained(tmp_path)


def test_invalid_config_file(memory, tmp_path):
    config_file = _saved(memory, tmp_path) / "config.json"
    config = json.loads(config_file.read_text())
    config["images_per_query"] = 0
    config_file.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="images_per_query"):
        AddressableMemory.from_pretrained(tmp_path)


def test_to_viewable_undoes_the_normalisation(memory):
    pixels = torch.rand(2, 3, 8, 12)
    mean = torch.tensor(memory.config.mean).view(1, 3, 1, 1)
    std = torch.tensor(memory.config.std).view(1, 3, 1, 1)
    torch.testing.assert_close(memory.to_viewable((pixels - mean) / std), pixels)
