"""``localdisc`` entry point. Each subcommand lives in its own module under ``cli/`` and
provides ``register(subparsers)`` (adds its parser, with help for every option) and
``run(args)``. Errors a user can fix print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import LocaldiscError

# subcommand -> module (imported when the parser is built; each is small)
SUBCOMMANDS: dict[str, str] = {
    "pretrain": "localdisc.cli.pretrain",
    "pseudo-classes": "localdisc.cli.pseudo_classes",
    "simulate-shapes": "localdisc.cli.simulate",
    "finetune": "localdisc.cli.finetune",
    "evaluate": "localdisc.cli.evaluate",
    "benchmark": "localdisc.cli.benchmark",
    "demo": "localdisc.cli.demo",
    "landmarks": "localdisc.cli.landmarks",
    "discover": "localdisc.cli.discover",
    "export": "localdisc.cli.export",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where it informs: not for flags, required or empty options."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or action.default in (None, argparse.SUPPRESS) or isinstance(action.const, bool) and action.nargs == 0:
            return action.help or ""
        return super()._get_help_string(action)


# The argv being parsed: subcommands whose options depend on another option (pretrain's
# method-specific options depend on --method) read it while registering.
CURRENT_ARGV: list[str] = []


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    CURRENT_ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="localdisc",
        description="Label-efficient medical image segmentation: local-discrimination pretraining, transfer, landmarks, structure discovery.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"localdisc {__version__}")
    parser.add_argument("--max-pixels", type=float, default=None, metavar="N",
                        help="refuse 2D images whose header promises more than N pixels, before decoding them "
                             "(default 100e6, or LOCALDISC_MAX_PIXELS); protects against decompression bombs")
    parser.add_argument("--max-voxels", type=float, default=None, metavar="N",
                        help="the same for volumes (default 512^3, or LOCALDISC_MAX_VOXELS)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        importlib.import_module(module).register(sub)
    return parser


def _set_limits(args: argparse.Namespace) -> None:
    """--max-pixels/--max-voxels for this process and its data-loading workers (environment)."""
    import os

    from ..data import io

    for opt, env, attr in (("max_pixels", "LOCALDISC_MAX_PIXELS", "MAX_PIXELS"), ("max_voxels", "LOCALDISC_MAX_VOXELS", "MAX_VOXELS")):
        value = getattr(args, opt, None)
        if value is not None:
            if value < 1:
                raise SystemExit(f"localdisc: error: --{opt.replace('_', '-')} must be >= 1")
            setattr(io, attr, int(value))
            os.environ[env] = str(int(value))


def _one_line(e: Exception) -> str:
    """The error's own message; an error re-raised from a data-loading worker carries the
    worker's whole traceback in its text, of which the last line is the message."""
    text = str(e)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1].strip()
        text = last.split(": ", 1)[1] if last.startswith(("localdisc.errors.", type(e).__name__)) and ": " in last else last
    return text


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    _set_limits(args)
    try:
        result = args.func(args)
    except LocaldiscError as e:
        print(f"localdisc {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept (continue with --resume)", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
