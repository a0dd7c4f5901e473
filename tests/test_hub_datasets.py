"""The six benchmark datasets by Hub id, served by the fake Hub with each repo's file layout, columns and splits."""

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Image

from hf_rtp.data import load_train_test

# (Hub id, folder of its parquet shards, image column, label column(s), splits, image shape HWC, README configs)
REPOS = [
    ("ylecun/mnist", "mnist", "image", ["label"], ("train", "test"), (28, 28), None),
    ("zalando-datasets/fashion_mnist", "fashion_mnist", "image", ["label"], ("train", "test"), (28, 28), None),
    ("uoft-cs/cifar10", "plain_text", "img", ["label"], ("train", "test"), (32, 32, 3), None),
    ("uoft-cs/cifar100", "cifar100", "img", ["fine_label", "coarse_label"], ("train", "test"), (32, 32, 3), None),
    ("ufldl-stanford/svhn", "cropped_digits", "image", ["label"], ("train", "test", "extra"), (32, 32, 3), "cropped_digits"),
    ("zh-plus/tiny-imagenet", "data", "image", ["label"], ("train", "valid"), (64, 64, 3), None),
]


def publish(fake_hub, tmp_path, repo, folder, image_column, label_columns, splits, shape, config):
    rng = np.random.default_rng(0)
    features = {image_column: Image()}
    for i, column in enumerate(label_columns):
        features[column] = ClassLabel(names=[f"{column}{k}" for k in range(3 - i)])
    files = {}
    for split in splits:
        n = 6
        columns = {image_column: list(rng.integers(0, 256, (n, *shape), dtype=np.uint8))}
        for i, column in enumerate(label_columns):
            columns[column] = np.arange(n) % (3 - i)
        path = tmp_path / f"{split}.parquet"
        Dataset.from_dict(columns, features=Features(features)).to_parquet(path)
        files[f"{folder}/{split}-00000-of-00001.parquet"] = path.read_bytes()
    if config:  # repos with several configs declare them in the card, as SVHN does (cropped_digits, full_numbers)
        data_files = "".join(f"  - split: {s}\n    path: {folder}/{s}-*\n" for s in splits)
        files["README.md"] = f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{data_files}---\n".encode()
    fake_hub.commit(repo, files, repo_type="dataset")


@pytest.mark.parametrize("repo, folder, image_column, label_columns, splits, shape, config", REPOS, ids=[r[0] for r in REPOS])
def test_benchmark_hub_ids_load_with_their_columns_and_splits(fake_hub, tmp_path, repo, folder, image_column, label_columns,
                                                                splits, shape, config):
    publish(fake_hub, tmp_path, repo, folder, image_column, label_columns, splits, shape, config)
    train, test = load_train_test(repo, zca=False)
    channels = 1 if len(shape) == 2 else 3
    assert train.images.shape == (6, channels, shape[0], shape[1]) and len(test) == 6
    assert train.class_names == [f"{label_columns[0]}{k}" for k in range(3)]  # fine_label, not coarse_label
    assert test.split == ("valid" if repo == "zh-plus/tiny-imagenet" else "test")
