"""Fault injection: SIGKILL each writing command at 20 seeded random moments.

After every kill the output folder must be absent, the previous complete output, or a
folder every reader refuses with a clear message; the next run must complete, and its
bytes must equal those of a run that was never interrupted.

Each command runs in a fresh driver process (``python -m tests.test_faults COMMAND DIR``:
no threads, nothing imported but pcbforge) that forks one child per run, so a run costs
no interpreter start-up; the kill takes the child's whole process group (its worker
processes too).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

KILLS = 20
#: Keys of how a run went (times, processes, the lock record), not of what it wrote.
RUN_KEYS = frozenset({"timings", "images_per_second", "import_s", "seconds", "total_s",
                      "workers", "engine", "since", "wall_s", "elapsed_s"})

COMMANDS = ("curate", "synth", "import", "split", "export", "build")


@pytest.mark.parametrize("command", COMMANDS)
def test_sigkill_at_20_random_points_leaves_old_new_or_refused(command, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tests.test_faults", command, str(tmp_path)],
                          capture_output=True, text=True, timeout=900,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results["kills"]) == KILLS
    states = [k["state"] for k in results["kills"]]
    # The kills fell before, during and after the swap: not all on one side.
    assert set(states) <= {"absent", "previous", "new", "refused"}, states
    assert results["kills_during_run"] >= KILLS // 2, results


# ---- the driver (runs in its own process) -------------------------------------------


def _normalised(value):
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items() if k not in RUN_KEYS}
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    return value


def snapshot(root: Path) -> dict[str, str] | None:
    """What a folder holds, file by file (JSON without run times), or None if absent."""
    import hashlib

    if not root.exists():
        return None
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] == ".build":  # a build's own state: which stages ran this time
            continue
        if path.is_symlink():
            found[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            data = path.read_bytes()
            if path.suffix == ".json":
                try:
                    data = json.dumps(_normalised(json.loads(data)), sort_keys=True).encode()
                except ValueError:
                    pass
            found[rel] = hashlib.sha256(data).hexdigest()
    return found


@dataclass
class Scenario:
    run: Callable[[int, Path], object]  # run(variant, out): one complete run
    out: Path
    readers: Callable[[Path], None] | None  # raise when the folder is not usable


def _dataset_reader(out: Path) -> None:
    from pcbforge.datasets.dataset import load

    load(out)


def _images(root: Path, count: int, seed: int) -> None:
    import cv2
    import numpy as np

    from pcbforge.synth.boards import draw_board

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for n in range(count):
        board = draw_board(rng, 160)
        cv2.imwrite(str(root / f"board_{n:03d}.png"), board)
        if n % 4 == 0:  # a re-encoded copy: a duplicate to find
            cv2.imwrite(str(root / f"board_{n:03d}_copy.jpg"), board,
                        [cv2.IMWRITE_JPEG_QUALITY, 92])


def _scenario(command: str, work: Path) -> Scenario:
    import numpy as np

    out = work / "out"
    if command == "curate":
        from pcbforge.curate.runner import CurateParams, curate

        for variant in (0, 1):
            _images(work / f"src{variant}", 24 + 8 * variant, seed=variant)
        return Scenario(lambda v, o: curate(work / f"src{v}", o, CurateParams(workers=1)),
                        out, _dataset_reader)
    if command == "synth":
        from pcbforge.synth.pipeline import synthesize

        _images(work / "boards", 4, seed=0)
        return Scenario(lambda v, o: synthesize(work / "boards", o, count=12, seed=v,
                                                workers=1), out, _dataset_reader)
    if command == "import":
        from pcbforge.pipeline import import_deeppcb
        from tests.conftest import write_deeppcb_layout

        for variant in (0, 1):
            write_deeppcb_layout(work / f"deeppcb{variant}", {"group1": 6, "group2": 4},
                                 np.random.default_rng(variant))
        return Scenario(lambda v, o: import_deeppcb(work / f"deeppcb{v}", o), out,
                        _dataset_reader)
    if command in ("split", "export"):
        from pcbforge.pipeline import import_deeppcb
        from tests.conftest import write_deeppcb_layout

        write_deeppcb_layout(work / "deeppcb", {f"group{g}": 3 for g in range(1, 7)},
                             np.random.default_rng(0))
        dataset = work / "dataset"
        import_deeppcb(work / "deeppcb", dataset)
        if command == "split":
            from pcbforge.split import SplitParams, split_dataset

            return Scenario(lambda v, o: split_dataset(o, SplitParams(seed=v, reshuffle=True)),
                            dataset, _dataset_reader)
        from pcbforge.pipeline import export_dataset

        formats = ("coco", "yolo")
        return Scenario(lambda v, o: export_dataset(dataset, formats[v], o), out, None)
    if command == "build":
        from pcbforge.pipeline import build
        from pcbforge.pipeline.recipe import load_recipe

        def run(variant: int, o: Path):
            recipe = load_recipe(text=(
                f"name: faults\nseed: {variant}\nsources:\n"
                "  - {name: boards, kind: procedural, count: 3, size: 160}\n"
                "synth:\n  images_per_class: 1\n  defects_per_image: [1, 2]\n"
                "report:\n  examples_per_class: 1\n  rejected_examples: 1\n"))
            return build(o, recipe, workers=1)

        return Scenario(run, out, _dataset_reader)
    raise ValueError(command)


def _in_child(run: Callable[[], object]) -> int:
    pid = os.fork()
    if pid == 0:
        os.setpgid(0, 0)
        code = 0
        try:
            run()
        except BaseException:  # noqa: BLE001 - reported through the exit code
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


def _complete(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    pid = _in_child(run)
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise RuntimeError(f"an uninterrupted run failed (status {status})")
    return time.perf_counter() - started


def drive(command: str, work: Path) -> dict:
    import numpy as np

    scenario = _scenario(command, work)
    out = scenario.out
    rng = np.random.default_rng(sorted(COMMANDS).index(command))
    # Each variant once, uninterrupted: its reference bytes and how long a run takes.
    reference, seconds = {}, []
    for variant in (1, 0):
        seconds.append(_complete(lambda v=variant: scenario.run(v, out)))
        reference[variant] = snapshot(out)
    assert reference[0] != reference[1], "the two variants must write different bytes"
    kills, during = [], 0
    previous = 0  # the variant the folder holds now
    for kill in range(KILLS):
        variant = 1 - previous
        pid = _in_child(lambda v=variant: scenario.run(v, out))
        delay = float(rng.uniform(0.0, 1.2 * max(seconds)))
        time.sleep(delay)
        waited, status = os.waitpid(pid, os.WNOHANG)
        finished = waited != 0
        if finished and status != 0:
            raise AssertionError(f"kill {kill}: the run failed by itself (status {status})")
        if not finished:
            during += 1
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
        found = snapshot(out)
        if found is None:
            state = "absent"
        elif found == reference[previous]:
            state = "previous"
        elif found == reference[variant]:
            state = "new"
        else:
            state = "refused"
            if scenario.readers is None:
                raise AssertionError(f"kill {kill} at {delay:.2f}s: {out} is neither the "
                                     "previous nor the new output, and has no reader")
            try:
                scenario.readers(out)
            except Exception as err:  # noqa: BLE001 - any clear refusal
                message = str(err)
                if not message or "Traceback" in message:
                    raise AssertionError(f"kill {kill}: unclear refusal {message!r}") from err
            else:
                raise AssertionError(f"kill {kill} at {delay:.2f}s: a reader accepted a "
                                     f"mixed folder {out}")
        # The next run completes, with the bytes of a run never interrupted.
        _complete(lambda v=variant: scenario.run(v, out))
        again = snapshot(out)
        if again != reference[variant]:
            changed = sorted(k for k in set(again) | set(reference[variant])
                             if again.get(k) != reference[variant].get(k))
            raise AssertionError(f"kill {kill} at {delay:.2f}s: the next run differs from "
                                 f"an uninterrupted one in {changed[:10]}")
        leftovers = sorted(p.name for p in out.parent.iterdir()
                           if p.name.startswith(f".{out.name}."))
        if leftovers:
            raise AssertionError(f"kill {kill}: left beside the output: {leftovers}")
        kills.append({"delay_s": round(delay, 3), "state": state, "finished": finished})
        previous = variant
    return {"command": command, "run_s": [round(s, 2) for s in seconds], "kills": kills,
            "kills_during_run": during}


if __name__ == "__main__":
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    print(json.dumps(drive(sys.argv[1], Path(sys.argv[2]))))
