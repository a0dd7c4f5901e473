"""MemoryBank: many memories (one per task) saved, loaded, pushed and recalled as one dataset."""

import json

import numpy as np
import pytest
import torch

from hf_rtp import AddressableMemory, AddressableMemoryConfig, CheckpointError, MemoryBank


def memory(classes, seed=0, shape=(1, 8, 8), mean=(0.3,), **kwargs):
    torch.manual_seed(seed)
    config = AddressableMemoryConfig.for_budget(shape, list(classes), ipc=2, num_bases=4, mean=list(mean), std=[0.4],
                                                dataset_name="ylecun/mnist", **kwargs)
    return AddressableMemory(config).eval()


def disjoint_bank():
    bank = MemoryBank()
    bank.add("digits-01", memory(["0", "1"], seed=1), accuracy=0.99)
    bank.add("digits-23", memory(["2", "3"], seed=2), accuracy=0.95)
    bank.add("digits-45", memory(["4", "5"], seed=3, soft_labels=True))
    return bank


def test_recall_picks_the_memories_that_hold_the_classes_with_a_global_label():
    bank = disjoint_bank()
    data = bank.recall(classes=["3", "0"])
    assert data.features["label"].names == ["3", "0"]
    r = bank.memories["digits-01"].config.images_per_query
    assert len(data) == 2 * r and sorted(set(data["task"])) == ["digits-01", "digits-23"]
    pixels = torch.tensor(np.asarray(data["pixel_values"]))
    labels = torch.tensor(data["label"])
    with torch.no_grad():  # eqn 2 of each memory, class by class
        three = bank.memories["digits-23"](labels=torch.tensor([1])).images
        zero = bank.memories["digits-01"](labels=torch.tensor([0])).images
    assert torch.equal(pixels[labels == 0], three) and torch.equal(pixels[labels == 1], zero)
    assert "soft_label" not in data.column_names


def test_soft_labels_of_one_memory_are_spread_over_the_global_classes():
    data = disjoint_bank().recall(classes=["1", "5", "4"])
    soft = np.asarray(data["soft_label"])
    labels = np.asarray(data["label"])
    assert soft.shape == (len(data), 3) and np.allclose(soft.sum(1), 1, atol=1e-6)
    assert np.array_equal(soft.argmax(1), labels)  # each learned distribution starts on its own class
    ones = labels == 0  # class "1" comes from a memory without soft labels: one-hot
    assert np.array_equal(soft[ones], np.eye(3, dtype=np.float32)[labels[ones]])


def test_bad_requests_and_conflicting_tasks_are_clear():
    bank = disjoint_bank()
    with pytest.raises(ValueError, match="no memory in the bank holds class '7'"):
        bank.recall(classes=["0", "7"])
    with pytest.raises(ValueError, match="no task named 'nope'"):
        bank.recall(tasks=["nope"])
    with pytest.raises(ValueError, match="already held by task 'digits-23'"):
        bank.add("again", memory(["3", "9"]))
    with pytest.raises(ValueError, match="already holds a task named"):
        bank.add("digits-01", memory(["8", "9"]))
    with pytest.raises(ValueError, match="folder names"):
        bank.add("../escape", memory(["8", "9"]))
    with pytest.raises(ValueError, match="shape"):
        bank.add("big", memory(["8", "9"], shape=(1, 16, 16)))
    with pytest.raises(ValueError, match="pixel space"):
        bank.add("other-scale", memory(["8", "9"], mean=(0.5,)))
    with pytest.raises(ValueError, match="holds no memories"):
        MemoryBank().recall()


def test_shared_classes_recall_a_class_from_every_task():
    bank = MemoryBank(shared_classes=True)
    for t in range(3):
        bank.add(f"rotation-{t}", memory(["0", "1", "2"], seed=t))
    data = bank.recall(classes=["2"])
    r = bank.memories["rotation-0"].config.images_per_query
    assert len(data) == 3 * r and set(data["label"]) == {0}
    assert len(bank.recall(tasks=["rotation-1"])) == 3 * r
    assert bank.recall().features["label"].names == ["0", "1", "2"]


def test_round_trip_through_a_folder_and_the_fake_hub_is_bit_exact(tmp_path, fake_hub):
    bank = disjoint_bank()
    bank.save_pretrained(tmp_path / "bank")
    index = json.loads((tmp_path / "bank" / "bank.json").read_text())
    assert [t["name"] for t in index["tasks"]] == bank.tasks and index["storage_floats"] == bank.storage_floats()
    card = (tmp_path / "bank" / "README.md").read_text()
    assert "| digits-01 | 0, 1 |" in card and "99.00%" in card and "| digits-45 | 4, 5 | 249 | - |" in card
    bank.push_to_hub("user/mnist-bank")
    assert 'MemoryBank.from_pretrained("user/mnist-bank")' in fake_hub.files("user/mnist-bank")["README.md"].decode()
    assert "digits-23/model.safetensors" in fake_hub.files("user/mnist-bank")
    expected = bank.recall()
    for source in (tmp_path / "bank", "user/mnist-bank"):
        loaded = MemoryBank.from_pretrained(source)
        assert loaded.tasks == bank.tasks and loaded.accuracy == bank.accuracy
        for task in bank.tasks:
            for name, tensor in bank.memories[task].state_dict().items():
                assert torch.equal(tensor, loaded.memories[task].state_dict()[name]), (task, name)
        again = loaded.recall()
        assert again.features == expected.features
        assert np.array_equal(np.asarray(again["pixel_values"]), np.asarray(expected["pixel_values"]))
        assert again["label"] == expected["label"] and again["task"] == expected["task"]


def test_a_bank_saved_without_pictures_holds_the_same_memories_and_a_card_that_names_none(tmp_path):
    bank = disjoint_bank()
    bank.save_pretrained(tmp_path / "bank", pictures=False)
    assert not list((tmp_path / "bank").rglob("*.png"))
    card = (tmp_path / "bank" / "digits-01" / "README.md").read_text()
    assert ".png" not in card
    loaded = MemoryBank.from_pretrained(tmp_path / "bank")
    for task in bank.tasks:
        for name, tensor in bank.memories[task].state_dict().items():
            assert torch.equal(tensor, loaded.memories[task].state_dict()[name]), (task, name)


def test_a_damaged_bank_is_refused(tmp_path):
    bank = disjoint_bank()
    folder = bank.save_pretrained(tmp_path / "bank")
    with pytest.raises(CheckpointError, match="holds no bank.json"):
        MemoryBank.from_pretrained(tmp_path)
    index = json.loads((folder / "bank.json").read_text())
    index["tasks"][0]["class_names"] = ["0", "9"]
    (folder / "bank.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="holds \\['0', '9'\\], its memory holds \\['0', '1'\\]"):
        MemoryBank.from_pretrained(folder)
    index["tasks"][0]["subfolder"] = "digits-99"
    (folder / "bank.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="digits-99 holds no config.json"):
        MemoryBank.from_pretrained(folder)
    index["tasks"][0]["subfolder"] = "../x"
    (folder / "bank.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="unsafe subfolder"):
        MemoryBank.from_pretrained(folder)
    index = bank.index()  # a sound index again, then a recipe that is no object
    index["recipe"] = ["lr", 0.05]
    (folder / "bank.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="'recipe' must be the retraining settings \\(an object\\), got list"):
        MemoryBank.from_pretrained(folder)


def test_repr_preview_and_empty_requests():
    bank = disjoint_bank()
    text = repr(bank)
    assert text.startswith("MemoryBank(3 tasks ['digits-01', 'digits-23', 'digits-45'], 6 classes (disjoint classes)")
    shown = bank.recall(classes=["5", "2"], preview=True)
    assert shown.features["image"].__class__.__name__ == "Image" and len(shown["image"]) == len(shown)
    assert shown.features["label"].names == ["5", "2"]
    for kwargs, message in (({"classes": []}, "asks for no class"), ({"tasks": []}, "asks for no task")):
        with pytest.raises(ValueError, match=message):
            bank.recall(**kwargs)


def test_saving_over_a_bank_removes_the_task_folders_it_no_longer_lists(tmp_path):
    disjoint_bank().save_pretrained(tmp_path / "bank", pictures=False)
    (tmp_path / "bank" / "notes").mkdir()  # not a task of the old index: left alone
    smaller = MemoryBank()
    smaller.add("digits-01", memory(["0", "1"], seed=1))
    smaller.save_pretrained(tmp_path / "bank", pictures=False)
    assert sorted(p.name for p in (tmp_path / "bank").iterdir() if p.is_dir()) == ["digits-01", "notes"]
    assert MemoryBank.from_pretrained(tmp_path / "bank").tasks == ["digits-01"]
