"""Checked loading, model cards and push_to_hub for addressable memories."""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from .configuration_memory import AddressableMemoryConfig
from .data import ALIASES, DIGITS, KNOWN_DATASETS
from .evaluate import reproduce_command

if TYPE_CHECKING:
    from .modeling_memory import AddressableMemory

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_TEMPLATE = "addressable_memory.md"
# Keyword arguments of from_pretrained that also locate files (local folder or Hub id).
_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")


def _resolve(path: str | os.PathLike, filename: str, kwargs: dict[str, Any]) -> str:
    from .modeling_memory import CheckpointError
    from transformers.utils import cached_file

    if os.path.isdir(path):
        local = Path(path, kwargs.get("subfolder") or "", filename)
        if not local.is_file():
            raise CheckpointError(f"{path} holds no {filename}: not a saved AddressableMemory (save_pretrained writes one)")
        return str(local)
    try:
        return cached_file(str(path), filename, **{k: kwargs[k] for k in _HUB_KWARGS if k in kwargs})
    except OSError as error:
        raise CheckpointError(f"cannot fetch {filename} of {path}: {error}") from error


def check_checkpoint(path: str | os.PathLike, config: AddressableMemoryConfig, kwargs: dict[str, Any]) -> None:
    """Refuse weights that are missing, corrupt, or shaped unlike what `config` describes, naming the problem."""
    from safetensors import SafetensorError, safe_open

    from .modeling_memory import CheckpointError

    weights = _resolve(path, WEIGHTS_NAME, kwargs)
    try:
        with safe_open(weights, framework="pt") as f:
            found = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{weights} is corrupt or not a safetensors file: {error}") from error
    expected = {"bases": (config.num_bases, *config.base_shape)}
    if config.addressing == "learned":
        expected["addressing"] = (config.images_per_query, config.query_dim, config.num_bases)
    if config.zca_regularization is not None:
        d = _image_floats(config)
        expected["zca_eigenvectors"] = (d, d)
        expected["zca_scales"] = (d,)
    problems = [f"missing tensor {k!r} {shape}" for k, shape in expected.items() if k not in found]
    problems += [f"unexpected tensor {k!r}" for k in found if k not in expected]
    problems += [
        f"{k!r} has shape {found[k]} but the config asks for {shape}"
        for k, shape in expected.items()
        if k in found and found[k] != shape
    ]
    if problems:
        raise CheckpointError(f"weights in {weights} do not match its config: " + "; ".join(problems))


def load_checked(loader: Callable, cls: type, path: str | os.PathLike, *args: Any, **kwargs: Any) -> "AddressableMemory":
    """Run transformers' from_pretrained after checking the files, so no tensor is silently re-initialised."""
    from .modeling_memory import CheckpointError

    config = kwargs.get("config")
    if not isinstance(config, AddressableMemoryConfig):
        config_file = _resolve(path, CONFIG_NAME, kwargs)
        try:
            config = AddressableMemoryConfig.from_json_file(config_file)
        except Exception as error:  # bad JSON, or a config that fails validation
            raise CheckpointError(f"{config_file} is not a valid AddressableMemoryConfig: {error}") from error
        kwargs["config"] = config
    check_checkpoint(path, config, kwargs)
    want_info = kwargs.pop("output_loading_info", False)
    memory, info = loader(path, *args, output_loading_info=True, **kwargs)
    if info.get("missing_keys") or info.get("unexpected_keys") or info.get("mismatched_keys"):
        raise CheckpointError(f"loading {path} left tensors unset: {info}")
    return (memory, info) if want_info else memory


# ---- model card ---------------------------------------------------------------------------------------------


def card_template(name: str = CARD_TEMPLATE) -> str:
    """A template from model_cards/: installed as hf_rtp.model_cards, or read from a source checkout."""
    try:
        return resources.files("hf_rtp.model_cards").joinpath(name).read_text()
    except ModuleNotFoundError:  # running from the source tree, where model_cards/ sits beside hf_rtp/
        return (Path(__file__).resolve().parent.parent / "model_cards" / name).read_text()


def _hub_dataset(name: str | None) -> str | None:
    """The Hub id of a dataset name (a known benchmark, a legacy alias, or owner/name), None for local data."""
    if not name or name == DIGITS or os.path.exists(name):
        return None
    if name in ALIASES:
        return ALIASES[name]
    if name in KNOWN_DATASETS or (name.count("/") == 1 and not name.startswith((".", "/", "~"))):
        return name
    return None


def _percent(stats: dict[str, Any] | None) -> str | None:
    if not stats:
        return None
    return f"{100 * stats['mean']:.2f} +- {100 * stats['std']:.2f}%"


def model_card(memory: "AddressableMemory", repo_id: str | None = None, dataset_repo_id: str | None = None) -> ModelCard:
    """The model card: metadata (with model-index results when evaluated) plus the template in model_cards/."""
    config = memory.config
    dataset = config.dataset_name or "unknown dataset"
    hub_dataset = _hub_dataset(config.dataset_name)
    repo_id = repo_id or "path/to/this/memory"
    model_name = repo_id.split("/")[-1]
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
                dataset_type=hub_dataset or dataset,
                dataset_name=dataset,
                dataset_split=evaluation.get("split", "test"),
                metric_type="accuracy",
                metric_name="retrained accuracy",
                metric_value=round(float(evaluation["accuracy"]["mean"]), 4),
            )
        ]
    else:
        evaluation = None
    tags = ["hf_rtp", "dataset-distillation", "addressable-memory"]
    card_data = ModelCardData(
        library_name="hf_rtp",
        tags=tags,
        datasets=[d for d in (hub_dataset, dataset_repo_id) if d] or None,
        model_name=model_name,
        eval_results=eval_results,
    )
    template = card_template()
    names = config.class_names
    ipc = config.ipc if config.ipc is not None else config.budget_ipc()
    return ModelCard.from_template(
        card_data,
        template_str=template,
        model_name=model_name,
        repo_id=repo_id,
        dataset=dataset,
        dataset_link=f"https://huggingface.co/datasets/{hub_dataset}" if hub_dataset else None,
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
        budget_floats=round(ipc * config.num_classes * _image_floats(config)),
        ipc=f"{ipc:g}",
        normalisation=(
            f"ZCA whitening (regulariser {config.zca_regularization:g} x mean eigenvalue; W is stored with the memory, "
            "outside the budget, as preprocessing)"
            if config.zca_regularization is not None
            else f"(x - mean) / std, mean {[round(v, 4) for v in config.mean]}, std {[round(v, 4) for v in config.std]}"
        ),
        distillation=", ".join(f"{k}={v}" for k, v in (config.distillation or {}).items()) or None,
        evaluation=evaluation,
    )


def _image_floats(config: AddressableMemoryConfig) -> int:
    c, h, w = config.image_shape
    return c * h * w


def write_model_card(
    memory: "AddressableMemory", folder: str | Path, repo_id: str | None = None, dataset_repo_id: str | None = None
) -> Path:
    """README.md (the model card) and recalled.png next to a saved memory."""
    from .viz import save_recalled_grid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_recalled_grid(memory, folder / "recalled.png")
    path = folder / "README.md"
    model_card(memory, repo_id, dataset_repo_id).save(path)
    return path


def save_with_card(memory: "AddressableMemory", folder: str | Path) -> Path:
    """save_pretrained plus the model card, recalled images, bases and (with learned addressing) the class-similarity
    heatmap: what the CLI and the benchmarks leave next to every memory they distil."""
    from .viz import save_bases, save_class_similarity

    folder = Path(folder)
    memory.save_pretrained(folder)
    write_model_card(memory, folder)
    save_bases(memory, folder / "bases.png")
    if memory.addressing is not None:  # a per-class set has no addressing to compare classes by
        save_class_similarity(memory, folder / "class_similarity.png")
    return folder


def push_memory(
    memory: "AddressableMemory",
    repo_id: str,
    *,
    commit_message: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    push_dataset: bool = False,
    dataset_repo_id: str | None = None,
) -> str:
    """Upload the memory (safetensors + config), its model card and picture in one commit; optionally also the
    recalled `datasets.Dataset` (exact pixels + preview) to `dataset_repo_id` (default `<repo_id>-recalled`).

    Returns the URL of the model commit.
    """
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if push_dataset:
        dataset_repo_id = dataset_repo_id or f"{repo_id}-recalled"
        memory.recall(preview=True).push_to_hub(dataset_repo_id, private=private, token=token)
    with tempfile.TemporaryDirectory() as folder:
        memory.save_pretrained(folder)
        write_model_card(memory, folder, repo_id, dataset_repo_id if push_dataset else None)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message or "Upload addressable memory",
            revision=revision,
            create_pr=create_pr,
        )
    return str(commit.commit_url if hasattr(commit, "commit_url") else commit)
