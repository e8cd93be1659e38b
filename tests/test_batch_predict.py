"""Archive-scale batch prediction: shards + CSV, bad files logged, resuming after a killed run."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.common import save_untrained_lineage
from gazecxr import CLASS_NAMES
from gazecxr.config import load_config
from gazecxr.inference.batch import CSV_NAME, SHARD_DIR, list_inputs, read_saliency
from gazecxr.predict import load_predictor, main
from dicom_util import write_dicom
from tests_paths import ROOT

GOOD = 9


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("batch") / "checkpoints"
    config = load_config(ROOT / "configs" / "test.yaml", [f"registry.root={root}"])
    return root, save_untrained_lineage(config, stages=3, size=[64, 64])[-1].id


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[Path, Path]:
    """An archive folder (PNG, JPEG, DICOM in subfolders, two bad files, a text file) and a list
    file naming its images with relative paths, a comment, a blank line and a duplicate."""
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(0)
    names = []
    for i in range(GOOD):
        shape = (60 + 7 * i, 50 + 5 * (i % 3))
        if i % 3 == 0:
            name = f"dicom/{i}.dcm"
            write_dicom(root / name, rng.integers(0, 4095, shape))
        else:
            name = f"raster/img{i}.{'png' if i % 3 == 1 else 'jpg'}"
            (root / name).parent.mkdir(exist_ok=True)
            Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(root / name)
        names.append(name)
    (root / "raster" / "broken.png").write_bytes(b"not a png")
    (root / "dicom" / "empty.dcm").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    names[3:3] = ["raster/broken.png", "dicom/empty.dcm"]
    listing = root / "list.txt"
    listing.write_text("# archive\n" + "\n".join(names[:6]) + "\n\n" + "\n".join(names) + "\n")
    return root, listing


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / CSV_NAME, newline="") as handle:
        return list(csv.DictReader(handle))


def _check_complete(out: Path, sources: list[str]) -> list[dict[str, str]]:
    """Every source has exactly one row and sits in exactly one shard; the maps are distributions."""
    rows = _rows(out)
    assert sorted(row["source"] for row in rows) == sorted(sources)
    shards = sorted((out / SHARD_DIR).iterdir())
    assert not [p for p in shards if p.suffix != ".npz"]  # no temporaries left
    in_shards = []
    for path in shards:
        with np.load(path) as shard:
            in_shards += shard["sources"].tolist()
    assert sorted(in_shards) == sorted(sources)
    assert {row["shard"] for row in rows} == {p.name for p in shards}
    for row in rows:
        if row["status"] == "ok":
            saliency = read_saliency(out / SHARD_DIR / row["shard"], row["key"])
            assert saliency.dtype == np.float32 and saliency.shape == (int(row["height"]), int(row["width"]))
            assert saliency.min() >= 0 and abs(float(saliency.sum(dtype=np.float64)) - 1) < 1e-4
            assert abs(sum(float(row[f"p_{c}"]) for c in CLASS_NAMES) - 1) < 1e-4
            assert row["label"] in CLASS_NAMES and not row["error"]
        else:
            assert row["status"] == "error" and row["source"].split("/")[-1] in row["error"]
    return rows


def test_list_inputs_from_a_directory_and_a_list_file(archive):
    root, listing = archive
    from_dir = list_inputs(root)
    assert [s for s, _ in from_dir] == ["dicom/0.dcm", "dicom/3.dcm", "dicom/6.dcm", "dicom/empty.dcm",
                                        "raster/broken.png", "raster/img1.png", "raster/img2.jpg", "raster/img4.png",
                                        "raster/img5.jpg", "raster/img7.png", "raster/img8.jpg"]
    from_list = list_inputs(listing)
    assert len(from_list) == GOOD + 2 and from_list[0] == ("dicom/0.dcm", root / "dicom/0.dcm")
    assert sorted(s for s, _ in from_list) == sorted(s for s, _ in from_dir)
    with pytest.raises(FileNotFoundError, match="no such input list"):
        list_inputs(root / "missing.txt")


def test_batch_outputs_match_the_predictor_and_log_bad_files(registry, archive, tmp_path, capsys):
    root, entry_id = registry
    archive_root, listing = archive
    out = tmp_path / "out"
    code = main(["--input-list", str(listing), "--out", str(out), "--checkpoints", str(root), "--run", entry_id,
                 "--batch-size", "4", "--workers", "2"])
    assert code == 1  # two bad files
    rows = _check_complete(out, [s for s, _ in list_inputs(listing)])
    errors = {row["source"]: row["error"] for row in rows if row["status"] == "error"}
    assert set(errors) == {"raster/broken.png", "dicom/empty.dcm"} and "empty file" in errors["dicom/empty.dcm"]
    predictor = load_predictor(root, entry_id, device="cpu")
    row = next(r for r in rows if r["source"] == "raster/img5.jpg")
    expected = predictor.predict(archive_root / "raster/img5.jpg")
    saliency = read_saliency(out / SHARD_DIR / row["shard"], row["key"])
    np.testing.assert_allclose(saliency, expected.saliency, rtol=0, atol=2e-5 * expected.saliency.max())
    assert row["label"] == expected.label
    assert all(abs(float(row[f"p_{c}"]) - expected.probabilities[c]) < 1e-5 for c in CLASS_NAMES)
    capsys.readouterr()
    assert main(["--input-list", str(listing), "--out", str(out), "--checkpoints", str(root), "--run", entry_id]) == 1
    assert json.loads(capsys.readouterr().out) == {"total": 11, "skipped": 11, "ok": 9, "failed": 2, "out": str(out)} and len(_rows(out)) == GOOD + 2  # nothing redone


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


KILLER = """
import os, signal, sys
import gazecxr.inference.batch as batch
real_write, real_append, shards = batch._write_shard, batch._append, []
kill_at, torn = int(sys.argv[1]), sys.argv[2] == "torn"

def counting_write(path, arrays):
    real_write(path, arrays)
    shards.append(path)

def dying_append(handle, columns, rows):
    if len(shards) == kill_at:  # this run's kill_at-th shard is in place, its rows are not
        if torn:  # part of the batch's CSV text reaches the file
            handle.write(",".join(rows[0].values())[:12])
            handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real_append(handle, columns, rows)

batch._write_shard = counting_write
batch._append = dying_append
from gazecxr.predict import main
sys.exit(main(sys.argv[3:]))
"""


def test_resumes_after_being_killed_without_losing_or_repeating_images(registry, archive, tmp_path):
    root, entry_id = registry
    _, listing = archive
    out = tmp_path / "out"
    args = ["--input-list", str(listing), "--out", str(out), "--checkpoints", str(root), "--checkpoint", entry_id,
            "--batch-size", "2", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # killed after its 2nd shard was renamed into place but before that batch's CSV rows were written
    first = subprocess.run([sys.executable, "-c", KILLER, "2", "clean", *args], env=env, capture_output=True)
    assert first.returncode == -9, first.stderr.decode()[-2000:]
    assert len(_rows(out)) == 2 and len(list((out / SHARD_DIR).glob("*.npz"))) == 2
    # resumed, then killed while writing the CSV rows of its 2nd batch (a torn last line)
    second = subprocess.run([sys.executable, "-c", KILLER, "2", "torn", *args], env=env, capture_output=True)
    assert second.returncode == -9, second.stderr.decode()[-2000:]
    assert not (out / CSV_NAME).read_text().endswith("\n")
    shards_before = {p.name: p.stat().st_mtime_ns for p in (out / SHARD_DIR).glob("*.npz")}
    assert len(shards_before) == 4
    # finished by 2 ranks under torchrun, each taking every other remaining image
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
                f"--master_port={_free_port()}", "-m", "gazecxr.predict"]
    third = subprocess.run(torchrun + args, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, cwd=ROOT)
    assert third.returncode == 1, third.stderr.decode()[-3000:]  # 1: two bad files
    _check_complete(out, [s for s, _ in list_inputs(listing)])
    assert not list(out.glob("predictions.rank*.csv")) and json.loads((out / "summary.json").read_text())["ranks"] == 2
    new = sorted(int(p.stem) for p in (out / SHARD_DIR).glob("*.npz") if p.name not in shards_before)
    assert new == [8, 9]  # the 3 images left: rank 0 took positions 8 and 10, rank 1 position 9
    for name, mtime in shards_before.items():  # batches written before the kills were not redone
        assert (out / SHARD_DIR / name).stat().st_mtime_ns == mtime
