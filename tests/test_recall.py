import numpy as np
import pytest
import torch
from datasets import Array3D, ClassLabel, Image

from hf_rtp import AddressableMemory, AddressableMemoryConfig

NAMES = ["cat", "dog", "emu"]


@pytest.fixture
def memory():
    cfg = AddressableMemoryConfig(
        image_shape=[3, 8, 8], class_names=NAMES, num_bases=4, images_per_query=5, downsample=2,
        mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3],
    )
    memory = AddressableMemory(cfg)
    with torch.no_grad():  # spread the pixels so the preview is not flat grey
        memory.bases.mul_(20)
    return memory


def test_recall_all_classes_gives_exact_pixels_and_class_labels(memory):
    ds = memory.recall()
    assert len(ds) == 3 * 5
    assert isinstance(ds.features["pixel_values"], Array3D) and ds.features["pixel_values"].dtype == "float32"
    assert ds.features["label"] == ClassLabel(names=NAMES)
    assert ds["label"][:] == [0] * 5 + [1] * 5 + [2] * 5
    assert ds["address"][:] == list(range(5)) * 3
    expected = memory(labels=torch.arange(3)).images.detach()
    got = ds.with_format("torch")["pixel_values"][:]
    assert got.dtype == torch.float32 and torch.equal(got, expected)


def test_recall_a_subset_by_ids_or_names(memory):
    by_name = memory.recall(classes=["emu", "cat"])
    by_id = memory.recall(classes=[2, 0])
    # the label convention of every recall: ids into the classes asked for, in the order asked
    assert by_name["label"][:] == [0] * 5 + [1] * 5 == by_id["label"][:]
    assert by_name.features["label"].names == ["emu", "cat"] == by_id.features["label"].names
    assert np.array_equal(np.asarray(by_name.with_format("numpy")["pixel_values"][:]), np.asarray(by_id.with_format("numpy")["pixel_values"][:]))
    with pytest.raises(ValueError, match="unknown class name 'fox'"):
        memory.recall(classes=["fox"])
    with pytest.raises(ValueError, match="out of range"):
        memory.recall(classes=[3])
    # numeric strings that name no class are ids (what a command line passes)
    assert memory.recall(classes=["2", "0"]).features["label"].names == ["emu", "cat"]
    for bad, message in (([], "asks for no class"), ([0, "cat"], "distinct")):
        with pytest.raises(ValueError, match=message):
            memory.recall(classes=bad)


def test_the_three_recall_paths_share_one_label_convention(memory):
    """memory.recall(classes), bank.recall(classes) and recall by pictures all name the classes asked for, in the
    order asked, and label ids index those names: mixing them cannot silently mislabel."""
    from hf_rtp import MemoryBank

    asked = ["emu", "cat"]
    by_memory = memory.recall(classes=asked)
    bank = MemoryBank()
    bank.add("task-a", memory)
    by_bank = bank.recall(classes=asked)
    for ds in (by_memory, by_bank):
        assert ds.features["label"].names == asked
        assert ds["label"][:] == [0] * 5 + [1] * 5
    np.testing.assert_array_equal(np.asarray(by_bank["pixel_values"]), np.asarray(by_memory["pixel_values"]))
    # pictures: the labels given, in order of first appearance (a shot folder gives them in sorted folder order)
    head = AddressableMemory(AddressableMemoryConfig(image_shape=[3, 8, 8], class_names=NAMES, num_bases=2, images_per_query=2,
                                                     downsample=2, query_encoder="test_resnet", query_dim=4))
    by_pictures = head.recall(images=torch.zeros(3, 3, 8, 8), labels=["emu", "cat", "emu"])
    assert by_pictures.features["label"].names == asked and by_pictures["label"][:] == [0, 0, 1, 1]


def test_recall_by_arbitrary_query_vectors(memory):
    queries = torch.tensor([[0.2, 0.8, 0.0], [1.0, -1.0, 0.5]])
    ds = memory.recall(queries=queries)
    assert "label" not in ds.column_names and len(ds) == 10
    assert ds["query_id"][:] == [0] * 5 + [1] * 5
    torch.testing.assert_close(ds.with_format("torch")["pixel_values"][:], memory(queries=queries).images.detach(), rtol=0, atol=0)
    labelled = memory.recall(queries=queries, query_labels=[1, 2])
    assert labelled["label"][:] == [1] * 5 + [2] * 5
    with pytest.raises(ValueError, match="one label per query"):
        memory.recall(queries=queries, query_labels=[1])


def test_preview_column_is_the_denormalised_image_stretched_to_full_contrast(memory):
    ds = memory.recall(preview=True)
    assert isinstance(ds.features["image"], Image)
    first = np.asarray(ds[0]["image"])
    assert first.dtype == np.uint8 and first.shape == (8, 8, 3)
    pixels = memory(labels=torch.tensor([0])).images[:1].detach() * torch.tensor(memory.config.std).view(1, -1, 1, 1)
    pixels = (pixels + torch.tensor(memory.config.mean).view(1, -1, 1, 1)).flatten()
    stretched = ((pixels - pixels.min()) / (pixels.max() - pixels.min())).view(1, 3, 8, 8)[0]
    expected = (stretched * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(first, expected)
    assert first.min() == 0 and first.max() == 255  # a person sees the image, however faint the memory made it


def test_grey_preview_is_a_two_dimensional_image():
    memory = AddressableMemory(AddressableMemoryConfig(image_shape=[1, 4, 4], class_names=["a", "b"], num_bases=2, images_per_query=1, mean=[0.1], std=[0.3]))
    assert np.asarray(memory.recall(preview=True)[0]["image"]).shape == (4, 4)


def test_recalled_dataset_feeds_a_dataloader(memory):
    loader = torch.utils.data.DataLoader(memory.recall(preview=True).with_format("torch", columns=["pixel_values", "label"]), batch_size=4, shuffle=True)
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (4, 3, 8, 8) and batch["label"].dtype == torch.int64


def test_recalled_dataset_feeds_the_hf_trainer(memory, tmp_path):
    from transformers import Trainer, TrainingArguments

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3 * 8 * 8, 3)

        def forward(self, pixel_values, labels=None):
            logits = self.linear(pixel_values.flatten(1))
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, report_to=[],
                             use_cpu=True, save_strategy="no", logging_strategy="no", disable_tqdm=True)
    result = Trainer(model=Classifier(), args=args, train_dataset=memory.recall().with_format("torch")).train()
    assert result.global_step == 3 and np.isfinite(result.training_loss)
