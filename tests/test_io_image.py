"""dsfnet.io.read_image: every accepted input kind and every bad input gives a clear ImageReadError."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from dsfnet.io import ImageNotFoundError, ImageReadError, read_image


def _rgb(h=6, w=8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_uint8_array_passes_through_without_copy():
    a = _rgb()
    out = read_image(a)
    assert out is a


def test_bgr_flag_reverses_channels():
    a = _rgb()
    np.testing.assert_array_equal(read_image(a, bgr=True), a[:, :, ::-1])


def test_gray_and_single_channel_and_rgba_arrays():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = read_image(g)
    assert out.shape == (3, 4, 3) and (out == g[:, :, None]).all()
    np.testing.assert_array_equal(read_image(g[:, :, None]), out)
    rgba = np.dstack([_rgb(3, 4), np.full((3, 4), 7, np.uint8)])
    np.testing.assert_array_equal(read_image(rgba), rgba[:, :, :3])


def test_float_and_uint16_scaling_and_bool_refused():
    f = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert read_image(f)[0, :, 0].tolist() == [0, 128, 255]
    u16 = np.array([[0, 257, 65535]], dtype=np.uint16)
    assert read_image(u16)[0, :, 1].tolist() == [0, 1, 255]
    with pytest.raises(ImageReadError, match="boolean array is a mask"):
        read_image(np.array([[True, False]]))
    assert read_image(np.array([[3, 200]], dtype=np.int64))[0, :, 0].tolist() == [3, 200]


@pytest.mark.parametrize(
    "arr, msg",
    [
        (np.full((2, 2), 2.0), "[0, 1]"),
        (np.full((2, 2), np.nan), "NaN"),
        (np.full((2, 2), 300, np.int32), "0..255"),
        (np.zeros((2, 2, 2), np.uint8), "(H, W)"),
        (np.zeros((2, 2, 3, 1), np.uint8), "(H, W)"),
        (np.zeros((0, 5, 3), np.uint8), "no pixels"),
        (np.zeros((2, 2), np.complex64), "dtype"),
    ],
)
def test_bad_arrays(arr, msg):
    with pytest.raises(ImageReadError, match=msg.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        read_image(arr)


def test_png_jpeg_roundtrip_and_pil(tmp_path):
    a = _rgb(10, 12)
    Image.fromarray(a).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), a)
    np.testing.assert_array_equal(read_image(str(tmp_path / "a.png")), a)
    np.testing.assert_array_equal(read_image((tmp_path / "a.png").read_bytes()), a)
    np.testing.assert_array_equal(read_image(Image.fromarray(a)), a)
    smooth = np.dstack([*np.meshgrid(np.arange(32) * 8, np.arange(32) * 4), np.full((32, 32), 90)]).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    assert np.abs(read_image(tmp_path / "a.jpg").astype(int) - smooth).mean() < 2.0  # lossy, same picture


def test_pil_modes(tmp_path):
    a = _rgb(5, 7)
    pal = Image.fromarray(a).convert("P")
    assert read_image(pal).shape == (5, 7, 3)
    cmyk = Image.fromarray(a).convert("CMYK")
    assert read_image(cmyk).shape == (5, 7, 3)
    la = Image.fromarray(a).convert("LA")
    out = read_image(la)
    assert out.shape == (5, 7, 3) and (out[..., 0] == out[..., 1]).all()


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((4, 10, 3), np.uint8)  # wide image with a bright left column
    a[:, 0] = 255
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=100)
    out = read_image(tmp_path / "rot.jpg")
    assert out.shape == (10, 4, 3)  # displayed upright: tall
    assert out[0].mean() > 200 and out[-1].mean() < 50  # left column became the top row


def test_16bit_png_is_scaled(tmp_path):
    g = np.array([[0, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert read_image(tmp_path / "g16.png")[0, :, 0].tolist() == [0, 128, 255]


def test_missing_file_is_both_file_not_found_and_value_error(tmp_path):
    with pytest.raises(ImageNotFoundError, match="not found"):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.jpg")
    with pytest.raises(ValueError):
        read_image(tmp_path / "nope.jpg")


@pytest.mark.parametrize(
    "name, content, msg",
    [
        ("empty.jpg", b"", "empty"),
        ("text.jpg", b"this is not an image at all\n" * 10, "not an image"),
    ],
)
def test_bad_files(tmp_path, name, content, msg):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError, match=msg):
        read_image(tmp_path / name)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(tmp_path / "cut.jpg")


def test_directory_and_wrong_types(tmp_path):
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)
    with pytest.raises(ImageReadError, match="expected an image path"):
        read_image(12345)
    with pytest.raises(ImageReadError, match="only applies to numpy"):
        read_image(str(tmp_path / "x.png"), bgr=True)


def test_absurd_size_refused_before_decoding(tmp_path):
    # a 10000x6000 PNG header (60 MP) made cheaply from a 1-bit image
    Image.new("1", (10000, 6000)).save(tmp_path / "huge.png")
    with pytest.raises(ImageReadError, match="too large.*60.0 MP"):
        read_image(tmp_path / "huge.png")
    with pytest.raises(ImageReadError, match="too large"):
        read_image(np.zeros((100, 100), np.uint8), max_pixels=9999)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_special_files_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "p.jpg"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes
    with pytest.raises(ImageReadError, match="special file"):
        read_image(fifo)


# ------------------------------------------------------------------- PIL edge cases a breaker found (#19)

def test_32_bit_tiff_holding_8_bit_values_reads_as_8_bit():
    gray = np.random.default_rng(1).integers(0, 256, (6, 8)).astype(np.int32)
    buf = io.BytesIO()
    Image.fromarray(gray, mode="I").save(buf, format="TIFF")
    out = read_image(buf.getvalue())
    np.testing.assert_array_equal(out[..., 0], gray.astype(np.uint8))  # not scaled down to 0..1
    np.testing.assert_array_equal(read_image(Image.fromarray(gray, mode="I"))[..., 0], gray.astype(np.uint8))


def test_16_bit_png_in_mode_i_stays_16_bit():
    g16 = np.full((4, 4), 200, np.uint16)  # dark, but declared 16-bit by the PNG
    buf = io.BytesIO()
    Image.fromarray(g16).save(buf, format="PNG")
    assert read_image(buf.getvalue()).max() == round(200 * 255 / 65535)


def test_premultiplied_la_and_rgba_modes_are_read():
    la = Image.new("La", (5, 3), (120, 255))
    np.testing.assert_array_equal(read_image(la), np.full((3, 5, 3), 120, np.uint8))
    rgba = Image.new("RGBa", (5, 3), (10, 20, 30, 255))
    np.testing.assert_array_equal(read_image(rgba)[0, 0], [10, 20, 30])


def test_truncated_lazy_and_closed_pil_images_are_clear_errors():
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="PNG")
    lazy = Image.open(io.BytesIO(buf.getvalue()[:300]))  # header fine, data cut: fails only when decoded
    with pytest.raises(ImageReadError, match="truncated, corrupt or closed"):
        read_image(lazy)
    closed = Image.open(io.BytesIO(buf.getvalue()))
    closed.close()
    with pytest.raises(ImageReadError, match="truncated, corrupt or closed"):
        read_image(closed)


def test_multi_page_tiff_uses_the_first_page_and_says_so():
    pages = [Image.fromarray(np.full((4, 4, 3), v, np.uint8)) for v in (10, 200)]
    buf = io.BytesIO()
    pages[0].save(buf, format="TIFF", save_all=True, append_images=pages[1:])
    with pytest.warns(UserWarning, match="2 frames.*first"):
        out = read_image(buf.getvalue())
    assert out.max() == 10


def test_folder_suffixes_cover_what_a_named_file_reads(tmp_path):
    from dsfnet.io.image import image_suffixes

    img = Image.fromarray(_rgb(8, 8))
    for fmt, suffix in (("GIF", ".gif"), ("PNG", ".png"), ("TIFF", ".tif")):
        img.save(tmp_path / f"x{suffix}", format=fmt)
        assert read_image(tmp_path / f"x{suffix}").shape == (8, 8, 3)
        assert suffix in image_suffixes()
    assert ".mpg" not in image_suffixes() and ".pdf" not in image_suffixes()
