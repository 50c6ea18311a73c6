"""`vqtoken train CONFIG.yaml [section.key=value ...]`: the command-line face of [`vqtoken.training.train`]."""

import importlib.util
import logging

from .errors import CommandError


HELP = "Fine-tune VQToken from a YAML file (accelerate, datasets, peft)."


def add_arguments(parser):
    parser.add_argument(
        "config", nargs="?", default=None, help="YAML training configuration (default: built-in defaults)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="overrides of the YAML file, e.g. train.max_steps=100 train.parts.vision_tower=2e-6 lora.enabled=true",
    )
    parser.add_argument(
        "--set",
        dest="extra_overrides",
        action="append",
        default=[],
        metavar="section.key=value",
        help="one more override (repeatable)",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")


def run(args) -> int:
    missing = [name for name in ("accelerate", "datasets", "peft") if importlib.util.find_spec(name) is None]
    if missing:
        raise CommandError(
            f"training needs {', '.join(missing)}: install the training extra, pip install 'vqtoken[train]'"
        )
    from ..training.config import load_config

    # the training log is the console output of this command, whatever the global verbosity
    logging.getLogger("vqtoken.training").setLevel(logging.INFO)
    config_path, overrides = args.config, list(args.overrides) + list(args.extra_overrides)
    if config_path is not None and "=" in config_path and not config_path.endswith((".yaml", ".yml")):
        config_path, overrides = None, [config_path, *overrides]
    config = load_config(config_path, overrides)
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return 0
    from ..training.trainer import train

    result = train(config)
    logging.getLogger(__name__).info(
        "Done: %d steps in %.1f s, final loss %.4f, model in %s",
        result.steps,
        result.seconds,
        result.losses[-1] if result.losses else float("nan"),
        result.final_model_dir,
    )
    return 0
