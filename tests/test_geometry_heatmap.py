import numpy as np
import pytest

from gazecxr.data.geometry import Letterbox
from gazecxr.data.heatmap import gaze_heatmap, in_image, reference_heatmap


@pytest.mark.parametrize("orig", [(3000, 2500), (2500, 3000), (1024, 1024), (777, 1301)])
def test_letterbox_fits_centred_and_keeps_aspect(orig):
    lb = Letterbox.fit(orig, (640, 512))
    nh, nw = lb.resized
    assert nh <= 640 and nw <= 512 and (nh == 640 or nw == 512)
    assert abs(nh / nw - orig[0] / orig[1]) < 0.01
    top, left = lb.pad
    assert abs((640 - nh) - 2 * top) <= 1 and abs((512 - nw) - 2 * left) <= 1


def test_image_to_canvas_pads_with_zeros_and_round_trips():
    rng = np.random.default_rng(0)
    smooth = np.outer(np.sin(np.linspace(0, 3, 300)), np.cos(np.linspace(0, 2, 200))) ** 2
    lb = Letterbox.fit(smooth.shape, (64, 64))
    canvas = lb.image_to_canvas(smooth.astype(np.float32))
    assert canvas.shape == (64, 64)
    rows, cols = lb.region
    outside = np.ones((64, 64), bool)
    outside[rows, cols] = False
    assert outside.any() and np.all(canvas[outside] == 0)
    back = lb.to_original(canvas, distribution=False)
    assert back.shape == smooth.shape
    assert np.corrcoef(back.ravel(), smooth.ravel())[0, 1] > 0.99
    prob = lb.to_original(canvas + rng.random((64, 64)).astype(np.float32))
    assert prob.shape == smooth.shape and abs(prob.sum() - 1) < 1e-4 and prob.min() >= 0


def test_canvas_coords_map_pixel_centres():
    lb = Letterbox.fit((200, 100), (100, 100))
    assert lb.scale == 0.5 and lb.pad == (0, 25)
    u, v = lb.to_canvas_coords(np.array([0, 99]), np.array([0, 199]))
    np.testing.assert_allclose(u, [24.75, 74.25])
    np.testing.assert_allclose(v, [-0.25, 99.25])


def test_in_image_drops_off_film_samples():
    x = np.array([-1, 0, 99, 100, 50])
    y = np.array([10, 10, 10, 10, 200])
    np.testing.assert_array_equal(in_image(x, y, (200, 100)), [False, True, True, False, False])


def _gaze(rng, n, h, w):
    centres = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h], (6, 2))
    pts = centres[rng.integers(0, 6, n)] + rng.normal(0, 0.03 * w, (n, 2))
    return pts[:, 0].round().astype(int), pts[:, 1].round().astype(int)


@pytest.mark.parametrize("orig", [(1200, 1000), (900, 1150)])
def test_fast_heatmap_matches_reference_recipe(orig):
    rng = np.random.default_rng(1)
    x, y = _gaze(rng, 2000, *orig)
    x[:20] = -5  # off the film: must be dropped, not clipped
    lb = Letterbox.fit(orig, (160, 128))
    sigma = 75.5 * orig[0] / 3000
    fast = gaze_heatmap(x, y, lb, sigma)
    ref = reference_heatmap(x, y, lb, sigma)
    assert fast.shape == (160, 128) and fast.dtype == np.float32
    assert abs(fast.sum() - 1) < 1e-5 and fast.min() >= 0
    rows, cols = lb.region
    outside = np.ones(fast.shape, bool)
    outside[rows, cols] = False
    assert fast[outside].sum() == 0
    assert np.corrcoef(fast.ravel(), ref.ravel())[0, 1] > 0.99


def test_heatmap_peaks_at_the_gaze_point_and_weights_count():
    lb = Letterbox.fit((400, 400), (100, 100))
    heat = gaze_heatmap(np.array([100, 300]), np.array([200, 200]), lb, sigma=20, weights=np.array([3.0, 1.0]))
    left, right = heat[50, 25], heat[50, 75]
    assert np.unravel_index(heat.argmax(), heat.shape) in {(49, 24), (49, 25), (50, 24), (50, 25)}
    assert left / right == pytest.approx(3.0, rel=0.02)


def test_heatmap_without_samples_on_image_is_an_error():
    lb = Letterbox.fit((100, 100), (64, 64))
    with pytest.raises(ValueError, match="no gaze sample"):
        gaze_heatmap(np.array([-1, 150]), np.array([5, 5]), lb, 5.0)
