"""`vqtoken push FOLDER --repo-id ORG/NAME`: publish a converted folder on the Hub (a dry run unless `--yes`)."""

from .options import add_token_option


HELP = "Publish a converted folder on the Hugging Face Hub (dry run unless --yes)."


def add_arguments(parser):
    parser.add_argument("folder", help="a folder written by the converter")
    parser.add_argument("--repo-id", required=True, help="target model repository, org/name")
    parser.add_argument("--yes", action="store_true", help="upload (default: dry run listing each file and size)")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    add_token_option(parser)
    parser.add_argument("--commit-message", default=None)


def run(args) -> int:
    from ..publish import push_to_hub

    plan = push_to_hub(
        args.folder,
        args.repo_id,
        yes=args.yes,
        private=args.private,
        token=args.token,
        commit_message=args.commit_message,
    )
    print(plan.summary())
    return 0
