"""``localdisc`` entry point. Each subcommand lives in its own module under ``cli/`` and
provides ``register(subparsers)`` (adds its parser, with help for every option) and
``run(args)``. Only the module of the command being run is imported (torch takes seconds to
import; ``localdisc --help`` needs none of it). Errors a user can fix print one clear line and
exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..data import files
from ..errors import ConfigError, LocaldiscError

# subcommand -> (module, one-line help for `localdisc --help`)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("localdisc.cli.demo", "the whole pipeline on built-in synthetic fundus images: pretrain, fine-tune with few labels, compare with random init"),
    "pretrain": ("localdisc.cli.pretrain", "self-supervised pretraining of the U-Net on unlabeled images"),
    "finetune": ("localdisc.cli.finetune", "supervised segmentation training (random init or --init a pretraining run), with label budgets"),
    "predict": ("localdisc.cli.predict", "segment new images or volumes with a fine-tuned run: masks in the source's geometry, areas, overlays"),
    "evaluate": ("localdisc.cli.evaluate", "score a fine-tuned run (Dice, IoU, HD95; AUC/accuracy for vessels) and draw overlays"),
    "benchmark": ("localdisc.cli.benchmark", "pretraining methods against random init over label budgets and seeds, with statistics and a report"),
    "verdict": ("localdisc.cli.verdict", "does a pretrained run help on your own few labeled images? cross-validated, paired, with a CI"),
    "landmarks": ("localdisc.cli.landmarks", "one-shot landmark localization with a pretrained LD run"),
    "discover": ("localdisc.cli.discover", "structures without labels: cluster maps, shape-guided discovery"),
    "embed": ("localdisc.cli.embed", "write a pretraining run's pixel embeddings and cluster maps (.npy / NIfTI with the source geometry)"),
    "export": ("localdisc.cli.export", "export a fine-tuned network (torch.export, ONNX, safetensors, MONAI bundle) or a pretrained encoder"),
    "pseudo-classes": ("localdisc.cli.pseudo_classes", "work with the pseudo-classes of a cluster-contrast pretraining run"),
    "simulate-shapes": ("localdisc.cli.simulate", "write synthetic shape masks (vessels, discs, lungs, 3D tubes) for shape-guided discovery"),
}


class Parser(argparse.ArgumentParser):
    """Usage errors are one line naming the command and the problem (the usage text is what
    ``--help`` is for), exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where it informs (not for flags, required or empty options),
    lists as typed (``256 256``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.required or action.default in (None, argparse.SUPPRESS, "", [], ()) or isinstance(action.const, bool) and action.nargs == 0:
            return text
        if "(default:" in text:
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, (list, tuple)) else action.default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def add_command(sub, name: str, **kw) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``, with its one-line help from :data:`SUBCOMMANDS`."""
    kw.setdefault("formatter_class", HelpFormatter)
    return sub.add_parser(name, help=SUBCOMMANDS[name][1], **kw)


def require(args: argparse.Namespace, file_opts: dict, *names: str) -> None:
    """Options a real run must name (given on the command line or in --config)."""
    missing = [n for n in names if n not in vars(args) and not file_opts.get(n)]
    if missing:
        flags = " and ".join("--" + n.replace("_", "-") for n in missing)
        raise ConfigError(f"{flags} {'is' if len(missing) == 1 else 'are'} required (on the command line or in --config); `localdisc demo` runs on built-in example images")


# The argv being parsed: subcommands whose options depend on another option (pretrain's
# method-specific options depend on --method) read it while registering.
CURRENT_ARGV: list[str] = []


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    CURRENT_ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    parser = Parser(
        prog="localdisc",
        description="Label-efficient medical image segmentation: local-discrimination pretraining, transfer, landmarks, structure discovery.",
    )
    parser.add_argument("--version", action="version", version=f"localdisc {__version__}")
    parser.add_argument("--max-pixels", type=float, default=None, metavar="N",
                        help="refuse 2D images whose header promises more than N pixels, before decoding them "
                             "(default 100e6, or LOCALDISC_MAX_PIXELS); protects against decompression bombs")
    parser.add_argument("--max-voxels", type=float, default=None, metavar="N",
                        help="the same for volumes (default 512^3, or LOCALDISC_MAX_VOXELS)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in CURRENT_ARGV if a in SUBCOMMANDS), None)
    for name, (module, help_text) in SUBCOMMANDS.items():
        if name == chosen:
            importlib.import_module(module).register(sub)
        else:  # listed in `localdisc --help`; its module is imported only when it runs
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _set_limits(args: argparse.Namespace) -> None:
    """--max-pixels/--max-voxels for this process and its data-loading workers (environment)."""
    for opt, env, attr in (("max_pixels", "LOCALDISC_MAX_PIXELS", "MAX_PIXELS"), ("max_voxels", "LOCALDISC_MAX_VOXELS", "MAX_VOXELS")):
        value = getattr(args, opt, None)
        if value is not None:
            if not 1 <= value < 2**62:  # also NaN
                raise ConfigError(f"--{opt.replace('_', '-')} must be a number >= 1, got {value}")
            setattr(files, attr, int(value))
            os.environ[env] = str(int(value))


def _one_line(e: Exception) -> str:
    """The error's own message; an error re-raised from a data-loading worker carries the
    worker's whole traceback in its text, of which the last line is the message."""
    text = str(e)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1].strip()
        text = last.split(": ", 1)[1] if last.startswith(("localdisc.errors.", type(e).__name__)) and ": " in last else last
    return text


def _out_of_memory(e: BaseException) -> bool:
    """Allocation failures of torch (CPU and CUDA) and Python, told apart from other RuntimeErrors."""
    text = str(e).lower()
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or any(
        k in text for k in ("out of memory", "can't allocate memory", "cannot allocate memory", "defaultcpuallocator"))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # usage errors and --help end here with argparse's exit status (2 / 0), as a return value
        parser = build_parser(argv)
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        _set_limits(args)
        result = args.func(args)
    except LocaldiscError as e:
        print(f"localdisc {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:
        if not _out_of_memory(e):
            raise
        print(f"localdisc {args.command}: error: out of memory ({_one_line(e).splitlines()[0][:80]}); pass a smaller --batch-size, "
              "--patch-size or --image-size (`--dry-run` shows the plan); the last checkpoint is kept (--resume)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept (continue with --resume)", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
