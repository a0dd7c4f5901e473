"""The forgiving shot-folder reader: real files written with PIL into tmp_path, tiny sizes."""

import os

import numpy as np
import pytest
from PIL import Image

from hf_rtp.shot_folder import IMAGE_SUFFIXES, fit_to, read_shot_folder, to_8bit


def save(root, name, image):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def gray(size, value=100):
    return Image.new("L", size, value)


def ink_mask(size=8):
    """A square of ink in the middle of a size x size picture: True where the ink is."""
    mask = np.zeros((size, size), dtype=bool)
    mask[2:6, 2:6] = True
    return mask


def test_image_suffixes():
    assert set(IMAGE_SUFFIXES) == {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


def test_classes_sorted_labels_and_files_in_order(tmp_path):
    for name, count in (("zebra", 3), ("apple", 2), ("mango", 1)):
        for i in reversed(range(count)):
            save(tmp_path, f"{name}/{i}.png", gray((4, 4), value=10 * i))
    shots = read_shot_folder(tmp_path)
    assert shots.labels == ["apple"] * 2 + ["mango"] + ["zebra"] * 3
    assert shots.classes == ["apple", "mango", "zebra"]
    assert shots.paths == ["apple/0.png", "apple/1.png", "mango/0.png", "zebra/0.png", "zebra/1.png", "zebra/2.png"]
    assert [np.asarray(image)[0, 0] for image in shots.images] == [0, 10, 0, 0, 10, 20]
    assert all(image.mode == "L" and image.size == (4, 4) for image in shots.images)
    assert shots.skipped == [] and shots.notes() == []


def test_resize_with_a_note(tmp_path):
    save(tmp_path, "a/1.png", gray((8, 8)))
    save(tmp_path, "b/1.png", gray((4, 4)))
    images, notes = fit_to(read_shot_folder(tmp_path).images, channels=1, height=4, width=4)
    assert [image.size for image in images] == [(4, 4), (4, 4)]
    assert np.asarray(images[0]).tolist() == [[100] * 4] * 4  # a plain picture stays plain
    assert notes == ["resized 1 picture of 8x8 (a/1.png) to 4x4"]


def test_mixed_sizes_all_resized_notes_name_the_files(tmp_path):
    for name, (w, h) in {"a/1.png": (8, 8), "a/2.png": (6, 10), "b/1.png": (8, 8), "b/2.png": (4, 4),
                         "c/1.png": (8, 8), "c/2.png": (8, 8), "c/3.png": (8, 8)}.items():
        save(tmp_path, name, gray((w, h)))
    images, notes = fit_to(read_shot_folder(tmp_path).images, channels=1, height=4, width=4)
    assert {image.size for image in images} == {(4, 4)}
    assert notes == ["resized 5 pictures of 8x8 (a/1.png, b/1.png, c/1.png, ...) to 4x4",
                     "resized 1 picture of 10x6 (a/2.png) to 4x4, stretching it to another aspect ratio"]
    assert not any("b/2.png" in note for note in notes)


def test_fit_to_converts_colour_modes_with_notes():
    red, plain = Image.new("RGB", (2, 2), (255, 0, 0)), gray((2, 2), value=7)
    images, notes = fit_to([red, plain], channels=1, height=2, width=2)
    assert [image.mode for image in images] == ["L", "L"]
    assert np.asarray(images[0])[0, 0] == 76  # ITU-R 601-2 luminance of pure red
    assert notes == ["converted 1 RGB picture (picture 1) to grayscale (L), as the memory has 1 channel"]
    images, notes = fit_to([red, plain], channels=3, height=2, width=2)
    assert [image.mode for image in images] == ["RGB", "RGB"]
    assert np.asarray(images[1])[0, 0].tolist() == [7, 7, 7]
    assert notes == ["converted 1 L picture (picture 2) to RGB by repeating the gray, as the memory has 3 channels"]
    with pytest.raises(ValueError, match="not 2"):
        fit_to([red], channels=2, height=2, width=2)


def test_corrupt_file_skipped_with_its_path_the_rest_read(tmp_path):
    save(tmp_path, "a/1.png", gray((4, 4)))
    bad = tmp_path / "a" / "2.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes())
    save(tmp_path, "b/1.png", gray((4, 4)))
    shots = read_shot_folder(tmp_path)
    assert shots.labels == ["a", "b"] and shots.paths == ["a/1.png", "b/1.png"]
    assert len(shots.skipped) == 1
    assert shots.skipped[0].startswith(f"{bad}: cannot read it (") and shots.skipped[0].endswith("skipped")
    assert shots.notes() == shots.skipped


def test_truncated_file_skipped(tmp_path):
    noise = np.random.default_rng(2).integers(0, 256, (32, 32), dtype=np.uint8)  # does not compress
    data = save(tmp_path, "a/1.png", Image.fromarray(noise)).read_bytes()
    (tmp_path / "a" / "2.png").write_bytes(data[:len(data) // 2])
    shots = read_shot_folder(tmp_path)
    assert shots.paths == ["a/1.png"]
    assert [line.split(":")[0] for line in shots.skipped] == [str(tmp_path / "a" / "2.png")]


def test_empty_class_skipped_with_a_note_others_read(tmp_path):
    (tmp_path / "a").mkdir()
    save(tmp_path, "b/1.png", gray((4, 4)))
    save(tmp_path, "c/1.png", gray((4, 4)))
    (tmp_path / "c" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "c" / "readme.txt").write_text("my shots")
    shots = read_shot_folder(tmp_path)
    assert shots.labels == ["b", "c"]
    assert shots.skipped == [f"{tmp_path / 'a'}: class 'a' skipped, no pictures in it "
                             "(.png .jpg .jpeg .bmp .webp .gif .tif .tiff)",
                             f"{tmp_path / 'c' / 'readme.txt'}: not a picture (suffix .txt), ignored"]


def test_class_whose_every_file_is_bad_is_skipped(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.png").write_bytes(b"not a png")
    save(tmp_path, "b/1.png", gray((4, 4)))
    shots = read_shot_folder(tmp_path)
    assert shots.classes == ["b"]
    assert shots.skipped[-1] == f"{tmp_path / 'a'}: class 'a' skipped, none of its 1 picture(s) could be read"


def test_all_bad_folder_raises_naming_the_folder(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.png").write_bytes(b"not a png")
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError) as error:
        read_shot_folder(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path}: no readable picture") and "(a, b)" in message
    assert "\n" not in message


@pytest.mark.parametrize("make, expected", [
    (lambda root: root / "missing", "no such folder"),
    (lambda root: save(root, "x.png", gray((2, 2))), "is a file"),
    (lambda root: root, "no class folders inside"),
])
def test_fatal_cases_raise_one_line_naming_the_folder(tmp_path, make, expected):
    folder = make(tmp_path)
    with pytest.raises(ValueError) as error:
        read_shot_folder(folder)
    message = str(error.value)
    assert message.startswith(f"{folder}: {expected}") and "\n" not in message


def test_pictures_outside_class_folders_are_named_in_the_error(tmp_path):
    save(tmp_path, "1.png", gray((2, 2)))
    save(tmp_path, "2.png", gray((2, 2)))
    with pytest.raises(ValueError, match="holds 2 picture"):
        read_shot_folder(tmp_path)


def test_16_bit_ramp_scaled_to_8_bits(tmp_path):
    ramp = np.arange(256)
    path = save(tmp_path, "a/ramp.png", Image.fromarray((ramp * 257).astype(np.uint16).reshape(16, 16)))
    with Image.open(path) as check:
        assert check.mode in ("I;16", "I")  # the file really is 16-bit
    shots = read_shot_folder(tmp_path)
    image = shots.images[0]
    assert image.mode == "L"
    assert np.abs(np.asarray(image).astype(int).ravel() - ramp).max() <= 1
    assert shots.converted == ["16-bit grayscale (I;16) scaled from 0..65535 to 0..255: 1 picture (a/ramp.png)"]


def test_16_bit_image_using_only_8_bit_values_is_not_stretched():
    values = np.array([[0, 7], [100, 200]], dtype=np.uint16)
    image, note = to_8bit(Image.fromarray(values))
    assert image.mode == "L" and np.asarray(image).tolist() == values.tolist()
    assert "kept as is" in note
    image, _ = to_8bit(Image.fromarray(np.array([[0, 257], [514, 1000]], dtype=np.uint16)))  # dark: not stretched
    assert np.asarray(image).tolist() == [[0, 1], [2, 4]]
    image, _ = to_8bit(Image.fromarray(values.astype(np.int32) * 1000))  # "I" beyond 16 bits: by its maximum
    assert np.asarray(image).tolist() == [[0, 9], [128, 255]]
    image, _ = to_8bit(Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], dtype=np.float32)))  # "F" in 0..1
    assert np.asarray(image).tolist() == [[0, 128], [255, 64]]


def rgba_ink(colour, size=8):
    mask = ink_mask(size)
    pixels = np.zeros((size, size, 4), dtype=np.uint8)
    pixels[..., :3] = colour
    pixels[..., 3] = np.where(mask, 255, 0)
    return Image.fromarray(pixels), mask


def test_white_ink_on_transparency_becomes_light_ink_on_black(tmp_path):
    image, mask = rgba_ink((255, 255, 255))
    save(tmp_path, "a/1.png", image)
    la = np.stack([np.full(mask.shape, 250, np.uint8), np.where(mask, 255, 0).astype(np.uint8)], axis=-1)
    save(tmp_path, "a/2.png", Image.fromarray(la))
    shots = read_shot_folder(tmp_path)
    assert [image.mode for image in shots.images] == ["RGB", "L"]
    for image in shots.images:
        pixels = np.asarray(image.convert("L"))
        assert pixels[mask].min() >= 245 and pixels[~mask].max() <= 5
    assert shots.converted == ["light ink on transparency (RGBA) put onto black: 1 picture (a/1.png)",
                               "light ink on transparency (LA) put onto black: 1 picture (a/2.png)"]


def test_black_ink_on_transparency_becomes_dark_ink_on_white(tmp_path):
    image, mask = rgba_ink((0, 0, 0))
    save(tmp_path, "a/1.png", image)
    shots = read_shot_folder(tmp_path)
    pixels = np.asarray(shots.images[0])
    assert pixels[mask].max() <= 5 and pixels[~mask].min() >= 250
    assert shots.converted == ["dark ink on transparency (RGBA) put onto white: 1 picture (a/1.png)"]


def test_half_transparent_ink_is_blended():
    pixels = np.zeros((2, 2, 2), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1] = 255, [[255, 128], [0, 0]]
    image, _ = to_8bit(Image.fromarray(pixels))  # LA: white ink, light -> onto black
    assert np.asarray(image).tolist() == [[255, 128], [0, 0]]


def test_opaque_alpha_behaves_like_rgb():
    colours = np.random.default_rng(1).integers(0, 256, (3, 3, 3), dtype=np.uint8)
    rgba = np.concatenate([colours, np.full((3, 3, 1), 255, np.uint8)], axis=-1)
    image, note = to_8bit(Image.fromarray(rgba))
    assert image.mode == "RGB" and np.array_equal(np.asarray(image), colours) and note is None


def test_palette_with_transparency_and_other_modes():
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.info["transparency"] = 0  # colour 0 (black) transparent, the rest white ink
    image, note = to_8bit(palette)
    assert image.mode == "L" and np.asarray(image)[0, 0] == 0 and np.asarray(image)[1, 1] == 255
    assert note == "light ink on transparency (RGBA) put onto black"
    colours = Image.new("P", (2, 2), 0)
    colours.putpalette([255, 0, 0] + [0] * 765)
    image, note = to_8bit(colours)
    assert image.mode == "RGB" and np.asarray(image)[0, 0].tolist() == [255, 0, 0] and note is None
    image, note = to_8bit(Image.new("1", (2, 2), 1))
    assert image.mode == "L" and np.asarray(image).tolist() == [[255, 255]] * 2 and note is None
    image, note = to_8bit(Image.new("CMYK", (2, 2), (0, 0, 0, 0)))
    assert image.mode == "RGB" and np.asarray(image)[0, 0].tolist() == [255, 255, 255]
    assert note == "CMYK converted to RGB"


def test_exif_orientation_turns_the_picture_upright(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the stored 6 wide x 4 high picture is shown 4 wide x 6 high
    (tmp_path / "a").mkdir()
    Image.new("RGB", (6, 4), (0, 0, 255)).save(tmp_path / "a" / "1.jpg", exif=exif)
    shots = read_shot_folder(tmp_path)
    assert shots.images[0].size == (4, 6)
    assert shots.converted == ["turned upright as its EXIF orientation says: 1 picture (a/1.jpg)"]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_files_are_closed_after_reading(tmp_path):
    for i in range(5):
        save(tmp_path, f"a/{i}.png", gray((3, 3)))
    before = len(os.listdir("/proc/self/fd"))
    shots = read_shot_folder(tmp_path)
    assert len(os.listdir("/proc/self/fd")) == before
    assert np.asarray(shots.images[4]).tolist() == [[100] * 3] * 3  # the pictures are loaded, not lazy
