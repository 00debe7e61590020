"""Output safety as a property of the CLI (README and docs/usage.md, "What localdisc promises about your files").

``finetune``, ``pretrain`` (genesis), ``evaluate`` and ``export`` get random option values (valid
ones and hostile ones: nan, inf, -1, 0, 1e300, huge ints, empty lists, wrong counts) and random
output targets (a new folder, an empty folder, a user's folder, the data folder, a folder in it, a
user's file, a dangling symlink, a symlink to the data, finished runs with or without
--overwrite / --resume, a run's own files for export, a marked folder that holds runs, ...).
For every example:

- the exit code is 0 or 2, and nothing escapes ``main`` (no traceback);
- on 2, stderr is exactly one non-empty line ``localdisc CMD: error: ...``;
- on 2, no file, link or folder of the whole temporary tree changed (a failed start leaves no
  partial folder), except a run that started and then diverged (a NaN loss keeps its folder);
- on 0, only paths inside the intended output changed, a folder output carries the marker;
- whatever the exit code: the data, the user's files, the input runs, runs nested in a target
  folder and (on --resume) the run's config.yaml are byte for byte as before;
- targets the promises forbid (the data, a user's folder or file, a dangling symlink, an input
  run, a run's own file for export, an existing file without --overwrite) end with exit code 2.

Each sweep records the violations of all its examples and fails at the end with the list (a
failing example does not cut the search short). The tests after the sweeps are minimal
reproductions of the failures the sweeps found; each fails until its bug is fixed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import re
import shutil
import traceback
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from PIL import Image

from localdisc.cli.main import main

BIG = str(2**40)  # an int beyond every option's range: always refused before anything is built
NET = {"--image-size": ["24", "24"], "--encoder-channels": ["4", "8"], "--decoder-channels": ["8"], "--batch-size": "2", "--steps": "2",
       "--device": "cpu"}
FT_BASE = {**NET, "--eval-every": "1"}
PT_BASE = {"--method": "genesis", **NET, "--picture-every": "0"}
LISTS = {"--image-size", "--encoder-channels", "--decoder-channels", "--patch-size", "--crop-scale", "--crop-size"}
SWEEP = settings(max_examples=25, deadline=None, database=None, phases=[Phase.generate], print_blob=False,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])

# option -> (valid values, hostile values); a list is a list option's values ([] = the flag alone)
COMMON = {
    "--steps": (["1", "2"], ["0", "-1", "nan", "inf", "1e300", BIG, "1.5"]),
    "--batch-size": (["1", "2"], ["0", "-1", "nan", BIG]),
    "--lr": (["0.001", "0.01"], ["nan", "inf", "-inf", "-1", "0", "1e300"]),
    "--weight-decay": (["0", "1e-5"], ["nan", "-1", "inf", "1e300"]),
    "--image-size": ([["24", "24"], ["16", "16"], []],
                     [["24"], ["24", "24", "24"], ["24", "24", "24", "24"], ["0", "24"], ["-24", "24"], ["nan", "24"], ["inf", "inf"],
                      ["1e300", "24"], [BIG, "24"], ["24.5", "24"]]),
    "--encoder-channels": ([["4", "8"], ["4", "4", "8"]], [[], ["0", "8"], ["-4", "8"], ["nan", "8"], [BIG, "8"]]),
    "--decoder-channels": ([["8"]], [[], ["0"], ["nan"], ["-8"]]),
    "--seed": (["0", "3"], ["-1", BIG, "nan"]),
}
FT_OPTS = {
    **COMMON,
    "--val-fraction": (["0.2", "0", "1"], ["nan", "-1", "1e300", "inf"]),
    "--test-fraction": (["0.2"], ["nan", "1.5", "-0.1", "inf"]),
    "--labels": (["0", "2", "0.5"], ["-1", "nan", "inf", "1e300", BIG]),
    "--eval-every": (["1"], ["0", "-1", BIG]),
    "--checkpoint-every": (["1", "100"], ["0", "-1"]),
    "--patch-foreground": (["0.5"], ["nan", "2", "-1"]),
    "--max-minutes": (["0"], ["nan", "-1", "inf"]),
    "--encoder-lr-scale": (["1"], ["nan", "-1", "inf"]),
    "--num-classes": (["0", "2"], ["-1", BIG, "1"]),
    "--in-channels": (["0", "1"], ["-1", BIG, "3"]),
    "--patch-size": ([[], ["16", "16"]], [["0", "16"], ["48", "48"], ["16"]]),
}
PT_OPTS = {
    **COMMON,
    "--checkpoint-every": (["1", "200"], ["0", "-1"]),
    "--log-every": (["1", "10"], ["0", "-1", BIG]),
    "--picture-every": (["0", "1"], ["-1", BIG]),
    "--max-images": (["0", "3"], ["-1", BIG]),
    "--lr-halve-every": (["0", "1"], ["-1", "nan"]),
    "--split": (["all", "train"], ["test"]),
    "--shuffle-prob": (["0.5"], ["nan", "2", "-1"]),
    "--shuffle-window": (["4", "2"], ["0", "-1", BIG, "100"]),
    "--shuffle-fraction": (["0.5"], ["nan", "1.5"]),
    "--rotate-degrees": (["0", "15"], ["nan", "inf", "1e300"]),
    "--crop-scale": ([["0.5", "1.0"]], [[], ["0.5"], ["1", "0.5"], ["nan", "1"], ["-1", "1"], ["0", "0"]]),
    "--crop-size": ([[], ["16", "16"]], [["0", "16"], ["48", "48"], ["16"]]),
}
EVAL_OPTS = {
    "--split": (["test", "all", "val", "train"], ["validation"]),
    "--checkpoint": (["best", "last"], ["worst"]),
    "--max-overlays": (["0", "2", "100"], ["-1", "nan", BIG, "1.5"]),
    "--data": (["{ws}/data"], ["{ws}/nope", "{ws}/empty", "{ws}/userdir", "{ws}/datalink"]),
}
GLOBAL_OPTS = {"--max-pixels": (["1e8"], ["nan", "inf", "0", "-1", "1", "100"]), "--max-voxels": (["1e8"], ["nan", "-inf"])}

# output targets; {ws} is the example's workspace, {input} the input run (RUN of evaluate/export,
# --init of training; the pretraining run when there is none), {run}/{other} export's run / another run
FOLDER_TARGETS = ["{ws}/out", "{ws}/a/b/out", "rel-out", "{ws}/empty", "{ws}/userdir", "{ws}/userdir2", "{ws}/hidden", "{ws}/data", "{ws}/data/sub",
                  "{ws}/data/images", "{ws}/datalink", "{ws}/datalink/sub", "{ws}/file.txt", "{ws}/dangling.safetensors", "{ws}/ft",
                  "{ws}/ft", "{ws}/pt", "{ws}/bench", "{ws}/bench/finetune-a", "{input}", "{input}/sub"]
REPLACE_TARGETS = ["{ws}/ft", "{ws}/pt", "{ws}/bench", "{ws}/bench/finetune-a", "{ws}/ft/eval-test", "{input}"]
FILE_TARGETS = ["{ws}/exp.safetensors", "{ws}/exp", "{ws}/a/b/exp.safetensors", "{ws}/file.txt", "{ws}/userdir/keep.txt",
                "{ws}/dangling.safetensors", "{ws}/empty", "{ws}/datalink", "{run}/best.safetensors", "{run}/model.safetensors",
                "{run}/model", "{run}/model.json", "{run}/config.yaml", "{run}/backbone.safetensors", "{run}/backbone",
                "{run}/ckpt-00000002/model.safetensors", "{run}/exported.safetensors", "{other}/model.safetensors",
                "{ws}/bench/finetune-a/model.safetensors", "{ws}/ftlink.safetensors", "{ws}/ptlink.safetensors"]
FOREIGN_FOLDERS = ("userdir", "userdir2", "hidden", "data", "data/images")  # existing folders holding files localdisc did not write
RUNS = ("ft", "pt", "bench/finetune-a", "bench/pretrain-a")
USER_FILES = ("ft/eval-test/my-notes.txt", "userdir/keep.txt", "userdir2/photos/x.txt", "hidden/.keep", "ft/notes.txt", "pt/notes.txt", "bench/notes.txt", "file.txt")
DIVERGED = re.compile(r"became (nan|-?inf) at step")


# ---------------------------------------------------------------- fixtures and helpers


def call(argv: list[str]) -> tuple[int | None, str, str | None]:
    """(exit code, stderr, escaped exception) of ``main(argv)``; the process-wide limits that
    --max-pixels/--max-voxels set are restored afterwards."""
    from localdisc.data import files

    saved = (files.MAX_PIXELS, files.MAX_VOXELS, os.environ.get("LOCALDISC_MAX_PIXELS"), os.environ.get("LOCALDISC_MAX_VOXELS"))
    out, err = io.StringIO(), io.StringIO()
    rc, escaped = None, None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - SystemExit included: main must return, not raise
        frame = traceback.extract_tb(e.__traceback__)[-1]
        escaped = f"{type(e).__name__}: {str(e)[:200]} (at {Path(frame.filename).name}:{frame.lineno})"
    finally:
        files.MAX_PIXELS, files.MAX_VOXELS = saved[:2]
        for key, value in zip(("LOCALDISC_MAX_PIXELS", "LOCALDISC_MAX_VOXELS"), saved[2:]):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return rc, err.getvalue(), escaped


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file (content hash), symbolic link (its target) and folder under ``root``."""
    state: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                state[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                state[rel] = ("dir",)
            elif p.is_file():
                state[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest())
            else:
                state[rel] = ("other",)
    return state


def _pairs(root: Path, n: int = 6) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(root / "images" / f"p{i}.png")
        m = np.zeros((24, 24), np.uint8)
        m[4:12, 6:16] = 255
        Image.fromarray(m).save(root / "masks" / f"p{i}.png")


def tokens(opts: dict) -> list[str]:
    out: list[str] = []
    for flag, value in opts.items():
        if value is True:
            out.append(flag)
        elif isinstance(value, list):
            out += [flag, *value]
        else:
            out.append(f"{flag}={value}")  # "--lr=-inf": a value that starts with "-" is not taken for an option
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """root/base: the data, one finished fine-tuning run (evaluated once: RUN/eval-test exists)
    and one finished genesis pretraining run, built once; each example works on a copy of them
    under root/ex/N, and the snapshots cover the whole of root."""
    root = tmp_path_factory.mktemp("outprop")
    cache = tmp_path_factory.mktemp("outprop-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOCALDISC_CACHE", str(cache))
        base = root / "base"
        _pairs(base / "data")
        for argv in (["finetune", "--data", str(base / "data"), "--out", str(base / "ft"), *tokens(FT_BASE)],
                     ["pretrain", "--data", str(base / "data"), "--out", str(base / "pt"), *tokens(PT_BASE)],
                     ["evaluate", str(base / "ft"), "--device", "cpu"]):
            rc, err, escaped = call(argv)
            assert rc == 0 and escaped is None, (argv, err, escaped)
        (root / "ex").mkdir()
        yield root, base, itertools.count()


def workspace(root: Path, base: Path, n: int) -> Path:
    """A fresh copy of the data and runs, plus every kind of target."""
    ws = root / "ex" / str(n)
    for name in ("data", "ft", "pt"):
        shutil.copytree(base / name, ws / name, symlinks=True)
    for run in ("ft", "pt"):  # the copies' configs name the copied data
        cfg = ws / run / "config.yaml"
        data = yaml.safe_load(cfg.read_text())

        def moved(v):
            if isinstance(v, dict):
                return {k: moved(x) for k, x in v.items()}
            if isinstance(v, list):
                return [moved(x) for x in v]
            return v.replace(str(base), str(ws)) if isinstance(v, str) else v

        cfg.write_text(yaml.safe_dump(moved(data), sort_keys=False))
        (ws / run / "notes.txt").write_text("the user's notes, dropped into the run folder\n")
    (ws / "ft" / "eval-test" / "my-notes.txt").write_text("the user's notes on the evaluation\n")
    (ws / "userdir").mkdir()
    (ws / "userdir" / "keep.txt").write_text("the user's file\n")
    (ws / "userdir2" / "photos").mkdir(parents=True)  # a user's folder holding only a folder
    (ws / "userdir2" / "photos" / "x.txt").write_text("the user's file\n")
    (ws / "hidden").mkdir()  # a user's folder holding only a hidden file
    (ws / "hidden" / ".keep").write_text("")
    (ws / "empty").mkdir()
    (ws / "file.txt").write_text("an unrelated file of the user\n")
    (ws / "dangling.safetensors").symlink_to(ws / "nowhere")
    (ws / "datalink").symlink_to(ws / "data")
    (ws / "ftlink.safetensors").symlink_to(ws / "ft" / "best.safetensors")
    (ws / "ptlink.safetensors").symlink_to(ws / "pt" / "backbone.safetensors")
    bench = ws / "bench"  # a marked folder holding runs (like a benchmark's output)
    bench.mkdir()
    (bench / ".localdisc").write_text(json.dumps({"kind": "benchmark"}))
    (bench / "notes.txt").write_text("the user's notes\n")
    shutil.copytree(ws / "ft", bench / "finetune-a", symlinks=True)
    shutil.copytree(ws / "pt", bench / "pretrain-a", symlinks=True)
    (bench / "finetune-a" / "notes.txt").unlink()
    (bench / "pretrain-a" / "notes.txt").unlink()
    return ws


def _pick(draw, table: dict, hostile_rate: int | None = 2, sizes=(0, 0, 1, 1, 2, 3)) -> dict:
    """Up to 3 options of ``table``, each hostile with probability about 1/hostile_rate (None: never)."""
    chosen = draw(st.lists(st.sampled_from(sorted(table)), min_size=draw(st.sampled_from(sizes)), max_size=3, unique=True))
    picked = {}
    for flag in chosen:
        valid, hostile = table[flag]
        pool = hostile if hostile and hostile_rate and draw(st.sampled_from([False] * (hostile_rate - 1) + [True])) else valid
        picked[flag] = draw(st.sampled_from(pool))
    return picked


def _inside(p: Path, root: Path) -> bool:
    return p == root or root in p.parents


def _overlap(a: Path, b: Path) -> bool:
    return _inside(a, b) or _inside(b, a)


def _with_suffix(p: Path, suffix: str) -> Path:
    return p if p.suffix else p.with_suffix(suffix)


# ---------------------------------------------------------------- one example


def example(command: str, world, draw) -> list[str]:
    """Draw one invocation of ``command``, run it in a fresh workspace, return the broken promises."""
    root, base, counter = world
    ws = workspace(root, base, next(counter))
    cwd = os.getcwd()
    try:
        os.chdir(ws)  # a relative --out lands here, and so would any stray write
        return _example(command, root, ws, draw)
    finally:
        os.chdir(cwd)
        shutil.rmtree(ws, ignore_errors=True)


def _example(command: str, root: Path, ws: Path, draw) -> list[str]:
    fmt, data, init, run, default_out = None, None, None, None, False
    # what is hostile in this example: the output target alone (everything else valid, so the
    # command gets as far as writing), replacing an earlier output (--overwrite/--resume into a
    # marked folder), the option values alone, or anything
    focus = draw(st.sampled_from(["target", "target", "replace", "options", "anything"]))
    rate = {"target": None, "replace": None, "options": 1, "anything": 2}[focus]  # 1/rate: the chance of a hostile value
    glob = {}
    g = draw(st.sampled_from([None] * 8 + ["--max-pixels", "--max-voxels"])) if focus in ("options", "anything") else None
    if g:
        valid, hostile = GLOBAL_OPTS[g]
        glob[g] = draw(st.sampled_from(hostile + valid))
    if command in ("finetune", "pretrain"):
        table, opts = (FT_OPTS, dict(FT_BASE)) if command == "finetune" else (PT_OPTS, dict(PT_BASE))
        opts.update(_pick(draw, table, rate))
        hostile_data = ["{ws}/datalink", "{ws}/empty", "{ws}/nope"] if focus == "anything" else []
        data = draw(st.sampled_from(["{ws}/data"] * 5 + hostile_data))
        inits = ["{ws}/pt", "{ws}/bench/pretrain-a"] if command == "finetune" else ["{ws}/pt"]
        init = draw(st.sampled_from([None] * 3 + inits + (["{ws}/ft", "{ws}/nope"] if focus == "anything" else [])))
        target = draw(st.sampled_from(REPLACE_TARGETS if focus == "replace" else FOLDER_TARGETS if focus != "options" else FOLDER_TARGETS[:5]))
        mode = draw(st.sampled_from([["--overwrite"], ["--overwrite"], ["--resume"]] if focus == "replace"
                                    else [[], [], ["--resume"], ["--overwrite"], ["--resume", "--overwrite"]]))
        input_run = init
        argv = [command, "--data", data, "--out", target, *(["--init", init] if init else []), *tokens(opts), *mode]
    else:
        runs = ["{ws}/ft"] * 3 + ["{ws}/bench/finetune-a"] + (["{ws}/pt", "{ws}/nope", "{ws}/data"] if focus == "anything" else [])
        run = draw(st.sampled_from(runs))
        input_run = run
        mode = ["--overwrite"] if focus == "replace" else draw(st.sampled_from([[], ["--overwrite"]]))
        if command == "evaluate":
            opts = {"--device": "cpu", **_pick(draw, EVAL_OPTS, rate and 2 * rate)}
            if draw(st.booleans()):
                opts["--save-probabilities"] = True
            default_out = draw(st.integers(0, 3 if focus != "replace" else 1)) == 0
            target = None if default_out else draw(st.sampled_from(REPLACE_TARGETS if focus == "replace" else FOLDER_TARGETS if focus != "options"
                                                                   else FOLDER_TARGETS[:5]))
            argv = ["evaluate", run, *tokens(opts), *(["--out", target] if target else []), *mode]
        else:
            fmt = draw(st.sampled_from(["safetensors", "encoder", "monai-bundle", "torch-export"]))
            opts = {"--checkpoint": draw(st.sampled_from(["best", "last"] + (["worst"] if focus != "target" else [])))}
            folders = REPLACE_TARGETS if focus == "replace" else FOLDER_TARGETS
            target = draw(st.sampled_from(folders if fmt == "monai-bundle" else FILE_TARGETS))
            argv = ["export", run, "--format", fmt, "--out", target, *tokens(opts), *(["--no-check"] if fmt in ("monai-bundle", "torch-export") else []), *mode]
    argv = tokens(glob) + argv
    # a number that is not finite (or, for the training options, beyond their range) is refused
    # before anything is written: no diverged run may result from it
    values = [x for v in [*opts.values(), *glob.values()] if v is not True for x in (v if isinstance(v, list) else [v])]
    invalid = [x for x in values if re.fullmatch(r"-?(nan|inf)", x) or (x == BIG and command in ("finetune", "pretrain"))]
    other = "{ws}/pt" if run in ("{ws}/ft", "{ws}/bench/finetune-a") else "{ws}/ft"
    fill = {"{input}": input_run or "{ws}/pt", "{run}": run or "", "{other}": other}
    for key, value in fill.items():
        argv = [a.replace(key, value) for a in argv]
        target = target.replace(key, value) if target else target
    argv = [a.replace("{ws}", str(ws)) for a in argv]
    ws_path = lambda s: Path(os.path.abspath(s.replace("{ws}", str(ws)))) if s else None  # noqa: E731
    target_p, data_p, input_p, run_p = ws_path(target), ws_path(data), ws_path(input_run), ws_path(run)
    overwrite, resume = "--overwrite" in mode, "--resume" in mode
    folder_output = command != "export" or fmt == "monai-bundle"

    # the intended output: what may change when the command succeeds
    if command == "evaluate" and default_out:
        target_p = run_p / f"eval-{opts.get('--split', 'test')}"
    if folder_output:
        zone = [target_p]
    else:
        main_file = _with_suffix(target_p, {"torch-export": ".pt2"}.get(fmt, ".safetensors"))
        zone = [main_file] + ([main_file.with_suffix(".json")] if fmt in ("safetensors", "encoder") else [])
    zone += [Path(os.path.realpath(z)) for z in zone]  # an output reached through a symbolic link

    # targets that must be refused (judged on the state before the command)
    refuse: list[str] = []
    target_rel = target_p.relative_to(ws).as_posix() if _inside(target_p, ws) and target_p != ws else ""
    resolved = target_p.resolve()
    if folder_output:
        if target_rel in FOREIGN_FOLDERS or target_rel in ("file.txt", "dangling.safetensors"):
            refuse.append(f"--out is {target_rel}")
        data_in = data_p if command in ("finetune", "pretrain") else (ws_path(opts.get("--data")) if command == "evaluate" and opts.get("--data")
                                                                     else ws / "data" if command == "evaluate" else None)
        if data_in is not None and data_in.is_dir() and _overlap(resolved, data_in.resolve()):
            refuse.append("--out overlaps the input data")
        if input_p is not None and input_p.is_dir():
            src = input_p.resolve()
            if resolved == src or (command != "evaluate" and src in resolved.parents):
                refuse.append("--out is or lies inside the input run")
            if command in ("evaluate", "export") and resolved in src.parents:
                refuse.append("--out contains the input run")
        existing_run = target_p.is_dir() and (target_p / ".localdisc").is_file() and any(
            (target_p / n).exists() for n in ("config.yaml", "summary.json", "models"))
        if existing_run and not (overwrite or (resume and command in ("finetune", "pretrain"))):
            refuse.append("--out holds earlier outputs and neither --overwrite nor --resume was given")
    else:
        main_file = zone[0]
        if (main_file.is_file() or main_file.is_symlink()) and not overwrite:
            refuse.append("the export file exists and --overwrite was not given")
        if main_file.is_file() and not main_file.is_symlink() and any(_inside(main_file, ws / r) for r in RUNS):
            refuse.append("the export would replace a file of a run")
    input_dir = input_p if input_p is not None and input_p.is_dir() and _inside(input_p, ws) else None
    resume_cfg = target_p / "config.yaml" if resume and (target_p / "config.yaml").is_file() else None

    before = snapshot(root)
    rc, err, escaped = call(argv)
    after = snapshot(root)

    shown = " ".join(a.replace(str(ws), "WS") for a in argv)
    problems: list[str] = []

    def bad(kind: str, detail: str = "") -> None:
        problems.append(f"[{kind}] localdisc {shown}  ->  rc={rc} {detail}".rstrip())

    first_line = err.strip().splitlines()[-1][:200] if err.strip() else ""
    if escaped is not None:
        bad("exception escaped main", escaped)
        return problems
    if rc not in (0, 2):
        bad("exit code not 0 or 2", first_line)
    lines = [line for line in err.splitlines() if line.strip()]
    if rc == 2:
        if "Traceback" in err:
            bad("traceback on stderr", first_line)
        if len(lines) != 1:
            bad("stderr is not one line", f"{len(lines)} lines, last: {first_line}")
        if not (lines and lines[-1].startswith(f"localdisc {command}: error: ")):
            bad("stderr is not 'localdisc CMD: error: ...'", first_line)

    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    zone_rel = [rel(z) for z in zone if z is not None and _inside(z, root)]
    in_zone = lambda r: any(r == z or r.startswith(z + "/") for z in zone_rel)  # noqa: E731
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    diverged = rc == 2 and bool(DIVERGED.search(err)) and command in ("finetune", "pretrain") and not invalid
    if rc == 2 and not diverged:
        if changed:
            new_dirs = [p for p in changed if after.get(p) == ("dir",) and p not in before]
            bad("failed command changed files" + (" (left a new folder)" if new_dirs else ""), f"{changed[:4]} | {first_line}")
    elif rc in (0, 2):
        parents = lambda p: p not in before and after.get(p) == ("dir",) and any(z.startswith(p + "/") for z in zone_rel)  # noqa: E731
        outside = [p for p in changed if not in_zone(p) and not parents(p)]  # the output's new parent folders may be made
        if outside:
            bad("changed files outside the output", f"{outside[:4]} | {first_line}")

    # files that must stay whatever happens
    wsr = rel(ws)
    precious = {f"{wsr}/{u}" for u in USER_FILES}
    if command == "export" and overwrite and not folder_output:
        precious -= set(zone_rel)  # --overwrite names an existing file to replace
    sub = lambda r, z: r == z or r.startswith(z + "/")  # noqa: E731
    run_roots = [f"{wsr}/bench/finetune-a", f"{wsr}/bench/pretrain-a"]
    if input_dir is not None:
        run_roots.append(rel(input_dir))
    if command == "export":
        run_roots += [f"{wsr}/ft", f"{wsr}/pt"]  # export never replaces a file of a run
    for r, kind in before.items():
        if kind[0] == "dir":
            continue
        if sub(r, f"{wsr}/data"):
            precious.add(r)
        for R in run_roots:  # a run's files, except in an output that lies inside it (evaluate's RUN/eval-test)
            if sub(r, R) and (command == "export" or not any(sub(r, z) and sub(z, R) for z in zone_rel)):
                precious.add(r)
    if resume_cfg is not None:  # --resume never rewrites the run's config.yaml
        precious.add(rel(resume_cfg))
    lost = sorted(p for p in precious if p in before and before[p] != after.get(p))
    if lost:
        bad("data, user file or input run changed", str(lost[:5]))

    if invalid:
        refuse.append(f"the option value(s) {' '.join(invalid)} are not finite or out of range")
    if rc == 0 and refuse:
        bad("unsafe target accepted", "; ".join(refuse))
    if rc == 0 and folder_output:
        if not (target_p / ".localdisc").is_file():
            bad("output folder without the .localdisc marker", str(target_p))
        if (target_p / ".replaced").exists():
            bad("replaced run's files left in .replaced/", str(target_p))
    return problems


def sweep(command: str, world) -> None:
    found: list[str] = []

    @SWEEP
    @given(st.data())
    def one(data):
        found.extend(example(command, world, data.draw))

    one()
    kinds: dict[str, list[str]] = {}
    for p in found:
        kinds.setdefault(p[1:p.index("]")], []).append(p)
    report = "\n".join(f"{k} ({len(v)}x), e.g.\n    " + "\n    ".join(v[:3]) for k, v in sorted(kinds.items()))
    assert not found, f"{len(found)} broken promise(s) of {command}:\n{report}"


# ---------------------------------------------------------------- the sweeps


def test_finetune_outputs_property(world):
    sweep("finetune", world)


def test_pretrain_outputs_property(world):
    sweep("pretrain", world)


def test_evaluate_outputs_property(world):
    sweep("evaluate", world)


def test_export_outputs_property(world):
    sweep("export", world)


# ---------------------------------------------------------------- failures the sweeps found
# Minimal reproductions, one per bug; each fails until the bug is fixed. WS is a fresh workspace
# as the sweeps use it (data/, the runs ft/ and pt/, bench/ holding finetune-a/ and pretrain-a/,
# empty/, userdir/, file.txt, symbolic links).

FT_ARGS = tokens(FT_BASE)
PT_ARGS = tokens(PT_BASE)


def scenario(world, argv: list[str], prep=None):
    """(exit code, stderr, escaped exception, changed paths of WS) of ``main(argv)`` in a fresh workspace."""
    root, base, counter = world
    ws = workspace(root, base, next(counter))
    cwd = os.getcwd()
    try:
        os.chdir(ws)
        if prep:
            prep(ws)
        before = snapshot(ws)
        rc, err, escaped = call([a.replace("WS", str(ws)) for a in argv])
        after = snapshot(ws)
        return rc, err.replace(str(ws), "WS"), escaped, sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    finally:
        os.chdir(cwd)
        shutil.rmtree(ws, ignore_errors=True)


def refused_cleanly(result, command: str) -> None:
    rc, err, escaped, changed = result
    assert escaped is None, f"escaped main: {escaped}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2, f"rc={rc}, changed={changed[:6]}, stderr={err[-300:]}"
    assert len(lines) == 1 and lines[0].startswith(f"localdisc {command}: error: "), err
    assert changed == [], f"a refused command changed {changed[:6]} ({lines[-1]})"


def _truncate_an_image(ws: Path) -> None:
    f = ws / "data" / "images" / "p2.png"  # the test image of the run (splits.json)
    f.write_bytes(f.read_bytes()[:60])


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_limit_options_are_validated_as_one_line(world, value):
    """BUG: `localdisc --max-pixels nan|inf CMD` raises ValueError/OverflowError out of main
    (a traceback); `--max-pixels 0` raises SystemExit('localdisc: error: ...') out of main(),
    which the console script turns into exit status 1."""
    refused_cleanly(scenario(world, ["--max-pixels", value, "evaluate", "WS/ft", "--out", "WS/o", "--device", "cpu"]), "evaluate")


def test_usage_errors_are_one_line(world):
    """BUG: a value argparse rejects (`--steps 1.5`, `--split validation`) prints the whole usage
    (~30 lines) before the error line."""
    refused_cleanly(scenario(world, ["finetune", "--data", "WS/data", "--out", "WS/o", *FT_ARGS, "--steps=1.5"]), "finetune")


@pytest.mark.parametrize("argv", [
    ["pretrain", "--data", "WS/nope", "--out", "WS/a/b/out", *PT_ARGS],
    ["finetune", "--data", "WS/data", "--out", "WS/a/b/out", "--init", "WS/ft", *FT_ARGS],
], ids=["pretrain-missing-data", "finetune-init-not-a-pretraining-run"])
def test_failed_start_leaves_no_parent_folders(world, argv):
    """BUG: Run() makes --out with its parents (mkdir(parents=True)); abandon() removes only
    --out, so a failed start leaves WS/a and WS/a/b behind."""
    refused_cleanly(scenario(world, argv), argv[0])


def test_failed_start_leaves_an_existing_empty_folder_as_it_was(world):
    """BUG: pretraining locks --out (writes .lock) before it reads the data; a start that then
    fails leaves WS/empty/.lock in the user's empty folder."""
    refused_cleanly(scenario(world, ["pretrain", "--data", "WS/nope", "--out", "WS/empty", *PT_ARGS]), "pretrain")


@pytest.mark.parametrize("argv", [
    ["evaluate", "WS/bench/finetune-a", "--out", "WS/bench", "--overwrite", "--device", "cpu"],
    ["export", "WS/bench/finetune-a", "--format", "monai-bundle", "--no-check", "--out", "WS/bench", "--overwrite"],
], ids=["evaluate", "export-monai-bundle"])
def test_an_output_that_contains_the_input_run_is_refused(world, argv):
    """BUG (data loss): --out a marked folder that holds the input run (a benchmark folder with
    its runs finetune-*/pretrain-*) is accepted; with --overwrite clear_owned() deletes every
    sub-folder with an owned name, the input run and the other runs with it (exit code 0)."""
    refused_cleanly(scenario(world, argv), argv[0])


@pytest.mark.parametrize("argv", [
    ["export", "WS/ft", "--format", "encoder", "--out", "WS/pt/model.safetensors", "--overwrite"],
    ["export", "WS/ft", "--format", "monai-bundle", "--no-check", "--out", "WS/pt", "--overwrite"],
], ids=["file-of-another-run", "bundle-into-another-run"])
def test_export_never_replaces_a_file_of_another_run(world, argv):
    """BUG: `export RUN --out OTHER_RUN/model.safetensors --overwrite` replaces the other run's
    weights (and adds OTHER_RUN/model.json, which makes a pretraining run look like a
    fine-tuning run); `--format monai-bundle --out OTHER_RUN --overwrite` deletes the other run's
    config, checkpoints and weights. Only the exported run's own files are protected."""
    refused_cleanly(scenario(world, argv), "export")


def test_evaluate_that_fails_on_its_data_leaves_no_folder(world):
    """BUG: evaluate creates and marks --out before it reads the images; a broken image leaves
    the new folder WS/ev (with .localdisc) behind."""
    refused_cleanly(scenario(world, ["evaluate", "WS/ft", "--out", "WS/ev", "--device", "cpu"], prep=_truncate_an_image), "evaluate")


def test_evaluate_overwrite_that_fails_keeps_the_earlier_results(world):
    """BUG (data loss): `evaluate RUN --overwrite` deletes the earlier RUN/eval-test results
    before it reads the images; a broken image then ends with exit code 2 and no results at all."""
    refused_cleanly(scenario(world, ["evaluate", "WS/ft", "--overwrite", "--device", "cpu"], prep=_truncate_an_image), "evaluate")


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
def test_an_image_size_of_other_dimensions_is_one_line(world, command):
    """BUG: `--image-size 24 24 24` on 2D images raises torch's ValueError out of main (a
    traceback); pretraining has already made and marked the run folder by then and leaves it."""
    args = FT_ARGS if command == "finetune" else PT_ARGS
    refused_cleanly(scenario(world, [command, "--data", "WS/data", "--out", "WS/o", *args, "--image-size", "24", "24", "24"]), command)


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
@pytest.mark.parametrize("channels", [["--encoder-channels", "4", "4", "8"], ["--encoder-channels"], ["--decoder-channels"]],
                         ids=["3-encoder-1-decoder", "no-encoder", "no-decoder"])
def test_encoder_and_decoder_lists_that_do_not_match_are_one_line(world, command, channels):
    """BUG: encoder/decoder widths of mismatched counts (or an empty list) raise UNet's
    ValueError 'need exactly one decoder stage per encoder scale below the deepest' out of main."""
    args = FT_ARGS if command == "finetune" else PT_ARGS
    refused_cleanly(scenario(world, [command, "--data", "WS/data", "--out", "WS/o", *args, *channels]), command)


@pytest.mark.parametrize("command", ["finetune", "pretrain"])
@pytest.mark.parametrize("option", ["--lr=1e300", "--weight-decay=1e300"])
def test_values_beyond_float32_are_refused_before_the_run_folder(world, command, option):
    """BUG: 1e300 passes the finite/range check, the run folder is made and marked, then Adam
    raises RuntimeError 'value cannot be converted to type float without overflow' out of main
    (a traceback and a partial run folder: config.yaml, train.log)."""
    args = FT_ARGS if command == "finetune" else PT_ARGS
    refused_cleanly(scenario(world, [command, "--data", "WS/data", "--out", "WS/o", *args, option]), command)


@pytest.mark.parametrize("argv,kept", [
    (["evaluate", "WS/ft", "--out", "WS/bench", "--overwrite", "--device", "cpu"], ("bench/finetune-a", "bench/pretrain-a")),
    (["export", "WS/ft", "--format", "monai-bundle", "--no-check", "--out", "WS/bench", "--overwrite"], ("bench/finetune-a", "bench/pretrain-a")),
    (["evaluate", "WS/bench/finetune-a", "--out", "WS/ft", "--overwrite", "--device", "cpu"], ("ft/eval-test/my-notes.txt",)),
], ids=["evaluate-bench", "export-monai-bundle-bench", "evaluate-user-file-in-nested-evaluation"])
def test_overwrite_never_deletes_what_is_nested_in_the_output(world, argv, kept):
    """BUG (data loss): clear_owned() removes every entry with an owned name from a marked
    --out, marked sub-folders included: `--out BENCH --overwrite` deletes the runs BENCH/finetune-a
    and BENCH/pretrain-a (Run._move_aside keeps nested runs; clear_owned does not), and
    `--out RUN --overwrite` deletes RUN/eval-test with the user's file in it."""
    rc, err, escaped, changed = scenario(world, argv)
    assert escaped is None and rc in (0, 2), (rc, escaped, err)
    lost = [p for p in changed if p.startswith(kept)]
    assert not lost, f"rc={rc}: what --out holds changed: {lost[:6]}"
