import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, JPEGLSLossless, RLELossless

from dicom_util import compress_dicom, write_dicom
from gazecxr.data.images import ImageReadError, image_kind, locate_image, read_radiograph


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


@pytest.fixture
def film(tmp_path):
    """A 12-bit 72×56 DICOM with structure and noise (large enough for JPEG 2000's default levels)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:72, 0:56]
    pixels = (2000 + 1500 * np.exp(-((yy - 30) ** 2 + (xx - 25) ** 2) / 300) + rng.normal(0, 80, yy.shape))
    return write_dicom(tmp_path / "film.dcm", pixels.clip(0, 4095))


def test_dicom_without_suffix_is_recognised_by_its_preamble(tmp_path, film):
    bare = tmp_path / "1.2.840.113619.2.55"
    shutil.copy(film, bare)
    assert image_kind(bare) == "dicom"
    np.testing.assert_array_equal(read_radiograph(bare), read_radiograph(film))
    named_png = tmp_path / "scan.dcm"
    Image.fromarray(np.full((4, 5), 9, np.uint8)).save(named_png, format="PNG")
    assert image_kind(named_png) == "raster" and read_radiograph(named_png).shape == (4, 5)


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, RLELossless],
                         ids=["jpeg_lossless", "jpeg_ls", "jpeg2000", "rle"])
def test_compressed_dicom_decodes_to_the_uncompressed_pixels(tmp_path, film, syntax):
    packed = compress_dicom(film, tmp_path / "packed", syntax)
    ds = pydicom.dcmread(packed)
    assert ds.file_meta.TransferSyntaxUID == syntax and ds.file_meta.TransferSyntaxUID.is_compressed
    assert packed.stat().st_size < film.stat().st_size
    np.testing.assert_array_equal(read_radiograph(packed), read_radiograph(film))


def test_colour_and_alpha_rasters_become_luma_grey(tmp_path, ramp):
    grey = (ramp / 16).astype(np.uint8)
    rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full_like(grey, 128)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.jpg", quality=95)
    Image.fromarray(rgb).convert("L").save(tmp_path / "l.png")
    luma = read_radiograph(tmp_path / "l.png")
    for name in ("rgb.png", "rgba.png"):
        np.testing.assert_array_equal(read_radiograph(tmp_path / name), luma)
    jpg = read_radiograph(tmp_path / "rgb.jpg")
    assert jpg.shape == (30, 40) and np.abs(jpg - luma).max() < 0.05


def test_colour_dicom_becomes_luma_grey(tmp_path, film):
    ds = pydicom.dcmread(film)
    grey = (read_radiograph(film) * 255).astype(np.uint8)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.repeat(grey[..., None], 3, axis=-1).tobytes()
    ds.save_as(tmp_path / "rgb.dcm")
    np.testing.assert_allclose(read_radiograph(tmp_path / "rgb.dcm"), grey / 255.0 * 1.0, atol=1e-5)


def test_multi_frame_and_non_image_dicoms_are_refused_naming_the_file(tmp_path, film):
    ds = pydicom.dcmread(film)
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    ds.save_as(tmp_path / "cine.dcm")
    with pytest.raises(ValueError, match=r"cine\.dcm: multi-frame DICOM \(2 frames\)"):
        read_radiograph(tmp_path / "cine.dcm")
    report = pydicom.dcmread(film)
    del report.PixelData
    report.SOPClassUID = report.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    report.save_as(tmp_path / "report")
    with pytest.raises(ValueError, match=r"report: DICOM without pixel data, not an image \(Basic Text SR"):
        read_radiograph(tmp_path / "report")


def test_undecodable_transfer_syntax_is_named(tmp_path, film):
    ds = pydicom.dcmread(compress_dicom(film, tmp_path / "rle.dcm", RLELossless))
    ds.file_meta.TransferSyntaxUID = "1.2.826.0.1.3680043.9.7433.1.1"
    ds.save_as(tmp_path / "odd.dcm")
    with pytest.raises(ImageReadError, match=r"odd\.dcm: cannot decode DICOM pixel data in transfer syntax"):
        read_radiograph(tmp_path / "odd.dcm")


def test_unknown_content_without_suffix_is_refused(tmp_path):
    (tmp_path / "blob").write_bytes(b"\x00" * 300)
    with pytest.raises(ImageReadError, match="blob: unsupported image type: not a DICOM"):
        read_radiograph(tmp_path / "blob")


def test_predict_on_every_kind_returns_maps_in_the_original_geometry(tiny_model, tmp_path, film, ramp):
    from gazecxr.predict import load_predictor

    predictor = load_predictor(tiny_model["config"]["registry"]["root"], run=tiny_model["stage3"], device="cpu")
    bare = tmp_path / "no_suffix"
    shutil.copy(film, bare)
    files = {"bare": bare, **{name: compress_dicom(film, tmp_path / f"{name}.dcm", syntax) for name, syntax in
                              [("jpeg_lossless", JPEGLosslessSV1), ("jpeg_ls", JPEGLSLossless),
                               ("jpeg2000", JPEG2000Lossless), ("rle", RLELossless)]}}
    grey = (ramp / 16).astype(np.uint8)
    Image.fromarray(np.stack([grey, grey, 255 - grey], -1)).save(tmp_path / "rgb.jpg")
    Image.fromarray(np.dstack([grey, grey, grey, grey])).save(tmp_path / "rgba.png")
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    files.update(rgb=tmp_path / "rgb.jpg", rgba=tmp_path / "rgba.png", deep=tmp_path / "deep.png")
    predictions = predictor.predict(list(files.values()), gradcam=True)
    reference = predictor.predict(film)
    for name, prediction in zip(files, predictions):
        shape = (72, 56) if name in ("bare", "jpeg_lossless", "jpeg_ls", "jpeg2000", "rle") else (30, 40)
        assert prediction.saliency.shape == shape and prediction.gradcam.shape == shape, name
        assert abs(float(prediction.saliency.sum(dtype=np.float64)) - 1) < 1e-4, name
        if shape == (72, 56):
            np.testing.assert_allclose(prediction.saliency, reference.saliency, rtol=1e-4, atol=1e-9)
