"""Gaze-utility benchmark: does a way of using radiologist gaze make the classifier better, and where?

Synthetic phantoms with a known answer (`gazecxr.data.synthetic.knobs`): the class evidence sits in a known
region, the simulated gaze dwells on it with informativeness g, and a drain-like marker inside the lung
agrees with the class in a share p of the training and validation films (the *shortcut*). One data set is
written per (g, p), the same films, labels and splits in each; a *shifted* copy (marker independent of the
class; readers never look at the marker, so each g's test gaze carries over) gives the second test set. For each (p, training size, seed) every method of the preset is fit
on the training and validation splits only (`gazecxr.training.gaze_methods`), its epoch chosen on validation,
and scored on both test sets, every method on the same test images.

Rows of ``metrics.json["gains"]``: each method against the same backbone without gaze (the CNN baseline, or
the method's own switched-off ``@nogaze`` variant), per
(method, g, shortcut, training size, test), with the paired patient-bootstrap interval of the seed-mean
macro-AUC difference and Holm's adjustment over the family. Beside them the *gaze effects* (a method at the
largest g against itself at the smallest, which cancels what any lung-shaped gaze or extra training gives),
the no-gaze baseline's shifted − iid AUC (does the shortcut work?), and diagnostics: the share of each CNN's
class activation map inside the true evidence, and the saliency decoder's agreement with the evidence against
that of a pure lung prior.
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
import torch
from pydantic import ValidationError
from tqdm import tqdm

from gazecxr import CLASS_NAMES, __version__
from gazecxr.config import ConfigError, config_hash
from gazecxr.config.schema import GazeUtilitySection
from gazecxr.data.convert import ConvertOptions
from gazecxr.data.geometry import Letterbox
from gazecxr.data.provenance import is_synthetic_h5
from gazecxr.data.sources.egd_cxr import convert_egd_cxr
from gazecxr.data.synthetic import generate, reference_sigma
from gazecxr.data.synthetic.evidence import read_synthetic_evidence
from gazecxr.data.synthetic.knobs import Knobs
from gazecxr.evaluation.artifacts import json_safe, save_figure_atomic, write_atomic, write_text_atomic
from gazecxr.evaluation.html_report import render_page
from gazecxr.evaluation.tables import synthetic_notice
from gazecxr.metrics.statistics import (adjust_family, bootstrap_paired_difference, seed_summary,
                                        weighted_macro_auc)
from gazecxr.training.gaze_methods import (COOPERATIVE, METHODS, BenchArrays, BenchCNN, BenchSettings, Fitted,
                                           TrainingArrays, cam_of, saliency_of, train_classifier, train_decoder,
                                           train_head, train_mechanism)
from gazecxr.training.registry import Registry

SELECTABLE: tuple[str, ...] = tuple(m for m in METHODS if m != "baseline")
"""``gaze_utility.methods`` names (the no-gaze baseline is always trained)."""

MECHANISMS: tuple[str, ...] = tuple(m for m, spec in METHODS.items() if spec.mechanism)

STAGE = "gaze_benchmark"
"""Registry stage of the benchmark's fits (state: the modules and the test-set probabilities)."""

TESTS: tuple[str, ...] = ("iid", "shifted")

NOTES: tuple[str, ...] = (
    "Data: synthetic phantoms; one data set per (gaze informativeness g, shortcut strength p) with the same "
    "films, labels and splits (only the simulated gaze and the marker change). g: share of each reading's "
    "on-film dwell on the class evidence (the rest a lung sweep; normal films get the sweep at every g). "
    "p: share of training / validation films whose drain-like marker (inside a lung field) agrees with the "
    "class; readers never dwell on it. Tests: iid (the same p) and shifted (marker independent of the class).",
    "Every method is fit on the training and validation splits only; its epoch is chosen by the validation "
    "macro AUC; the test split is read after all training, and every method is scored on the same test images.",
    "Gain = seed-mean macro AUC of the method minus that of the same backbone without gaze: the CNN baseline "
    "(evidence_oracle, attention_consistency, test_time_gaze); the same frozen CNN, decoder and head with the "
    "decoder trained on a uniform map (fusion, fusion_conv, saliency_pool @nogaze); each mechanism with its "
    "gaze switch off. Interval and p: paired patient bootstrap of that "
    "difference (test patients resampled, both methods and all seeds on the same resample; percentile interval, "
    "two-sided p); p (Holm) over all training-time gains of the report (one family), the test-time-gaze rows "
    "and the gaze effects each their own family.",
    "Controls: evidence_oracle (positive): the CNN's CAM aligned with the true evidence mask; shuffled: a "
    "method trained with every training / validation gaze map replaced by another film's of the same split; "
    "g = 0: a gaze that says nothing about where the evidence is; test_time_gaze: gaze fed at test time "
    "(leaks the label through where readers look; reported apart, never a training-time result).",
    "Gaze effect: the same method at the largest g against itself at the smallest (the same films and "
    "training), which separates what the gaze says about this film from the anatomical prior that any "
    "lung-shaped gaze carries.",
    "Diagnostics: CAM evidence share = mean share of the true-class CAM (softmax over positions) inside the "
    "evidence region, abnormal test films; decoder CC = Pearson correlation of the saliency decoder's map "
    "with the evidence mask on abnormal test films, beside that of the mean training gaze map (a lung prior).",
)


@dataclass(frozen=True)
class StudySettings:
    """The ``gaze_utility`` config section: data sets, grid, training and statistics of one study."""

    data_root: Path
    images: int
    film_size: int
    generator_seed: int
    knobs: Knobs
    informativeness: tuple[float, ...]
    shortcuts: tuple[float, ...]
    train_sizes: tuple[int, ...]
    seeds: int
    methods: tuple[str, ...]
    shuffled: tuple[str, ...]
    height: int
    width: int
    test_size: int
    val_fraction: float
    bootstrap: int
    train: BenchSettings
    threads: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StudySettings:
        """Settings of ``config["gaze_utility"]`` (missing keys take the schema's defaults), checked."""
        given = config.get("gaze_utility")
        if not isinstance(given, Mapping):
            raise ConfigError("the config has no 'gaze_utility' section (use a gaze_utility preset)")
        try:
            s = GazeUtilitySection.model_validate(dict(given)).model_dump()
        except ValidationError as err:
            raise ConfigError(f"gaze_utility: {err}") from err
        grid = tuple(sorted(float(g) for g in s["informativeness"]))
        shortcuts = tuple(sorted(float(p) for p in s["shortcuts"]))
        sizes = tuple(sorted(int(n) for n in s["train_sizes"]))
        for name, values in (("informativeness", grid), ("shortcuts", shortcuts), ("train_sizes", sizes)):
            if len(set(values)) != len(values):
                raise ConfigError(f"gaze_utility.{name} must be distinct values, got {list(values)}")
        methods = tuple(dict.fromkeys(s["methods"]))
        shuffled = tuple(dict.fromkeys(s["shuffled"]))
        bad = [m for m in shuffled if m not in methods or not METHODS[m].uses_gaze or METHODS[m].test_time_gaze]
        if bad:
            raise ConfigError(f"gaze_utility.shuffled {bad}: each must be a training-time gaze method listed in "
                             f"gaze_utility.methods {list(methods)}")
        knobs = Knobs.from_dict(s["knobs"])
        return cls(data_root=Path(s["data_root"]), images=s["images"], film_size=s["film_size"],
                   generator_seed=s["generator_seed"], knobs=knobs, informativeness=grid, shortcuts=shortcuts,
                   train_sizes=sizes, seeds=s["seeds"], methods=methods, shuffled=shuffled, height=s["height"],
                   width=s["width"], test_size=s["test_size"], val_fraction=s["val_fraction"],
                   bootstrap=s["bootstrap"], train=BenchSettings.from_dict(s["train"], len(CLASS_NAMES)),
                   threads=s["threads"])

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


# ----------------------------------------------------------------------------- data sets


STUDY_ATTR = "gaze_utility"
"""HDF5 root attribute (JSON) of a study data set: its data spec and variant."""


def _name(g: float, p: float | None) -> str:
    return f"g{g:g}-" + ("shifted" if p is None else f"p{p:g}")


def _is_current(path: Path, attr: str) -> bool:
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get(STUDY_ATTR) == attr
    except OSError:
        return False


def _add_evidence(path: Path, raw: Path) -> None:
    """Store each record's true evidence mask (canvas geometry, bool) and marker state beside its film."""
    with h5py.File(path, "r+") as f:
        ids = list(f["dicom_id"].asstr()[:])
        canvas = tuple(f["image"].shape[1:])
        sizes = f["orig_size"][:]
        found = read_synthetic_evidence(raw, ids)
        masks = np.zeros((len(ids), *canvas), bool)
        states = np.zeros(len(ids), np.int8)
        for i, dicom_id in enumerate(ids):
            mask, state = found[dicom_id]
            masks[i] = Letterbox.fit(tuple(int(v) for v in sizes[i]), canvas).mask_to_canvas(np.asarray(mask, bool))
            states[i] = state
        f.create_dataset("evidence_mask", data=masks, compression="lzf")
        f.create_dataset("marker_state", data=states)


def _dataset(settings: StudySettings, folder: Path, g: float, p: float | None, progress: bool) -> Path:
    """The converted data set of (g, p) (``p`` None: the shifted test set), written once."""
    path = folder / f"{_name(g, p)}.h5"
    attr = json.dumps({"spec": settings.data_spec(), "g": g, "p": p}, sort_keys=True)
    if _is_current(path, attr):
        return path
    knobs = replace(settings.knobs, gaze_informativeness=g, shortcut_strength=0.0 if p is None else p,
                    shortcut_shifted=p is None)

    def write(tmp: Path) -> None:
        raw = Path(tempfile.mkdtemp(prefix=f".raw-{_name(g, p)}-", dir=folder))
        try:
            generate(raw / "set", n=settings.images, seed=settings.generator_seed, size=settings.film_size,
                     progress=False, knobs=knobs, evidence=True)
            options = ConvertOptions(height=settings.height, width=settings.width, gaze="raw",
                                     sigma=settings.sigma, split="paper", test_size=settings.test_size,
                                     val_fraction=settings.val_fraction)
            convert_egd_cxr(raw / "set" / "EGD", raw / "set" / "MIMIC", tmp, options, progress=False)
            _add_evidence(tmp, raw / "set")
            with h5py.File(tmp, "r+") as f:
                f.attrs[STUDY_ATTR] = attr
        finally:
            shutil.rmtree(raw, ignore_errors=True)

    write_atomic(path, write)
    return path


SHARED = ("label", "split", "dicom_id", "patient_id")
"""Datasets every variant must share (only the gaze and the marker may differ)."""


def _fingerprint(path: Path) -> dict[str, str]:
    def content(data: h5py.Dataset) -> bytes:
        if h5py.check_string_dtype(data.dtype) is not None:
            return "\n".join(data.asstr()[:]).encode()
        return np.ascontiguousarray(data[:]).tobytes()

    with h5py.File(path, "r") as f:
        return {k: hashlib.sha256(content(f[k])).hexdigest() for k in SHARED}


@dataclass(frozen=True)
class StudyData:
    """The study's HDF5 files by (g, p) and ``(smallest g, None)``, the shifted test set, with their shared
    fingerprint."""

    folder: Path
    files: dict[tuple[float, float | None], Path]
    fingerprint: dict[str, str]


def prepare_data(settings: StudySettings, progress: bool = True, shifted: bool = True) -> StudyData:
    """Write (or reuse) every data set under ``data_root/<spec hash>/`` (with ``shifted``, the shifted test
    set of each g too) and check they share labels, splits and identifiers."""
    folder = settings.data_root / config_hash(settings.data_spec())
    folder.mkdir(parents=True, exist_ok=True)
    keys = [(g, p) for g in settings.informativeness for p in settings.shortcuts]
    keys += [(settings.informativeness[0], None)] if shifted else []
    files = {}
    for g, p in tqdm(keys, desc="gaze-utility data sets", unit="set", disable=not progress):
        files[(g, p)] = _dataset(settings, folder, g, p, progress)
    prints = {k: _fingerprint(v) for k, v in files.items()}
    first = prints[keys[0]]
    for key, fp in prints.items():
        differ = [k for k in SHARED if fp[k] != first[k]]
        if differ:
            raise RuntimeError(f"{files[key]}: {differ} differ from {files[keys[0]]}; the variants must share "
                               "labels, splits and identifiers")
    return StudyData(folder, files, first)


def train_rows(path: Path, size: int, seed: int) -> np.ndarray:
    """Rows of a class-balanced ``size``-image subset of the training split (round robin over the classes in
    a seeded order), the same for every variant."""
    with h5py.File(path, "r") as f:
        split, labels = f["split"].asstr()[:], f["label"][:]
    train = np.flatnonzero(split == "train")
    if size > train.size:
        raise ConfigError(f"{path}: gaze_utility.train_sizes asks for {size} training images, the training split "
                         f"has {train.size}; raise gaze_utility.images or lower the size")
    order = np.random.default_rng(seed).permutation(train)
    queues = [list(order[labels[order] == c]) for c in range(len(CLASS_NAMES))]
    picked: list[int] = []
    while len(picked) < size:
        for queue in queues:
            if queue and len(picked) < size:
                picked.append(int(queue.pop(0)))
    return np.sort(np.asarray(picked, np.int64))


def load_split(path: Path, split: str, rows: np.ndarray | None = None) -> BenchArrays:
    """One split of a study data set as arrays (``rows``: a subset of the file's rows within that split)."""
    with h5py.File(path, "r") as f:
        names = f["split"].asstr()[:]
        index = np.flatnonzero(names == split) if rows is None else np.asarray(rows)
        if rows is not None and not np.all(names[index] == split):
            raise ValueError(f"{path}: rows outside the {split!r} split were asked for")
        images = f["image"][index][:, None].astype(np.float32)
        gaze = f["heatmap"][index].astype(np.float32)
        evidence = f["evidence_mask"][index].astype(np.float32)
        labels = f["label"][index].astype(np.int64)
        ids = tuple(f["dicom_id"].asstr()[index])
        time = None
        if "fixations" in f and "fixation_offsets" in f:
            offsets, durations = f["fixation_offsets"][:], f["fixations"][:, 2]
            total = np.add.reduceat(np.append(durations, 0.0), offsets[:-1]) * (np.diff(offsets) > 0)
            time = total[index].astype(np.float32)
    return BenchArrays(images=images, labels=labels, gaze=gaze, evidence=evidence, ids=ids, time=time)


def _derangement(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random permutation of range(n) without fixed points (n >= 2)."""
    while True:
        perm = rng.permutation(n)
        if n < 2 or not np.any(perm == np.arange(n)):
            return perm


def shuffle_gaze(data: TrainingArrays, seed: int) -> TrainingArrays:
    """Training and validation gaze maps each permuted among the films of their split (no film keeps its own)."""
    rng = np.random.default_rng(seed)
    return TrainingArrays(*(s.with_gaze(s.gaze[_derangement(rng, len(s))]) for s in (data.train, data.val)))


# ----------------------------------------------------------------------------- jobs


@dataclass(frozen=True)
class Job:
    """One fit: ``method`` (``<mechanism>@nogaze`` for a switched-off mechanism) on data (g, p), training size
    and seed; ``shuffled`` for the shuffled-gaze control. ``g`` is None where the method reads no gaze."""

    method: str
    g: float | None
    p: float
    size: int
    seed: int
    shuffled: bool = False

    @property
    def row(self) -> str:
        """The method's name in the report."""
        return f"{self.method}_shuffled" if self.shuffled else self.method

    def key(self, settings: StudySettings) -> str:
        """Hash of everything the fit depends on (its registry tag ``key=…``)."""
        return config_hash({"job": [self.method, self.g, self.p, self.size, self.seed, self.shuffled],
                            "data": settings.data_spec(), "train": settings.train.__dict__})


def jobs(settings: StudySettings) -> list[Job]:
    """Every fit of the study, the no-gaze rows first (the cooperative methods build on the baseline)."""
    top = settings.informativeness[-1]
    out: list[Job] = []
    for size in settings.train_sizes:
        for p in settings.shortcuts:
            for seed in range(settings.seeds):
                out.append(Job("baseline", None, p, size, seed))
                for m in settings.methods:
                    spec = METHODS[m]
                    if not spec.uses_gaze:
                        out.append(Job(m, None, p, size, seed))
                        continue
                    if spec.baseline != "baseline":
                        out.append(Job(spec.baseline, None, p, size, seed))
                    out += [Job(m, g, p, size, seed) for g in settings.informativeness]
                    if m in settings.shuffled:
                        out.append(Job(m, top, p, size, seed, shuffled=True))
    return out


@dataclass
class JobResult:
    """What one fit left: test probabilities per test set and its diagnostics."""

    probs: dict[str, np.ndarray]
    metrics: dict[str, float]
    reused: bool


class _Runner:
    """Fits jobs in order, reusing registry entries and the in-memory backbones and decoders of this run."""

    def __init__(self, settings: StudySettings, data: StudyData, registry: Registry, config: Mapping[str, Any]):
        self.settings, self.data, self.registry = settings, data, registry
        self.config = {k: v for k, v in config.items() if k != "gaze_utility"}
        self.backbones: dict[tuple[float, int, int], BenchCNN] = {}
        self.decoders: dict[tuple[float, float, int, int, bool], Any] = {}
        self.rows = {size: train_rows(data.files[(settings.informativeness[-1], settings.shortcuts[0])], size,
                                      settings.generator_seed) for size in settings.train_sizes}

    def training(self, job: Job) -> TrainingArrays:
        g = self.settings.informativeness[0] if job.g is None else job.g
        path = self.data.files[(g, job.p)]
        data = TrainingArrays(load_split(path, "train", self.rows[job.size]), load_split(path, "val"))
        return shuffle_gaze(data, self.settings.generator_seed + job.seed) if job.shuffled else data

    def _fit(self, job: Job, data: TrainingArrays) -> Fitted:
        s, name = self.settings.train, job.method
        base, _, switch = name.partition("@")
        if METHODS[base].mechanism:
            return train_mechanism(base, data, s, job.seed, use_gaze=not switch)
        if base in COOPERATIVE:
            backbone = self.backbone(job)
            dkey = (job.g, job.p, job.size, job.seed, job.shuffled)
            if switch:
                data = TrainingArrays(*(split.with_gaze(np.ones_like(split.gaze)) for split in (data.train, data.val)))
            if dkey not in self.decoders:
                self.decoders[dkey] = train_decoder(backbone, data, s, job.seed)
            decoder, info = self.decoders[dkey]
            fitted = train_head(base, backbone, decoder, data, s, job.seed)
            fitted.info["decoder"] = info
            return fitted
        fitted = train_classifier(name, data, s, job.seed)
        if name == "baseline":
            self.backbones[(job.p, job.size, job.seed)] = fitted.modules["cnn"]
        return fitted

    def backbone(self, job: Job) -> BenchCNN:
        key = (job.p, job.size, job.seed)
        if key not in self.backbones:
            entry = self._entry(Job("baseline", None, job.p, job.size, job.seed))
            if entry is None:
                raise RuntimeError(f"no baseline fit for {job}; the baseline job must run first")
            cnn = BenchCNN(1, self.settings.train.num_classes, self.settings.train.widths)
            state, _ = self.registry.load(entry.id)
            cnn.load_state_dict(state["cnn"])
            self.backbones[key] = cnn.eval()
        return self.backbones[key]

    def _entry(self, job: Job):
        found = self.registry.entries(stage=STAGE, tag=f"key={job.key(self.settings)}")
        return found[-1] if found else None

    def run(self, job: Job) -> JobResult:
        entry = self._entry(job)
        if entry is not None:
            state, _ = self.registry.load(entry.id)
            probs = {t: state["predictions"][t].numpy() for t in TESTS}
            return JobResult(probs, dict(entry.metrics), True)
        data = self.training(job)
        fitted = self._fit(job, data)
        tests = self.tests(job)
        probs = {t: fitted.predict(arrays.images, arrays.gaze) for t, arrays in tests.items()}
        metrics = {**_diagnostics(job, fitted, tests["iid"], data), **_selection(fitted.info)}
        state = {"predictions": {t: torch.from_numpy(np.ascontiguousarray(v, np.float32)) for t, v in probs.items()},
                 **{k: m.state_dict() for k, m in fitted.modules.items()}}
        self.registry.save(state, stage=STAGE, config={**self.config, "gaze_benchmark": {
            "method": job.method, "g": job.g, "shortcut": job.p, "train_size": job.size, "seed": job.seed,
            "shuffled": job.shuffled, "train": self.settings.train.__dict__, "data": self.settings.data_spec()}},
            architecture={"method": job.method, "widths": list(self.settings.train.widths)},
            metrics=metrics, tags=["gaze-utility", f"method={job.row}", f"key={job.key(self.settings)}"])
        return JobResult(probs, metrics, False)

    def tests(self, job: Job) -> dict[str, BenchArrays]:
        """The iid test split of the job's data, and the shifted one: the shifted set's films (written once,
        at the smallest g) with the job's own test gaze, which the marker never changes."""
        g = self.settings.informativeness[0] if job.g is None else job.g
        iid = load_split(self.data.files[(g, job.p)], "test")
        shifted = load_split(self.data.files[(self.settings.informativeness[0], None)], "test")
        if shifted.ids != iid.ids:
            raise RuntimeError("the shifted test split lists other films than the iid one")
        return {"iid": iid, "shifted": shifted.with_gaze(iid.gaze)}


def _selection(info: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    if "val_auc" in info and info["val_auc"] is not None:
        out["val_auc"] = float(info["val_auc"])
    if "epoch" in info:
        out["epoch"] = float(info["epoch"])
    return out


def _share_inside(dist: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per film, the share of a distribution (N, h, w) inside the masks (N, H, W) pooled to (h, w)."""
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(masks[:, None]), dist.shape[-2:])[:, 0]
    return (dist * pooled.numpy()).sum(axis=(1, 2))


def _cc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(1, keepdims=True)
    return (a * b).sum(1) / np.maximum(np.sqrt((a * a).sum(1) * (b * b).sum(1)), 1e-12)


def _diagnostics(job: Job, fitted: Fitted, test: BenchArrays, data: TrainingArrays) -> dict[str, float]:
    """CAM evidence share (CNN methods) and decoder CC with the evidence vs a lung prior (cooperative methods),
    on the abnormal test films."""
    abnormal = test.evidence.reshape(len(test), -1).any(1)
    if not abnormal.any():
        return {}
    out: dict[str, float] = {}
    images, masks = test.images[abnormal], test.evidence[abnormal]
    cnn = fitted.modules.get("cnn")
    if isinstance(cnn, BenchCNN) and cnn.blocks[0][0].in_channels == 1:
        out["cam_evidence_share"] = float(_share_inside(cam_of(cnn, images, test.labels[abnormal]), masks).mean())
    if "decoder" in fitted.modules:
        sal = saliency_of(fitted.modules["decoder"], fitted.modules["backbone"], images)
        small = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(masks[:, None]), sal.shape[-2:])[:, 0].numpy()
        prior = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(data.train.gaze.mean(0)[None, None]),
                                                        sal.shape[-2:])[0, 0].numpy()
        out["decoder_cc_evidence"] = float(_cc(sal, small).mean())
        out["prior_cc_evidence"] = float(_cc(np.broadcast_to(prior, sal.shape).copy(), small).mean())
        out["decoder_evidence_share"] = float(_share_inside(sal, masks).mean())
    return out


def run_jobs(settings: StudySettings, data: StudyData, registry: Registry, config: Mapping[str, Any],
             progress: bool = True) -> dict[Job, JobResult]:
    """Fit (or reuse) every job of the study, in order."""
    torch.set_num_threads(settings.threads)
    runner = _Runner(settings, data, registry, config)
    out: dict[Job, JobResult] = {}
    todo = jobs(settings)
    with tqdm(todo, desc="gaze-utility fits", unit="fit", disable=not progress) as bar:
        for job in bar:
            bar.set_postfix_str(f"{job.row} g={job.g} p={job.p} n={job.size} seed={job.seed}")
            out[job] = runner.run(job)
    return out


# ----------------------------------------------------------------------------- statistics


def _seed_mean_macro(labels: np.ndarray, probs: Sequence[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Weighted statistic: the mean over seeds of the macro AUC (per-seed probabilities on the same images)."""
    stats = [weighted_macro_auc(labels, p) for p in probs]
    return lambda w: np.mean([s(w)[:, -1] for s in stats], axis=0)


def seed_mean_macro_auc(labels: np.ndarray, probs: Sequence[np.ndarray]) -> float:
    """The mean over seeds of the macro AUC of per-seed probabilities on the same images."""
    return float(_seed_mean_macro(labels, probs)(np.ones((1, len(labels))))[0])


def compare(labels: np.ndarray, groups: np.ndarray, a: Sequence[np.ndarray], b: Sequence[np.ndarray],
            n_resamples: int) -> dict[str, Any]:
    """Seed-mean macro AUC of a and b, their difference and its paired patient-bootstrap interval and p."""
    boot = bootstrap_paired_difference(_seed_mean_macro(labels, a), _seed_mean_macro(labels, b), groups,
                                       n_resamples)
    auc_a, auc_b = seed_mean_macro_auc(labels, a), seed_mean_macro_auc(labels, b)
    return {"auc": auc_a, "auc_baseline": auc_b, "gain": auc_a - auc_b,
            "ci": None if boot is None else boot["ci"], "p": None if boot is None else boot["p"],
            "test_method": None if boot is None else boot["method"],
            "auc_seeds": seed_summary([seed_mean_macro_auc(labels, [x]) for x in a])}


def summarise(settings: StudySettings, data: StudyData, results: Mapping[Job, JobResult]) -> dict[str, Any]:
    """The gain rows (the contract), gaze effects, the baselines' shortcut check and the diagnostics."""
    path = data.files[(settings.informativeness[0], settings.shortcuts[0])]
    with h5py.File(path, "r") as f:
        split = f["split"].asstr()[:]
        labels = f["label"][:][split == "test"].astype(np.int64)
        groups = f["patient_id"].asstr()[:][split == "test"]
    by = {(j.row, j.g, j.p, j.size): [] for j in results}
    for job in sorted(results, key=lambda j: j.seed):
        by[(job.row, job.g, job.p, job.size)].append(results[job])

    def probs(row: str, g: float | None, p: float, size: int, test: str) -> list[np.ndarray]:
        return [r.probs[test] for r in by[(row, g, p, size)]]

    gains, leaking, effects, baselines, diagnostics = [], [], [], [], []
    g0, top = settings.informativeness[0], settings.informativeness[-1]
    for (row, g, p, size), found in by.items():
        method = row.removesuffix("_shuffled")
        shuffled = row.endswith("_shuffled")
        spec = METHODS[method.split("@")[0]]
        metrics = {k: float(np.mean([r.metrics[k] for r in found])) for k in found[0].metrics
                   if all(k in r.metrics for r in found)}
        diagnostics.append({"method": row, "g": g, "shortcut": p, "train_size": size, "seeds": len(found),
                            **metrics})
        if row == "baseline" or row.endswith("@nogaze"):
            continue
        control = "shuffled" if shuffled else spec.control
        for test in TESTS:
            cell = compare(labels, groups, probs(row, g, p, size, test), probs(spec.baseline, None, p, size, test),
                           settings.bootstrap)
            out = {"method": row, "control": control, "g": g, "shortcut": p, "train_size": size, "test": test,
                   "baseline": spec.baseline, **cell}
            (leaking if spec.test_time_gaze else gains).append(out)
            if spec.uses_gaze and not shuffled and g == top and top != g0 and (row, g0, p, size) in by:
                effect = compare(labels, groups, probs(row, top, p, size, test), probs(row, g0, p, size, test),
                                 settings.bootstrap)
                effects.append({"method": row, "g": top, "against_g": g0, "shortcut": p, "train_size": size,
                                "test": test, **effect})
    for p in settings.shortcuts:
        for size in settings.train_sizes:
            iid, shifted = probs("baseline", None, p, size, "iid"), probs("baseline", None, p, size, "shifted")
            cell = compare(labels, groups, shifted, iid, settings.bootstrap)
            baselines.append({"method": "baseline", "shortcut": p, "train_size": size, "auc_iid": cell["auc_baseline"],
                              "auc_shifted": cell["auc"], "shifted_minus_iid": cell["gain"], "ci": cell["ci"],
                              "p": cell["p"]})
    adjust_family(gains, key="p")
    adjust_family(leaking, key="p")
    adjust_family(effects, key="p")
    return {"gains": gains + leaking, "gaze_effects": effects, "baselines": baselines, "diagnostics": diagnostics,
            "n_test": int(len(labels)), "test_patients": int(len(set(groups)))}


# ----------------------------------------------------------------------------- figures and tables


def _fmt(value: float | None, sign: bool = False) -> str:
    if value is None or not np.isfinite(value):
        return "—"
    return f"{value:+.3f}" if sign else f"{value:.3f}"


def _p(value: float | None) -> str:
    return "—" if value is None else ("<0.001" if value < 1e-3 else f"{value:.3f}") + (" *" if value < 0.05 else "")


def _ci(ci: Sequence[float] | None) -> str:
    return "—" if ci is None else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _errorbar(ax, x: Sequence[float], cells: Sequence[Mapping[str, Any]], **style) -> None:
    y = [c["gain"] for c in cells]
    err = np.array([[c["gain"] - c["ci"][0], c["ci"][1] - c["gain"]] if c["ci"] else [0, 0] for c in cells]).T
    ax.errorbar(x, y, yerr=err, capsize=3, marker="o", **style)


def gain_vs_g_figure(report: Mapping[str, Any]):
    """Gain vs g with 95 % intervals, one line per method, one panel per (shortcut, test) at the largest
    training size."""
    plt = _plt()
    grid = report["grid"]
    size = max(grid["train_sizes"])
    panels = [(p, t) for p in grid["shortcuts"] for t in TESTS]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4), squeeze=False, sharey=True)
    methods = sorted({r["method"] for r in report["gains"] if r["g"] is not None})
    for ax, (p, test) in zip(axes[0], panels):
        for k, method in enumerate(methods):
            cells = sorted((r for r in report["gains"] if r["method"] == method and r["shortcut"] == p
                            and r["test"] == test and r["train_size"] == size), key=lambda r: r["g"])
            if cells:
                offset = (k - len(methods) / 2) * 0.012
                _errorbar(ax, [c["g"] + offset for c in cells], cells, color=f"C{k % 10}", label=method,
                          ls="--" if cells[0]["control"] else "-")
        for r in report["gains"]:
            if r["control"] == "positive" and r["shortcut"] == p and r["test"] == test and r["train_size"] == size:
                ax.axhspan(*(r["ci"] or [r["gain"], r["gain"]]), color="k", alpha=0.08)
                ax.axhline(r["gain"], color="k", lw=1, ls=":", label="evidence oracle")
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(f"shortcut {p:g}, {test} test")
        ax.set_xlabel("gaze informativeness g")
    axes[0][0].set_ylabel("macro-AUC gain over the no-gaze backbone")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def gain_vs_shortcut_figure(report: Mapping[str, Any]):
    """Gain vs shortcut strength at the largest g (the oracle at g = none), one panel per test."""
    plt = _plt()
    grid = report["grid"]
    size, top = max(grid["train_sizes"]), max(grid["informativeness"])
    fig, axes = plt.subplots(1, len(TESTS), figsize=(4.4 * len(TESTS), 3.4), squeeze=False, sharey=True)
    methods = sorted({r["method"] for r in report["gains"]})
    for ax, test in zip(axes[0], TESTS):
        for k, method in enumerate(methods):
            cells = sorted((r for r in report["gains"] if r["method"] == method and r["test"] == test
                            and r["train_size"] == size and r["g"] in (None, top)), key=lambda r: r["shortcut"])
            if cells:
                offset = (k - len(methods) / 2) * 0.01
                _errorbar(ax, [c["shortcut"] + offset for c in cells], cells, color=f"C{k % 10}", label=method)
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(f"{test} test (g = {top:g})")
        ax.set_xlabel("shortcut strength p")
    axes[0][0].set_ylabel("macro-AUC gain over the no-gaze backbone")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _gain_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [[r["method"], r["control"] or "", "—" if r["g"] is None else f"{r['g']:g}", f"{r['shortcut']:g}",
             str(r["train_size"]), r["test"], _fmt(r["auc"]), _fmt(r["auc_baseline"]), _fmt(r["gain"], True),
             _ci(r["ci"]), _p(r.get("p")), _p(r.get("p_holm"))]
            for r in sorted(rows, key=lambda r: (r["test"], r["shortcut"], r["train_size"], r["method"],
                                                 -1 if r["g"] is None else r["g"]))]


GAIN_HEADER = ["Method", "Control", "g", "Shortcut", "n train", "Test", "AUC", "AUC no gaze", "Gain", "95 % CI",
               "p", "p (Holm)"]


def markdown(report: Mapping[str, Any]) -> str:
    """``tables.md``: the shortcut check, gains, leaking rows, gaze effects, diagnostics and notes."""
    grid, d = report["grid"], report["data"]
    knobs = ", ".join(f"{k} = {v}" for k, v in d["knobs"].items()
                      if k not in ("gaze_informativeness", "shortcut_strength", "shortcut_shifted"))
    lines = [f"# Gaze utility: does gaze make the classifier better? ({report['n_test']} test images, "
             f"{report['test_patients']} patients, seeds {list(range(grid['seeds']))})",
             *synthetic_notice(report),
             f"Phantoms: {d['images']} films of nominal height {d['film_size']} px, {knobs}; canvas "
             f"{d['height']}×{d['width']}; g ∈ {grid['informativeness']}; shortcut p ∈ {grid['shortcuts']}; "
             f"training sizes {grid['train_sizes']}; {report['wall_seconds']:.0f} s on {report['machine']['cpus']} "
             f"CPUs (load {report['machine']['load_average'][0]:.1f} at the end).",
             "## Does the shortcut work? The no-gaze baseline on both tests",
             _table(["Shortcut", "n train", "AUC iid", "AUC shifted", "Shifted − iid", "95 % CI", "p"],
                    [[f"{b['shortcut']:g}", str(b["train_size"]), _fmt(b["auc_iid"]), _fmt(b["auc_shifted"]),
                      _fmt(b["shifted_minus_iid"], True), _ci(b["ci"]), _p(b["p"])] for b in report["baselines"]]),
             "## Gain over the same backbone without gaze (training-time gaze and the controls)",
             _table(GAIN_HEADER, _gain_rows([r for r in report["gains"] if r["control"] != "test_time_gaze"]))]
    leak = [r for r in report["gains"] if r["control"] == "test_time_gaze"]
    if leak:
        lines += ["## Gaze at test time (leaks the label; not a training-time result)",
                  _table(GAIN_HEADER, _gain_rows(leak))]
    if report["gaze_effects"]:
        lines += ["## Gaze effect: each method at the largest g against itself at the smallest",
                  _table(["Method", "g vs", "Shortcut", "n train", "Test", "AUC", "AUC at g0", "Effect", "95 % CI",
                          "p", "p (Holm)"],
                         [[e["method"], f"{e['g']:g} vs {e['against_g']:g}", f"{e['shortcut']:g}",
                           str(e["train_size"]), e["test"], _fmt(e["auc"]), _fmt(e["auc_baseline"]),
                           _fmt(e["gain"], True), _ci(e["ci"]), _p(e["p"]), _p(e.get("p_holm"))]
                          for e in report["gaze_effects"]])]
    keys = ("val_auc", "cam_evidence_share", "decoder_cc_evidence", "prior_cc_evidence", "decoder_evidence_share")
    lines += ["## Diagnostics (mean over seeds; abnormal iid test films)",
              _table(["Method", "g", "Shortcut", "n train", "Val AUC", "CAM share in evidence", "Decoder CC evidence",
                      "Lung-prior CC evidence", "Decoder share in evidence"],
                     [[r["method"], "—" if r["g"] is None else f"{r['g']:g}", f"{r['shortcut']:g}",
                       str(r["train_size"]), *(_fmt(r.get(k)) for k in keys)] for r in report["diagnostics"]]),
              "## Notes", "\n".join(f"- {n}" for n in report["notes"])]
    return "\n\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- entry point


FIGURES = ("gain_vs_g.png", "gain_vs_shortcut.png")


def run_gaze_utility(config: Mapping[str, Any], out_dir: str | Path = "reports/gaze_utility",
                     progress: bool = True) -> dict[str, Any]:
    """Run the study of ``config["gaze_utility"]``: data sets, fits, statistics, then ``metrics.json``,
    ``tables.md``, the figures `FIGURES` and ``index.html`` in ``out_dir``; returns the metrics written."""
    started = time.time()
    settings = StudySettings.from_config(config)
    data = prepare_data(settings, progress)
    data_seconds = time.time() - started
    registry = Registry(config["registry"]["root"])
    results = run_jobs(settings, data, registry, config, progress)
    summary = summarise(settings, data, results)
    report = json_safe({
        "grid": {"informativeness": list(settings.informativeness), "shortcuts": list(settings.shortcuts),
                 "train_sizes": list(settings.train_sizes), "seeds": settings.seeds,
                 "methods": list(settings.methods), "shuffled": list(settings.shuffled)},
        "train": {**settings.train.__dict__, "widths": list(settings.train.widths), "threads": settings.threads},
        "data": {**settings.data_spec(), "folder": str(data.folder), "fingerprint": data.fingerprint,
                 "files": {_name(g, p): str(v) for (g, p), v in data.files.items()}},
        **summary,
        "fits": len(results), "reused": sum(r.reused for r in results.values()),
        "synthetic": is_synthetic_h5(next(iter(data.files.values()))),
        "package_version": __version__,
        "data_seconds": data_seconds,
        "wall_seconds": time.time() - started,
        "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        "notes": list(NOTES),
    })
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plt = _plt()
    for name, make in zip(FIGURES, (gain_vs_g_figure, gain_vs_shortcut_figure)):
        fig = make(report)
        save_figure_atomic(fig, out / name)
        plt.close(fig)
    tables = markdown(report)
    write_text_atomic(out / "metrics.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    write_text_atomic(out / "tables.md", tables)
    title, _, body = tables.partition("\n")
    write_text_atomic(out / "index.html", render_page(title[2:], body, list(FIGURES), [], report["synthetic"]))
    return report
