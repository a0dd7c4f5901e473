"""Command-line options generated from config dataclasses: each field is declared once, with its help text.

The CLI, `examples/distill.py` and the benchmarks build their parsers from the dataclasses (`DataConfig`,
`MemoryOptions`, `DistillConfig`, `EvalConfig`), so an option's name, type, choices, default and help have one home.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import types
import typing
from typing import Any, Literal, Mapping, Sequence, TypeVar

T = TypeVar("T")


@functools.lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # resolves `from __future__ import annotations` strings in cls's module


def field_type(annotation: Any) -> tuple[Any, bool]:
    """(base type, optional) of a dataclass field annotation such as `int | None` or `Literal['a', 'b']`."""
    if isinstance(annotation, str):  # annotations are strings under `from __future__ import annotations`
        annotation = eval(annotation, {"None": type(None), "Literal": Literal})
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return [a for a in args if a is not type(None)][0], True
    return annotation, False


def _parser_for(base: Any, optional: bool):
    """The argparse `type=` for a field: None/null for optional fields, JSON for dicts."""
    if typing.get_origin(base) is Literal:
        convert = str
    elif base is dict or typing.get_origin(base) is dict:
        def convert(text: str) -> dict:
            value = json.loads(text)
            if not isinstance(value, dict):
                raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
            return value
        convert.__name__ = "JSON object"
    else:
        convert = base

    def parse(text: str):
        if optional and text.lower() in ("none", "null"):
            return None
        try:
            return convert(text)
        except (ValueError, json.JSONDecodeError) as error:
            raise argparse.ArgumentTypeError(f"invalid {getattr(convert, '__name__', 'value')} value: {text!r}") from error

    parse.__name__ = getattr(convert, "__name__", "value")
    return parse


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def add_options(
    parser: argparse.ArgumentParser,
    cls: type,
    skip: Sequence[str] = (),
    defaults: Mapping[str, Any] | None = None,
    notes: Mapping[str, str] | None = None,
) -> None:
    """One --option per field of dataclass `cls`, with the field's help text, choices and default.

    `defaults` replaces a field's default where the caller applies another one (shown in --help); `notes` adds
    text after the default (e.g. a dataset preset's value). Options not given stay out of the parsed namespace
    (argparse.SUPPRESS), so an explicit `--clip-grad-norm none` is told apart from no option at all.
    """
    defaults, notes = defaults or {}, notes or {}
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.init:
            continue
        base, optional = field_type(_hints(cls)[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = defaults.get(f.name, default_of(f))
        shown = json.dumps(default) if isinstance(default, dict) else default
        help_text = f"{f.metadata.get('help', '')} (default: {shown}{'; ' + notes[f.name] if f.name in notes else ''})"
        help_text = help_text.replace("%", "%%")
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
            continue
        kwargs: dict[str, Any] = {"type": _parser_for(base, optional), "default": argparse.SUPPRESS, "help": help_text}
        if typing.get_origin(base) is Literal:
            kwargs["choices"] = list(typing.get_args(base)) + (["none"] if optional else [])
            kwargs["metavar"] = "{" + ",".join(map(str, kwargs["choices"])) + "}"
        parser.add_argument(flag, **kwargs)


def given(namespace: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of `cls` given on the command line (absent ones are not in the namespace)."""
    values = vars(namespace)
    return {f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values}


def build(cls: type[T], values: Mapping[str, Any]) -> T:
    """`cls(**values)` with the keys that are fields of `cls` (the rest belong to other dataclasses)."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: v for k, v in values.items() if k in names})


def flags(config: Any, keys: Sequence[str] | None = None) -> list[str]:
    """The command-line flags that recreate the non-default fields of dataclass instance `config` (all fields, or
    `keys`), e.g. for the command a model card shows."""
    out = []
    for f in dataclasses.fields(config):
        if keys is not None and f.name not in keys:
            continue
        value, default = getattr(config, f.name), default_of(f)
        if value == default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else f"--no-{f.name.replace('_', '-')}")
        elif isinstance(value, dict):
            out.append(f"{flag} '{json.dumps(value)}'")
        else:
            out.append(f"{flag} {'none' if value is None else value}")
    return out


# ---- field roles, declared as field metadata (PEFT's style) ------------------------------------------------------
# "min": the smallest value allowed (None stays allowed for an optional field); "resumable": the field may change
# when a run resumes without changing what it computes; "protocol": the field decides an evaluation's numbers.


def fields_with(cls: type, role: str) -> tuple[str, ...]:
    """Names of the fields of dataclass `cls` whose metadata sets `role`."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get(role))


def check_fields(config: Any) -> None:
    """Refuse, naming the field, a value below its metadata's "min" or outside its `Literal` choices."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None:
            continue
        base, optional = field_type(_hints(type(config))[f.name])
        if typing.get_origin(base) is Literal and value not in typing.get_args(base):
            raise ValueError(f"{f.name} must be one of {typing.get_args(base)}, got {value!r}")
        low = f.metadata.get("min")
        if low is not None and value < low:
            raise ValueError(f"{f.name} must be >= {low}{' (or None)' if optional else ''}, got {value}")
