import pytest

import hf_rtp  # noqa: F401  (registers the Auto classes)
from hf_rtp import AddressableMemoryConfig, BudgetError
from transformers import AutoConfig

DIGITS = [str(i) for i in range(10)]


@pytest.mark.parametrize(
    "shape, classes, k, expected_r",
    [((3, 32, 32), 10, 16, 115), ((1, 28, 28), 10, 16, 29), ((3, 32, 32), 100, 16, 184), ((3, 32, 32), 10, 32, 19)],
)
def test_budget_examples_from_the_paper(shape, classes, k, expected_r):
    cfg = AddressableMemoryConfig.for_budget(shape, [f"c{i}" for i in range(classes)], ipc=1, num_bases=k, downsample=2)
    assert cfg.images_per_query == expected_r


def test_storage_floats_is_what_eqn4_counts_and_fits_the_budget():
    cfg = AddressableMemoryConfig.for_budget((3, 32, 32), DIGITS, ipc=1, num_bases=16, downsample=2)
    assert cfg.storage_floats() == 16 * 3 * 16 * 16 + 115 * 10 * 16
    assert cfg.storage_floats() <= 1 * 3 * 32 * 32 * 10
    # one more addressing matrix would not fit
    assert cfg.storage_floats() + 10 * 16 > 3 * 32 * 32 * 10


def test_budget_too_small_for_the_bases_names_the_problem():
    with pytest.raises(BudgetError, match="64 bases"):
        AddressableMemoryConfig.for_budget((3, 32, 32), DIGITS, ipc=1, num_bases=64, downsample=2)
    with pytest.raises(BudgetError, match="16 bases of 3x32x32"):
        AddressableMemoryConfig.for_budget((3, 32, 32), DIGITS, ipc=1, num_bases=16, downsample=1)
    with pytest.raises(BudgetError, match="positive"):
        AddressableMemoryConfig.for_budget((3, 32, 32), DIGITS, ipc=0)


def test_per_class_set_is_the_one_hot_special_case():
    cfg = AddressableMemoryConfig.for_budget((1, 28, 28), DIGITS, ipc=1, downsample=1, addressing="one_hot")
    assert (cfg.images_per_query, cfg.num_bases, cfg.storage_floats()) == (1, 10, 10 * 28 * 28)
    # downsampling by 2 stores 4 quarter-size images per class in the same budget (Table 2, "+ downsampling")
    cfg = AddressableMemoryConfig.for_budget((1, 28, 28), DIGITS, ipc=1, downsample=2, addressing="one_hot")
    assert (cfg.images_per_query, cfg.num_bases, cfg.storage_floats()) == (4, 40, 10 * 28 * 28)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_bases=0), "num_bases"),
        (dict(num_bases=-3), "num_bases"),
        (dict(images_per_query=0), "images_per_query"),
        (dict(num_bases="16"), "num_bases must be an int"),
        (dict(image_shape=[3, 32]), "image_shape"),
        (dict(downsample=3), "downsample"),
        (dict(mean=[0.5], std=[0.5]), "one value per channel"),
        (dict(std=[1.0, 0.0, 1.0]), "std must be positive"),
        (dict(class_names=["a", "a"]), "unique"),
        (dict(addressing="one_hot", num_bases=7), "one_hot"),
    ],
)
def test_bad_config_values_are_refused_by_name(kwargs, message):
    with pytest.raises(Exception, match=message):
        AddressableMemoryConfig(**kwargs)


def test_config_round_trip_and_auto_config(tmp_path):
    cfg = AddressableMemoryConfig.for_budget(
        (1, 28, 28), DIGITS, ipc=1, mean=[0.1307], std=[0.3081], dataset_name="ylecun/mnist"
    )
    cfg.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is AddressableMemoryConfig
    assert loaded.to_diff_dict() == cfg.to_diff_dict()
    assert loaded.id2label[3] == "3" and loaded.query_dim == 10


def test_budget_with_continuous_queries_counts_their_length():
    cfg = AddressableMemoryConfig.for_budget((1, 8, 8), ["a", "b"], ipc=2, num_bases=2, query_dim=5)
    assert cfg.images_per_query == (2 * 64 * 2 - 2 * 16) // (5 * 2)
    assert cfg.storage_floats() <= 2 * 64 * 2
