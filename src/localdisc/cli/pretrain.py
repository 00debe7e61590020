"""``localdisc pretrain``: self-supervised pretraining on unlabeled images (any registered method)."""

from __future__ import annotations

import argparse
import sys

from ..config import add_dataclass_args, build_config, config_from_args, load_config_file, resume_base
from ..errors import ConfigError
from ..methods import METHODS, get_method
from ..train.pretrain import PretrainConfig, run_pretraining
from .main import CURRENT_ARGV, HelpFormatter, add_command, require


def _method_name(argv: list[str]) -> str:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", default=None)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    if known.method:
        return known.method
    if known.config:
        try:
            return str(load_config_file(known.config).get("method", "ld"))
        except ConfigError:
            return "ld"  # the run reports the unreadable file itself
    return "ld"


def register(sub) -> None:
    method = _method_name(CURRENT_ARGV)
    if method not in METHODS and any(a in ("-h", "--help") for a in CURRENT_ARGV):
        # argparse would print the help without the method's options and not say why
        print(f"localdisc pretrain: error: unknown method {method!r}; valid: {', '.join(METHODS)}", file=sys.stderr)
        sys.exit(2)
    p = add_command(
        sub,
        "pretrain",
        description=f"Pretrain a U-Net without labels. Methods: {', '.join(METHODS)}. The options of --method {method} "
        "are listed at the end (`localdisc pretrain --method NAME --help` lists another method's). --data and --out "
        "are required (from the command line or --config); `localdisc demo` runs on built-in example images.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--config", help="YAML/JSON file with options, e.g. the config.yaml of an earlier run (command-line options override it)")
    add_dataclass_args(p, PretrainConfig, required=("data", "out"))
    if method in METHODS:
        g = p.add_argument_group(f"options of --method {method}")
        add_dataclass_args(g, get_method(method).Config)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config_file = resume_base(args, args.config)
    file_opts = load_config_file(config_file) if config_file else {}
    require(args, file_opts, "data", "out")
    cfg = config_from_args(PretrainConfig, args, config_file)
    method_cls = get_method(cfg.method)
    names = {f for f in method_cls.Config.__dataclass_fields__}
    mcfg = build_config(method_cls.Config, file_opts.get("method_config") or {}, {k: v for k, v in vars(args).items() if k in names})
    out = run_pretraining(cfg, mcfg)
    if cfg.dry_run:
        return 0
    print(f"pretraining finished: {out}")
    return 0

