"""`vqtoken convert`: the released checkpoint into a verified Transformers folder (see `vqtoken.conversion`)."""

from pathlib import Path

from ..modeling.vqtoken_choices import VQTOKEN_MODES, VQTOKEN_SELECTION_METHODS
from .options import add_token_option, positive_int, vqtoken_overrides


HELP = "Convert the released VQToken checkpoint into a Transformers folder."
DTYPES = ("keep", "bfloat16", "float16", "float32")


def add_arguments(parser):
    parser.add_argument("--checkpoint", required=True, help="released checkpoint: a local folder or a Hub id")
    parser.add_argument("--revision", default=None, help="Hub revision of --checkpoint")
    add_token_option(parser)
    parser.add_argument("--output", required=True, help="folder to create")
    parser.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    parser.add_argument("--dtype", default="keep", choices=DTYPES, help="dtype of the written weights")
    parser.add_argument(
        "--processor",
        default=None,
        help="llava-hf OneVision processor folder or Hub id whose tokenizer, chat template, image and "
        "video processors are reused (default: llava-hf/llava-onevision-qwen2-0.5b-ov-hf)",
    )
    parser.add_argument(
        "--vision-config",
        default=None,
        help="SigLIP (vision) config file, folder or Hub id, for towers whose sizes are not known",
    )
    parser.add_argument("--mode", choices=VQTOKEN_MODES, help="vqtoken_mode (default: the configuration's)")
    parser.add_argument("--selection", choices=VQTOKEN_SELECTION_METHODS, help="vqtoken_selection_method")
    parser.add_argument("--min-clusters", type=positive_int, help="vqtoken_min_clusters")
    parser.add_argument("--max-clusters", type=positive_int, help="vqtoken_max_clusters")
    parser.add_argument(
        "--vq-attention-heads",
        type=positive_int,
        default=None,
        help="heads of the VQ-Attention layer (not visible in the tensors; the release uses 8)",
    )
    parser.add_argument("--max-shard-size", default=None, help="shard the safetensors above this size (default 2GB)")
    parser.add_argument("--repo-id", default=None, help="Hub id the model card's examples use")
    parser.add_argument(
        "--license", default=None, help="licence for the model card (default: the source README's, else 'other')"
    )
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the clean-process reload and tensor comparison (not recommended)",
    )


def run(args) -> int:
    from ..conversion.convert import convert_checkpoint

    given = {
        "revision": args.revision,
        "token": args.token,
        "processor": args.processor,
        "vision_config": args.vision_config,
        "vq_attention_heads": args.vq_attention_heads,
        "max_shard_size": args.max_shard_size,
        "repo_id": args.repo_id,
        "license": args.license,
    }
    report = convert_checkpoint(
        args.checkpoint,
        args.output,
        dtype=args.dtype,
        overwrite=args.overwrite,
        verify=not args.no_verify,
        vqtoken_settings=vqtoken_overrides(args),
        **{name: value for name, value in given.items() if value is not None},
    )
    print(report.summary())
    print(f"written to {Path(args.output).resolve()}")
    return 0
