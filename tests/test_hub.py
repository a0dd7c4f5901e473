"""Hub round trips against the in-memory fake Hub (real HTTP client code, no network)."""

import io

import pyarrow.parquet as pq
import torch
import yaml
from datasets import ClassLabel, Dataset, Features, Image
from huggingface_hub import ModelCard
from PIL import Image as PILImage
from safetensors.torch import load as load_safetensors

from hf_rtp import AddressableMemory, AddressableMemoryConfig
from hf_rtp.data import load_train_test
from transformers import AutoModel


def small_memory():
    cfg = AddressableMemoryConfig.for_budget((1, 8, 8), [str(i) for i in range(4)], ipc=2, num_bases=4,
                                             mean=[0.3], std=[0.4], dataset_name="ylecun/mnist")
    return AddressableMemory(cfg)


def test_push_uploads_weights_config_card_and_picture(fake_hub):
    memory = small_memory()
    memory.config.evaluation = {
        "split": "test", "models": 3, "epochs": 5, "learner": "ConvNet-128",
        "accuracy": {"mean": 0.912, "std": 0.01, "runs": [0.9, 0.92, 0.916], "images": 28},
        "random_real": {"mean": 0.6, "std": 0.02, "runs": [0.6], "images": 8}, "random_real_images": 8,
    }
    url = memory.push_to_hub("user/mnist-ipc2")
    assert "user/mnist-ipc2" in url
    files = fake_hub.files("user/mnist-ipc2")
    assert {"model.safetensors", "config.json", "README.md", "recalled.png"} <= set(files)
    weights = load_safetensors(files["model.safetensors"])
    assert torch.equal(weights["bases"], memory.bases.detach()) and torch.equal(weights["addressing"], memory.addressing.detach())
    assert PILImage.open(io.BytesIO(files["recalled.png"])).size[0] > 50

    readme = files["README.md"].decode()
    metadata = yaml.safe_load(readme.split("---")[1])
    assert metadata["library_name"] == "hf_rtp" and "dataset-distillation" in metadata["tags"]
    assert metadata["datasets"] == ["ylecun/mnist"]
    result = metadata["model-index"][0]["results"][0]
    assert result["metrics"][0] == {"type": "accuracy", "value": 0.912, "name": "retrained accuracy"}
    assert result["dataset"]["split"] == "test"
    card = ModelCard(readme)
    assert card.data.eval_results[0].metric_value == 0.912
    for fact in ("91.20 +- 1.00%", "60.00 +- 2.00%", "| bases K | 4", "| addressing matrices r | 28", "stored floats | 512",
                 'AddressableMemory.from_pretrained("user/mnist-ipc2")'):
        assert fact in readme, fact


def test_unevaluated_card_says_so_and_has_no_model_index(fake_hub):
    small_memory().push_to_hub("user/fresh")
    readme = fake_hub.files("user/fresh")["README.md"].decode()
    assert "Not evaluated yet" in readme and "model-index" not in readme


def test_from_pretrained_by_hub_id_is_bit_exact(fake_hub):
    memory = small_memory()
    memory.push_to_hub("user/round-trip")
    loaded = AddressableMemory.from_pretrained("user/round-trip")
    auto = AutoModel.from_pretrained("user/round-trip")
    for other in (loaded, auto):
        assert torch.equal(other.bases, memory.bases) and torch.equal(other.addressing, memory.addressing)
        assert other.config.dataset_name == "ylecun/mnist"


def test_push_also_uploads_the_recalled_dataset(fake_hub):
    memory = small_memory()
    memory.push_to_hub("user/with-data", push_dataset=True)
    files = fake_hub.files("user/with-data-recalled", repo_type="dataset")
    shards = [p for p in files if p.endswith(".parquet")]
    assert shards, files.keys()
    table = pq.read_table(io.BytesIO(files[shards[0]]))
    assert table.num_rows == 4 * memory.config.images_per_query
    assert set(table.column_names) >= {"pixel_values", "label", "image"}
    readme = fake_hub.files("user/with-data")["README.md"].decode()
    assert "user/with-data-recalled" in yaml.safe_load(readme.split("---")[1])["datasets"]


def test_missing_hub_repo_is_a_clear_error(fake_hub):
    import pytest

    from hf_rtp import CheckpointError

    with pytest.raises(CheckpointError, match="cannot fetch config.json of user/nothing-here"):
        AddressableMemory.from_pretrained("user/nothing-here")


def test_dataset_adapter_loads_a_hub_id_with_the_repos_columns_and_splits(fake_hub, tmp_path):
    """uoft-cs/cifar10 served by the fake Hub as parquet with the real repo's columns (img, label) and splits."""
    features = Features({"img": Image(), "label": ClassLabel(names=["airplane", "automobile", "bird"])})
    for split, n in (("train", 12), ("test", 6)):
        pixels = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(n)).numpy()
        path = tmp_path / f"{split}.parquet"
        Dataset.from_dict({"img": list(pixels), "label": [i % 3 for i in range(n)]}, features=features).to_parquet(path)
        fake_hub.commit("uoft-cs/cifar10", {f"plain_text/{split}-00000-of-00001.parquet": path.read_bytes()}, repo_type="dataset")
    train, test = load_train_test("uoft-cs/cifar10", zca=False)
    assert train.images.shape == (12, 3, 32, 32) and len(test) == 6
    assert train.class_names == ["airplane", "automobile", "bird"]
    assert train.mean == [0.4914, 0.4822, 0.4465]  # the known CIFAR-10 statistics, not this toy's
    raw = train.images[0] * torch.tensor(train.std).view(3, 1, 1) + torch.tensor(train.mean).view(3, 1, 1)
    assert float(raw.min()) >= -1e-5 and float(raw.max()) <= 1 + 1e-5
    # by default CIFAR-10 is ZCA-whitened as in the paper (regulariser 0.1), test with the training split's W
    white_train, white_test = load_train_test("uoft-cs/cifar10")
    assert white_train.zca is not None and white_train.zca.regularization == 0.1 and white_test.zca is white_train.zca


def test_card_of_a_local_or_embedded_dataset_links_no_hub_dataset(fake_hub):
    memory = small_memory()
    memory.config.dataset_name = "digits"
    memory.push_to_hub("user/digits")
    readme = fake_hub.files("user/digits")["README.md"].decode()
    assert "huggingface.co/datasets" not in readme and "datasets:" not in readme.split("---")[1]


OUR_CARD = "An **addressable memory** distilled with `hf_rtp`"
PICTURES = {"recalled.png", "bases.png", "class_similarity.png"}


def assert_our_card_and_pictures(files: dict, repo_id: str) -> dict:
    readme = files["README.md"].decode()
    assert OUR_CARD in readme and f'AddressableMemory.from_pretrained("{repo_id}")' in readme
    assert PICTURES <= set(files), set(files)
    metadata = yaml.safe_load(readme.split("---")[1])
    assert metadata["license"] == "mit"  # ylecun/mnist's, carried by the memory distilled from it
    return metadata


def test_every_push_path_uploads_our_card_and_pictures(fake_hub, tmp_path, capsys):
    from hf_rtp.cli import main

    memory = small_memory()
    memory.push_to_hub("user/by-method")
    assert_our_card_and_pictures(fake_hub.files("user/by-method"), "user/by-method")
    # transformers' own route: save_pretrained(push_to_hub=True) (it would upload the generic transformers card)
    memory.save_pretrained(tmp_path / "local", push_to_hub=True, repo_id="user/by-save")
    assert_our_card_and_pictures(fake_hub.files("user/by-save"), "user/by-save")
    assert (tmp_path / "local" / "README.md").read_text().count(OUR_CARD) == 1
    main(["push", str(tmp_path / "local"), "user/by-cli"])
    assert_our_card_and_pictures(fake_hub.files("user/by-cli"), "user/by-cli")


def test_push_takes_transformers_keyword_arguments(fake_hub):
    memory = small_memory()
    memory.push_to_hub("user/kw", commit_message="my memory", commit_description="why", private=True, token="hf_fake",
                       tags=["mnist"])
    assert fake_hub.commits("user/kw")[0].title == "my memory"
    metadata = yaml.safe_load(fake_hub.files("user/kw")["README.md"].decode().split("---")[1])
    assert "mnist" in metadata["tags"] and "hf_rtp" in metadata["tags"]
    memory.push_to_hub("user/kw", revision="v2", commit_message="on a branch")
    assert fake_hub.commits("user/kw", revision="v2")[0].title == "on a branch"
    assert fake_hub.commits("user/kw")[0].title == "my memory"  # main untouched


def test_evaluate_push_to_hub_updates_the_hub_card(fake_hub, tmp_path, capsys):
    from hf_rtp.cli import main

    cfg = AddressableMemoryConfig.for_budget((1, 8, 8), [str(i) for i in range(10)], ipc=1, num_bases=4,
                                             mean=[0.3055], std=[0.3759], dataset_name="digits")
    AddressableMemory(cfg).push_to_hub("user/digits-mem")
    assert "Not evaluated yet" in fake_hub.files("user/digits-mem")["README.md"].decode()
    main(["evaluate", "user/digits-mem", "--models", "1", "--epochs", "2", "--width", "8", "--no-random-real",
          "--push-to-hub", "user/digits-mem", "--no-progress"])
    readme = fake_hub.files("user/digits-mem")["README.md"].decode()
    assert "Not evaluated yet" not in readme and "hf-rtp evaluate user/digits-mem --models 1 --epochs 2 --width 8" in readme


def test_recalled_dataset_card_explains_itself_and_links_back(fake_hub):
    memory = small_memory()
    memory.push_to_hub("user/with-card", push_dataset=True)
    files = fake_hub.files("user/with-card-recalled", repo_type="dataset")
    readme = files["README.md"].decode()
    metadata = yaml.safe_load(readme.split("---")[1])
    assert "dataset_info" in metadata or "configs" in metadata  # what datasets wrote is kept
    assert metadata["license"] == "mit" and metadata["source_datasets"] == ["ylecun/mnist"]
    for fact in ("Recalled from [user/with-card](https://huggingface.co/user/with-card)", "mean [0.3], std [0.4]",
                 'memory.load_split("test")'):
        assert fact in readme, fact
    from datasets import load_dataset

    loaded = load_dataset("user/with-card-recalled", split="train")
    assert len(loaded) == 4 * memory.config.images_per_query


def test_preprocess_puts_real_images_in_the_memory_pixel_space():
    memory = small_memory()
    uint8 = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    expected = (uint8.float() / 255 - 0.3) / 0.4
    torch.testing.assert_close(memory.preprocess(uint8)[:, 0], expected)
    pil = [PILImage.fromarray(im.numpy()) for im in uint8]
    torch.testing.assert_close(memory.preprocess(pil)[:, 0], expected)
    import pytest

    with pytest.raises(ValueError, match="3 channel.*grayscale"):
        memory.preprocess(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(1, 9, 9\) but this memory's are \(1, 8, 8\)"):
        memory.preprocess(torch.rand(2, 1, 9, 9))
