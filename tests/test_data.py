import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image, Value

from hf_rtp.data import (
    DIGITS,
    DataConfig,
    ImageClassificationData,
    channel_stats,
    detect_columns,
    load_image_dataset,
    load_train_test,
)


def write_hub_like_repo(root, image_column="img", label_column="label", extra=None, channels=3, size=8, splits=("train", "test"), n=24, classes=4):
    """A local folder laid out like a Hub parquet repo: data/<split>-00000-of-00001.parquet."""
    rng = np.random.default_rng(0)
    features = {image_column: Image(), label_column: ClassLabel(names=[f"class{i}" for i in range(classes)])}
    features.update(extra or {})
    (root / "data").mkdir(parents=True, exist_ok=True)
    for split in splits:
        shape = (n, size, size, channels) if channels == 3 else (n, size, size)
        pixels = rng.integers(0, 256, shape, dtype=np.uint8)
        columns = {image_column: list(pixels), label_column: np.arange(n) % classes}
        for name in extra or {}:
            columns[name] = np.arange(n) % 2
        Dataset.from_dict(columns, features=Features(features)).to_parquet(root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def test_embedded_digits_load_offline():
    train, test = load_train_test(DIGITS)
    assert train.images.shape[1:] == (1, 8, 8) and len(train) + len(test) == 1797
    assert train.class_names == [str(i) for i in range(10)]
    assert abs(float(train.images.mean())) < 0.01 and abs(float(train.images.std()) - 1) < 0.01
    assert test.mean == train.mean


def test_local_mnist_parquet_like_ylecun_mnist(mnist_dir):
    test = load_image_dataset(str(mnist_dir), split="test", mean=[0.1307], std=[0.3081])
    assert test.images.shape == (10000, 1, 28, 28) and test.class_names == [str(i) for i in range(10)]
    assert torch.bincount(test.labels).tolist()[:3] == [980, 1135, 1032]
    raw = test.images * 0.3081 + 0.1307
    assert float(raw.min()) >= -1e-6 and float(raw.max()) <= 1 + 1e-6


def test_cifar10_layout_detects_img_column_and_computes_stats(tmp_path):
    repo = write_hub_like_repo(tmp_path / "cifar10")
    train, test = load_train_test(str(repo))
    assert train.images.shape == (24, 3, 8, 8) and train.class_names == ["class0", "class1", "class2", "class3"]
    assert len(train.mean) == 3 and torch.allclose(train.images.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert test.mean == train.mean


def test_cifar100_layout_prefers_the_known_fine_label_column(tmp_path):
    repo = write_hub_like_repo(tmp_path / "cifar100", label_column="fine_label",
                               extra={"coarse_label": ClassLabel(names=["a", "b"])})
    dataset = DatasetDict.from_parquet({"train": str(repo / "data" / "train-00000-of-00001.parquet")})["train"]
    assert detect_columns(dataset, "uoft-cs/cifar100") == ("img", "fine_label")
    assert detect_columns(dataset, str(repo)) == ("img", "fine_label")  # by name, among two ClassLabels
    assert load_image_dataset(str(repo)).num_classes == 4


def test_two_unnamed_label_columns_are_ambiguous(tmp_path):
    repo = write_hub_like_repo(tmp_path / "taxa", label_column="species", extra={"genus": ClassLabel(names=["a", "b"])})
    with pytest.raises(ValueError, match="cannot tell which column .* labels .*species: ClassLabel, genus: ClassLabel"):
        load_image_dataset(str(repo))
    assert load_image_dataset(str(repo), label_column="genus").class_names == ["a", "b"]


def test_tiny_imagenet_layout_uses_the_valid_split(tmp_path):
    repo = write_hub_like_repo(tmp_path / "tiny", image_column="image", splits=("train", "valid"))
    with pytest.raises(ValueError, match=r"no split 'test'; it has \['train', 'valid'\]"):
        load_train_test(str(repo))
    train, valid = load_train_test(str(repo), test_split="valid")
    assert len(valid) == 24


def test_undetectable_columns_name_what_was_found(tmp_path):
    features = Features({"foo": Value("int64"), "bar": Value("string")})
    Dataset.from_dict({"foo": [1, 2], "bar": ["a", "b"]}, features=features).save_to_disk(str(tmp_path / "weird"))
    with pytest.raises(ValueError, match=r"holds the images .*columns: foo: Value, bar: Value.*image_column="):
        load_image_dataset(str(tmp_path / "weird"))
    with pytest.raises(ValueError, match="no column 'pixels'"):
        load_image_dataset(str(tmp_path / "weird"), image_column="pixels", label_column="foo")


def test_string_labels_become_sorted_class_names(tmp_path):
    pixels = np.zeros((4, 4, 4), np.uint8)
    Dataset.from_dict({"image": list(pixels), "label": ["zebra", "ant", "zebra", "bee"]},
                      features=Features({"image": Image(), "label": Value("string")})).save_to_disk(str(tmp_path / "s"))
    data = load_image_dataset(str(tmp_path / "s"), mean=[0.0], std=[1.0])
    assert data.class_names == ["ant", "bee", "zebra"] and data.labels.tolist() == [2, 0, 2, 1]


def test_mixed_grey_and_colour_images_are_converted_to_one_mode(tmp_path):
    grey = np.full((4, 4), 200, np.uint8)
    colour = np.zeros((4, 4, 3), np.uint8)
    Dataset.from_dict({"image": [colour, grey], "label": [0, 1]},
                      features=Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})).save_to_disk(str(tmp_path / "m"))
    data = load_image_dataset(str(tmp_path / "m"), mean=[0, 0, 0], std=[1, 1, 1])
    assert data.images.shape == (2, 3, 4, 4) and torch.allclose(data.images[1], torch.full((3, 4, 4), 200 / 255))


def test_unknown_local_path_and_bad_split_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="cannot load dataset"):
        load_image_dataset(str(tmp_path / "does-not-exist"))
    with pytest.raises(ValueError, match="no split 'validation'"):
        load_image_dataset(DIGITS, split="validation")


def test_validation_split_is_stratified_disjoint_and_seeded():
    labels = torch.arange(200) % 4
    data = ImageClassificationData(images=torch.arange(200.0).view(200, 1, 1, 1), labels=labels,
                                   class_names=list("abcd"), mean=[0.0], std=[1.0], name="toy", split="train")
    fit, held = data.split_validation(0.1, seed=3)
    assert torch.bincount(held.labels).tolist() == [5, 5, 5, 5]  # 10% of every class
    ids_fit, ids_held = set(fit.images.flatten().tolist()), set(held.images.flatten().tolist())
    assert not ids_fit & ids_held and len(ids_fit | ids_held) == 200
    assert torch.equal(held.images, data.split_validation(0.1, seed=3)[1].images)
    assert not torch.equal(held.images, data.split_validation(0.1, seed=4)[1].images)
    assert held.split == "train[validation]"
    with pytest.raises(ValueError, match="fraction"):
        data.split_validation(1.5)


def test_class_balanced_sampling():
    train, _ = load_train_test(DIGITS)
    g = torch.Generator().manual_seed(0)
    images, labels = train.sample([7, 2], per_class=5, generator=g)
    assert labels.tolist() == [7] * 5 + [2] * 5 and images.shape == (10, 1, 8, 8)
    for image, label in zip(images, labels):  # each sampled image really belongs to its class
        assert any(torch.equal(image, x) for x in train.images[train.per_class_indices()[label]])


def test_channel_stats_of_uint8_pixels():
    pixels = np.stack([np.zeros((1, 2, 2), np.uint8), np.full((1, 2, 2), 255, np.uint8)])
    assert channel_stats(pixels) == ([0.5], [0.5])


def test_max_samples_keeps_images_and_labels_together():
    first = load_image_dataset(DIGITS, max_samples=30)
    full = load_image_dataset(DIGITS)
    assert len(first) == 30 and torch.equal(first.labels, full.labels[:30]) and torch.equal(first.images, full.images[:30])


def test_data_config_classes_keeps_a_named_subset_and_refuses_bad_names():
    train, test = DataConfig(classes="3, 7,1").load()
    assert train.class_names == test.class_names == ["3", "7", "1"]
    full, _ = DataConfig().load()
    assert len(train) == sum(int((full.labels == full.class_names.index(c)).sum()) for c in ["3", "7", "1"])
    assert torch.equal(train.images[train.labels == 1][0], full.images[full.labels == 7][0])  # relabelled in the order given
    assert train.source["classes"] == "3, 7,1"  # recorded, so a resumed run or a card's command keeps it
    for bad in ["3", "3,3", "3,,4"]:
        with pytest.raises(ValueError, match="at least 2 distinct"):
            DataConfig(classes=bad)
    with pytest.raises(ValueError, match="no class named 'eleven'"):
        DataConfig(classes="1,eleven").load()
