import os
import re

import pytest
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "allow_missing_keys(pattern): missing weights whose names match this regular expression are expected "
        "(e.g. the VQ-Attention when loading a stock OneVision checkpoint)",
    )
    config.addinivalue_line(
        "markers",
        "loads_incomplete_weights: the test loads incomplete checkpoints on purpose and checks the loading report "
        "itself (transformers' common model tests)",
    )
    # marks of transformers' common model tests (test_transformers_model_tests.py), registered by transformers' own
    # conftest, which is not in its sdist
    marks = ("accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "torch_compile_test")
    for name in marks:
        config.addinivalue_line("markers", f"{name}: a mark of transformers' common model tests")


@pytest.fixture(autouse=True)
def weights_load_completely(request, monkeypatch):
    """
    Every `from_pretrained` of the test fails on a missing, unexpected or mismatched weight, instead of transformers'
    log line: a silently random language model is the worst failure this project can have.
    """
    from transformers import modeling_utils

    if request.node.get_closest_marker("loads_incomplete_weights"):
        return
    marker = request.node.get_closest_marker("allow_missing_keys")
    allowed = re.compile(marker.args[0]) if marker else None
    report = modeling_utils.log_state_dict_report

    def strict_report(model, pretrained_model_name_or_path, ignore_mismatched_sizes, loading_info, *args, **kwargs):
        missing = sorted(key for key in loading_info.missing_keys if not (allowed and allowed.match(key)))
        unexpected = sorted(loading_info.unexpected_keys)
        mismatched = sorted(loading_info.mismatched_keys)
        if missing or unexpected or mismatched:
            raise AssertionError(
                f"Loading {type(model).__name__} from {pretrained_model_name_or_path}: missing {missing}, "
                f"unexpected {unexpected}, mismatched {mismatched}"
            )
        return report(model, pretrained_model_name_or_path, ignore_mismatched_sizes, loading_info, *args, **kwargs)

    monkeypatch.setattr(modeling_utils, "log_state_dict_report", strict_report)


@pytest.fixture(scope="session")
def tokenizer():
    from vqtoken.tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture
def build_model(tokenizer):
    """Builds a seeded tiny VQToken model in eval mode and its processor: `build_model(**vqtoken_settings)`."""
    import vqtoken
    from vqtoken.tiny import tiny_config, tiny_processor

    def build(seed: int = 0, **settings):
        config = tiny_config(tokenizer, **settings)
        torch.manual_seed(seed)
        model = vqtoken.VQTokenLlavaOnevisionForConditionalGeneration(config).eval()
        return model, tiny_processor(config, tokenizer)

    return build
