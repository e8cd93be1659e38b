import torch

from gazecxr.data.transforms import PairedAugment


def _sample():
    image = torch.zeros(1, 64, 48)
    image[:, 20:30, 10:20] = 1.0
    heat = torch.zeros(1, 64, 48)
    heat[:, 20:30, 10:20] = 1.0
    return {"image": image, "heatmap": heat / heat.sum(), "label": 1}


def test_heatmap_follows_image_and_stays_a_distribution():
    torch.manual_seed(0)
    aug = PairedAugment(rotation=15, scale=(0.8, 1.2), translate=0.1, brightness=0.0, contrast=0.0)
    for _ in range(10):
        out = aug(_sample())
        heat, image = out["heatmap"][0], out["image"][0]
        assert heat.min() >= 0 and abs(float(heat.sum()) - 1) < 1e-5
        yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(48.0), indexing="ij")
        hc = (float((heat * yy).sum()), float((heat * xx).sum()))
        w = image / image.sum()
        ic = (float((w * yy).sum()), float((w * xx).sum()))
        assert abs(hc[0] - ic[0]) < 1.0 and abs(hc[1] - ic[1]) < 1.0


def test_transform_moves_content_and_is_seeded():
    aug = PairedAugment(rotation=10, translate=0.1)
    torch.manual_seed(1)
    a = aug(_sample())
    torch.manual_seed(1)
    b = aug(_sample())
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["heatmap"], b["heatmap"])
    assert not torch.equal(a["heatmap"], _sample()["heatmap"])


def test_no_flip_by_default_and_brightness_only_on_image():
    torch.manual_seed(0)
    aug = PairedAugment(rotation=0, scale=(1, 1), translate=0, brightness=0.3, contrast=0.0)
    out = aug(_sample())
    assert torch.equal(out["heatmap"], _sample()["heatmap"])
    assert not torch.equal(out["image"], _sample()["image"])
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    flip = PairedAugment(rotation=0, scale=(1, 1), translate=0, brightness=0, contrast=0, hflip=True)
    flips = [bool(torch.equal(flip(_sample())["heatmap"], _sample()["heatmap"].flip(-1))) for _ in range(30)]
    assert any(flips) and not all(flips)
