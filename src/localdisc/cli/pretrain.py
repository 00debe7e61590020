"""``localdisc pretrain``: self-supervised pretraining on unlabeled images (any registered method)."""

from __future__ import annotations

import argparse

from ..config import add_dataclass_args, build_config, config_from_args, load_config_file
from ..methods import METHODS, get_method
from ..train.pretrain import PretrainConfig, pretrain
from .main import HelpFormatter


def _method_name(argv: list[str]) -> str:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", default=None)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.method:
        return known.method
    if known.config:
        return str(load_config_file(known.config).get("method", "ld"))
    return "ld"


def register(sub) -> None:
    from .main import CURRENT_ARGV

    argv = CURRENT_ARGV
    method = _method_name(argv) if "pretrain" in argv else "ld"
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining of the U-Net on unlabeled images",
        description=f"Pretrain a U-Net without labels. Methods: {', '.join(sorted(METHODS))}. Method options below are for --method {method} (pass --method X --help for another).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--config", help="YAML/JSON file with options (command-line options override it)")
    add_dataclass_args(p, PretrainConfig)
    if method in METHODS:
        g = p.add_argument_group(f"options of --method {method}")
        add_dataclass_args(g, get_method(method).Config)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(PretrainConfig, args, args.config)
    method_cls = get_method(cfg.method)
    file_opts = load_config_file(args.config) if args.config else {}
    names = {f for f in method_cls.Config.__dataclass_fields__}
    mcfg = build_config(method_cls.Config, {k: v for k, v in (file_opts.get("method_config") or {}).items()}, {k: v for k, v in vars(args).items() if k in names})
    out = method_cls.run_schedule(cfg, mcfg)
    print(f"pretraining finished: {out}")
    return 0
