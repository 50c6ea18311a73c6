"""`vqtoken train CONFIG.yaml [section.key=value ...]`: the command-line face of [`vqtoken.training.train`]."""

from __future__ import annotations

import argparse
import logging
import sys


def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Adds the arguments of `vqtoken train` to `parser` and sets `run=run_train`."""
    parser.add_argument("config", nargs="?", default=None, help="YAML training configuration (default: built-in defaults)")
    parser.add_argument(
        "overrides", nargs="*", metavar="section.key=value",
        help="overrides of the YAML file, e.g. train.max_steps=100 train.parts.vision_tower=2e-6 lora.enabled=true",
    )
    parser.add_argument("--set", dest="extra_overrides", action="append", default=[], metavar="section.key=value",
                        help="one more override (repeatable)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    parser.set_defaults(run=run_train)
    return parser


def run_train(args) -> int:
    from .config import load_config

    # the training log is the console output of this command, whatever the global verbosity
    logging.getLogger("vqtoken.training").setLevel(logging.INFO)
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    config_path, overrides = args.config, list(args.overrides) + list(args.extra_overrides)
    if config_path is not None and "=" in config_path and not config_path.endswith((".yaml", ".yml")):
        config_path, overrides = None, [config_path, *overrides]
    config = load_config(config_path, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return 0
    from .trainer import train

    result = train(config)
    logging.getLogger(__name__).info(
        "Done: %d steps in %.1f s, final loss %.4f, model in %s", result.steps, result.seconds,
        result.losses[-1] if result.losses else float("nan"), result.final_model_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_train_arguments(argparse.ArgumentParser(prog="vqtoken-train", description=__doc__))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
