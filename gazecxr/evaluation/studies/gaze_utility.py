"""Gaze-utility benchmark: does a method turn radiologist gaze into better diagnosis, and only when the gaze
carries information?

One synthetic data set is written per gaze informativeness g (`gazecxr.data.synthetic.knobs`): the same
films, labels and splits, only the simulated readings change. For each training size the training split is
cut to a class-balanced subset of that many images (validation and test stay whole), and every selected
method is trained through the registry (entries tagged ``ablation`` with the same method and resolved config
are reused, an interrupted run resumes) and evaluated on the test split. The quantity of interest is the
*gain* of each gaze-using method over the same network without gaze:

- ``ours`` (the fusion classifier on the frozen DenseNet + gaze-trained saliency UNet) over ``densenet_cl``,
  the very DenseNet it is built on;
- ``mtunet`` over MT-UNet trained on the *no-gaze* copy of the data (every heatmap uniform over the film);
- ``gazegnn`` over GazeGNN trained and tested on the no-gaze copy (every fixation of zero duration, so its
  gaze input is blank).

Sanity row: our model trained on a copy of the most informative data set whose training and validation
heatmaps are permuted among the images of their split (no image keeps its own), its gain over
``densenet_cl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from pydantic import ValidationError
from tqdm import tqdm

from gazecxr import CLASS_NAMES, __version__
from gazecxr.config import config_hash
from gazecxr.config.schema import GazeUtilitySection
from gazecxr.config.errors import ConfigError, InputError
from gazecxr.data.convert import ConvertOptions
from gazecxr.data.provenance import is_synthetic_h5
from gazecxr.data.sources.egd_cxr import convert_egd_cxr
from gazecxr.data.synthetic import generate, reference_sigma
from gazecxr.data.synthetic.knobs import Knobs
from gazecxr.evaluation.artifacts import json_safe, save_figure_atomic, write_atomic, write_text_atomic
from gazecxr.evaluation.html_report import render_page
from gazecxr.evaluation.outputs import SplitOutputs
from gazecxr.evaluation.report import run_split
from gazecxr.evaluation.saliency_methods import entry_predictor
from gazecxr.evaluation.tables import synthetic_notice
from gazecxr.metrics import classification_metrics
from gazecxr.metrics.statistics import (adjust_family, bootstrap_paired_difference, delong_one_vs_rest,
                                        mcnemar_exact, seed_summary, weighted_macro_auc)
from gazecxr.training.data import make_loader
from gazecxr.training.methods import Method, known_entries, train_seed
from gazecxr.training.registry import Entry, Registry
from gazecxr.training.runtime import resolve_device

GAZE_METHODS: dict[str, tuple[str, str]] = {
    "ours": ("fusion", "densenet_cl"),
    "mtunet": ("mtunet", "mtunet@nogaze"),
    "gazegnn": ("gazegnn", "gazegnn@nogaze"),
}
"""Gaze-using ``--methods`` name → (its classification row, the row of the same network without gaze)."""

SELECTABLE: tuple[str, ...] = ("ours", "densenet", "densenet_cl", "mtunet", "gazegnn")
"""``--methods`` names (``ours`` trains densenet_cl, the full saliency model and the fusion classifier)."""

SALIENCY_ROWS: dict[str, str] = {"fusion": "full", "mtunet": "mtunet"}
"""Classification row → its saliency output (the rows whose model predicts a gaze map)."""

SALIENCY_KEYS: tuple[str, ...] = ("cc", "kl", "hs", "nss")
"""Saliency metrics reported per (g, size, method) against the data set's own test gaze maps."""

NOTES: tuple[str, ...] = (
    "Data: one synthetic data set per gaze informativeness g with the same films, labels and splits; "
    "g is the fraction of each reading's on-film dwell time directed at the class evidence (the rest is a "
    "lung sweep independent of the evidence; normal films have no evidence and get the sweep at every g).",
    "Training size n: the training split is cut to a class-balanced n-image subset (the same images for every "
    "g and method); validation and test splits are whole. Models and their training settings are the preset's.",
    "Gain = macro AUC of the gaze-using method minus that of the same network without gaze (ours: the fusion "
    "classifier vs the DenseNet-CL it is built on; mtunet / gazegnn: the same method trained on the no-gaze "
    "copy, uniform heatmaps / blank fixations), the mean over seeds of each seed's test-split difference.",
    "Gain interval and p: paired patient bootstrap of the seed-mean macro-AUC difference (test patients "
    "resampled, both methods and all seeds on the same resample; percentile interval; two-sided p); "
    "p (Holm) adjusts the bootstrap p over every gain test of the report (one family). Per-seed DeLong "
    "tests of the macro AUC (closed form, Sun & Xu) are in metrics.json. Accuracy gain: McNemar's exact "
    "test on images pooled over seeds.",
    "Saliency: CC, KL, HS and NSS of the method's predicted map against the data set's own test gaze maps "
    "(at g = 0 those maps carry no information about the evidence), mean over test images and seeds.",
    "Gaze effect: each gaze-using method at a data set against the same method trained on the least "
    "informative one (the same films and training), so a gain that only comes from the method's own extra "
    "training (ours: the fusion head trained on top of DenseNet-CL) cancels; same statistics, its own Holm family.",
    "Shuffled control: our model trained on the most informative data set with every training and "
    "validation image's heatmap replaced by another image's of the same split (a derangement); it must not "
    "beat DenseNet-CL.",
    "gazegnn sees the radiologist's fixations of every test image (an oracle input no other row has).",
)


@dataclass(frozen=True)
class StudySettings:
    """The ``gaze_utility`` config section: data sets, grid and statistics of one study."""

    data_root: Path
    images: int
    film_size: int
    generator_seed: int
    knobs: Knobs
    informativeness: tuple[float, ...]
    train_sizes: tuple[int, ...]
    seeds: int
    methods: tuple[str, ...]
    height: int
    width: int
    test_size: int
    val_fraction: float
    bootstrap: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StudySettings:
        """Settings of ``config["gaze_utility"]`` (its missing keys take the schema's defaults), checked
        (errors name the offending key)."""
        given = config.get("gaze_utility")
        if not isinstance(given, Mapping):
            raise ConfigError("the config has no 'gaze_utility' section (use the gaze_utility preset)")
        try:
            section = GazeUtilitySection.model_validate(dict(given)).model_dump()
        except ValidationError as err:
            raise ConfigError(f"gaze_utility: {err}") from err
        knobs = Knobs.from_dict(section["knobs"])
        grid = tuple(float(g) for g in section["informativeness"])
        if not grid or any(not 0.0 <= g <= 1.0 for g in grid) or len(set(grid)) != len(grid):
            raise ConfigError(f"gaze_utility.informativeness must be distinct values in [0, 1], got {list(grid)}")
        sizes = tuple(int(n) for n in section["train_sizes"])
        if not sizes or min(sizes) < 3 or len(set(sizes)) != len(sizes):
            raise ConfigError(f"gaze_utility.train_sizes must be distinct integers >= 3, got {list(sizes)}")
        methods = tuple(dict.fromkeys(section["methods"]))
        unknown = sorted(set(methods) - set(SELECTABLE))
        if unknown or not methods:
            raise ConfigError(f"unknown gaze_utility.methods {unknown}; choose from {list(SELECTABLE)}")
        if not set(methods) & set(GAZE_METHODS):
            raise ConfigError(f"gaze_utility.methods {list(methods)} has no gaze-using method {list(GAZE_METHODS)}")
        seeds = int(section["seeds"])
        if seeds < 1:
            raise ConfigError(f"gaze_utility.seeds must be >= 1, got {seeds}")
        return cls(data_root=Path(section["data_root"]), images=int(section["images"]),
                   film_size=int(section["film_size"]), generator_seed=int(section["generator_seed"]), knobs=knobs,
                   informativeness=tuple(sorted(grid)), train_sizes=tuple(sorted(sizes)), seeds=seeds,
                   methods=methods, height=int(section["height"]), width=int(section["width"]),
                   test_size=int(section["test_size"]), val_fraction=float(section["val_fraction"]),
                   bootstrap=int(section["bootstrap"]))

    def data_spec(self) -> dict[str, Any]:
        """Everything the data sets depend on (their folder is named by its hash)."""
        return {"images": self.images, "film_size": self.film_size, "generator_seed": self.generator_seed,
                "knobs": self.knobs.as_dict(), "height": self.height, "width": self.width,
                "test_size": self.test_size, "val_fraction": self.val_fraction, "sigma": self.sigma,
                "package_version": __version__}

    @property
    def sigma(self) -> float:
        """Heatmap σ in original pixels (the real data's 75.5 px scaled to the film size)."""
        return reference_sigma(self.film_size)

    @property
    def trained(self) -> tuple[str, ...]:
        """Registry methods trained per (data set, seed), in training order."""
        wanted = set(self.methods)
        rows = [m for m in ("densenet", "densenet_cl") if m in wanted or (m == "densenet_cl" and "ours" in wanted)]
        return (*rows, *(("full", "fusion") if "ours" in wanted else ()),
                *(m for m in ("mtunet", "gazegnn") if m in wanted))


# ----------------------------------------------------------------------------- data sets


STUDY_SECTION = "gaze_utility"
"""The config section of the study (not part of the configs the models are trained with)."""

STUDY_ATTR = "gaze_utility"
"""HDF5 root attribute (JSON) of a study data set: its data spec and variant."""


def _g_name(g: float) -> str:
    return f"g{g:.3f}".rstrip("0").rstrip(".") if g not in (0.0, 1.0) else f"g{int(g)}"


def _study_attr(spec: Mapping[str, Any], variant: str, size: int | None) -> str:
    return json.dumps({"spec": spec, "variant": variant, "train_size": size}, sort_keys=True)


def _is_current(path: Path, attr: str) -> bool:
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get(STUDY_ATTR) == attr
    except OSError:
        return False


def _full_dataset(settings: StudySettings, folder: Path, g: float, progress: bool) -> Path:
    """The converted data set of gaze informativeness ``g`` (all records), written once."""
    path = folder / f"{_g_name(g)}-all.h5"
    attr = _study_attr(settings.data_spec(), _g_name(g), None)
    if _is_current(path, attr):
        return path
    raw = Path(tempfile.mkdtemp(prefix=f".raw-{_g_name(g)}-", dir=folder))
    try:
        generate(raw / "set", n=settings.images, seed=settings.generator_seed, size=settings.film_size,
                 progress=progress, knobs=replace(settings.knobs, gaze_informativeness=g))
        options = ConvertOptions(height=settings.height, width=settings.width, gaze="raw", sigma=settings.sigma,
                                 split="paper", test_size=settings.test_size, val_fraction=settings.val_fraction)
        convert_egd_cxr(raw / "set" / "EGD", raw / "set" / "MIMIC", path, options, progress=progress)
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    with h5py.File(path, "r+") as f:
        f.attrs[STUDY_ATTR] = attr
    return path


FINGERPRINTED = ("image", "label", "split", "dicom_id", "patient_id")
"""Datasets that must be identical across the g variants (only the gaze may differ)."""


def _fingerprint(path: Path) -> dict[str, str]:
    def content(data: h5py.Dataset) -> str:
        if h5py.check_string_dtype(data.dtype) is not None:
            return "\n".join(data.asstr()[:])
        return hashlib.sha256(np.ascontiguousarray(data[:]).tobytes()).hexdigest()

    with h5py.File(path, "r") as f:
        return {k: config_hash(content(f[k])) for k in FINGERPRINTED}


def _train_subset(path: Path, size: int, seed: int) -> np.ndarray:
    """Rows of a class-balanced ``size``-image subset of the training split (round robin over classes in a
    seeded order), the same for every variant of the data."""
    with h5py.File(path, "r") as f:
        split, labels = f["split"].asstr()[:], f["label"][:]
    train = np.flatnonzero(split == "train")
    if size > train.size:
        raise InputError(f"{path}: gaze_utility.train_sizes asks for {size} training images, the training split "
                         f"has {train.size}; raise gaze_utility.images or lower the size")
    order = np.random.default_rng(seed).permutation(train)
    queues = [list(order[labels[order] == c]) for c in range(len(CLASS_NAMES))]
    picked: list[int] = []
    while len(picked) < size:
        for queue in queues:
            if queue and len(picked) < size:
                picked.append(int(queue.pop(0)))
    return np.sort(np.asarray(picked, np.int64))


def _derangement(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random permutation of range(n) without fixed points (n >= 2)."""
    while True:
        perm = rng.permutation(n)
        if n < 2 or not np.any(perm == np.arange(n)):
            return perm


def _variant(source: Path, path: Path, attr: str, keep: np.ndarray, edit: Callable[[h5py.File], None] | None) -> Path:
    """Copy of ``source`` whose training split is the rows ``keep`` (other training rows get split 'unused'),
    then ``edit``-ed; written atomically once per ``attr``."""
    if _is_current(path, attr):
        return path

    def write(tmp: Path) -> None:
        shutil.copyfile(source, tmp)
        with h5py.File(tmp, "r+") as f:
            split = f["split"].asstr()[:].astype(object)
            drop = np.flatnonzero(split == "train")
            split[np.setdiff1d(drop, keep)] = "unused"
            del f["split"]
            f.create_dataset("split", data=split.astype(str).astype(h5py.string_dtype()), dtype=h5py.string_dtype())
            if edit is not None:
                edit(f)
            f.attrs[STUDY_ATTR] = attr

    write_atomic(path, write)
    return path


def _shuffle_heatmaps(seed: int) -> Callable[[h5py.File], None]:
    """An edit that permutes the heatmaps among the records of the training split and of the validation
    split (a derangement within each); the test split keeps its own."""
    def edit(f: h5py.File) -> None:
        split = f["split"].asstr()[:]
        heat = f["heatmap"][:]
        source = np.arange(len(split))
        rng = np.random.default_rng(seed)
        for name in ("train", "val"):
            rows = np.flatnonzero(split == name)
            if rows.size >= 2:
                source[rows] = rows[_derangement(rng, rows.size)]
        f["heatmap"][...] = heat[source]
        f.create_dataset("heatmap_source_row", data=source)
    return edit


def _remove_gaze(f: h5py.File) -> None:
    """An edit that makes every heatmap uniform over the record's film region and every fixation zero-length."""
    heat = np.zeros(f["heatmap"].shape, np.float32)
    scale, pad, orig = f["scale"][:], f["pad"][:], f["orig_size"][:]
    for i in range(len(heat)):
        top, left = (int(v) for v in pad[i])
        h, w = (max(1, int(round(float(v) * float(scale[i])))) for v in orig[i])
        heat[i, top:top + h, left:left + w] = 1.0
        heat[i] /= heat[i].sum()
    f["heatmap"][...] = heat
    if "fixations" in f:
        fixations = f["fixations"][:]
        fixations[:, 2] = 0.0
        f["fixations"][...] = fixations


@dataclass(frozen=True)
class StudyData:
    """The study's HDF5 files: ``files[(variant, size)]`` with variants ``g<value>``, ``nogaze``, ``shuffled``."""

    folder: Path
    files: dict[tuple[str, int], Path]
    fingerprint: dict[str, str]


def prepare_data(settings: StudySettings, progress: bool = True) -> StudyData:
    """Write (or reuse) every data set of the study under ``data_root/<spec hash>/`` and check that the g
    variants share their images, labels, splits and identifiers."""
    folder = settings.data_root / config_hash(settings.data_spec())
    folder.mkdir(parents=True, exist_ok=True)
    spec = settings.data_spec()
    full = {g: _full_dataset(settings, folder, g, progress) for g in settings.informativeness}
    prints = {g: _fingerprint(p) for g, p in full.items()}
    first = prints[settings.informativeness[0]]
    for g, p in prints.items():
        differ = [k for k in FINGERPRINTED if p[k] != first[k]]
        if differ:
            raise RuntimeError(f"{full[g]}: {differ} differ from {full[settings.informativeness[0]]}; the g variants "
                               "must share images, labels and splits")
    top = max(settings.informativeness)
    files: dict[tuple[str, int], Path] = {}
    for size in settings.train_sizes:
        keep = _train_subset(full[top], size, settings.generator_seed)
        for g, path in full.items():
            name = _g_name(g)
            files[(name, size)] = _variant(path, folder / f"{name}-n{size}.h5", _study_attr(spec, name, size), keep, None)
        if "ours" in settings.methods:
            files[("shuffled", size)] = _variant(full[top], folder / f"shuffled-{_g_name(top)}-n{size}.h5",
                                                 _study_attr(spec, f"shuffled-{_g_name(top)}", size), keep,
                                                 _shuffle_heatmaps(settings.generator_seed))
        if set(settings.methods) & {"mtunet", "gazegnn"}:
            files[("nogaze", size)] = _variant(full[top], folder / f"nogaze-n{size}.h5",
                                               _study_attr(spec, "nogaze", size), keep, _remove_gaze)
    return StudyData(folder=folder, files=files, fingerprint=first)


# ----------------------------------------------------------------------------- training


def _methods_for(variant: str, settings: StudySettings, base_ids: Mapping[str, str], h5: Path) -> list[Method]:
    """Registry methods trained on data set ``h5`` of ``variant``: the no-gaze networks on the first g
    (they never see gaze), ours on every g and the shuffled copy, the peers on every g and the no-gaze copy."""
    data = {"data.h5": str(h5)}
    trained = settings.trained
    if variant == "base":
        return [Method(m, "stage1", lambda ids, cl=(m == "densenet_cl"): {"stage1.contrastive.enabled": cl, **data})
                for m in trained if m in ("densenet", "densenet_cl")]
    out: list[Method] = []
    if variant != "nogaze" and "full" in trained:
        encoder = base_ids["densenet_cl"]
        out += [Method("full", "stage2", lambda ids: {"stage2.variant": "full", "stage2.encoder": encoder, **data}),
                Method("fusion", "stage3", lambda ids: {"stage2.variant": "full", "stage2.encoder": encoder,
                                                        "stage3.saliency": ids["full"], **data})]
    if variant != "shuffled":
        out += [Method(m, m, lambda ids: dict(data)) for m in ("mtunet", "gazegnn") if m in trained]
    return out


@dataclass
class Trained:
    """Registry entries of one (variant, size, seed) and whether each was reused."""

    entries: dict[str, Entry]
    reused: dict[str, bool]


def train_all(config: Mapping[str, Any], settings: StudySettings, data: StudyData, progress: bool = True
              ) -> dict[tuple[str, int, int], Trained]:
    """Train (or reuse) every method of every (variant, size, seed); keys (variant, size, seed) with variant
    ``base`` (the no-gaze DenseNets, trained on the first g's file), ``g…``, ``shuffled`` and ``nogaze``. The
    study's own section is left out of the configs trained, so a model is reused whatever grid asked for it."""
    config = {key: value for key, value in config.items() if key != STUDY_SECTION}
    registry = Registry(config["registry"]["root"])
    known = known_entries(registry)
    first = _g_name(settings.informativeness[0])
    variants = [v for v, s in data.files if s == settings.train_sizes[0]]
    jobs = [(v, size, seed) for size in settings.train_sizes for seed in range(settings.seeds)
            for v in ["base", *variants]]
    out: dict[tuple[str, int, int], Trained] = {}
    with tqdm(total=len(jobs), desc="gaze-utility data sets", unit="set", disable=not progress) as bar:
        for variant, size, seed in jobs:
            h5 = data.files[(first if variant == "base" else variant, size)]
            base = out.get(("base", size, seed))
            methods = _methods_for(variant, settings, {k: e.id for k, e in base.entries.items()} if base else {}, h5)
            if methods:
                with tqdm(total=len(methods), disable=True) as inner:
                    entries, reused = train_seed(config, seed, known, inner, progress, methods)
                out[(variant, size, seed)] = Trained(entries, reused)
            bar.update(1)
    return out


# ----------------------------------------------------------------------------- evaluation


def _rows_of(variant: str, entries: Mapping[str, Entry]) -> dict[str, Entry]:
    """Classification rows of a variant's entries, named for the report (``fusion``, ``mtunet@nogaze``, …)."""
    rows = {m: e for m, e in entries.items() if m not in ("full",)}
    if variant == "nogaze":
        return {f"{m}@nogaze": e for m, e in rows.items()}
    return rows


def evaluate_all(config: Mapping[str, Any], settings: StudySettings, data: StudyData,
                 trained: Mapping[tuple[str, int, int], Trained], progress: bool = True
                 ) -> dict[tuple[str, int, int], SplitOutputs]:
    """Test-split outputs of every (variant, size, seed), each pass on its own data set's test split (the
    base DenseNets on the first g's file); all passes must list the same test images in the same order."""
    registry = Registry(config["registry"]["root"])
    device = resolve_device(config["train"]["device"])
    first = _g_name(settings.informativeness[0])
    batch = int(config["train"]["batch_size"])
    outputs: dict[tuple[str, int, int], SplitOutputs] = {}
    order: list[str] | None = None
    for (variant, size, seed), result in tqdm(trained.items(), desc="gaze-utility evaluation", unit="pass",
                                              disable=not progress):
        h5 = data.files[(first if variant == "base" else variant, size)]
        run_config = {**config, "data": {**config["data"], "h5": str(h5)}}
        loader = make_loader(run_config, "test", batch, train=False, device=device)
        predictors = [entry_predictor(registry, e, name, device) for name, e in _rows_of(variant, result.entries).items()]
        out = run_split(predictors, loader, device, progress=False)
        if order is None:
            order = out.dicom_ids
        elif out.dicom_ids != order:
            raise RuntimeError(f"{h5}: its test split lists other images than the study's first data set")
        outputs[(variant, size, seed)] = out
    return outputs


# ----------------------------------------------------------------------------- statistics


def _probs(outputs: Mapping[tuple[str, int, int], SplitOutputs], variant: str, size: int, seeds: int,
           row: str) -> list[np.ndarray]:
    return [outputs[(variant, size, s)].probs[row] for s in range(seeds)]


def _seed_mean_macro(labels: np.ndarray, probs: Sequence[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Weighted statistic: the mean over seeds of the macro AUC (per-seed probabilities on the same images)."""
    stats = [weighted_macro_auc(labels, p) for p in probs]
    return lambda w: np.mean([s(w)[:, -1] for s in stats], axis=0)


def gain_test(labels: np.ndarray, groups: np.ndarray, probs_a: Sequence[np.ndarray], probs_b: Sequence[np.ndarray],
              n_resamples: int, seed: int = 0) -> dict[str, Any]:
    """Gain of method a over b: seed-mean macro-AUC difference with its paired patient-bootstrap interval and
    p, each seed's DeLong macro test, and the accuracy difference with McNemar's exact test over images
    pooled across seeds."""
    per_seed = [delong_one_vs_rest(labels, a, b, CLASS_NAMES)["macro"] for a, b in zip(probs_a, probs_b)]
    boot = bootstrap_paired_difference(_seed_mean_macro(labels, probs_a), _seed_mean_macro(labels, probs_b),
                                       groups, n_resamples, seed)
    correct_a = np.concatenate([(a.argmax(1) == labels).astype(float) for a in probs_a])
    correct_b = np.concatenate([(b.argmax(1) == labels).astype(float) for b in probs_b])
    diffs = [t["diff"] for t in per_seed if t is not None]
    return {"auc_gain": float(np.mean(diffs)) if diffs else None,
            "auc_gain_seeds": seed_summary(diffs) if diffs else None,
            "ci": None if boot is None else boot["ci"], "p": None if boot is None else boot["p"],
            "test": None if boot is None else boot["method"], "delong_per_seed": per_seed,
            "accuracy_gain": float(correct_a.mean() - correct_b.mean()),
            "mcnemar": mcnemar_exact(correct_a, correct_b)}


def _cell(outputs: SplitOutputs, row: str) -> dict[str, Any]:
    labelled, probs = outputs.labelled()
    metrics = classification_metrics(labelled, probs[row])
    cell = {"auc_macro": metrics["auc_macro"], "accuracy": metrics["accuracy"]}
    if row in outputs.scores:
        values = {k: outputs.scores[row][k][np.isfinite(outputs.scores[row][k])] for k in SALIENCY_KEYS
                  if k in outputs.scores[row]}
        cell["saliency"] = {k: float(v.mean()) for k, v in values.items() if v.size}
    return cell


def _over_seeds(cells: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: seed_summary([c[k] for c in cells]) for k in ("auc_macro", "accuracy")}
    if all("saliency" in c for c in cells):
        keys = [k for k in SALIENCY_KEYS if all(k in c["saliency"] for c in cells)]
        out["saliency"] = {k: seed_summary([c["saliency"][k] for c in cells]) for k in keys}
    return out


def summarise(settings: StudySettings, data: StudyData, outputs: Mapping[tuple[str, int, int], SplitOutputs]
              ) -> dict[str, Any]:
    """Rows per (variant, size), the gain tests over the no-gaze networks and the *gaze effects* (each
    gaze-using method at every other data set against itself trained on the least informative one, which
    isolates what the gaze adds from what the method's extra training adds); each list one Holm family."""
    first = _g_name(settings.informativeness[0])
    reference = next(iter(outputs.values()))
    labels = reference.labels
    with h5py.File(data.files[(first, settings.train_sizes[0])], "r") as f:
        by_id = dict(zip(f["dicom_id"].asstr()[:], f["patient_id"].asstr()[:]))
    groups = np.array([by_id[d] for d in reference.dicom_ids])
    rows, gains, effects = [], [], []
    for size in settings.train_sizes:
        base = {row: [outputs[("base", size, s)] for s in range(settings.seeds)]
                for row in outputs[("base", size, 0)].probs}
        for row, outs in base.items():
            rows.append({"variant": "any g", "g": None, "train_size": size, "row": row,
                         **_over_seeds([_cell(o, row) for o in outs])})
        for variant in [v for v, s in data.files if s == size]:
            g = float(variant[1:]) if variant.startswith("g") else None
            outs = [outputs[(variant, size, s)] for s in range(settings.seeds)]
            for row in outs[0].probs:
                rows.append({"variant": variant, "g": g, "train_size": size, "row": row,
                             **_over_seeds([_cell(o, row) for o in outs])})
            for method, (row, baseline) in GAZE_METHODS.items():
                if method not in settings.methods or row not in outs[0].probs:
                    continue
                if baseline.endswith("@nogaze"):
                    b_probs = _probs(outputs, "nogaze", size, settings.seeds, baseline)
                else:
                    b_probs = _probs(outputs, "base", size, settings.seeds, baseline)
                test = gain_test(labels, groups, _probs(outputs, variant, size, settings.seeds, row), b_probs,
                                 settings.bootstrap)
                gains.append({"method": method, "row": row, "baseline": baseline, "variant": variant, "g": g,
                              "train_size": size, "shuffled": variant == "shuffled", **test})
                if variant != first:
                    test = gain_test(labels, groups, _probs(outputs, variant, size, settings.seeds, row),
                                     _probs(outputs, first, size, settings.seeds, row), settings.bootstrap)
                    effects.append({"method": method, "row": row, "baseline": f"{row} at {first}", "variant": variant,
                                    "g": g, "train_size": size, "shuffled": variant == "shuffled", **test})
    adjust_family(gains, key="p")
    adjust_family(effects, key="p")
    return {"rows": rows, "gains": gains, "gaze_effects": effects, "n_test": len(labels),
            "test_patients": len(set(groups))}


# ----------------------------------------------------------------------------- figures and tables


def _p(value: float | None) -> str:
    return "—" if value is None else ("<0.001" if value < 1e-3 else f"{value:.3f}") + (" *" if value < 0.05 else "")


def _ci(ci: Sequence[float] | None) -> str:
    return "—" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _mean_sd(summary: Mapping[str, Any] | None) -> str:
    if summary is None:
        return "—"
    sd = summary.get("std")
    return f"{summary['mean']:.3f}" + ("" if sd is None else f" ± {sd:.3f}")


def gain_figure(report: Mapping[str, Any]):
    """Gain (macro AUC) vs g, one line per gaze-using method with its interval shaded, one panel per
    training size; the shuffled control as a point with its interval at its g."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = report["grid"]["train_sizes"]
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 3.4), squeeze=False, sharey=True)
    for ax, size in zip(axes[0], sizes):
        for k, method in enumerate(GAZE_METHODS):
            cells = sorted((t for t in report["gains"] if t["method"] == method and t["train_size"] == size
                            and t["g"] is not None and t["auc_gain"] is not None), key=lambda t: t["g"])
            if not cells:
                continue
            x = [t["g"] for t in cells]
            ax.plot(x, [t["auc_gain"] for t in cells], marker="o", color=f"C{k}", label=method)
            if all(t["ci"] is not None for t in cells):
                ax.fill_between(x, [t["ci"][0] for t in cells], [t["ci"][1] for t in cells], color=f"C{k}", alpha=0.2)
        for t in report["gains"]:
            if t["shuffled"] and t["train_size"] == size and t["auc_gain"] is not None:
                top = max(report["grid"]["informativeness"])
                err = None if t["ci"] is None else [[t["auc_gain"] - t["ci"][0]], [t["ci"][1] - t["auc_gain"]]]
                ax.errorbar([top + 0.03], [t["auc_gain"]], yerr=err, fmt="x", color="k", capsize=3,
                            label="ours, shuffled gaze")
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(f"{size} training images")
        ax.set_xlabel("gaze informativeness g")
    axes[0][0].set_ylabel("macro-AUC gain over no-gaze network")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def saliency_figure(report: Mapping[str, Any]):
    """Saliency CC against the test gaze maps vs g, one line per (saliency method, training size)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    k = 0
    for row in SALIENCY_ROWS:
        for size in report["grid"]["train_sizes"]:
            cells = sorted((r for r in report["rows"] if r["row"] == row and r["train_size"] == size
                            and r["g"] is not None and "saliency" in r), key=lambda r: r["g"])
            if not cells:
                continue
            x = [r["g"] for r in cells]
            mean = np.array([r["saliency"]["cc"]["mean"] for r in cells])
            ax.plot(x, mean, marker="o", color=f"C{k}", label=f"{SALIENCY_ROWS[row]}, n={size}")
            ci = [r["saliency"]["cc"].get("ci") for r in cells]
            if all(c is not None for c in ci):
                ax.fill_between(x, [c[0] for c in ci], [c[1] for c in ci], color=f"C{k}", alpha=0.2)
            k += 1
    ax.set_xlabel("gaze informativeness g")
    ax.set_ylabel("CC vs test gaze maps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def markdown(report: Mapping[str, Any]) -> str:
    """``tables.md``: the gain table, the shuffled control, every row's AUC / accuracy, saliency, notes."""
    grid = report["grid"]
    head = (f"# Gaze utility: gain from gaze vs its informativeness ({report['n_test']} test images, "
            f"{report['test_patients']} patients, seeds {list(range(grid['seeds']))})")
    knobs = ", ".join(f"{k} = {v}" for k, v in report["data"]["knobs"].items() if k != "gaze_informativeness")
    lines = [head, *synthetic_notice(report),
             f"Phantoms: {report['data']['images']} films of nominal height {report['data']['film_size']} px, "
             f"{knobs}; canvas {report['data']['height']}×{report['data']['width']}; "
             f"g ∈ {grid['informativeness']}; training sizes {grid['train_sizes']}.",
             "## Gain of each gaze-using method over the same network without gaze"]
    header = ["g", "n train", "Method", "vs", "Macro-AUC gain", "95 % CI", "p", "p (Holm)", "seeds ± sd",
              "Acc gain", "McNemar p"]
    body = []
    for t in sorted(report["gains"], key=lambda t: (t["shuffled"], t["train_size"], t["method"], t["g"] or 0)):
        label = "shuffled" if t["shuffled"] else f"{t['g']:g}"
        sd = t["auc_gain_seeds"]
        body.append([label, str(t["train_size"]), t["method"], t["baseline"],
                     "—" if t["auc_gain"] is None else f"{t['auc_gain']:+.3f}", _ci(t["ci"]), _p(t["p"]),
                     _p(t.get("p_holm")), "—" if sd is None or sd["std"] is None else f"{sd['std']:.3f}",
                     f"{t['accuracy_gain']:+.3f}", _p(t["mcnemar"]["p"])])
    lines.append(_table(header, body))
    if report.get("gaze_effects"):
        lines.append("## Gaze effect: each method against itself trained on the least informative gaze")
        body = [[("shuffled" if t["shuffled"] else f"{t['g']:g}"), str(t["train_size"]), t["method"], t["baseline"],
                 "—" if t["auc_gain"] is None else f"{t['auc_gain']:+.3f}", _ci(t["ci"]), _p(t["p"]),
                 _p(t.get("p_holm")), f"{t['accuracy_gain']:+.3f}", _p(t["mcnemar"]["p"])]
                for t in sorted(report["gaze_effects"], key=lambda t: (t["shuffled"], t["train_size"], t["g"] or 0))]
        lines.append(_table(["g", "n train", "Method", "vs", "Macro-AUC gain", "95 % CI", "p", "p (Holm)",
                             "Acc gain", "McNemar p"], body))
    lines.append("## Every row (mean ± sd over seeds)")
    body = [[r["variant"], str(r["train_size"]), r["row"], _mean_sd(r["auc_macro"]), _mean_sd(r["accuracy"])]
            for r in report["rows"]]
    lines.append(_table(["Data", "n train", "Row", "Macro AUC", "Accuracy"], body))
    sal = [r for r in report["rows"] if "saliency" in r]
    if sal:
        lines.append("## Saliency against the data set's own test gaze maps (mean ± sd over seeds)")
        body = [[r["variant"], str(r["train_size"]), SALIENCY_ROWS[r["row"].split("@")[0]],
                 *(_mean_sd(r["saliency"].get(k)) for k in SALIENCY_KEYS)] for r in sal]
        lines.append(_table(["Data", "n train", "Method", *(k.upper() for k in SALIENCY_KEYS)], body))
    lines += ["## Notes", "\n".join(f"- {n}" for n in report["notes"])]
    return "\n\n".join(lines) + "\n"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


# ----------------------------------------------------------------------------- entry point


FIGURES = ("gain_vs_g.png", "saliency_cc_vs_g.png")


def run_gaze_utility(config: Mapping[str, Any], out_dir: str | Path = "reports/gaze_utility",
                     progress: bool = True) -> dict[str, Any]:
    """Run the study of ``config["gaze_utility"]``: data sets, training, evaluation, then ``metrics.json``,
    ``tables.md``, the figures `FIGURES` and ``index.html`` in ``out_dir``; returns the metrics written."""
    started = time.time()
    settings = StudySettings.from_config(config)
    data = prepare_data(settings, progress)
    trained = train_all(config, settings, data, progress)
    outputs = evaluate_all(config, settings, data, trained, progress)
    summary = summarise(settings, data, outputs)
    first = data.files[(_g_name(settings.informativeness[0]), settings.train_sizes[0])]
    report = json_safe({
        "grid": {"informativeness": list(settings.informativeness), "train_sizes": list(settings.train_sizes),
                 "seeds": settings.seeds, "methods": list(settings.methods)},
        "data": {**settings.data_spec(), "folder": str(data.folder),
                 "files": {f"{v}-n{s}": str(p) for (v, s), p in data.files.items()}, "fingerprint": data.fingerprint},
        **summary,
        "entries": {f"{v}-n{s}-seed{seed}": {m: e.id for m, e in t.entries.items()}
                    for (v, s, seed), t in trained.items()},
        "reused": {f"{v}-n{s}-seed{seed}": t.reused for (v, s, seed), t in trained.items()},
        "synthetic": is_synthetic_h5(first),
        "package_version": __version__,
        "wall_seconds": time.time() - started,
        "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        "notes": list(NOTES),
    })
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = markdown(report)
    import matplotlib.pyplot as plt

    for name, make in zip(FIGURES, (gain_figure, saliency_figure)):
        fig = make(report)
        save_figure_atomic(fig, out / name)
        plt.close(fig)
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_text_atomic(out / "tables.md", tables)
    title, _, body = tables.partition("\n")
    write_text_atomic(out / "index.html", render_page(title[2:], body, list(FIGURES), [], report["synthetic"]))
    return report
