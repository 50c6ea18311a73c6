import os

import pytest
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


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
