"""Reading a folder of few-shot pictures, `shots/<class_name>/*.png`, for recall by pictures.

People gather shots by hand: from phones, screenshots, drawing tools and scanners. So the reader is forgiving where one
picture or one class is odd (it is skipped with a note; the recall goes on) and strict only where nothing sensible can
be read. Every change made to a picture (bit depth, transparency, colour mode, size) is reported as a note, never made
silently, so a surprising recall can be traced back to its pictures. PIL and numpy only: the folder is checked before
torch is imported.
"""

from __future__ import annotations

import os
import struct
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# What operating systems and zip tools leave in folders (besides hidden `.name` files): never the user's pictures, so
# they are passed over without a note.
SYSTEM_NAMES = frozenset({"Thumbs.db", "desktop.ini", "__MACOSX"})
# The image.info key that holds a picture's path inside its shot folder ("cat/1.png"), so that `fit_to` can name it.
PATH_KEY = "shot_path"
# Pillow widens its filters' support when it shrinks, so BILINEAR is a triangle filter over all the source pixels a
# target pixel covers: big reductions are antialiased, not aliased. LANCZOS would be sharper but rings, leaving halos
# around the hard edges of ink on a plain background, which is what shot pictures mostly are.
RESAMPLE = Image.Resampling.BILINEAR
# What Pillow raises for a file it cannot decode: unidentified or truncated files (OSError), broken headers of some
# formats (SyntaxError, struct.error, EOFError), unsupported conversions (ValueError), decompression bombs.
READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)
DEEP_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


@dataclass
class ShotFolder:
    """The pictures of a shot folder, 8-bit "L" or "RGB", with their class names, and what was passed over or changed.

    `skipped` says what was not read (one line each: an unreadable file with the reason, an empty class, a stray
    file); `converted` says how pictures were changed to 8 bits (one line per kind of change, naming the files).
    """

    images: list[Image.Image]
    labels: list[str]  # the class folder name of each picture, classes in sorted folder-name order
    skipped: list[str] = field(default_factory=list)
    converted: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)  # each picture's path inside the folder, "class_name/file.png"

    @property
    def classes(self) -> list[str]:
        """The classes that have pictures, in order."""
        return list(dict.fromkeys(self.labels))

    def notes(self) -> list[str]:
        """Every line a person should see before trusting the recall: what was skipped, then what was changed."""
        return self.skipped + self.converted


def read_shot_folder(folder: str | os.PathLike[str]) -> ShotFolder:
    """`folder/class_name/*.png` -> a ShotFolder; classes in sorted order, the pictures of each in sorted order.

    Raises ValueError (one line naming the folder) only when nothing can be recalled: no such folder, a file, no class
    folders inside, or not one readable picture. A bad file, an empty class or a stray file is skipped with a note, as
    one slip in a hand-made folder should not cost the whole recall. Hidden files (.DS_Store, ._x.png) and SYSTEM_NAMES
    are ignored without a note.
    """
    root = Path(folder)
    expected = f"expected {os.path.join(folder, 'class_name', '*.png')}"
    if not root.exists():
        raise ValueError(f"{folder}: no such folder ({expected})")
    if not root.is_dir():
        raise ValueError(f"{folder}: is a file, not a folder ({expected})")
    entries = _visible(root)
    class_dirs = [path for path in entries if path.is_dir()]
    if not class_dirs:
        pictures = sum(path.suffix.lower() in IMAGE_SUFFIXES for path in entries)
        hint = (f"; it holds {pictures} picture(s) directly: put each class's pictures in a folder named after "
                "the class" if pictures else "")
        raise ValueError(f"{folder}: no class folders inside ({expected}){hint}")
    shots = ShotFolder([], [])
    shots.skipped += [f"{path}: not inside a class folder, ignored" for path in entries if not path.is_dir()]
    changes: dict[str, list[str]] = defaultdict(list)  # note -> the pictures it applies to
    for class_dir in class_dirs:
        _read_class(class_dir, root, shots, changes)
    if not shots.images:
        first = f"; first problem: {shots.skipped[0]}" if shots.skipped else ""
        raise ValueError(f"{folder}: no readable picture in any of its {len(class_dirs)} class folder(s) "
                         f"({', '.join(d.name for d in class_dirs)}){first}")
    shots.converted = [f"{note}: {_some(names)}" for note, names in changes.items()]
    return shots


def _visible(folder: Path) -> list[Path]:
    """The entries of `folder` by sorted name, without hidden files and operating-system leftovers."""
    return sorted((path for path in folder.iterdir()
                   if not path.name.startswith(".") and path.name not in SYSTEM_NAMES), key=lambda path: path.name)


def _read_class(class_dir: Path, root: Path, shots: ShotFolder, changes: dict[str, list[str]]) -> None:
    """Appends the readable pictures of one class folder to `shots`; notes the rest, and the class if none was read."""
    read_before, tried = len(shots.images), 0
    for path in _visible(class_dir):
        if path.is_dir():
            shots.skipped.append(f"{path}: a folder inside class folder {class_dir.name!r}, ignored "
                                 "(pictures go directly in the class folder)")
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            shots.skipped.append(f"{path}: not a picture (suffix {path.suffix or 'none'}), ignored")
            continue
        tried += 1
        try:
            image, notes = _open(path)
        except READ_ERRORS as error:
            shots.skipped.append(f"{path}: cannot read it ({str(error) or type(error).__name__}), skipped")
            continue
        name = path.relative_to(root).as_posix()
        image.info[PATH_KEY] = name
        for note in notes:
            changes[note].append(name)
        shots.images.append(image)
        shots.labels.append(class_dir.name)
        shots.paths.append(name)
    if len(shots.images) == read_before:
        why = (f"none of its {tried} picture(s) could be read" if tried
               else f"no pictures in it ({' '.join(IMAGE_SUFFIXES)})")
        shots.skipped.append(f"{class_dir}: class {class_dir.name!r} skipped, {why}")


def _open(path: Path) -> tuple[Image.Image, list[str]]:
    """One picture, decoded in full and detached from its file (so the handle is closed), upright, at 8 bits."""
    notes = []
    with Image.open(path) as opened:
        opened.load()
        if getattr(opened, "n_frames", 1) > 1:
            notes.append("only the first frame of a multi-frame picture read")
        orientation = opened.getexif().get(0x0112, 1)  # EXIF Orientation: how a phone held the camera
        image = ImageOps.exif_transpose(opened)  # a detached copy, as viewers show it
    if orientation not in (0, 1):
        notes.append("turned upright as its EXIF orientation says")
    image, note = to_8bit(image)
    return image, notes + ([note] if note else [])


def to_8bit(image: Image.Image) -> tuple[Image.Image, str | None]:
    """`image` as 8-bit "L" or "RGB", and a note when its pixel values were changed (None when only re-encoded).

    A memory's pixel space is 8-bit L or RGB, and Pillow's own conversions of the other modes are lossy in ways
    nobody would choose: 16-bit grayscale saturates to white, transparency is dropped (white ink on a transparent
    background, as drawing tools save it, turns into a blank white picture). The rules:

    - 16-bit / integer / float grayscale (DEEP_GRAY_MODES): see `_deep_gray_to_8bit`.
    - transparency (RGBA, LA, PA, premultiplied RGBa/La, palette or L/RGB with a transparent colour): put onto a
      background that contrasts with the ink, see `_flatten_alpha`; a fully opaque alpha is simply dropped.
    - palette "P" -> RGB ("L" when the palette's colours in use are all gray), "1" -> L: no value changes, no note.
    - CMYK and any other mode -> RGB, with a note.
    """
    mode, transparent = image.mode, "transparency" in image.info
    if mode in ("L", "RGB") and not transparent:
        return image, None
    if mode in DEEP_GRAY_MODES:
        return _deep_gray_to_8bit(image)
    if mode == "1":
        return image.convert("L"), None
    if mode in ("P", "PA"):
        flat, note = to_8bit(image.convert("RGBA" if mode == "PA" or transparent else "RGB"))
        return _gray_if_gray(flat), note
    if mode in ("L", "RGB"):  # with a transparent colour (a PNG tRNS chunk)
        return to_8bit(image.convert("LA" if mode == "L" else "RGBA"))
    if mode in ("LA", "La", "RGBA", "RGBa"):
        return _flatten_alpha(image.convert("LA" if mode.startswith("L") else "RGBA"))
    return image.convert("RGB"), f"{mode} converted to RGB"


def _deep_gray_to_8bit(image: Image.Image) -> tuple[Image.Image, str]:
    """Deep grayscale to 8 bits by a fixed scale chosen from the values' maximum, never by stretching min..max.

    The scale is the one of the format the values evidently come from, so dark pictures stay dark and one picture's
    contrast is not changed against another's:
    - integer values up to 255 are kept: a 16-bit file that only holds 8-bit values was written by a tool that widened
      8-bit data, and stretching it would brighten it 257-fold to white;
    - values up to 65535 are scaled by 255/65535 (a full 16-bit range; 65535 -> 255, 257 * v -> v);
    - larger values (32-bit "I") are scaled by 255/maximum;
    - float ("F") values within 0..1 are scaled by 255, the usual convention for float pictures; others as above;
    - negative values (and NaN) are clipped to 0.
    """
    values = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0)
    clipped = bool((values < 0).any())
    values = np.clip(values, 0, None)
    top = float(values.max()) if values.size else 0.0
    if image.mode == "F" and top <= 1:
        scale, how = 255.0, "scaled from 0..1 to 0..255"
    elif top <= 255:
        scale, how = 1.0, "kept as is (its values are all within 0..255)"
    elif top <= 65535:
        scale, how = 255 / 65535, "scaled from 0..65535 to 0..255"
    else:
        scale, how = 255 / top, "scaled from 0..its maximum to 0..255"
    depth = "16-bit" if image.mode.startswith("I;16") else "integer" if image.mode == "I" else "floating-point"
    note = f"{depth} grayscale ({image.mode}) {how}" + ("; negative values clipped to 0" if clipped else "")
    eight = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
    return Image.fromarray(eight), note


def _flatten_alpha(image: Image.Image) -> tuple[Image.Image, str | None]:
    """An "LA" or "RGBA" picture put onto a black or white background, whichever contrasts with its ink.

    The ink's lightness is the alpha-weighted mean luminance of the visible pixels (luminance as Pillow's "L",
    ITU-R 601-2): above 0.5 the ink is light and goes onto black, otherwise onto white. So white strokes drawn on
    transparency (constant white colour, the strokes only in alpha) stay visible, and so do dark ones. A fully
    opaque alpha is dropped without a note; a fully transparent picture becomes blank white, with a note.
    """
    flat_mode = image.mode[:-1]  # "L" or "RGB"
    alpha = np.asarray(image.getchannel("A"), dtype=np.float64) / 255
    if alpha.min() == 1:
        return image.convert(flat_mode), None
    if alpha.sum() == 0:
        background, note = 255.0, f"fully transparent ({image.mode}): read as a blank white picture"
    else:
        luminance = np.asarray(image.convert("L"), dtype=np.float64) / 255
        light = (alpha * luminance).sum() / alpha.sum() > 0.5
        background = 0.0 if light else 255.0
        note = (f"{'light' if light else 'dark'} ink on transparency ({image.mode}) put onto "
                f"{'black' if light else 'white'}")
    colour = np.asarray(image.convert(flat_mode), dtype=np.float64)
    if flat_mode == "RGB":
        alpha = alpha[..., None]
    out = colour * alpha + background * (1 - alpha)
    return Image.fromarray(np.rint(out).astype(np.uint8)), note


def _gray_if_gray(image: Image.Image) -> Image.Image:
    """An RGB picture whose channels are all equal as "L": a palette of grays is a grayscale picture."""
    if image.mode == "RGB":
        rgb = np.asarray(image)
        if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
            return image.convert("L")
    return image


def fit_to(images: list[Image.Image], channels: int, height: int, width: int) -> tuple[list[Image.Image], list[str]]:
    """`images` in a memory's picture format: `channels` (1 -> "L", 3 -> "RGB") at height x width; and notes.

    Pictures are first made 8-bit (`to_8bit`), then converted to the memory's colour mode (RGB -> L by ITU-R 601-2
    luminance; L -> RGB by repeating the gray), then resized with RESAMPLE (stretched if the aspect ratio differs:
    cropping could cut off the subject). Nothing is changed silently: one note per kind of mode change and one per
    distinct original size, e.g. "resized 3 pictures of 64x64 (a/1.png, ...) to 28x28" (sizes are height x width,
    as in the memory's image shape), naming up to 3 pictures by their path in the shot folder (PATH_KEY) or as
    "picture N". Pictures that already fit are returned as they are.
    """
    if channels not in (1, 3):
        raise ValueError(f"pictures can be fitted to 1 (grayscale) or 3 (RGB) channels, not {channels}")
    if height < 1 or width < 1:
        raise ValueError(f"cannot fit pictures to {height}x{width}")
    target = "L" if channels == 1 else "RGB"
    fitted = []
    depth: dict[str, list[str]] = defaultdict(list)
    modes: dict[str, list[str]] = defaultdict(list)
    sizes: dict[tuple[int, int], list[str]] = defaultdict(list)
    for number, image in enumerate(images, 1):
        name = image.info.get(PATH_KEY) or f"picture {number}"
        image, note = to_8bit(image)
        if note:
            depth[note].append(name)
        if image.mode != target:
            modes[image.mode].append(name)
            image = image.convert(target)
        if image.size != (width, height):
            sizes[(image.height, image.width)].append(name)
            image = image.resize((width, height), RESAMPLE)
        fitted.append(image)
    notes = [f"{note}: {_some(names)}" for note, names in depth.items()]
    how = {"L": "to grayscale (L), as the memory has 1 channel",
           "RGB": "to RGB by repeating the gray, as the memory has 3 channels"}[target]
    notes += [f"converted {_some(names, f'{mode} ')} {how}" for mode, names in modes.items()]
    for (h, w), names in sizes.items():
        stretched = "" if abs(h / w - height / width) <= 0.01 else (
            f", stretching {'them' if len(names) > 1 else 'it'} to another aspect ratio")
        notes.append(f"resized {_some(names, after=f' of {h}x{w}')} to {height}x{width}{stretched}")
    return fitted, notes


def _some(names: list[str], before: str = "", after: str = "", limit: int = 3) -> str:
    """How many pictures and which, for a note: `5 RGB pictures of 8x8 (a/1.png, a/2.png, a/3.png, ...)`."""
    shown = ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")
    return f"{len(names)} {before}picture{'s' if len(names) != 1 else ''}{after} ({shown})"
