"""The synthetic-to-real benchmark: do detectors trained on what ``pcbforge synth`` writes
find real defects?

Each detector design (:mod:`pcbforge.bench.detectors`) is trained in four regimes and
evaluated with DeepPCB's protocol on the test folder's real pairs:

1. ``real``: the real labelled pairs of the train folder;
2. ``synthetic``: exactly what :func:`pcbforge.synth.pipeline.synthesize` writes when
   drawing on the train folder's *templates* (``synth_per_template`` images each, the
   default :class:`~pcbforge.synth.compose.SynthConfig` with the benchmark's ``etch_px``),
   read back from the written dataset's tables: its tested images with their labels, and
   any tested image without labels as a defect-free pair. No real label is used and
   nothing is added on the benchmark's side;
3. ``few_real+synthetic``: ``few_share`` of the real pairs (each repeated ``few_repeat``
   times) plus the synthetic set;
4. ``few_real``: the same few real pairs alone;
5. ``few_real+targeted`` (the data-centric loop, needs ``validation_boards``): the
   ``few_real+synthetic`` model of the same seed is scored by ``pcbforge evaluate`` on the
   validation boards (whole boards of the train folder, held out of every regime's
   training), the same number of synthetic images is drawn again with ``synth --balance
   from-evaluation`` (each class in proportion to its ``1 - recall`` relative to the
   class missed most, at least 0.1, see :mod:`pcbforge.evaluate.targets`) and the model
   is trained anew on the few real pairs
   plus these. Against ``few_real+synthetic`` it answers: at equal image count, does
   drawing more of what the model misses beat drawing uniformly?

Every regime is trained once per seed. The synthetic set depends on the seed (synth seed
= training seed), so the seeds measure the spread over draws of the generator as well as
over training. What does not depend on the seed is prepared once per design and reused
by every seed: each real train pair's training data and each test pair's input (the
candidate designs' crops are cut once). The mean over seeds is what the acceptance lines
use: synthetic-only >= 0.90x real mAP and few_real+synthetic >= real.

A DeepPCB pair (template + tested image) is one leakage group; the few real pairs are
whole pairs, chosen by a hash of their file names (stable as the folder grows).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pcbforge.bench.detectors import (
    DetectorDesign,
    TrainOptions,
    confusion,
    detector,
    detector_names,
)
from pcbforge.bench.metrics import DEEPPCB_IOU, Detection, Truth, evaluate
from pcbforge.core.boxes import iou
from pcbforge.core.files import atomic_write, write_bytes
from pcbforge.datasets.dataset import load
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES, deeppcb_pairs
from pcbforge.engine import Engine, LocalEngine

REGIMES = ("real", "synthetic", "few_real+synthetic", "few_real", "few_real+targeted")
#: The regimes run by default: the targeted one needs validation boards.
DEFAULT_REGIMES = REGIMES[:4]
UNIFORM, TARGETED = "few_real+synthetic", "few_real+targeted"
#: Where the targeted regime keeps the validation boards imported as a dataset (with the
#: evaluations of the uniform models on them) under ``out``.
VALIDATION_DATASET = "work/validation-dataset"
#: Each trained model's detections on the test pairs, one pcbforge table per design,
#: regime and seed (:func:`write_detections`).
DETECTIONS_DIR = "detections"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "results.png"
#: Acceptance: synthetic-only mAP at least this share of real-trained mAP (seed means).
SYNTHETIC_SHARE_TARGET = 0.90

Pair = tuple[Path, Path, list[tuple[int, int, int, int, str]]]


class TransferConfig(BaseModel):
    """What the benchmark trains and tests (see the module)."""

    model_config = ConfigDict(extra="forbid")

    train_dir: Path
    test_dir: Path
    out: Path
    train_boards: set[str] | None = None
    test_boards: set[str] | None = None
    #: Boards of the train folder held out of all training, where the targeted regime
    #: evaluates the uniform model to decide what to draw.
    validation_boards: set[str] | None = None
    #: Detector designs, by registry name (:func:`pcbforge.bench.detectors.detector_names`).
    detectors: tuple[str, ...] = Field(default_factory=lambda: tuple(detector_names()))
    regimes: tuple[str, ...] = DEFAULT_REGIMES
    #: Each regime is trained once per seed; the seed is also the synthesis seed. Three by
    #: default: the acceptance lines are on the mean of three seeds.
    seeds: tuple[int, ...] = (0, 1, 2)
    few_share: float = Field(0.05, gt=0, le=1)
    #: Synthetic images per train template.
    synth_per_template: int = Field(2, ge=1)
    #: In ``few_real+synthetic``, each few real pair is repeated this many times, so the
    #: few real pairs are not drowned by the synthetic set.
    few_repeat: int = Field(16, ge=1)
    #: Etch variation of the synthetic boards (``SynthConfig.etch_px``): each synthetic
    #: image grows its template's copper by 0 or 1 px, so fine-pitch clearances exist to
    #: bridge even where the train boards have few.
    etch_px: tuple[int, int] = (0, 1)
    #: Training epochs of every design; ``None``: each design's own default.
    epochs: int | None = Field(None, ge=1)
    device: str = "cpu"
    workers: int = Field(2, ge=1)

    @field_validator("regimes")
    @classmethod
    def _regimes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(REGIMES))
        if unknown or not value:
            raise ValueError(f"unknown regimes {unknown}; valid: {', '.join(REGIMES)}")
        return tuple(dict.fromkeys(value))

    @field_validator("detectors")
    @classmethod
    def _detectors(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(detector_names()))
        if unknown or not value:
            raise ValueError(f"unknown detectors {unknown}; valid: "
                             f"{', '.join(detector_names())}")
        return tuple(dict.fromkeys(value))

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or len(set(value)) != len(value) or min(value) < 0:
            raise ValueError(f"seeds must be distinct integers >= 0, at least one; got "
                             f"{list(value)}")
        return value

    @model_validator(mode="after")
    def _targeted(self) -> TransferConfig:
        if TARGETED in self.regimes:
            if not self.validation_boards:
                raise ValueError(f"regime {TARGETED} needs validation boards (boards of the "
                                 "train folder to evaluate the uniform model on)")
            if UNIFORM not in self.regimes:
                raise ValueError(f"regime {TARGETED} needs regime {UNIFORM}: its model is "
                                 "the one evaluated, and the one compared")
        if self.validation_boards and self.train_boards and (
                self.validation_boards & self.train_boards):
            raise ValueError(f"boards {sorted(self.validation_boards & self.train_boards)} are "
                             "both train and validation boards")
        return self


def few_pairs(pairs: list[Pair], share: float) -> list[Pair]:
    """``share`` of the pairs (at least one), picked by a hash of the tested file's name."""
    def key(pair: Pair) -> str:
        return hashlib.blake2b(pair[1].name.encode(), digest_size=8).hexdigest()

    count = max(1, math.ceil(share * len(pairs)))
    return sorted(sorted(pairs, key=key)[:count], key=lambda p: str(p[1]))


def synthetic_pairs(pairs: list[Pair], work: Path, *, per_template: int, seed: int,
                    workers: int, etch_px: tuple[int, int] = (0, 0),
                    engine: Engine | None = None, class_weights: Sequence[float] | None = None,
                    balance: str = "", name: str = "") -> list[Pair]:
    """Run ``pcbforge synth`` (:func:`~pcbforge.synth.pipeline.synthesize`, default
    ``SynthConfig`` but ``etch_px``) on the pairs' templates into ``work/synthetic-SEED``
    and return the pairs it wrote, read from its tables: every tested image with its
    template (the board as etched) and its labels (none: a defect-free pair).
    ``engine``: a started engine to draw them on; without one, ``workers`` processes.
    ``class_weights`` and ``balance``: drawn as ``synth --balance`` would (the targeted
    regime), into ``work/synthetic-SEED-NAME``."""
    from pcbforge.synth.compose import SynthConfig
    from pcbforge.synth.pipeline import synthesize

    boards = work / "boards"
    if boards.exists():
        shutil.rmtree(boards)
    boards.mkdir(parents=True)
    for template, _, _ in pairs:
        shutil.copyfile(template, boards / template.name)
    out = work / (f"synthetic-{seed}-{name}" if name else f"synthetic-{seed}")
    if out.exists():
        shutil.rmtree(out)
    config = SynthConfig(etch_px=etch_px, balance=balance,
                         class_weights=None if class_weights is None else tuple(class_weights))
    synthesize(boards, out, count=per_template * len(pairs), seed=seed, workers=workers,
               config=config, image_format="jpg", progress=False, engine=engine)
    return written_pairs(out)


def written_pairs(dataset_dir: Path) -> list[Pair]:
    """``(template, tested, boxes)`` of every tested image of a pcbforge dataset, in the
    samples table's order; an image with no labels has no boxes (a defect-free pair)."""
    dataset = load(dataset_dir)
    samples = dataset.samples.set_index("sample_id")
    boxes: dict[str, list] = {}
    for row in dataset.labels.itertuples():
        boxes.setdefault(row.sample_id, []).append(
            (int(round(row.x1)), int(round(row.y1)), int(round(row.x2)), int(round(row.y2)),
             row.label))
    tested = samples[samples["role"] == "tested"]
    return [(dataset_dir / row.template_path, dataset_dir / row.path, boxes.get(sample_id, []))
            for sample_id, row in tested.iterrows()]


#: Modules the benchmark's workers import before their first task (data and synthesis).
WORKER_MODULES = ("numpy", "cv2", "pcbforge.bench.detectors", "pcbforge.synth.compose")


def _tasks(pairs: Sequence[Pair]) -> list[tuple[str, str, list]]:
    return [(str(a), str(b), c) for a, b, c in pairs]


def run_transfer(config: TransferConfig, log: Callable[[str], None] = print) -> dict:
    """Run the benchmark; write results.json, results.md and results.png under ``out``
    and return what results.json holds."""
    started = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    train_pairs, test_pairs = load_pairs(config, log)
    few = few_pairs(train_pairs, config.few_share)
    few_names = {p[1] for p in few}
    few_index = [k for k, p in enumerate(train_pairs) if p[1] in few_names]
    designs = [detector(name) for name in config.detectors]
    needs_real = bool({"real", "few_real", UNIFORM} & set(config.regimes))
    needs_synth = bool({"synthetic", UNIFORM} & set(config.regimes))
    validation = Validation.prepare(config, log) if TARGETED in config.regimes else None
    images = [str(p[1]) for p in test_pairs]
    truths = [Truth(str(tested), label, (x1, y1, x2, y2))
              for _, tested, boxes in test_pairs for x1, y1, x2, y2, label in boxes]
    # Seed-independent data, once per design; pools are closed before training starts.
    real: dict[str, list] = {}
    tests: dict[str, list] = {}
    prep: dict[str, dict] = {}
    with LocalEngine(config.workers, preload=WORKER_MODULES) as engine:
        for design in designs:
            t0 = time.perf_counter()
            real[design.name] = (list(engine.map(design.train_data, _tasks(train_pairs)))
                                 if needs_real else [])
            t1 = time.perf_counter()
            tests[design.name] = list(engine.map(design.test_data, _tasks(test_pairs)))
            if validation is not None:
                validation.data[design.name] = list(engine.map(
                    design.test_data, _tasks(validation.pairs)))
            prep[design.name] = {"real_seconds": round(t1 - t0, 1),
                                 "test_seconds": round(time.perf_counter() - t1, 1)}
            log(f"[{design.name}] real and test data ready in "
                f"{time.perf_counter() - t0:.0f} s")
    results: dict[str, dict[int, dict]] = {d.name: {} for d in designs}
    synth_runs = {}
    for seed in config.seeds:
        synthetic: dict[str, list] = {d.name: [] for d in designs}
        if needs_synth:
            synthetic, synth_runs[seed] = synthetic_data(config, train_pairs, designs, seed,
                                                         log)
        for design in designs:
            sets = training_sets([r for r in config.regimes if r != TARGETED],
                                 real[design.name], few_index, synthetic[design.name],
                                 config.few_repeat)
            test = (tests[design.name], test_pairs, images, truths)
            runs = {}
            for regime, items in sets.items():
                runs[regime], model = train_regime(design, regime, items, config, seed, *test,
                                                   log)
                if regime == UNIFORM and validation is not None:
                    runs[TARGETED] = targeted_regime(design, model, config, seed, train_pairs,
                                                     few_index, real[design.name], validation,
                                                     test, log)
            results[design.name][seed] = {regime: runs[regime] for regime in config.regimes}
    payload = results_payload(config, designs, train_pairs, test_pairs, few, truths, tests,
                              prep, synth_runs, results,
                              seconds=time.perf_counter() - started)
    write_results(payload, config.out)
    return payload


class Validation:
    """The targeted regime's validation boards: their pairs, each design's input on them,
    and the boards imported as a pcbforge dataset (``out/work/validation-dataset``) that
    ``pcbforge evaluate`` scores the uniform models on."""

    def __init__(self, root: Path, pairs: list[Pair], dataset: Path) -> None:
        self.root, self.pairs, self.dataset = root, pairs, dataset
        self.data: dict[str, list] = {}

    @classmethod
    def prepare(cls, config: TransferConfig, log: Callable[[str], None]) -> Validation:
        """Copy the validation boards out of the train folder and import them
        (``pcbforge import deeppcb``)."""
        from pcbforge.pipeline.ingest import import_deeppcb

        boards = sorted(config.validation_boards or ())
        root = config.out / "work" / "validation-boards"
        if root.exists():
            shutil.rmtree(root)
        for board in boards:
            shutil.copytree(Path(config.train_dir) / board, root / board)
        pairs = deeppcb_pairs(root)
        if not pairs:
            raise ValueError(f"no pairs on the validation boards {boards} of "
                             f"{config.train_dir}")
        dataset = config.out / VALIDATION_DATASET
        import_deeppcb(root, dataset)
        log(f"validation: {len(pairs)} pairs on boards {', '.join(boards)}")
        return cls(root, pairs, dataset)


def targeted_regime(design: DetectorDesign, uniform_model: Any, config: TransferConfig,
                    seed: int, train_pairs: list[Pair], few_index: Sequence[int], real: list,
                    validation: Validation, test: tuple, log: Callable[[str], None]) -> dict:
    """The ``few_real+targeted`` run of ``design`` and ``seed``: ``pcbforge evaluate`` the
    uniform model on the validation boards, draw as many synthetic images as the uniform
    regime had with the class weights that evaluation gives, train on the few real pairs
    plus these and evaluate on the test pairs. The result also holds the validation
    figures and the weights."""
    from pcbforge.evaluate.runner import evaluate_dataset
    from pcbforge.evaluate.targets import weights_from_evaluation
    from pcbforge.synth.compose import SynthConfig

    images = [str(p[1]) for p in validation.pairs]
    detected = design.detect(uniform_model, validation.data[design.name], images,
                             config.device)
    name = f"{design.name}-seed{seed}"
    table = config.out / "work" / "validation-detections" / f"{name}.csv"
    write_detections(detected.detections, validation.root, table)
    metrics = evaluate_dataset(validation.dataset, table, "pcbforge", name=name, split="all")
    classes = SynthConfig().classes
    weights = weights_from_evaluation(metrics, classes)
    note = f"from-evaluation {name} (split all)"
    log(f"[{design.name} seed {seed}] uniform model on the validation boards: mAP "
        f"{metrics['deeppcb']['mAP']:.3f}; class weights "
        + ", ".join(f"{c} {w:.2f}" for c, w in zip(classes, weights, strict=True)))
    with LocalEngine(config.workers, preload=WORKER_MODULES) as engine:
        t0 = time.perf_counter()
        pairs = synthetic_pairs(train_pairs, config.out / "work",
                                per_template=config.synth_per_template, seed=seed,
                                workers=config.workers, etch_px=config.etch_px, engine=engine,
                                class_weights=weights, balance=note, name=design.name)
        synth_seconds = time.perf_counter() - t0
        data = list(engine.map(design.train_data, _tasks(pairs)))
    items = training_sets([UNIFORM], real, few_index, data, config.few_repeat)[UNIFORM]
    result, _ = train_regime(design, TARGETED, items, config, seed, *test, log)
    per_class = metrics["deeppcb"].get("per_class", {})
    result["targeting"] = {
        "validation_mAP": metrics["deeppcb"]["mAP"],
        "validation_recall": {c: per_class.get(c, {}).get("recall") for c in classes},
        "class_weights": dict(zip(classes, weights, strict=True)),
        "synthetic_defects": dict(sorted(_label_counts(pairs).items())),
        "synth_seconds": round(synth_seconds, 1)}
    return result


def _label_counts(pairs: Sequence[Pair]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, _, boxes in pairs:
        for box in boxes:
            counts[box[4]] = counts.get(box[4], 0) + 1
    return counts


def load_pairs(config: TransferConfig, log: Callable[[str], None]
               ) -> tuple[list[Pair], list[Pair]]:
    """The train and test pairs; ``ValueError`` when either is empty or they share a tested
    image."""
    train_pairs = deeppcb_pairs(config.train_dir, config.train_boards)
    if config.validation_boards:  # held out of every regime's training
        held = {p[1] for p in deeppcb_pairs(config.train_dir, config.validation_boards)}
        train_pairs = [p for p in train_pairs if p[1] not in held]
    test_pairs = deeppcb_pairs(config.test_dir, config.test_boards)
    if not train_pairs or not test_pairs:
        raise ValueError(f"no pairs found: {len(train_pairs)} to train on in "
                         f"{config.train_dir}, {len(test_pairs)} to test on in {config.test_dir}")
    shared = {p[1].resolve() for p in train_pairs} & {p[1].resolve() for p in test_pairs}
    if shared:
        raise ValueError(f"{len(shared)} tested images are in both the train and the test "
                         f"set (e.g. {sorted(shared)[0]}); hold out whole groups")
    log(f"train: {len(train_pairs)} pairs from {config.train_dir}; "
        f"test: {len(test_pairs)} pairs from {config.test_dir}")
    return train_pairs, test_pairs


def synthetic_data(config: TransferConfig, train_pairs: list[Pair],
                   designs: Sequence[DetectorDesign], seed: int,
                   log: Callable[[str], None]) -> tuple[dict[str, list], dict]:
    """Each design's training data of the synthetic set drawn with ``seed``, and what the
    synthesis made (pairs, defect-free pairs, seconds)."""
    log(f"[seed {seed}] synthesizing {config.synth_per_template} image(s) per train template")
    with LocalEngine(config.workers, preload=WORKER_MODULES) as engine:
        t0 = time.perf_counter()
        pairs = synthetic_pairs(train_pairs, config.out / "work",
                                per_template=config.synth_per_template, seed=seed,
                                workers=config.workers, etch_px=config.etch_px, engine=engine)
        run = {"pairs": len(pairs), "defect_free_pairs": sum(1 for p in pairs if not p[2]),
               "defects": sum(len(p[2]) for p in pairs),
               "synth_seconds": round(time.perf_counter() - t0, 1), "data_seconds": {}}
        data = {}
        for design in designs:
            t1 = time.perf_counter()
            data[design.name] = list(engine.map(design.train_data, _tasks(pairs)))
            run["data_seconds"][design.name] = round(time.perf_counter() - t1, 1)
    log(f"[seed {seed}] {run['pairs']} synthetic pairs ({run['defect_free_pairs']} defect-free)"
        f" in {run['synth_seconds']:.0f} s")
    return data, run


def training_sets(regimes: Sequence[str], real: list, few_index: Sequence[int],
                  synthetic: list, few_repeat: int) -> dict[str, list]:
    """Each regime's per-pair training items (a repeated pair appears several times)."""
    few = [real[k] for k in few_index] if real else []
    sets = {"real": real, "synthetic": synthetic, "few_real": few,
            "few_real+synthetic": few * few_repeat + synthetic}
    return {regime: sets[regime] for regime in regimes}


def train_regime(design: DetectorDesign, regime: str, items: list, config: TransferConfig,
                 seed: int, tests: list, test_pairs: list[Pair], images: list[str],
                 truths: list[Truth], log: Callable[[str], None]) -> tuple[dict, Any]:
    """Train ``design`` on ``regime``'s items with ``seed`` and evaluate it on the test
    pairs; the result and the trained model."""
    epochs = config.epochs or design.default_epochs
    log(f"[{design.name} seed {seed}] {regime}: training on {len(items)} pair items")
    model, report = design.fit(items, TrainOptions(epochs, seed, config.device, log))
    t0 = time.perf_counter()
    detected = design.detect(model, tests, images, config.device)
    detect_seconds = time.perf_counter() - t0
    evaluation = evaluate(detected.detections, truths, DEEPPCB_CLASSES)
    write_detections(detected.detections, config.test_dir,
                     config.out / DETECTIONS_DIR / f"{design.name}-{regime}-seed{seed}.csv")
    log(f"[{design.name} seed {seed}] {regime}: mAP {evaluation.mean_ap:.3f}  "
        f"F {evaluation.f_score:.3f}  ({report.seconds:.0f} s training)")
    result = {**evaluation.as_dict(), "train_items": len(items),
              "train_samples": report.samples, "train_per_class": report.per_class,
              "epochs": epochs, "train_seconds": report.seconds,
              "detect_seconds": round(detect_seconds, 1)}
    if "probabilities" in detected.details:
        result["confusion"] = confusion([p[2] for p in test_pairs], tests,
                                        detected.details["probabilities"])
    return result, model


def write_detections(detections: Sequence[Detection], test_dir: Path, path: Path) -> None:
    """A model's detections as a pcbforge predictions table (``path`` of the tested image
    relative to ``test_dir``, ``label, score, x1, y1, x2, y2``): what ``pcbforge
    evaluate`` and ``pcbforge mine`` read (``--format pcbforge``) on the test folder
    imported as a dataset."""
    rows = [{"path": Path(d.image).resolve().relative_to(Path(test_dir).resolve()).as_posix(),
             "label": d.label, "score": float(d.score), "x1": float(d.box[0]),
             "y1": float(d.box[1]), "x2": float(d.box[2]), "y2": float(d.box[3])}
            for d in detections]
    table = pd.DataFrame(rows, columns=["path", "label", "score", "x1", "y1", "x2", "y2"])
    table = table.sort_values(["path", "score", "x1", "y1"], ascending=[True, False, True,
                                                                          True], kind="stable")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


def summary(per_seed: dict[int, dict[str, dict]]) -> dict[str, dict]:
    """Per regime: the mean over seeds of mAP, F-score and each class's AP, and every
    seed's mAP."""
    out: dict[str, dict] = {}
    regimes = next(iter(per_seed.values())).keys()
    for regime in regimes:
        runs = [per_seed[seed][regime] for seed in per_seed]
        ap = {}
        for name in DEEPPCB_CLASSES:
            values = [r["ap"][name] for r in runs if r["ap"][name] is not None]
            ap[name] = round(float(np.mean(values)), 4) if values else None
        out[regime] = {"mAP": round(float(np.mean([r["mAP"] for r in runs])), 4),
                       "f_score": round(float(np.mean([r["f_score"] for r in runs])), 4),
                       "ap": ap, "mAP_per_seed": {str(s): round(per_seed[s][regime]["mAP"], 4)
                                                  for s in per_seed},
                       "train_seconds": round(float(np.mean([r["train_seconds"]
                                                             for r in runs])), 1)}
    return out


def acceptance(mean: dict[str, dict]) -> dict[str, dict]:
    """The two acceptance lines on seed means, where the regimes they need ran: each with
    its value, target and ``passed``."""
    m = {regime: r["mAP"] for regime, r in mean.items()}
    out = {}
    if "real" in m and "synthetic" in m:
        share = m["synthetic"] / m["real"] if m["real"] > 0 else 0.0
        out["synthetic / real mAP"] = {"value": round(share, 3),
                                       "target": f">= {SYNTHETIC_SHARE_TARGET:.2f}",
                                       "passed": share >= SYNTHETIC_SHARE_TARGET}
    if "real" in m and "few_real+synthetic" in m:
        gain = m["few_real+synthetic"] - m["real"]
        out["few_real+synthetic - real mAP"] = {"value": round(gain, 3), "target": ">= 0",
                                                "passed": gain >= 0}
    if "few_real" in m and "few_real+synthetic" in m:
        out["few_real+synthetic - few_real mAP"] = {
            "value": round(m["few_real+synthetic"] - m["few_real"], 3), "target": None,
            "passed": None}
    if TARGETED in m and UNIFORM in m:
        # Same image count, same seeds: the honest answer either way, no target.
        out[f"{TARGETED} - {UNIFORM} mAP"] = {"value": round(m[TARGETED] - m[UNIFORM], 3),
                                              "target": None, "passed": None}
    return out


def candidate_recall(test_pairs: list[Pair], boxes_per_pair: Sequence[list]) -> float:
    """Share of test defects some candidate box overlaps with IoU > 0.33 (an upper bound
    on what a candidate design's classifier can find)."""
    hit = total = 0
    for (_, _, truths), candidates in zip(test_pairs, boxes_per_pair, strict=True):
        for box in truths:
            total += 1
            hit += any(iou(box[:4], c) > DEEPPCB_IOU for c in candidates)
    return round(hit / total, 4) if total else 0.0


def results_payload(config: TransferConfig, designs: Sequence[DetectorDesign],
                    train_pairs: list[Pair], test_pairs: list[Pair], few: list[Pair],
                    truths: list[Truth], tests: dict[str, list], prep: dict[str, dict],
                    synth_runs: dict[int, dict], results: dict[str, dict[int, dict]], *,
                    seconds: float) -> dict:
    """What results.json holds: the setup, every design's figures per seed, their means
    and the acceptance lines."""
    per_design: dict[str, Any] = {}
    for design in designs:
        mean = summary(results[design.name])
        entry = {"summary": design.summary,
                 "seeds": {str(s): r for s, r in results[design.name].items()},
                 "mean": mean, "acceptance": acceptance(mean), **prep[design.name]}
        if design.candidates is not None:
            entry["candidate_recall"] = candidate_recall(
                test_pairs, [design.candidates(item) for item in tests[design.name]])
        per_design[design.name] = entry
    return {
        "train_dir": str(config.train_dir), "test_dir": str(config.test_dir),
        "train_boards": sorted(config.train_boards) if config.train_boards else None,
        "validation_boards": (sorted(config.validation_boards) if config.validation_boards
                              else None),
        "test_boards": sorted(config.test_boards) if config.test_boards else None,
        "train_pairs": len(train_pairs), "few_real_pairs": len(few),
        "test_pairs": len(test_pairs), "test_truths": len(truths),
        "seeds": list(config.seeds), "epochs": config.epochs, "device": config.device,
        "regimes": list(config.regimes), "synth_per_template": config.synth_per_template,
        "few_repeat": config.few_repeat, "etch_px": list(config.etch_px),
        "synthesis": {str(s): r for s, r in synth_runs.items()},
        "detectors": per_design, "seconds": round(seconds, 1),
    }


def write_results(payload: dict, out: Path) -> None:
    """results.json, results.md and results.png in ``out`` (each written whole)."""
    write_bytes(out / RESULTS_JSON, json.dumps(payload, indent=2, sort_keys=True).encode())
    write_bytes(out / RESULTS_MD, markdown_table(payload).encode())
    plot(payload, out / RESULTS_PNG)


def markdown_table(payload: dict) -> str:
    """One table per design: per regime each seed's mAP, the means (mAP, F-score, AP per
    class) and the mean training seconds; then its acceptance lines, pass or fail."""
    classes = list(DEEPPCB_CLASSES)
    seeds = [str(s) for s in payload["seeds"]]
    lines = [f"Test: {payload['test_pairs']} pairs, {payload['test_truths']} defects. "
             f"Train: {payload['train_pairs']} pairs ({payload['few_real_pairs']} in the "
             f"few-real share). Seeds {', '.join(seeds)} (synth seed = seed); "
             f"{payload['seconds']:.0f} s in all.", ""]
    for name, design in payload["detectors"].items():
        lines.append(f"### {name}")
        lines.append("")
        lines.append(design["summary"] + (f"; candidate recall {design['candidate_recall']:.3f}"
                                          if "candidate_recall" in design else "") + ".")
        lines.append("")
        head = ([f"seed {s}" for s in seeds] + ["**mean mAP**", "mean F"] + classes
                + ["train s"])
        lines.append("| regime | " + " | ".join(head) + " |")
        lines.append("|---" * (len(head) + 1) + "|")
        for regime, mean in design["mean"].items():
            cells = [f"{mean['mAP_per_seed'][s]:.3f}" for s in seeds]
            cells += [f"**{mean['mAP']:.3f}**", f"{mean['f_score']:.3f}"]
            cells += ["-" if mean["ap"][c] is None else f"{mean['ap'][c]:.3f}" for c in classes]
            cells.append(f"{mean['train_seconds']:.0f}")
            lines.append(f"| {regime} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.extend(targeting_lines(design))
        for key, line in design["acceptance"].items():
            value = f"{line['value']:+.3f}" if " - " in key else f"{line['value']:.3f}"
            verdict = ("" if line["passed"] is None else
                       f" (target {line['target']}): **{'pass' if line['passed'] else 'FAIL'}**")
            lines.append(f"- {key}, mean of seeds: {value}{verdict}")
        lines.append("")
    return "\n".join(lines)


def targeting_lines(design: dict) -> list[str]:
    """Per seed of the targeted regime: the uniform model's recall per class on the
    validation boards, the class weights drawn from it and the defects drawn."""
    rows = [(seed, runs[TARGETED]["targeting"]) for seed, runs in design["seeds"].items()
            if TARGETED in runs]
    if not rows:
        return []
    classes = list(DEEPPCB_CLASSES)
    lines = ["Targeted draws (uniform model on the validation boards -> class weights -> "
             "synthetic defects drawn):", "",
             "| seed | validation mAP | " + " | ".join(classes) + " |",
             "|---" * (len(classes) + 2) + "|"]
    for seed, t in rows:
        cells = []
        for c in classes:
            recall = t["validation_recall"].get(c)
            shown = "-" if recall is None else f"{recall:.2f}"
            cells.append(f"recall {shown}, w {t['class_weights'][c]:.2f}, "
                         f"{t['synthetic_defects'].get(c, 0)} drawn")
        lines.append(f"| {seed} | {t['validation_mAP']:.3f} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def plot(payload: dict, path: Path) -> None:
    """One panel per design: mean mAP per regime (bars) and each seed's mAP (dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs = list(payload["detectors"])
    fig, axes = plt.subplots(1, len(designs), figsize=(4 * len(designs), 3.6), dpi=100,
                             squeeze=False)
    for ax, name in zip(axes[0], designs, strict=True):
        mean = payload["detectors"][name]["mean"]
        regimes = list(mean)
        ax.bar(np.arange(len(regimes)), [mean[r]["mAP"] for r in regimes], 0.6,
               color="#8fb3d9")
        for k, regime in enumerate(regimes):
            values = list(mean[regime]["mAP_per_seed"].values())
            ax.plot([k] * len(values), values, "k.", markersize=5)
        ax.set_xticks(np.arange(len(regimes)), regimes, rotation=20, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(name)
    axes[0][0].set_ylabel("mAP (IoU > 0.33)")
    fig.suptitle(f"Trained on real vs pcbforge synth output; tested on "
                 f"{payload['test_pairs']} real pairs", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


__all__ = ["DEFAULT_REGIMES", "REGIMES", "SYNTHETIC_SHARE_TARGET", "TARGETED", "UNIFORM",
           "WORKER_MODULES", "TransferConfig", "Validation", "acceptance",
           "candidate_recall", "few_pairs", "markdown_table", "plot", "run_transfer",
           "summary", "synthetic_pairs", "targeted_regime", "targeting_lines",
           "training_sets", "written_pairs"]
