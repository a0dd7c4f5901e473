"""Image addressing (sec 5.3.2): a timm query head inside the memory, recall by images, saving and loading."""

import copy
import json
import re

import pytest
import torch
from PIL import Image

from hf_rtp import AddressableMemory, AddressableMemoryConfig
from hf_rtp.initialization import init_from_real
from hf_rtp.hub import CheckpointError

CLASSES = [str(i) for i in range(10)]
# A small timm CNN with BatchNorm (its integer num_batches_tracked buffers must load too).
ENCODER = "test_resnet"


def image_memory(**kwargs) -> AddressableMemory:
    torch.manual_seed(0)
    config = AddressableMemoryConfig(image_shape=[1, 16, 16], class_names=CLASSES, num_bases=6, images_per_query=3,
                                     downsample=2, query_dim=8, mean=[0.0], std=[1.0], query_encoder=ENCODER,
                                     **kwargs)
    return AddressableMemory(config)


def test_the_head_is_built_from_the_config_and_measures_its_width():
    memory = image_memory()
    head = memory.query_head
    assert head.projection.in_features == head.encoder.num_features == 96  # measured, as timm reports it
    assert head.projection.out_features == 8
    assert memory.config.query_head_floats() == sum(p.numel() for p in head.parameters()) + sum(
        b.numel() for name, b in head.named_buffers() if b.is_floating_point())
    assert memory.config.storage_floats() == 6 * 8 * 8 + 3 * 8 * 6  # the head is reported, not counted


def bilinear_matrix(out: int, size: int) -> torch.Tensor:
    """(out, size): bilinear upsampling of one axis with half-pixel centres (output pixel j samples the input at
    (j + 0.5) size / out - 0.5, clamped to the edge), as a matrix."""
    u = torch.zeros(out, size, dtype=torch.float64)
    for j in range(out):
        s = min(max((j + 0.5) * size / out - 0.5, 0.0), size - 1.0)
        lo = int(s)
        hi = min(lo + 1, size - 1)
        u[j, lo] += 1 - (s - lo)
        u[j, hi] += s - lo
    return u


@pytest.mark.parametrize("norm", [dict(), dict(output_norm="standardize", output_mean=0.3, output_std=2.0)])
def test_recall_by_images_is_eqn2_with_the_projected_features(norm):
    """Image i of query image x is upsample((y^T A_i) M) with y = W f(x) + b, written out from the raw tensors."""
    memory = image_memory(**norm)
    with torch.no_grad():  # unit-scale tables and a non-zero bias, so every term of the formula shows
        memory.bases.normal_()
        memory.addressing.normal_()
        memory.query_head.projection.bias.normal_()
    x = torch.randn(4, 1, 16, 16)
    images, labels = memory(images=x)
    assert labels is None and images.shape == (4 * 3, 1, 16, 16)
    with torch.no_grad():
        features = memory.query_head.encoder(x).double()  # (4, 96)
        w, b = memory.query_head.projection.weight.double(), memory.query_head.projection.bias.double()
        y = features @ w.T + b  # (4, d_y = 8)
        bases = memory.bases.double()  # (K = 6, 1, 8, 8)
        u = bilinear_matrix(16, 8)
        expected = torch.empty(4, 3, 1, 16, 16, dtype=torch.float64)
        for n in range(4):
            for i in range(3):
                coefficients = y[n] @ memory.addressing[i].double()  # y^T A_i: (K,)
                small = (coefficients[:, None, None, None] * bases).sum(0)  # (1, 8, 8)
                image = u @ small[0] @ u.T  # (16, 16)
                if norm:  # each image shifted and scaled to the configured mean and std (one scalar each)
                    image = (image - image.mean()) / torch.sqrt(image.var(unbiased=False) + 1e-8) * 2.0 + 0.3
                expected[n, i, 0] = image
    torch.testing.assert_close(images.double(), expected.flatten(0, 1), rtol=1e-4, atol=1e-5)
    # one image's query does not depend on the others in its batch (the encoder's BatchNorm uses stored statistics)
    torch.testing.assert_close(memory(images=x[:1]).images, images[:3])


def test_recall_averages_each_groups_shots_into_one_query():
    memory = image_memory()
    shots = torch.randn(6, 1, 16, 16)
    ds = memory.recall(images=shots, labels=["7", "3", "7", "3", "7", "3"])
    assert ds.num_rows == 2 * 3 and ds.features["label"].names == ["7", "3"]
    assert ds["label"] == [0, 0, 0, 1, 1, 1]
    queries = memory.image_queries(shots)
    expected = memory(queries=torch.stack([queries[0::2].mean(0), queries[1::2].mean(0)])).images
    torch.testing.assert_close(torch.tensor(ds["pixel_values"]), expected)


def test_bad_image_queries_get_clear_errors():
    memory = image_memory()
    with pytest.raises(ValueError, match=r"images must be \(N, 1, 16, 16\)"):
        memory(images=torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"images must be \(N, 1, 16, 16\)"):
        memory(images=torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="finite"):
        memory(images=torch.full((1, 1, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="one label per image"):
        memory.recall(images=torch.randn(3, 1, 16, 16), labels=["a", "b"])
    with pytest.raises(ValueError, match="labels="):
        memory.recall(images=torch.randn(3, 1, 16, 16))
    with pytest.raises(ValueError, match="addressed by images"):
        memory(labels=torch.arange(2))
    plain = AddressableMemory(AddressableMemoryConfig(image_shape=[1, 16, 16], class_names=CLASSES, mean=[0.0], std=[1.0]))
    with pytest.raises(ValueError, match="no query head"):
        plain(images=torch.randn(1, 1, 16, 16))
    from huggingface_hub.errors import StrictDataclassClassValidationError as Invalid

    with pytest.raises(Invalid, match="not a timm model"):
        AddressableMemoryConfig(image_shape=[1, 16, 16], class_names=CLASSES, query_dim=8, mean=[0.0], std=[1.0],
                                query_encoder="no_such_net")
    with pytest.raises(Invalid, match="in_chans"):
        AddressableMemoryConfig(image_shape=[1, 16, 16], class_names=CLASSES, query_dim=8, mean=[0.0], std=[1.0],
                                query_encoder=ENCODER, query_encoder_kwargs={"in_chans": 3})


def test_an_image_addressed_memory_round_trips_bit_exactly(tmp_path, fake_hub):
    memory = image_memory()
    shots = torch.randn(5, 1, 16, 16)
    before = memory(images=shots).images
    memory.save_pretrained(tmp_path / "m")
    loaded = AddressableMemory.from_pretrained(tmp_path / "m")
    assert loaded.config.query_encoder == ENCODER
    for (name, a), (_, b) in zip(memory.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert torch.equal(loaded(images=shots).images, before)
    card = (tmp_path / "m" / "README.md").read_text()
    assert "addressed by images" in card and "recall(images=" in card
    memory.push_to_hub("user/image-memory")
    from_hub = AddressableMemory.from_pretrained("user/image-memory")
    assert torch.equal(from_hub(images=shots).images, before)


def test_missing_or_misshapen_head_tensors_are_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    memory = image_memory()
    memory.save_pretrained(tmp_path / "m")
    weights = load_file(tmp_path / "m" / "model.safetensors")
    name = "query_head.projection.weight"
    save_file({k: v for k, v in weights.items() if k != name}, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"missing tensor '{name}'"):
        AddressableMemory.from_pretrained(tmp_path / "m")
    save_file({**weights, name: torch.zeros(9, 96)}, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"'{name}' has shape"):
        AddressableMemory.from_pretrained(tmp_path / "m")
    # a head-less config on the same weights: the head's tensors are unexpected, not silently dropped
    save_file(weights, tmp_path / "m" / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**config, "query_encoder": None}))
    with pytest.raises(CheckpointError, match="unexpected tensor 'query_head"):
        AddressableMemory.from_pretrained(tmp_path / "m")


def test_cli_recalls_from_a_folder_of_class_folders(tmp_path, capsys):
    from hf_rtp.cli import main

    memory = image_memory()
    memory.save_pretrained(tmp_path / "m")
    for name in ("cat", "dog"):
        (tmp_path / "shots" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray((torch.rand(16, 16) * 255).byte().numpy(), mode="L").save(tmp_path / "shots" / name / f"{i}.png")
    assert main(["recall", str(tmp_path / "m"), "--images", str(tmp_path / "shots"), "--output", str(tmp_path / "out")]) == 0
    from datasets import load_from_disk

    ds = load_from_disk(str(tmp_path / "out"))
    assert ds.num_rows == 2 * 3 and ds.features["label"].names == ["cat", "dog"]
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(SystemExit) as stop:
        main(["recall", str(tmp_path / "m"), "--images", str(tmp_path / "empty"), "--output", str(tmp_path / "out2")])
    assert stop.value.code == 2 and "no readable picture in any of its 1 class folder(s) (cat)" in capsys.readouterr().err


@pytest.mark.parametrize("pixels", [False, True])
def test_the_encoders_meta_gradient_equals_whole_graph_autograd(pixels):
    """Queries are computed once per unroll and their gradient goes through the head once; it must equal autograd
    through the whole unrolled graph, for the encoder, the projection, the bases and the addressing alike (and the
    projection's pixel columns, with query_pixels)."""
    from hf_rtp.learners import ConvNet
    from hf_rtp.objectives import episode_inputs
    from hf_rtp.unroll import InnerLoop

    torch.manual_seed(0)
    memory = image_memory(query_pixels=pixels).double()
    with torch.no_grad():
        memory.bases.mul_(10)
    loop = InnerLoop(ConvNet(1, 3, 16, width=4).double(), lr=0.1, momentum=0.9, keep_memory=False)
    init = [p.double() for p in loop.init_params(torch.Generator().manual_seed(1))]
    g = torch.Generator().manual_seed(2)
    shots = torch.randn(3, 2, 1, 16, 16, generator=g, dtype=torch.float64)
    picks = torch.stack([torch.stack([torch.randperm(3, generator=g)[:2] for _ in range(3)]) for _ in range(5)])
    real = torch.randn(9, 1, 16, 16, generator=g, dtype=torch.float64), torch.arange(9) % 3
    engine = loop.run(episode_inputs(memory, shots, picks, *real), init)
    reference = loop.run(episode_inputs(memory, shots, picks, *real, reference=True), init, reference=True)
    assert engine.loss == pytest.approx(reference.loss, rel=1e-12)
    names = [name for name, _ in memory.named_parameters()]
    encoder = [i for i, name in enumerate(names) if name.startswith("query_head.encoder.")]
    assert encoder and any(float(reference.grads[i].abs().max()) > 0 for i in encoder)  # the encoder learns
    for name, a, b in zip(names, engine.grads, reference.grads):
        if float(b.norm()) == 0:  # e.g. a BatchNorm shift right before a pooling that ignores it
            assert float(a.norm()) == 0, name
            continue
        assert float((a - b).norm() / b.norm()) < 1e-9, name


def test_the_distiller_trains_an_image_addressed_memory_episodically_and_resumes(tmp_path):
    from hf_rtp import distill_memory
    from hf_rtp.data import load_image_dataset

    from helpers import assert_same, state, tiny

    train, test = load_image_dataset("digits", "train"), load_image_dataset("digits", "test")

    def fresh():
        torch.manual_seed(0)
        config = AddressableMemoryConfig.for_budget(train.image_shape, train.class_names, ipc=1, num_bases=8,
                                                    query_dim=6, mean=train.mean, std=train.std, dataset_name="digits",
                                                    query_encoder=ENCODER)
        return AddressableMemory(config)

    memory = fresh()
    before = state(memory)
    # a random encoder, learning at the outer lr: the meta-gradient must reach it (the default start, supervised,
    # leaves it frozen: see the frozen-start test below)
    settings = dict(classes_per_step=3, shots=2, eval_episodes=2, final_models=2, final_epochs=3,
                    query_encoder_start="random")
    done = distill_memory(tiny(tmp_path / "a", steps=4, **settings), memory, train, test=test)
    after = state(done)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "bases" in changed and "addressing" in changed and any(k.startswith("query_head.encoder.") for k in changed)
    assert done.config.evaluation["few_shot"] == "3-way 2-shot" and len(done.config.evaluation["accuracy"]["runs"]) == 2
    assert "3-way 2-shot" in (tmp_path / "a" / "memory" / "README.md").read_text()
    # stopped after 2 steps and resumed to 4: the same memory as the uninterrupted run
    distill_memory(tiny(tmp_path / "b", steps=2, **settings), fresh(), train)
    resumed = distill_memory(tiny(tmp_path / "b", steps=4, resume=True, **settings), fresh(), train, test=test)
    assert_same(state(resumed), after)


def test_cli_distills_an_image_addressed_memory(tmp_path, capsys):
    from hf_rtp.cli import main

    from helpers import TINY_CLI

    out = tmp_path / "run"
    main(["distill", "--output-dir", str(out), *TINY_CLI, "--query-encoder", ENCODER, "--query-dim", "6",
          "--classes-per-step", "3", "--shots", "2", "--eval-episodes", "2"])
    text = capsys.readouterr().out
    assert "3-way 2-shot episodes of the test split" in text
    memory = AddressableMemory.from_pretrained(out / "memory")
    assert memory.config.query_encoder == ENCODER and memory.config.query_dim == 6
    main(["info", str(out / "memory")])
    assert "addressed    by images" in capsys.readouterr().out
    # evaluate scores it on few-shot episodes of its test split (it used to refuse and point at a bench script)
    main(["evaluate", str(out / "memory"), "--way", "2", "--episodes", "1", "--epochs", "1", "--width", "8"])
    assert "2-way 1-shot episodes of the test split" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["distill", "--output-dir", str(tmp_path / "bad"), *TINY_CLI, "--query-dim", "6"])
    assert stop.value.code == 2 and "needs --query-encoder" in capsys.readouterr().err


def test_cli_distills_a_memory_whose_head_sees_pixels_and_recalls_its_shots(tmp_path, capsys):
    from hf_rtp.cli import main

    from helpers import TINY_CLI

    out = tmp_path / "run"
    main(["distill", "--output-dir", str(out), *TINY_CLI, "--query-encoder", ENCODER, "--query-dim", "6",
          "--query-pixels", "--query-fit", "images", "--classes-per-step", "3", "--shots", "2", "--eval-episodes", "2",
          "--steps", "0"])  # no outer step: the fitted start, validated, scored and saved as it is
    memory = AddressableMemory.from_pretrained(out / "memory")
    assert memory.config.query_pixels and memory.query_head.pixels == memory.config.downsample
    assert memory.config.distillation["outer_steps"] == 0 and memory.config.distillation["best_step"] == 0
    assert memory.config.distillation["query_fit"] == "images"  # on the card, with the head's rates
    assert len(memory.config.evaluation["accuracy"]["runs"]) == 2
    capsys.readouterr()
    main(["info", str(out / "memory")])
    assert "projects each image and its pixels to a 6-d query" in capsys.readouterr().out
    assert "the image itself" in (out / "memory" / "README.md").read_text()
    # each bad combination is one line before any work: no head to see pixels, no head to fit, a random start
    for bad, message in [(["--query-pixels"], "query_pixels .* needs --query-encoder"),
                         (["--query-fit", "images"], "query_fit='images' fits the query head"),
                         (["--query-encoder", ENCODER, "--query-fit", "images", "--init", "random"],
                          "query_fit='images' fits the query head")]:
        with pytest.raises(SystemExit) as stop:
            main(["distill", "--output-dir", str(tmp_path / "bad"), *TINY_CLI, *bad])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and re.search(message, err) and err.count("\n") == 1, err


def test_real_init_gives_an_image_addressed_memory_real_bases_spread_queries_and_a_fitted_addressing():
    from hf_rtp.data import load_image_dataset

    digits = load_image_dataset("digits", "train")
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8, query_encoder=ENCODER, query_dim=6)
    init_from_real(memory, digits, torch.Generator().manual_seed(0))
    b = memory.bases.detach().flatten(1).double()
    a = memory.addressing.detach().double()
    assert float(b.pow(2).mean().sqrt()) == pytest.approx(float(a.pow(2).mean().sqrt()), rel=1e-6)  # balanced
    real = torch.nn.functional.avg_pool2d(digits.images[:50].double(), 2).flatten(1)
    residual = real - real @ torch.linalg.pinv(b) @ b  # real images are mostly inside the span of the bases
    assert float(residual.norm() / real.norm()) < 0.5
    # the head is standardised on real images: queries spread around 0 instead of sharing one large common part
    with torch.no_grad():
        queries = memory.image_queries(digits.images[:500])
    assert float(queries.mean(0).abs().max()) < 0.3 and float((queries.std(0) - 1).abs().max()) < 0.3
    assert float(queries.norm(dim=1).mean()) > 2 * float(queries.mean(0).norm())
    # with 6 query dimensions for 10 classes the projection regresses a random unit code per class: a class's
    # queries gather (their spread around the class mean is well below the spread of all queries)
    labels = digits.labels[:500]
    within = torch.stack([(queries[labels == c] - queries[labels == c].mean(0)).pow(2).sum(1).mean()
                          for c in range(10)]).mean()
    assert float(within) < 0.8 * float(queries.var(0).sum())


def test_a_head_that_sees_pixels_recalls_by_eqn2_from_its_features_and_the_pooled_image(tmp_path):
    """query_pixels: y = W [f(x), avgpool_ds(x)] + b, the pooled image after the encoder's 96 features; saved and
    loaded bit-exactly; refused without a query encoder."""
    from hf_rtp.configuration_memory import MemoryOptions

    memory = image_memory(query_pixels=True)
    head = memory.query_head
    assert head.projection.in_features == 96 + 8 * 8  # 16x16 pooled by the memory's downsample factor 2
    with torch.no_grad():
        memory.addressing.normal_()
        head.projection.bias.normal_()
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        features = torch.cat([head.encoder(x), torch.nn.functional.avg_pool2d(x, 2).flatten(1)], 1)
        y = features @ head.projection.weight.T + head.projection.bias
        expected = memory(queries=y).images
        pixel_columns = head.projection.weight[:, 96:].clone()
        head.projection.weight[:, 96:] = 0  # the pixels matter: without their columns the recall changes
        assert not torch.allclose(memory(images=x).images, expected)
        head.projection.weight[:, 96:] = pixel_columns
    torch.testing.assert_close(memory(images=x).images, expected)
    memory.save_pretrained(tmp_path / "m")
    loaded = AddressableMemory.from_pretrained(tmp_path / "m")
    assert loaded.config.query_pixels and torch.equal(loaded(images=x).images, memory(images=x).images)
    with pytest.raises(ValueError, match="query_pixels .* needs"):
        MemoryOptions(query_pixels=True)
    from huggingface_hub.errors import StrictDataclassClassValidationError as Invalid

    with pytest.raises(Invalid, match="query_pixels .* needs"):
        AddressableMemoryConfig(image_shape=[1, 16, 16], class_names=CLASSES, mean=[0.0], std=[1.0], query_pixels=True)


def test_the_images_fit_makes_each_real_images_query_recall_that_image():
    """query_fit='images': projection and addressing are the reduced-rank least-squares map from the head's
    features to each image's coordinates on the bases (A_i: the image shifted by SHIFTS[i]). With d_y >= r K it is
    the plain ridge solution, so its normal equations hold; and with the pixels in view, images of classes the fit
    never saw are recalled as themselves too."""
    from hf_rtp.data import load_image_dataset
    from hf_rtp.initialization import SHIFTS, fit_head_to_images

    digits = load_image_dataset("digits", "train")
    seen = digits.with_classes([str(c) for c in range(5)])
    memory = AddressableMemory.for_dataset(seen, ipc=1, num_bases=4, query_encoder=ENCODER, query_dim=16,
                                           query_pixels=True).double()
    r, k = memory.config.images_per_query, memory.config.num_bases
    assert r > 1 and r * k <= 16  # full rank: the fit is the ridge solution
    init_from_real(memory, seen, torch.Generator().manual_seed(0), query_fit="images")
    head, bases = memory.query_head, memory.bases.detach().flatten(1).double()
    real = seen.images[:200].double()
    small = lambda x: torch.nn.functional.avg_pool2d(x, 2).flatten(1)  # noqa: E731
    with torch.no_grad():
        inputs = torch.cat([head.features(real), torch.ones(200, 1, dtype=torch.float64)], 1)
        coordinates = torch.stack([head(real) @ memory.addressing[i] for i in range(r)], 1)  # (N, r, K)
    # the images' coordinates on the (rescaled, orthogonal) bases: what each recall aims at
    targets = torch.stack([small(torch.roll(real, shifts=(dy, dx), dims=(-2, -1))) @ bases.T / bases.pow(2).sum(1)
                           for dx, dy in SHIFTS[:r]], 1)
    correlation = torch.nn.functional.cosine_similarity(coordinates.flatten(1), targets.flatten(1)).mean()
    assert float(correlation) > 0.99
    # refitted on these very images, the map from [features, 1] to coordinates, P A, solves the ridge problem
    fresh = copy.deepcopy(memory)
    unit = bases / bases.norm(dim=1, keepdim=True)
    addressing = fit_head_to_images(fresh, real, unit, lambda x: torch.nn.functional.avg_pool2d(x, 2), ridge=1e-3)
    projection = torch.cat([fresh.query_head.projection.weight.T, fresh.query_head.projection.bias[None]]).detach()
    combined = projection @ addressing.transpose(0, 1).flatten(1)  # (F + 1, r K)
    goal = torch.cat([small(torch.roll(real, shifts=(dy, dx), dims=(-2, -1))) @ unit.T for dx, dy in SHIFTS[:r]], 1)
    gram = inputs.T @ inputs
    gradient = inputs.T @ (inputs @ combined - goal) + 1e-3 * gram.diagonal().mean() * combined
    assert float(gradient.abs().max()) < 1e-8 * float((inputs.T @ goal).abs().max())
    # classes 5-9 were never fitted: their recall still follows the image (the pixels carry it)
    other = digits.with_classes([str(c) for c in range(5, 10)]).images[:100].double()
    with torch.no_grad():
        recalled = (memory.query_head(other) @ memory.addressing[0]) @ bases
    own = small(other) @ unit.T @ unit  # each image's projection on the bases' span
    assert float(torch.nn.functional.cosine_similarity(recalled, own).mean()) > 0.99


def test_fit_addressing_is_the_ridge_least_squares_solution():
    """Eqn 2 is linear in the query: the fitted A_i must satisfy the normal equations of
    min ||Q A_i - T_i||^2 + ridge N ||A_i||^2 exactly (its gradient vanishes), for every i."""
    from hf_rtp.data import load_image_dataset
    from hf_rtp.initialization import fit_addressing

    digits = load_image_dataset("digits", "train")
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8, query_encoder=ENCODER, query_dim=6).double()
    real = digits.images[:40].double()
    r, k = memory.config.images_per_query, memory.config.num_bases
    targets = torch.randn(40, r, k, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fitted = fit_addressing(memory, real, targets, ridge=1e-2)
    assert fitted.shape == memory.addressing.shape
    with torch.no_grad():
        q = memory.query_head(real)
    for i in range(r):
        gradient = q.T @ (q @ fitted[i] - targets[:, i]) + 1e-2 * 40 * fitted[i]
        assert float(gradient.abs().max()) < 1e-9
    # and a perturbation of the solution is worse
    loss = lambda a: float(((q @ a - targets[:, 0]) ** 2).sum() + 1e-2 * 40 * (a ** 2).sum())  # noqa: E731
    assert loss(fitted[0]) < loss(fitted[0] + 1e-3 * torch.randn_like(fitted[0]))


def test_a_memory_addressed_by_images_has_no_per_class_dataset_to_push(tmp_path, fake_hub):
    with pytest.raises(ValueError, match="recalls only from pictures"):
        image_memory().push_to_hub("user/x", push_dataset=True)


def test_few_shot_evaluation_scores_the_episodes_draw_episodes_gives():
    """bench/few_shot.py scores its baselines on draw_episodes(test, ..., seed); the memory's own few-shot evaluation
    must score it on those same episodes, one by one, or the methods would not compare."""
    from hf_rtp.data import load_image_dataset
    from hf_rtp.episodes import draw_episodes, episode_accuracy, few_shot_evaluation
    from hf_rtp.evaluate import EvalConfig

    digits = load_image_dataset("digits", "test")
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8, query_encoder=ENCODER, query_dim=6)
    config = EvalConfig(models=3, epochs=2, width=8, seed=5)
    record = few_shot_evaluation(memory, digits, way=3, shots=2, episodes=3, config=config, seed=11, device="cpu")
    episodes = draw_episodes(digits, 3, 2, 100, 3, 11)
    assert record["accuracy"]["runs"] == [episode_accuracy(memory, e, config, "cpu") for e in episodes]
    assert len({tuple(e.classes) for e in episodes}) > 1  # three different episodes, not one scored thrice


# ---- where the query encoder starts (random, pretrained, supervised), frozen or at its own rate -----------------


def test_a_pretrained_start_loads_a_local_timm_checkpoint_offline_through_timms_pretrained_config(tmp_path):
    """A checkpoint the way timm publishes it (3 input channels, a 1000-way classifier), loaded into a 1-channel
    head without its classifier: timm sums the first convolution over the colour channels and drops `fc`."""
    import timm
    from safetensors.torch import save_file

    from hf_rtp.query_head import start_encoder

    torch.manual_seed(3)
    published = timm.create_model(ENCODER, pretrained=False)
    save_file({k: v.contiguous() for k, v in published.state_dict().items()}, str(tmp_path / "model.safetensors"))
    memory = image_memory()
    start = start_encoder(memory.query_head, ENCODER, {}, "pretrained", weights=str(tmp_path))
    assert start == "pretrained:file model.safetensors"
    mine, theirs = memory.query_head.encoder.state_dict(), published.state_dict()
    assert torch.equal(mine["conv1.0.weight"], theirs["conv1.0.weight"].sum(1, keepdim=True))
    shared = [k for k in mine if k != "conv1.0.weight"]
    assert shared and all(torch.equal(mine[k], theirs[k]) for k in shared) and "fc.weight" not in mine
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds none of model.safetensors"):
        start_encoder(memory.query_head, ENCODER, {}, "pretrained", weights=str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no such file or folder"):
        start_encoder(memory.query_head, ENCODER, {}, "pretrained", weights=str(tmp_path / "missing.pth"))
    save_file({"something": torch.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match=f"cannot load pretrained {ENCODER} weights from"):
        start_encoder(memory.query_head, ENCODER, {}, "pretrained", weights=str(tmp_path / "other.safetensors"))


def test_a_supervised_start_is_the_few_shot_baselines_backbone_without_its_classifier():
    from hf_rtp.data import load_image_dataset
    from hf_rtp.query_head import start_encoder, train_supervised

    digits = load_image_dataset("digits", "train")
    memory = AddressableMemory.for_dataset(digits, ipc=1, num_bases=8, query_encoder=ENCODER, query_dim=6)
    start = start_encoder(memory.query_head, ENCODER, {}, "supervised", train=digits, epochs=1, seed=4)
    assert start == "supervised:digits (1 epochs)"
    backbone = train_supervised(ENCODER, {}, digits, 1, "cpu", 4).state_dict()
    mine = memory.query_head.encoder.state_dict()
    assert all(torch.equal(v, backbone[k]) for k, v in mine.items()) and "fc.weight" in backbone


def test_a_frozen_encoder_stays_as_it_started_while_the_projection_learns(tmp_path):
    """The default start (supervised, then frozen: --query-encoder-lr unset): the supervised encoder is what the
    memory keeps; the start is recorded in the config (card, info) and image memories start from real images by
    default."""
    from hf_rtp import distill_memory
    from hf_rtp.data import load_image_dataset
    from hf_rtp.query_head import start_encoder

    from helpers import state, tiny

    train = load_image_dataset("digits", "train")
    torch.manual_seed(0)
    memory = AddressableMemory.for_dataset(train, ipc=1, num_bases=8, query_encoder=ENCODER, query_dim=6)
    projection = memory.query_head.projection.weight.detach().clone()
    settings = dict(classes_per_step=3, shots=1, eval_episodes=2, final_models=0, query_encoder_epochs=1,
                    validation_fraction=0.1)
    done = distill_memory(tiny(tmp_path / "run", steps=3, **settings), memory, train)
    assert done.config.query_encoder_start.startswith("supervised:") and done.config.distillation["init"] == "real"
    assert not torch.equal(done.query_head.projection.weight.detach(), projection)  # the projection learned
    # frozen: the encoder is exactly its supervised start, trained on the Distiller's training part (seed 0)
    again = AddressableMemory.for_dataset(train, ipc=1, num_bases=8, query_encoder=ENCODER, query_dim=6)
    start_encoder(again.query_head, ENCODER, {}, "supervised", train=train.split_validation(0.1, seed=0)[0], epochs=1)
    encoder = {k: v for k, v in state(done).items() if k.startswith("query_head.encoder.")}
    assert encoder and all(torch.equal(v, again.state_dict()[k]) for k, v in encoder.items())
    assert "started supervised:" in (tmp_path / "run" / "memory" / "README.md").read_text()


def test_a_frozen_projection_keeps_its_fit_to_the_images_while_the_tables_learn(tmp_path):
    """--query-projection-lr 0 with --query-fit images: the projection the memory keeps is exactly its fitted start
    (the fit on the Distiller's training part, seed 0, after the supervised start), while bases and addressing learn."""
    from hf_rtp import distill_memory
    from hf_rtp.data import load_image_dataset
    from hf_rtp.query_head import start_encoder

    from helpers import tiny

    train = load_image_dataset("digits", "train")
    options = dict(ipc=1, num_bases=4, query_encoder=ENCODER, query_dim=8, query_pixels=True)
    settings = dict(classes_per_step=3, shots=1, eval_episodes=2, final_models=0, query_encoder_epochs=1,
                    validation_fraction=0.1, query_fit="images", query_projection_lr=0)
    torch.manual_seed(0)
    done = distill_memory(tiny(tmp_path / "run", steps=3, **settings), AddressableMemory.for_dataset(train, **options),
                          train)
    start = AddressableMemory.for_dataset(train, **options)
    part = train.split_validation(0.1, seed=0)[0]
    start_encoder(start.query_head, ENCODER, {}, "supervised", train=part, epochs=1)
    init_from_real(start, part, torch.Generator().manual_seed(0), query_fit="images")
    assert torch.equal(done.query_head.projection.weight, start.query_head.projection.weight)
    assert torch.equal(done.query_head.projection.bias, start.query_head.projection.bias)
    assert not torch.equal(done.bases, start.bases) and not torch.equal(done.addressing, start.addressing)


def test_the_encoder_learns_by_default_only_after_a_random_start():
    from hf_rtp.distill import DistillConfig
    from hf_rtp.session import group_rates

    assert DistillConfig().query_encoder_start == "supervised" and DistillConfig().encoder_lr() == 0
    assert DistillConfig(query_encoder_start="pretrained").encoder_lr() == 0
    assert DistillConfig(query_encoder_start="random", lr=0.03).encoder_lr() == 0.03
    assert DistillConfig(query_encoder_lr=0.001).encoder_lr() == 0.001
    # a resumed run's optimizer groups are rebuilt from its settings the same way (0: no encoder group)
    memory = {"query_encoder": ENCODER}
    assert group_rates({"lr": 0.01, "query_encoder_start": "supervised"}, memory) == [0.01, 0.01]
    assert group_rates({"lr": 0.01, "query_encoder_start": "random"}, memory) == [0.01, 0.01, 0.01]
    assert group_rates({"lr": 0.01, "query_encoder_lr": 0.002}, memory) == [0.01, 0.01, 0.002]
    assert group_rates({"lr": 0.01, "query_encoder_lr": 0.002, "query_projection_lr": 0}, memory) == [0.01, 0.002]


def test_the_image_addressing_example_runs_on_its_defaults(tmp_path):
    """examples/image_addressing.py as documented (embedded digits, its default encoder, start and sizes), shortened
    to 2 outer steps and 2 test episodes: it used to stop with a BudgetError on its own defaults."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "image_addressing.py"
    done = subprocess.run([sys.executable, str(example), "--steps", "2", "--final-models", "2", "--output-dir",
                           str(tmp_path / "run")], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "few-shot test accuracy" in done.stdout and "2-way classifier trained only on the recall" in done.stdout
    config = AddressableMemory.from_pretrained(tmp_path / "run" / "memory").config
    assert config.query_encoder_start.startswith("supervised:") and config.distillation["init"] == "real"


def test_encoder_arguments_the_model_does_not_take_are_one_line_naming_them():
    with pytest.raises(ValueError, match=r"query_encoder_kwargs \{'bogus': 1\} do not fit timm model 'test_resnet'"):
        image_memory(query_encoder_kwargs={"bogus": 1})


def test_pushing_an_image_memory_folder_carries_its_recalled_picture(tmp_path, fake_hub, capsys):
    """A memory addressed by images cannot draw its own recall (it needs pictures to recall from), so `hf-rtp push`
    of its folder uploads the recalled.png the folder holds (a run draws one from test shots) and the card shows it."""
    from hf_rtp.cli import main

    memory = image_memory()
    memory.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m" / "recalled.png").exists()
    Image.new("L", (40, 20), 128).save(tmp_path / "m" / "recalled.png")
    main(["push", str(tmp_path / "m"), "user/by-images"])
    files = fake_hub.files("user/by-images")
    assert files["recalled.png"] == (tmp_path / "m" / "recalled.png").read_bytes()
    assert "recalled.png" in files["README.md"].decode()
    memory.push_to_hub("user/by-images-bare")  # the API without a picture: bases only, as before
    assert "recalled.png" not in fake_hub.files("user/by-images-bare")
