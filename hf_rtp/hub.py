"""Files of a saved memory and the Hub: checked loading, the model card, the recalled dataset's card, uploads.

Everything here works from the config and files, not from the model object, so it sits below
`modeling_memory` in the import graph; `AddressableMemory.save_pretrained` / `push_to_hub` call it, and every path
that writes or pushes a memory goes through them.
"""

from __future__ import annotations

import json
import os
import shlex
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, HfApi, ModelCard, ModelCardData

from .configuration_memory import AddressableMemoryConfig, soft_label_floats
from .data import ALIASES, DIGITS, KNOWN_DATASETS, spec_for
from .recalled_dataset import class_ids

WEIGHTS_NAME = "model.safetensors"
PICKLE_WEIGHTS_NAME = "pytorch_model.bin"  # what from_pretrained reads instead with use_safetensors=False
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
CARD_TEMPLATE = "addressable_memory.md"
DATASET_CARD_TEMPLATE = "recalled_dataset.md"
PICTURES = ("recalled.png", "bases.png", "class_similarity.png")
# What `upload_folder` takes beyond the folder and repo: transformers' push_to_hub keyword arguments.
UPLOAD_KWARGS = ("commit_message", "commit_description", "private", "token", "revision", "create_pr")
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
# Fields a memory's config.json must state: without them the defaults would silently describe another memory.
REQUIRED_CONFIG_KEYS = ("image_shape", "class_names", "num_bases", "images_per_query", "mean", "std")
# Keyword arguments of from_pretrained that also locate files (local folder or Hub id).
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


class CheckpointError(OSError):
    """A saved memory is missing, corrupt, or does not match its config."""


def _looks_local(path: str | os.PathLike) -> bool:
    """A path rather than a Hub id: it exists, or it is written like a path (./x, /x, ~/x, a/b/c, x\\y)."""
    text = str(path)
    return os.path.exists(text) or text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text


def _resolve(path: str | os.PathLike, filename: str, kwargs: dict[str, Any]) -> str:
    from transformers.utils import cached_file

    if not os.path.isdir(path) and _looks_local(path):
        raise CheckpointError(f"no such folder: {path} (a saved memory is a folder, or a Hub id such as user/name)")
    if os.path.isdir(path):
        local = Path(path, kwargs.get("subfolder") or "", filename)
        if not local.is_file():
            where = Path(path, kwargs["subfolder"]) if kwargs.get("subfolder") else path
            raise CheckpointError(f"{where} holds no {filename}: not a saved AddressableMemory (save_pretrained writes one)")
        return str(local)
    try:
        return cached_file(str(path), filename, **{k: kwargs[k] for k in _HUB_KWARGS if k in kwargs})
    except OSError as error:
        # `outputs/mnist` reads as a Hub id too: say both, so a mistyped local folder is not reported as a Hub error
        also = f"there is no folder {path} here, and " if "/" in str(path) else ""
        raise CheckpointError(f"cannot fetch {filename} of {path}: {also}{error}") from error


def expected_tensors(cls: type, config: AddressableMemoryConfig) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Name -> (shape, holds floats) of every tensor a memory of `config` saves: read from one built on the meta
    device (no memory, no init), so every parameter and buffer the model defines is checked (a query head's
    BatchNorm counters, integers, included), whatever the config switches on."""
    with torch.device("meta"):
        model = cls(config)
    return {name: (tuple(t.shape), t.is_floating_point()) for name, t in model.state_dict().items()}


def _read_pickle_weights(weights: str) -> dict[str, torch.Tensor]:
    """The tensors of a pytorch_model.bin, read without running pickled code (weights_only), as transformers does."""
    try:
        tensors = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a torch file, or pickled objects beyond tensors
        raise CheckpointError(f"{weights} is corrupt or not a PyTorch weights file: {str(error).splitlines()[0]}") from error
    if not isinstance(tensors, dict) or not all(isinstance(t, torch.Tensor) for t in tensors.values()):
        raise CheckpointError(f"{weights} does not hold a dict of tensors (a state_dict)")
    return tensors


def check_checkpoint(path: str | os.PathLike, config: AddressableMemoryConfig, kwargs: dict[str, Any],
                     expected: dict[str, tuple[tuple[int, ...], bool]]) -> None:
    """Refuse weights that are missing, corrupt, or shaped unlike `expected` (the config's tensors), naming the problem.

    The file checked is the one from_pretrained will read: model.safetensors, or pytorch_model.bin with
    `use_safetensors=False` (checking the one and loading the other would let anything through)."""
    from safetensors import SafetensorError, safe_open

    if kwargs.get("use_safetensors") is False:
        if os.path.isdir(path) and not Path(path, kwargs.get("subfolder") or "", PICKLE_WEIGHTS_NAME).is_file():
            raise CheckpointError(f"{path} holds no {PICKLE_WEIGHTS_NAME}, the only weights use_safetensors=False reads: "
                                  f"drop use_safetensors=False to load its {WEIGHTS_NAME}")
        weights = _resolve(path, PICKLE_WEIGHTS_NAME, kwargs)
        tensors = _read_pickle_weights(weights)
        found = {key: tuple(t.shape) for key, t in tensors.items()}
        dtypes = {key: str(t.dtype).removeprefix("torch.") for key, t in tensors.items()}
        floats = {key for key, t in tensors.items() if t.is_floating_point()}
        non_finite = [key for key in floats if not bool(tensors[key].isfinite().all())]
    else:
        weights = _resolve(path, WEIGHTS_NAME, kwargs)
        try:
            with safe_open(weights, framework="pt") as f:
                found = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
                dtypes = {key: f.get_slice(key).get_dtype() for key in f.keys()}
                floats = {key for key, dtype in dtypes.items() if dtype in FLOAT_DTYPES}
                non_finite = [key for key in f.keys() if key in floats and not bool(f.get_tensor(key).isfinite().all())]
        except (SafetensorError, OSError, ValueError) as error:
            raise CheckpointError(f"{weights} is corrupt or not a safetensors file: {error}") from error
    # integer or boolean tensors would be cast to float and used; NaN or inf would poison every recall
    problems = [f"tensor {key!r} holds {dtype} values, not floats" for key, dtype in dtypes.items()
                if key not in floats and expected.get(key, ((), False))[1]]  # unexpected ones: below
    problems += [f"tensor {key!r} has non-finite values (NaN or inf)" for key in non_finite]
    if problems:
        raise CheckpointError(f"{weights} cannot be loaded: " + "; ".join(problems))
    problems = [f"missing tensor {k!r} {shape}" for k, (shape, _) in expected.items() if k not in found]
    problems += [f"unexpected tensor {k!r}" for k in found if k not in expected]
    problems += [
        f"{k!r} has shape {found[k]} but the config asks for {shape}"
        for k, (shape, _) in expected.items()
        if k in found and found[k] != shape
    ]
    if problems:
        raise CheckpointError(f"weights in {weights} do not match its config: " + "; ".join(problems))


def load_checked(loader: Callable, cls: type, path: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
    """Run transformers' from_pretrained (`loader`, bound to the model class `cls`) after checking the files, so no
    tensor is silently re-initialised; returns what it returns.

    The folder's config.json is checked whether or not a config object is passed: `AutoModel.from_pretrained` passes
    one it built from that file, with the defaults (mean 0, std 1, ...) of any field the file does not state."""
    config = kwargs.get("config")
    config_file = _resolve(path, CONFIG_NAME, kwargs)
    try:
        stated = json.loads(Path(config_file).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{config_file} is not valid JSON: {error}") from error
    missing = [k for k in REQUIRED_CONFIG_KEYS if not isinstance(stated, dict) or k not in stated]
    if missing:
        raise CheckpointError(f"{config_file} does not state {missing}: a memory's config must (save_pretrained writes them)")
    if not isinstance(config, AddressableMemoryConfig):
        try:
            config = AddressableMemoryConfig.from_json_file(config_file)
        except Exception as error:  # bad JSON, or a config that fails validation
            raise CheckpointError(f"{config_file} is not a valid AddressableMemoryConfig: {error}") from error
        kwargs["config"] = config
    check_checkpoint(path, config, kwargs, expected_tensors(cls, config))
    want_info = kwargs.pop("output_loading_info", False)
    memory, info = loader(path, *args, output_loading_info=True, **kwargs)
    if info.get("missing_keys") or info.get("unexpected_keys") or info.get("mismatched_keys"):
        raise CheckpointError(f"loading {path} left tensors unset: {info}")
    # and the tensors as loaded, whatever file or code path they came from: nothing non-finite reaches a recall
    try:
        memory.check_finite()
    except ValueError as error:
        raise CheckpointError(f"loading {path}: {error}") from error
    return (memory, info) if want_info else memory


# ---- model card ---------------------------------------------------------------------------------------------


def card_template(name: str = CARD_TEMPLATE) -> str:
    """A template from model_cards/: installed as hf_rtp.model_cards, or read from a source checkout."""
    try:
        return resources.files("hf_rtp.model_cards").joinpath(name).read_text()
    except ModuleNotFoundError:  # running from the source tree, where model_cards/ sits beside hf_rtp/
        return (Path(__file__).resolve().parent.parent / "model_cards" / name).read_text()


def hub_dataset(name: str | None) -> str | None:
    """The Hub id of a dataset name (a known benchmark, a legacy alias, or owner/name), None for local data."""
    if not name or name == DIGITS or os.path.exists(name):
        return None
    if name in ALIASES:
        return ALIASES[name]
    if name in KNOWN_DATASETS or (name.count("/") == 1 and not name.startswith((".", "/", "~"))):
        return name
    return None


def card_license(config: AddressableMemoryConfig) -> str:
    """The memory's license: the config's, else its dataset's when known (a distilled set derives from it)."""
    spec = spec_for(config.dataset_name) if config.dataset_name else None
    return config.license or (spec.license if spec is not None and spec.license else "other")


def _percent(stats: dict[str, Any] | None) -> str | None:
    if not stats:
        return None
    return f"{100 * stats['mean']:.2f} +- {100 * stats['std']:.2f}%"


def reproduce_command(record: dict[str, Any], memory: str) -> str:
    """The `hf-rtp evaluate` command that repeats an evaluation record (its flags are stored with it)."""
    flags = record.get("flags")
    if flags is None:  # records written before the flags were stored: the protocol's values, spelled out
        flags = [f"--models {record['models']}", f"--epochs {record['epochs']}"]
        flags += [f"--{k.replace('_', '-')} {v}" for k, v in record.get("protocol", {}).items()
                  if v not in (None, False, {}) and k not in ("models", "epochs")]
        if "random_real" not in record:
            flags.append("--no-random-real")
    return " ".join([f"hf-rtp evaluate {shlex.quote(memory)}", *flags])


def normalisation_text(config: AddressableMemoryConfig) -> str:
    if config.zca_regularization is not None:
        return (f"ZCA whitening (regulariser {config.zca_regularization:g} x mean eigenvalue; W is stored with the "
                "memory, outside the budget, as preprocessing)")
    return f"(x - mean) / std of [0, 1] pixels, mean {[round(v, 4) for v in config.mean]}, std {[round(v, 4) for v in config.std]}"


def model_card(
    config: AddressableMemoryConfig,
    repo_id: str | None = None,
    dataset_repo_id: str | None = None,
    pictures: tuple[str, ...] = PICTURES,
    tags: list[str] | None = None,
) -> ModelCard:
    """The model card: metadata (license, datasets, model-index results when evaluated) and the template in
    model_cards/, filled from the config alone."""
    dataset = config.dataset_name or "unknown dataset"
    if config.task:  # one memory of a bank: which task of which stream
        t = config.task
        how = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in (t.get("transform") or {}).items())
        dataset = f"{dataset}, {t.get('name')} of a {t.get('stream')} stream ({how}; its bank's bank.json rebuilds the test set)"
    dataset_id = hub_dataset(config.dataset_name)
    repo_id = repo_id or "path/to/this/memory"
    model_name = repo_id.rstrip("/").split("/")[-1]
    evaluation = dict(config.evaluation or {})
    eval_results = None
    if evaluation.get("accuracy"):
        evaluation["accuracy_text"] = _percent(evaluation["accuracy"])
        evaluation["random_real_text"] = _percent(evaluation.get("random_real"))
        evaluation.setdefault("random_real_images", "")
        evaluation["reproduce"] = reproduce_command(config.evaluation, repo_id)
        eval_results = [
            EvalResult(
                task_type="image-classification",
                dataset_type=dataset_id or dataset,
                dataset_name=dataset,
                dataset_split=evaluation.get("split", "test"),
                metric_type="accuracy",
                metric_name="retrained accuracy",
                metric_value=round(float(evaluation["accuracy"]["mean"]), 4),
            )
        ]
    else:
        evaluation = None
    card_data = ModelCardData(
        library_name="hf_rtp",
        license=card_license(config),
        tags=["hf_rtp", "dataset-distillation", "addressable-memory", *(tags or [])],
        datasets=[d for d in (dataset_id, dataset_repo_id) if d] or None,
        model_name=model_name,
        eval_results=eval_results,
    )
    names = config.class_names
    ipc = config.budget_ipc()
    return ModelCard.from_template(
        card_data,
        template_str=card_template(),
        model_name=model_name,
        repo_id=repo_id,
        dataset=dataset,
        dataset_link=f"https://huggingface.co/datasets/{dataset_id}" if dataset_id else None,
        dataset_repo_id=dataset_repo_id,
        num_classes=config.num_classes,
        class_preview=", ".join(names[:10]) + (", ..." if len(names) > 10 else ""),
        image_shape=tuple(config.image_shape),
        addressing=config.addressing,
        num_bases=config.num_bases,
        base_shape=tuple(config.base_shape),
        downsample=config.downsample,
        images_per_query=config.images_per_query,
        query_dim=config.query_dim,
        total_images=config.images_per_query * config.num_classes,
        storage_floats=config.storage_floats(),
        budget_floats=config.budget_floats(),
        ipc=f"{ipc:g}",
        normalisation=normalisation_text(config),
        output_norm=config.output_norm,
        labels=(f"learned soft labels: a label vector per base plus a scale ({soft_label_floats(config.num_bases, config.num_classes)} "
                f"floats, counted in the storage), image i of class y labelled softmax(s y + (y^T A_i) L); beyond the paper"
                if config.soft_labels else "hard: every recalled image carries its query's class"),
        soft_labels=config.soft_labels,
        query_encoder=config.query_encoder,
        query_head_floats=config.query_head_floats(),
        query_encoder_start=config.query_encoder_start,
        query_pixels=config.query_pixels,
        has_recalled="recalled.png" in pictures,
        output_stats=f"mean {config.output_mean:.3g}, std {config.output_std:.3g}",
        distillation=", ".join(f"{k}={v}" for k, v in (config.distillation or {}).items()) or None,
        evaluation=evaluation,
        pictures=[p for p in pictures if p != "recalled.png"],
    )


def write_card(config: AddressableMemoryConfig, folder: str | Path, repo_id: str | None = None,
               dataset_repo_id: str | None = None, tags: list[str] | None = None) -> Path:
    """README.md (the model card) in `folder`, naming the pictures found there."""
    folder = Path(folder)
    pictures = tuple(p for p in PICTURES if (folder / p).exists())
    path = folder / CARD_NAME
    model_card(config, repo_id, dataset_repo_id, pictures, tags).save(path)
    return path


def dataset_card(config: AddressableMemoryConfig, memory_repo_id: str, data: DatasetCardData | None = None) -> DatasetCard:
    """The recalled dataset's card: what the rows are, their pixel space, and the memory they come from."""
    dataset_id = hub_dataset(config.dataset_name)
    fields = data.to_dict() if data is not None else {}  # keeps what datasets wrote (dataset_info, configs)
    fields.update(license=card_license(config), task_categories=["image-classification"],
                  tags=sorted(set(fields.get("tags") or []) | {"hf_rtp", "dataset-distillation", "synthetic"}))
    if dataset_id:
        fields["source_datasets"] = [dataset_id]
    return DatasetCard.from_template(
        DatasetCardData(**fields),
        template_str=card_template(DATASET_CARD_TEMPLATE),
        memory_repo_id=memory_repo_id,
        dataset=config.dataset_name or "unknown dataset",
        dataset_link=f"https://huggingface.co/datasets/{dataset_id}" if dataset_id else None,
        rows=config.images_per_query * config.num_classes,
        images_per_query=config.images_per_query,
        num_classes=config.num_classes,
        image_shape=tuple(config.image_shape),
        normalisation=normalisation_text(config),
        standardize_note=config.zca_regularization is None and config.output_norm == "none",
        soft_labels=config.soft_labels,
    )


def upload_folder(folder: str | Path, repo_id: str, *, repo_type: str = "model", commit_message: str | None = None,
                  commit_description: str | None = None, private: bool | None = None, token: str | bool | None = None,
                  revision: str | None = None, create_pr: bool = False) -> str:
    """Create the repo if needed and upload `folder` in one commit; returns the commit URL."""
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    if revision is not None and not create_pr:
        api.create_branch(repo_id, repo_type=repo_type, branch=revision, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type=repo_type,
        folder_path=str(folder),
        commit_message=commit_message or f"Upload {'addressable memory' if repo_type == 'model' else 'recalled dataset'}",
        commit_description=commit_description,
        revision=revision,
        create_pr=create_pr,
    )
    return str(commit.commit_url if hasattr(commit, "commit_url") else commit)


def push_recalled_dataset(dataset, config: AddressableMemoryConfig, repo_id: str, memory_repo_id: str, *,
                          private: bool | None = None, token: str | bool | None = None) -> str:
    """Push a recalled `datasets.Dataset` and replace the generic card datasets writes with ours (its YAML
    metadata, which `load_dataset` reads, is kept)."""
    dataset.push_to_hub(repo_id, private=private, token=token)
    try:
        existing = DatasetCard.load(repo_id, token=token)
        data = existing.data
    except Exception:  # no card yet: ours starts the metadata
        data = None
    card = dataset_card(config, memory_repo_id, data)
    card.push_to_hub(repo_id, token=token, commit_message="Dataset card: recalled from an addressable memory")
    return repo_id


def recall_picture(memory, dataset, path: Path, per_class: int = 10, classes: int = 20) -> Path:
    """recalled.png: what this recall holds, up to `per_class` images of each of its first `classes` labels, each
    stretched to full contrast (pixels through `memory`'s pixel space)."""
    import numpy as np

    from . import viz

    labels = np.asarray(dataset["label"])
    names = dataset.features["label"].names
    shown = [y for y in dict.fromkeys(labels.tolist())][:classes]
    rows = [np.flatnonzero(labels == y)[:per_class] for y in shown]
    m = min(len(r) for r in rows)
    pixels = np.asarray(dataset.select(np.concatenate([r[:m] for r in rows]))["pixel_values"], dtype=np.float32)
    viewable = memory.to_viewable(torch.from_numpy(pixels), stretch=True).view(len(shown), m, *pixels.shape[1:])
    title = f"recalled images ({m} per class of {len(labels)} recalled, each stretched to full contrast)"
    return viz.save_image_grid(viewable, [names[y] for y in shown], path, title)


def basis_usage(memory) -> torch.Tensor | None:
    """How much the addressing draws on each basis (K): the summed |coefficients| of the learned addressing matrices
    (r, d_y, K), so bases.png shows the most used first; None for fixed addressing."""
    if memory.addressing is None:
        return None
    return memory.addressing.detach().abs().sum(dim=tuple(range(memory.addressing.dim() - 1)))


@torch.no_grad()
def write_pictures(memory, folder: str | Path, classes: Sequence[int | str] | None = None, per_class: int = 10) -> list[Path]:
    """What a saved memory shows next to its card: recalled.png (up to 20 classes, `per_class` images each,
    contrast-stretched so a person sees them), bases.png, and with learned addressing by labels
    class_similarity.png. `memory` is an AddressableMemory (this module sits below the model)."""
    from . import viz

    folder, config = Path(folder), memory.config
    if config.addressed_by_images:  # nothing to recall without query images: the bases alone
        return [viz.save_bases(memory.bases, folder / "bases.png", total=config.num_bases, usage=basis_usage(memory))]
    ids = class_ids(config.class_names, classes)[:20]
    m = min(per_class, config.images_per_query)
    images = memory(labels=torch.tensor(ids, device=memory.device), image_indices=torch.arange(m)).images.float()
    viewable = memory.to_viewable(images, stretch=True).cpu().view(len(ids), m, *images.shape[1:])
    title = f"recalled images ({m} of r={config.images_per_query} per class, each stretched to full contrast)"
    paths = [viz.save_image_grid(viewable, [config.class_names[i] for i in ids], folder / "recalled.png", title)]
    paths.append(viz.save_bases(memory.bases, folder / "bases.png", total=config.num_bases, usage=basis_usage(memory)))
    if memory.addressing is not None and config.query_dim == config.num_classes:
        paths.append(viz.save_class_similarity(memory.addressing, config.class_names, folder / "class_similarity.png"))
    return paths
