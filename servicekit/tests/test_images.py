"""Image validation: every bad kind is refused with its reason before any model work."""

import io

import pytest
from PIL import Image

from servicekit.errors import InvalidImage
from servicekit.images import ImageLimits, decode_image


def encoded(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB", **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def reason_of(data: bytes, limits: ImageLimits | None = None) -> str:
    with pytest.raises(InvalidImage) as caught:
        decode_image(data, limits or ImageLimits())
    return caught.value.reason


def test_it_decodes_jpeg_and_png_to_rgb() -> None:
    for fmt in ("JPEG", "PNG"):
        image = decode_image(encoded(fmt), ImageLimits())
        assert (image.mode, image.size) == ("RGB", (40, 30))


def test_it_converts_greyscale_and_alpha_to_rgb() -> None:
    assert decode_image(encoded("PNG", mode="LA"), ImageLimits()).mode == "RGB"
    assert decode_image(encoded("PNG", mode="RGBA"), ImageLimits()).mode == "RGB"


def test_it_turns_the_image_upright_per_exif() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise
    image = decode_image(encoded("JPEG", size=(40, 30), exif=exif), ImageLimits())
    assert image.size == (30, 40)


def test_it_rejects_an_empty_upload() -> None:
    assert reason_of(b"") == "IMAGE_EMPTY"


def test_it_rejects_what_is_not_an_image() -> None:
    assert reason_of(b"%PDF-1.4 definitely not pixels") == "IMAGE_UNREADABLE"


def test_it_rejects_a_type_not_allowed_and_says_what_is() -> None:
    with pytest.raises(InvalidImage, match="send JPEG or PNG") as caught:
        decode_image(encoded("GIF"), ImageLimits())
    assert caught.value.reason == "IMAGE_TYPE_NOT_ALLOWED"


def test_it_rejects_a_truncated_jpeg() -> None:
    whole = encoded("JPEG", size=(200, 200), quality=95)
    assert reason_of(whole[: len(whole) // 2]) == "IMAGE_TRUNCATED"


def test_it_rejects_a_truncated_png() -> None:
    whole = encoded("PNG", size=(200, 200))
    assert reason_of(whole[: len(whole) - 40]) == "IMAGE_TRUNCATED"


def test_it_rejects_too_many_bytes() -> None:
    assert reason_of(encoded("PNG"), ImageLimits(max_bytes=10)) == "IMAGE_TOO_LARGE"


def test_it_rejects_too_many_pixels_from_the_header_alone() -> None:
    # A 20000x20000 PNG header on a tiny file: the check must not decode it.
    huge = encoded("PNG", size=(20000, 20000), mode="1")
    assert len(huge) < 200_000
    assert reason_of(huge, ImageLimits(max_pixels=1_000_000)) == "IMAGE_TOO_MANY_PIXELS"


def test_it_rejects_pixels_over_its_own_cap_below_pillows() -> None:
    assert reason_of(encoded("PNG", size=(2000, 1000)), ImageLimits(max_pixels=1_000_000)) == (
        "IMAGE_TOO_MANY_PIXELS"
    )


def test_a_jpeg_may_be_decoded_smaller_but_never_below_the_side_asked_for() -> None:
    photo = encoded("JPEG", size=(1600, 1200))
    assert decode_image(photo, ImageLimits(), min_side=192).size == (400, 300)
    assert decode_image(photo, ImageLimits(), min_side=700).size == (1600, 1200)
    assert decode_image(encoded("PNG", size=(1600, 1200)), ImageLimits(), min_side=192).size == (
        1600,
        1200,
    )
