"""Hostile inputs found by an outside battery: each is refused with one line that names the problem, or handled."""

import json
import os
import socket
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, Image
from safetensors.torch import load_file, save_file
from transformers import AutoModel

import hf_rtp  # noqa: F401  (registers the Auto classes)
from hf_rtp import AddressableMemory, AddressableMemoryConfig, CheckpointError
from hf_rtp.configuration_memory import BudgetError, MemoryOptions
from hf_rtp.data import DataConfig, load_image_dataset
from hf_rtp.distill import Distiller
from hf_rtp.pipeline import distill_memory
from hf_rtp.run_dir import FRESH_LOCK_SECONDS, RunDirectory, RunLockedError
from hf_rtp.session import RunSession, run_settings
from tests.helpers import fresh_memory, tiny


@pytest.fixture(scope="module")
def digits():
    return load_image_dataset("digits")


def rgb_memory() -> AddressableMemory:
    config = AddressableMemoryConfig.for_budget((3, 8, 8), ["a", "b"], ipc=2, num_bases=2, mean=[0.5, 0.4, 0.3],
                                                std=[0.2, 0.25, 0.3])
    return AddressableMemory(config)


# ---- 1. AutoModel runs the checks of AddressableMemory.from_pretrained -------------------------------------------------


def test_auto_model_refuses_a_config_that_does_not_state_mean_and_std(tmp_path):
    rgb_memory().save_pretrained(tmp_path, pictures=False)
    stated = json.loads((tmp_path / "config.json").read_text())
    del stated["mean"], stated["std"]
    (tmp_path / "config.json").write_text(json.dumps(stated))
    for load in (AddressableMemory.from_pretrained, AutoModel.from_pretrained):  # not mean 0, std 1 by default
        with pytest.raises(CheckpointError, match=r"config.json does not state \['mean', 'std'\]"):
            load(tmp_path)


# ---- 2. the weights checked are the weights loaded -------------------------------------------------------------------


def test_pickled_weights_read_with_use_safetensors_false_are_checked(tmp_path):
    memory = rgb_memory()
    memory.save_pretrained(tmp_path, pictures=False)  # a valid model.safetensors beside the .bin
    good = {k: v.clone() for k, v in memory.state_dict().items()}
    torch.save(good, tmp_path / "pytorch_model.bin")
    assert torch.equal(AddressableMemory.from_pretrained(tmp_path, use_safetensors=False).bases, memory.bases)
    bad = {"bases": torch.full_like(good["bases"], float("nan")), "addressing": good["addressing"].round().long()}
    torch.save(bad, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin cannot be loaded: tensor 'addressing' holds int64 "
                                              r"values, not floats; tensor 'bases' has non-finite values"):
        AddressableMemory.from_pretrained(tmp_path, use_safetensors=False)
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="pytorch_model.bin is corrupt or not a PyTorch weights file"):
        AddressableMemory.from_pretrained(tmp_path, use_safetensors=False)
    (tmp_path / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="holds no pytorch_model.bin, the only weights use_safetensors=False reads"):
        AddressableMemory.from_pretrained(tmp_path, use_safetensors=False)


# ---- 3. sizes that are not positive integers are named as such, not as a budget ----------------------------------------


def test_sizes_that_are_not_positive_integers_are_named_not_blamed_on_the_budget():
    for kwargs, message in ((dict(query_dim=-4), "query_dim must be a positive integer, got -4"),
                            (dict(query_dim=0), "query_dim must be a positive integer, got 0"),
                            (dict(num_bases=-2), "num_bases must be a positive integer, got -2"),
                            (dict(downsample=-2), "downsample must be a positive integer, got -2"),
                            (dict(image_shape=(-1, 8, 8)), r"image_shape must be \(C, H, W\) of positive integers"),
                            (dict(image_shape=(3, 0, 8)), r"image_shape must be \(C, H, W\) of positive integers")):
        arguments = {"image_shape": (1, 8, 8), "class_names": ["a", "b"], "ipc": 2, **kwargs}
        with pytest.raises(ValueError, match=message) as error:
            AddressableMemoryConfig.for_budget(**arguments)
        assert not isinstance(error.value, BudgetError), kwargs
    with pytest.raises(Exception, match="query_dim must be a positive integer, got -4"):
        AddressableMemoryConfig(query_dim=-4)
    with pytest.raises(ValueError, match="query_dim must be a positive integer, got -4"):
        MemoryOptions(query_encoder="resnet10t", query_dim=-4)


# ---- 4. a query encoder that cannot take the memory's images is refused when the memory is built -----------------------


def test_a_query_encoder_that_cannot_take_the_image_size_is_refused_at_construction():
    def config(name, shape, **kwargs):
        return AddressableMemoryConfig(image_shape=list(shape), class_names=["a", "b"], num_bases=2, images_per_query=1,
                                       downsample=1, query_dim=4, mean=[0.0] * shape[0], std=[1.0] * shape[0],
                                       query_encoder=name, **kwargs)

    # a ViT built for 224 px, and a network whose 4x4 stem is larger than the image
    for name, shape, reason in (("vit_tiny_patch16_224", (3, 32, 32), r"Input height \(32\) doesn't match model \(224\)"),
                                ("convnext_atto", (1, 2, 2), r"Calculated padded input size .*Kernel size can.t be greater")):
        with pytest.raises(ValueError, match=rf"query_encoder '{name}' cannot take images of shape "
                                             rf"\({shape[0]}, {shape[1]}, {shape[2]}\): {reason}"):
            AddressableMemory(config(name, shape))
    # the same ViT told the image size takes them
    memory = AddressableMemory(config("vit_tiny_patch16_224", (3, 32, 32),
                                      query_encoder_kwargs={"img_size": 32, "patch_size": 8}))
    assert memory.image_queries(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    # a head layer after the pooling (MobileNetV3): the projection takes what the encoder gives, not num_features
    memory = AddressableMemory(config("mobilenetv3_small_050", (3, 32, 32)))
    assert memory.image_queries(torch.zeros(2, 3, 32, 32)).shape == (2, 4)


# ---- 5. an empty split is named -------------------------------------------------------------------------------------


def _split(rows: int) -> Dataset:
    features = Features({"image": Image(), "label": ClassLabel(names=["a", "b"])})
    images = [np.zeros((8, 8), np.uint8) for _ in range(rows)]
    return Dataset.from_dict({"image": images, "label": [i % 2 for i in range(rows)]}, features=features)


def test_an_empty_train_split_is_named_with_its_dataset(tmp_path):
    saved = tmp_path / "saved"
    DatasetDict(train=_split(0), test=_split(4)).save_to_disk(str(saved))
    parquet = tmp_path / "parquet" / "data"
    parquet.mkdir(parents=True)
    _split(0).to_parquet(str(parquet / "train-00000-of-00001.parquet"))
    _split(4).to_parquet(str(parquet / "test-00000-of-00001.parquet"))
    for folder in (saved, parquet.parent):
        with pytest.raises(ValueError, match=rf"the train split of {folder} is empty \(0 rows\)"):
            DataConfig(dataset=str(folder)).load()


# ---- 6. float pixels of 0..255 are refused where raw images come in ------------------------------------------------


def test_float_pixels_of_0_to_255_are_refused_by_preprocess():
    memory = rgb_memory()
    pixels = torch.rand(2, 3, 8, 8)
    assert memory.preprocess(pixels).shape == (2, 3, 8, 8)  # [0, 1] floats: fine
    with pytest.raises(ValueError, match=r"float pixels must be in \[0, 1\]; these reach 2\d\d\.\d+: divide by 255 "
                                         r"or pass uint8"):
        memory.preprocess(pixels * 255)
    with pytest.raises(ValueError, match=r"float pixels must be in \[0, 1\]"):
        memory.preprocess((pixels * 255).permute(0, 2, 3, 1).numpy().astype(np.float64))  # channels last, numpy
    assert memory.preprocess((pixels * 255).to(torch.uint8)).shape == (2, 3, 8, 8)  # uint8: fine


# ---- 7. a garbage lock file is judged by its age, never an int() error -------------------------------------------------


@pytest.mark.parametrize("content", [b"abc", b"\x00\xff\xfe binary", b"123",
                                     json.dumps({"pid": "abc", "host": socket.gethostname()}).encode()])
def test_a_garbage_lock_is_live_while_fresh_and_taken_over_once_old(tmp_path, content):
    run = RunDirectory(tmp_path)
    run.lock_path.write_bytes(content)
    with pytest.raises(RunLockedError, match=rf"its lock file {run.lock_path} is .* old and not yet written, or unreadable"):
        run.acquire()
    old = time.time() - 10 * FRESH_LOCK_SECONDS
    os.utime(run.lock_path, (old, old))
    run.check_unlocked()  # stale: no error
    with pytest.warns(UserWarning, match=rf"taking over the lock of .*: its lock file {run.lock_path} names no process"):
        run.acquire()
    assert json.loads(run.lock_path.read_text())["pid"] == os.getpid()
    run.release()
    assert not run.lock_path.exists()


# ---- 8. a checkpoint of the wrong shape is broken like any other ------------------------------------------------------


def test_a_checkpoint_whose_bases_have_the_wrong_shape_falls_back_to_the_previous_one(digits, tmp_path):
    distill_memory(tiny(tmp_path, steps=2, checkpoint_every=1, eval_every=0, final_models=0), fresh_memory(digits), digits)
    newest = RunDirectory(tmp_path).checkpoints()[-1] / "memory.safetensors"
    tensors = load_file(newest)
    shape = tuple(tensors["bases"].shape)
    tensors["bases"] = tensors["bases"][:, :, :2, :2].contiguous()
    save_file(tensors, newest)
    wrong = (shape[0], shape[1], 2, 2)
    with pytest.warns(UserWarning, match=rf"resuming from step-0000001; skipped a broken newer checkpoint: step-0000002: "
                                         rf"its memory does not fit this run's memory: 'bases' has shape "
                                         rf"\({', '.join(map(str, wrong))}\), not \({', '.join(map(str, shape))}\)"):
        distiller = Distiller(tiny(tmp_path, steps=3, checkpoint_every=1, eval_every=0, final_models=0, resume=True),
                              fresh_memory(digits), digits)
        distiller.prepare()
    assert distiller.step == 1
    distiller._release()


# ---- 9. after a divergence, a resume may lower the learning rate ------------------------------------------------------


def test_a_resume_may_lower_the_learning_rate_and_the_divergence_advice_says_so(digits, tmp_path):
    accelerator = SimpleNamespace(is_main_process=True)
    memory = fresh_memory(digits)
    saved = run_settings(tiny(tmp_path, lr=0.05), memory, digits)
    saved.pop("tensors", None)  # what settings.json holds
    session = RunSession(tiny(tmp_path, resume=True, lr=0.025), run_settings(tiny(tmp_path, resume=True, lr=0.025),
                                                                             memory, digits), accelerator)
    assert session.check_resumable(saved) == {"lr": [0.05, 0.025]}
    raised = RunSession(tiny(tmp_path, resume=True, lr=0.1), run_settings(tiny(tmp_path, lr=0.1), memory, digits), accelerator)
    with pytest.raises(ValueError, match="may lower its learning rates, not raise them.*lr 0.05 then, 0.1 now"):
        raised.check_resumable(saved)
    other = fresh_memory(digits, num_bases=4)
    with pytest.raises(ValueError, match="different memory layout"):
        RunSession(tiny(tmp_path, resume=True, lr=0.025), run_settings(tiny(tmp_path, lr=0.025), other, digits),
                   accelerator).check_resumable(saved)
    with pytest.raises(ValueError, match=r"different settings would not continue the same run: \['unroll_steps'\]"):
        RunSession(tiny(tmp_path, resume=True, lr=0.025, unroll_steps=5),
                   run_settings(tiny(tmp_path, lr=0.025, unroll_steps=5), memory, digits), accelerator).check_resumable(saved)

    # the whole way: a run, the advice its divergence would give, and the resume that follows it
    run_dir = tmp_path / "run"
    distill_memory(tiny(run_dir, steps=2, checkpoint_every=1, eval_every=0, final_models=0, lr=0.05), fresh_memory(digits),
                   digits)
    advice = RunSession(tiny(run_dir, lr=0.05), run_settings(tiny(run_dir, lr=0.05), memory, digits),
                        accelerator).divergence(3, "the outer loss is nan")
    assert "resume with a lower learning rate: --resume --lr 0.025" in advice
    assert "the last good checkpoint, step-0000002" in advice
    distiller = Distiller(tiny(run_dir, steps=3, checkpoint_every=1, eval_every=0, final_models=0, lr=0.025, resume=True),
                          fresh_memory(digits), digits)
    distiller.prepare()
    try:
        assert distiller.step == 2
        assert [group["lr"] for group in distiller.optimizer.param_groups] == [0.025]  # not the checkpoint's 0.05
        settings = json.loads((run_dir / "settings.json").read_text())
        assert settings["distill"]["lr"] == 0.025 and settings["changes"] == [{"step": 2, "lr": [0.05, 0.025]}]
        assert "tensors" not in settings
    finally:
        distiller._release()
