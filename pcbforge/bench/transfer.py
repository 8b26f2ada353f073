"""The synthetic-to-real benchmark: does a model trained on pcbforge's synthetic defects
find real ones?

Four training regimes of reference model A (:mod:`pcbforge.bench.reference`), each
evaluated with DeepPCB's protocol on the test folder's real pairs:

1. ``real``: the real labelled defects of the train folder;
2. ``synthetic``: pcbforge-synthetic defects drawn on the train folder's *templates*
   (``synth_per_template`` images each; its real defect labels unused), plus
   defect-free synthetic pairs (each template against a misregistered copy of itself)
   for what is not a defect;
3. ``few_real+synthetic``: ``few_share`` of the real pairs (their crops repeated
   ``few_repeat`` times) plus the synthetic set;
4. ``few_real``: the same few real pairs alone.

A DeepPCB pair (template + tested image) is one leakage group; the few real pairs are
whole pairs, chosen by a hash of their file names (stable as the folder grows).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pcbforge.bench.metrics import DEEPPCB_IOU, Truth, best_truth, evaluate, iou
from pcbforge.bench.reference import (
    CLASSES,
    Samples,
    classify,
    detections,
    merge_fragments,
    negative_samples,
    pair_candidates,
    pair_samples,
    train,
)
from pcbforge.core.files import write_bytes
from pcbforge.datasets.dataset import load
from pcbforge.datasets.deeppcb import DEEPPCB_CLASSES, deeppcb_pairs
from pcbforge.engine import Engine, LocalEngine

REGIMES = ("real", "synthetic", "few_real+synthetic", "few_real")
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
RESULTS_PNG = "results.png"

Pair = tuple[Path, Path, list[tuple[int, int, int, int, str]]]


@dataclass
class TransferConfig:
    train_dir: Path
    test_dir: Path
    out: Path
    train_boards: set[str] | None = None
    test_boards: set[str] | None = None
    regimes: tuple[str, ...] = REGIMES
    few_share: float = 0.05
    #: Synthetic images per train template (2 measured better than 1 on held-out groups:
    #: synthetic mAP 0.848 against 0.822; 3 gave 0.856 for half as much time again).
    synth_per_template: int = 2
    #: In ``few_real+synthetic``, each few-real crop is repeated this many times, so the
    #: few real pairs (~800 crops) are not drowned by the synthetic set (~36,000).
    few_repeat: int = 16
    #: Add defect-free synthetic pairs (each template against a misregistered copy of
    #: itself) so the synthetic regimes see what is not a defect too.
    negatives: bool = True
    #: Etch variation of the synthetic boards (``SynthConfig.etch_px``): each synthetic
    #: image grows its template's copper by 0 or 1 px, so fine-pitch clearances exist to
    #: bridge even where the train boards have few (see RESULTS.md for what it measured).
    etch_px: tuple[int, int] = (0, 1)
    epochs: int = 8
    seed: int = 0
    device: str = "cpu"
    workers: int = 2
    extra: dict = field(default_factory=dict)


def few_pairs(pairs: list[Pair], share: float) -> list[Pair]:
    """``share`` of the pairs (at least one), picked by a hash of the tested file's name."""
    def key(pair: Pair) -> str:
        return hashlib.blake2b(pair[1].name.encode(), digest_size=8).hexdigest()

    count = max(1, math.ceil(share * len(pairs)))
    return sorted(sorted(pairs, key=key)[:count], key=lambda p: str(p[1]))


def synthetic_pairs(pairs: list[Pair], work: Path, *, per_template: int, seed: int,
                    workers: int, etch_px: tuple[int, int] = (0, 0),
                    engine: Engine | None = None) -> list[Pair]:
    """pcbforge-synthetic defects on the pairs' templates, as pairs with exact labels
    (each tested image against its own template: the board as etched, see ``etch_px``).
    ``engine``: a started engine to draw them on; without one, ``workers`` processes."""
    from pcbforge.synth.compose import SynthConfig
    from pcbforge.synth.pipeline import synthesize

    boards = work / "boards"
    if boards.exists():
        shutil.rmtree(boards)
    boards.mkdir(parents=True)
    for template, _, _ in pairs:
        shutil.copyfile(template, boards / template.name)
    out = work / "synthetic"
    if out.exists():
        shutil.rmtree(out)
    synthesize(boards, out, count=per_template * len(pairs), seed=seed, workers=workers,
               config=SynthConfig(etch_px=etch_px), image_format="jpg", progress=True,
               engine=engine)
    dataset = load(out)
    samples = dataset.samples.set_index("sample_id")
    boxes: dict[str, list] = {}
    for row in dataset.labels.itertuples():
        boxes.setdefault(row.sample_id, []).append(
            (int(round(row.x1)), int(round(row.y1)), int(round(row.x2)), int(round(row.y2)),
             row.label))
    tested = samples[samples["role"] == "tested"]
    return [(out / row.template_path, out / row.path, boxes.get(sample_id, []))
            for sample_id, row in tested.iterrows()]


#: Modules the benchmark's workers import before their first task (crops and synthesis).
WORKER_MODULES = ("numpy", "cv2", "pcbforge.bench.reference", "pcbforge.synth.compose")


@dataclass
class TransferCrops:
    """What the regimes train and are tested on, cut once for all of them."""

    real: list[Samples]  # one per train pair, in train order
    few_real: list[Samples]  # those of the few real pairs
    synthetic: Samples  # synthetic defects, plus defect-free synthetic pairs
    synth_seconds: float
    tests: list  # one (candidate boxes, their crops) per test pair, in test order
    test_samples: Samples
    truths: list[Truth]


def run_transfer(config: TransferConfig, log: Callable[[str], None] = print) -> dict:
    """Run the benchmark; write results.json, results.md and results.png under ``out``."""
    check_config(config)
    started = time.perf_counter()
    config.out.mkdir(parents=True, exist_ok=True)
    train_pairs, test_pairs = load_pairs(config, log)
    few = few_pairs(train_pairs, config.few_share)
    # One pool for all the crop cutting and the synthesis, closed before training starts.
    with LocalEngine(config.workers, preload=WORKER_MODULES) as engine:
        crops = cut_crops(config, train_pairs, test_pairs, few, engine, log)
    results = {regime: train_regime(regime, config, crops, test_pairs, log)
               for regime in config.regimes}
    payload = results_payload(config, train_pairs, test_pairs, few, crops, results,
                              seconds=time.perf_counter() - started)
    write_results(payload, config.out)
    return payload


def check_config(config: TransferConfig) -> None:
    """Raise ``ValueError`` for regimes or counts the benchmark does not know."""
    unknown = set(config.regimes) - set(REGIMES)
    if unknown:
        raise ValueError(f"unknown regimes {sorted(unknown)}; valid: {', '.join(REGIMES)}")
    if config.few_repeat < 1 or config.synth_per_template < 1:
        raise ValueError(f"few_repeat and synth_per_template must be >= 1, got "
                         f"{config.few_repeat} and {config.synth_per_template}")


def load_pairs(config: TransferConfig, log: Callable[[str], None]
               ) -> tuple[list[Pair], list[Pair]]:
    """The train and test pairs; ``ValueError`` when either is empty or they share a tested
    image."""
    train_pairs = deeppcb_pairs(config.train_dir, config.train_boards)
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


def cut_crops(config: TransferConfig, train_pairs: list[Pair], test_pairs: list[Pair],
              few: list[Pair], engine: Engine, log: Callable[[str], None]) -> TransferCrops:
    """The training crops each regime needs (real, few real, synthetic) and the test
    candidates, cut on ``engine``."""
    needs_real = {"real", "few_real", "few_real+synthetic"} & set(config.regimes)
    needs_synth = {"synthetic", "few_real+synthetic"} & set(config.regimes)
    t0 = time.perf_counter()
    real = list(engine.map(pair_samples, [(str(a), str(b), c) for a, b, c in train_pairs])
                ) if needs_real else []
    real_by_pair = dict(zip((p[1] for p in train_pairs), real, strict=False))
    few_real = [real_by_pair[n] for n in sorted(p[1] for p in few)] if needs_real else []
    synthetic, synth_seconds = Samples.empty(), 0.0
    if needs_synth:
        synthetic, synth_seconds = synthetic_crops(config, train_pairs, engine, log)
    tests = list(engine.map(pair_candidates, [(str(a), str(b)) for a, b, _ in test_pairs]))
    truths = [Truth(str(tested), label, (x1, y1, x2, y2))
              for _, tested, boxes in test_pairs for x1, y1, x2, y2, label in boxes]
    test_samples = Samples.concat([s for _, s in tests])
    log(f"crops ready in {time.perf_counter() - t0:.0f} s: {sum(len(s) for s in real)} real, "
        f"{len(synthetic)} synthetic, {len(test_samples)} test candidates")
    return TransferCrops(real, few_real, synthetic, synth_seconds, tests, test_samples, truths)


def synthetic_crops(config: TransferConfig, train_pairs: list[Pair], engine: Engine,
                    log: Callable[[str], None]) -> tuple[Samples, float]:
    """Crops of synthetic defects drawn on the train templates (plus defect-free synthetic
    pairs with ``negatives``), and the seconds the synthesis took."""
    log(f"synthesizing {config.synth_per_template} defective board(s) per train template")
    s0 = time.perf_counter()
    synth = synthetic_pairs(train_pairs, config.out / "work",
                            per_template=config.synth_per_template, seed=config.seed,
                            workers=config.workers, etch_px=config.etch_px, engine=engine)
    synth_seconds = time.perf_counter() - s0
    synthetic = Samples.concat(list(engine.map(pair_samples,
                                               [(str(a), str(b), c) for a, b, c in synth])))
    if config.negatives:
        negatives = Samples.concat(list(engine.map(
            negative_samples, [(str(t), config.seed * 1_000_003 + k)
                               for k, (t, _, _) in enumerate(train_pairs)])))
        synthetic = Samples.concat([synthetic, negatives])
    return synthetic, synth_seconds


def training_set(regime: str, config: TransferConfig, crops: TransferCrops) -> Samples:
    """The crops ``regime`` trains on."""
    if regime == "real":
        return Samples.concat(crops.real)
    if regime == "synthetic":
        return crops.synthetic
    if regime == "few_real":
        return Samples.concat(crops.few_real)
    return Samples.concat(crops.few_real * config.few_repeat + [crops.synthetic])


def train_regime(regime: str, config: TransferConfig, crops: TransferCrops,
                 test_pairs: list[Pair], log: Callable[[str], None]) -> dict:
    """Train reference model A on ``regime``'s crops and evaluate it on the test pairs."""
    samples = training_set(regime, config, crops)
    log(f"[{regime}] training on {len(samples)} crops")
    model, report = train(samples, epochs=config.epochs, seed=config.seed,
                          device=config.device, log=log)
    probs = classify(model, crops.test_samples, device=config.device)
    found, at = [], 0
    for (_, tested, _), (boxes, candidates) in zip(test_pairs, crops.tests, strict=True):
        found += merge_fragments(detections(str(tested), boxes, probs[at:at + len(candidates)]))
        at += len(candidates)
    evaluation = evaluate(found, crops.truths, DEEPPCB_CLASSES)
    log(f"[{regime}] mAP {evaluation.mean_ap:.3f}  F {evaluation.f_score:.3f}  "
        f"({report.seconds:.0f} s)")
    return {**evaluation.as_dict(),
            "confusion": confusion(test_pairs, crops.tests, probs),
            "train_samples": report.samples,
            "train_per_class": report.per_class,
            "train_seconds": report.seconds}


def results_payload(config: TransferConfig, train_pairs: list[Pair], test_pairs: list[Pair],
                    few: list[Pair], crops: TransferCrops, results: dict[str, dict], *,
                    seconds: float) -> dict:
    """What results.json holds: the setup, each regime's figures and the ratios."""
    return {
        "train_dir": str(config.train_dir), "test_dir": str(config.test_dir),
        "train_boards": sorted(config.train_boards) if config.train_boards else None,
        "test_boards": sorted(config.test_boards) if config.test_boards else None,
        "train_pairs": len(train_pairs), "few_real_pairs": len(few),
        "test_pairs": len(test_pairs), "test_truths": len(crops.truths),
        "candidate_recall": _candidate_recall(test_pairs, crops.tests),
        "seed": config.seed, "epochs": config.epochs, "device": config.device,
        "synth_per_template": config.synth_per_template, "few_repeat": config.few_repeat,
        "negatives": config.negatives, "etch_px": list(config.etch_px),
        "synth_seconds": round(crops.synth_seconds, 1), "regimes": results,
        "targets": _ratios(results), "seconds": round(seconds, 1),
    }


def write_results(payload: dict, out: Path) -> None:
    """results.json, results.md and results.png in ``out`` (each written whole)."""
    write_bytes(out / RESULTS_JSON, json.dumps(payload, indent=2, sort_keys=True).encode())
    write_bytes(out / RESULTS_MD, markdown_table(payload).encode())
    plot(payload, out / RESULTS_PNG)


def confusion(test_pairs: list[Pair], tests: list, probs: np.ndarray) -> dict[str, dict]:
    """Truth class (``background`` for a candidate matching no defect) -> predicted class
    (argmax, background included) -> count, over the test candidates."""
    table: dict[str, dict[str, int]] = {}
    at = 0
    for (_, _, boxes), (candidates, _) in zip(test_pairs, tests, strict=True):
        for k, box in enumerate(candidates):
            best = best_truth(box, boxes)
            truth = boxes[best][4] if best >= 0 else "background"
            predicted = CLASSES[int(np.argmax(probs[at + k]))]
            row = table.setdefault(truth, {})
            row[predicted] = row.get(predicted, 0) + 1
        at += len(candidates)
    return {k: dict(sorted(v.items())) for k, v in sorted(table.items())}


def _candidate_recall(test_pairs: list[Pair], tests: list) -> float:
    """Share of test defects some candidate box overlaps with IoU > 0.33 (an upper bound
    on what the classifier can find)."""
    hit = total = 0
    for (_, _, boxes), (candidates, _) in zip(test_pairs, tests, strict=True):
        for box in boxes:
            total += 1
            hit += any(iou(box[:4], c) > DEEPPCB_IOU for c in candidates)
    return round(hit / total, 4) if total else 0.0


def _ratios(results: dict[str, dict]) -> dict:
    m = {k: v["mAP"] for k, v in results.items()}
    out = {}
    if "real" in m and "synthetic" in m and m["real"] > 0:
        out["synthetic / real mAP"] = round(m["synthetic"] / m["real"], 3)
    if "real" in m and "few_real+synthetic" in m:
        out["few_real+synthetic - real mAP"] = round(m["few_real+synthetic"] - m["real"], 3)
    if "few_real" in m and "few_real+synthetic" in m:
        out["few_real+synthetic - few_real mAP"] = round(
            m["few_real+synthetic"] - m["few_real"], 3)
    return out


def markdown_table(payload: dict) -> str:
    classes = list(DEEPPCB_CLASSES)
    lines = ["| regime | " + " | ".join(classes) + " | mAP | F-score | train crops | "
             "train s |", "|---" * (len(classes) + 5) + "|"]
    for regime, r in payload["regimes"].items():
        aps = [("-" if r["ap"][c] is None else f"{r['ap'][c]:.3f}") for c in classes]
        lines.append(f"| {regime} | " + " | ".join(aps) + f" | **{r['mAP']:.3f}** | "
                     f"{r['f_score']:.3f} | {r['train_samples']} | {r['train_seconds']:.0f} |")
    lines.append("")
    lines.append(f"Test: {payload['test_pairs']} pairs, {payload['test_truths']} defects; "
                 f"candidate recall {payload['candidate_recall']:.3f} (IoU > 0.33). "
                 f"Train: {payload['train_pairs']} pairs ({payload['few_real_pairs']} in the "
                 f"few-real share). Seed {payload['seed']}, {payload['epochs']} epochs, "
                 f"{payload['seconds']:.0f} s in all.")
    for key, value in payload["targets"].items():
        lines.append(f"- {key}: {value}")
    return "\n".join(lines) + "\n"


def plot(payload: dict, path: Path) -> None:
    """Grouped bars: AP per class and mAP for each regime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*DEEPPCB_CLASSES, "mAP"]
    regimes = list(payload["regimes"])
    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    width = 0.8 / max(len(regimes), 1)
    for k, regime in enumerate(regimes):
        r = payload["regimes"][regime]
        values = [r["ap"][c] or 0.0 for c in DEEPPCB_CLASSES] + [r["mAP"]]
        ax.bar(np.arange(len(names)) + (k - (len(regimes) - 1) / 2) * width, values, width,
               label=regime)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylim(0, 1)
    ax.set_ylabel("AP (IoU > 0.33)")
    ax.set_title(f"Trained on real vs pcbforge-synthetic defects; tested on "
                 f"{payload['test_pairs']} real pairs")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


__all__ = ["REGIMES", "WORKER_MODULES", "TransferConfig", "TransferCrops", "few_pairs",
           "markdown_table", "plot", "run_transfer", "synthetic_pairs"]
