import numpy as np
import pytest
from PIL import Image

from dicom_util import write_dicom
from gazecxr.data.images import ImageReadError, locate_image, read_radiograph


@pytest.fixture
def ramp():
    return np.tile(np.linspace(0, 4095, 40), (30, 1)).astype(np.uint16)


def test_dicom_monochrome2_scaled_to_unit(tmp_path, ramp):
    img = read_radiograph(write_dicom(tmp_path / "a.dcm", ramp))
    assert img.dtype == np.float32 and img.shape == (30, 40)
    assert img.min() == 0 and img.max() == 1
    assert img[0, 0] == 0 and img[0, -1] == 1


def test_dicom_monochrome1_is_inverted(tmp_path, ramp):
    m2 = read_radiograph(write_dicom(tmp_path / "a.dcm", ramp))
    m1 = read_radiograph(write_dicom(tmp_path / "b.dcm", 4095 - ramp, "MONOCHROME1"))
    np.testing.assert_allclose(m1, m2, atol=1e-6)


def test_dicom_negative_rescale_slope_is_applied(tmp_path, ramp):
    img = read_radiograph(write_dicom(tmp_path / "a.dcm", ramp, slope=-2.0, intercept=100.0))
    assert img[0, 0] == 1 and img[0, -1] == 0


def test_png_16bit_and_jpg_fallback(tmp_path, ramp):
    Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "a.png")
    png = read_radiograph(tmp_path / "a.png")
    assert png.shape == (30, 40) and png[0, -1] == 1 and png[0, 0] == 0
    jpg = tmp_path / "files" / "p10" / "x.jpg"
    jpg.parent.mkdir(parents=True)
    Image.fromarray((ramp / 16).astype(np.uint8)).save(jpg)
    found = locate_image(tmp_path, "files/p10/x.dcm")
    assert found == jpg
    assert np.corrcoef(read_radiograph(found).ravel(), png.ravel())[0, 1] > 0.99


@pytest.mark.parametrize("content,match", [(b"", "empty file"), (b"not a dicom at all" * 10, "unreadable DICOM")])
def test_bad_dicom_is_a_clear_error(tmp_path, content, match):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(content)
    with pytest.raises(ImageReadError, match=match) as err:
        read_radiograph(bad)
    assert "bad.dcm" in str(err.value)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(ImageReadError, match="image missing"):
        locate_image(tmp_path, "files/p1/none.dcm")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ImageReadError, match="unsupported image type"):
        read_radiograph(tmp_path / "a.txt")
    (tmp_path / "c.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ImageReadError, match="unreadable image"):
        read_radiograph(tmp_path / "c.png")
