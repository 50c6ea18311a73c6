"""
Transformers' own common model tests (`ModelTesterMixin` and `ConfigTester` from the sdist of the installed version,
see `transformers_sdist.py`) run on the VQToken classes in each `vqtoken_mode`, and on stock LLaVA-OneVision under the
same tester as the baseline (marked slow: it tests transformers, not VQToken).

The tester follows transformers' own LLaVA-OneVision one (a tiny Qwen2 + SigLIP, three prompts each holding one
image's placeholders) and adds one video per prompt, with the placeholder count of the mode counted by hand:
`T * pooled_grid**2 + 1` (`"off"`, stock), `K + 1` (`"centroids"`) or `max(T, K) + 1` (`"attention"`), K fixed.

Not run: the export and generate tests (their files are not in the sdist; `tests/test_generate.py` compares
`generate` with stock OneVision). Two common tests skip themselves for the VQToken classes and not for stock:
`test_reverse_loading_mapping` (transformers registers checkpoint renamings for stock's `model_type` only; the VQToken
classes read stock checkpoints through `key_mapping` in `from_pretrained` and save in their own layout) and, on
transformers >= 5.24, `test_bc_cache_name_forward` for the inner model (its `forward` passes the cache on through
`**kwargs`, whose name differs between the supported versions).
"""

import contextlib
import unittest
import unittest.mock

import pytest
import torch
from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionModel
from transformers.models.auto import modeling_auto
from transformers.testing_utils import torch_device
from transformers_sdist import TransformersTestsUnavailable, import_sdist_tests

from vqtoken import (
    VQTokenLlavaOnevisionConfig,
    VQTokenLlavaOnevisionForConditionalGeneration,
    VQTokenLlavaOnevisionModel,
)


pytest.importorskip("parameterized", reason="transformers' common tests need `parameterized` (in the dev extra)")
try:
    modeling_common = import_sdist_tests("test_modeling_common")
    configuration_common = import_sdist_tests("test_configuration_common")
except TransformersTestsUnavailable as error:
    pytest.skip(f"transformers' common tests are unavailable: {error}", allow_module_level=True)

ModelTesterMixin = modeling_common.ModelTesterMixin

# the stock class each VQToken class stands in for
STOCK_ROLES = {
    "LlavaOnevisionModel": VQTokenLlavaOnevisionModel.__name__,
    "LlavaOnevisionForConditionalGeneration": VQTokenLlavaOnevisionForConditionalGeneration.__name__,
}


@pytest.fixture
def vqtoken_in_auto_name_tables():
    """
    Many common tests pick what to check by looking a class's name up in transformers' auto-class name tables
    (`MODEL_MAPPING_NAMES`: a base model, no loss; `MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES`: run the pooler-output
    checks, ...). Those tables list only transformers' own models, so without this every such test would skip the
    VQToken classes without a word. Each VQToken class is entered in every table that lists its stock counterpart,
    for the duration of one test.
    """
    model_type = VQTokenLlavaOnevisionConfig.model_type
    with contextlib.ExitStack() as stack:
        for name, table in vars(modeling_auto).items():
            if name.endswith("_MAPPING_NAMES") and table.get("llava_onevision") in STOCK_ROLES:
                role = STOCK_ROLES[table["llava_onevision"]]
                stack.enter_context(unittest.mock.patch.dict(table, {model_type: role}))
        yield


class OneVisionTester:
    """
    Tiny configuration and inputs for the common tests: `batch_size` prompts of `seq_length` ids, each with one image
    (`num_image_tokens` placeholders) and one video of `num_frames` frames (`num_video_tokens` placeholders).
    """

    image_token_index = 1
    video_token_index = 2
    pad_token_id = 0
    batch_size = 3
    num_frames = 3
    num_clusters = 2
    num_text_tokens = 7
    # a 45x45 image on the one 16x16 grid pinpoint: the base image (2x2 tokens), its one tile (2x2) and a newline per
    # tile row (2); of the 3 patches in `pixel_values`, the model reads the first 2
    num_image_tokens = 10
    vision_feature_layer = -1
    vision_feature_select_strategy = "full"
    is_training = True

    def __init__(self, parent, config_class, vqtoken_mode: str | None):
        self.parent = parent
        self.config_class = config_class
        self.vqtoken_mode = vqtoken_mode
        self.text_config = {
            "model_type": "qwen2",
            "vocab_size": 99,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "hidden_act": "gelu",
            "max_position_embeddings": 580,
            "initializer_range": 0.02,
            "pad_token_id": self.pad_token_id,
        }
        self.vision_config = {
            "image_size": 16,
            "patch_size": 8,
            "num_channels": 3,
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "attention_dropout": 0.1,
            "initializer_range": 0.02,
        }
        self.vocab_size = self.text_config["vocab_size"]
        self.hidden_size = self.text_config["hidden_size"]
        self.num_hidden_layers = self.text_config["num_hidden_layers"]
        self.num_attention_heads = self.text_config["num_attention_heads"]
        self.seq_length = self.num_image_tokens + self.num_video_tokens + self.num_text_tokens

    @property
    def num_video_tokens(self) -> int:
        """Video placeholders of one prompt, counted by hand from the mode's definition (newline included)."""
        grid = self.vision_config["image_size"] // self.vision_config["patch_size"]
        pooled_grid = -(-grid // 2)
        if self.vqtoken_mode in (None, "off"):
            return self.num_frames * pooled_grid**2 + 1
        if self.vqtoken_mode == "centroids":
            return self.num_clusters + 1
        return max(self.num_frames, self.num_clusters) + 1

    def get_config(self):
        settings = dict(
            text_config=self.text_config,
            vision_config=self.vision_config,
            image_token_index=self.image_token_index,
            video_token_index=self.video_token_index,
            projector_hidden_act="gelu",
            vision_feature_select_strategy=self.vision_feature_select_strategy,
            vision_feature_layer=self.vision_feature_layer,
            image_grid_pinpoints=[[16, 16]],
        )
        if self.vqtoken_mode is not None:
            settings.update(
                vqtoken_mode=self.vqtoken_mode,
                vqtoken_max_clusters=self.num_clusters,
                vqtoken_attention_heads=2,
                vqtoken_attention_intermediate_size=16,
            )
        return self.config_class(**settings)

    def prepare_config_and_inputs_for_common(self):
        config = self.get_config()
        image_size = self.vision_config["image_size"]
        pixel_values = modeling_common.floats_tensor([self.batch_size, 3, 3, image_size, image_size])
        pixel_values_videos = modeling_common.floats_tensor(
            [self.batch_size, self.num_frames, 3, image_size, image_size]
        )
        input_ids = modeling_common.ids_tensor([self.batch_size, self.seq_length], self.vocab_size - 3) + 3
        input_ids[:, : self.num_image_tokens] = self.image_token_index
        video_span = slice(self.num_image_tokens, self.num_image_tokens + self.num_video_tokens)
        input_ids[:, video_span] = self.video_token_index
        inputs = {
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids),
            "pixel_values": pixel_values,
            "image_sizes": torch.tensor([[45, 45]] * self.batch_size),
            "pixel_values_videos": pixel_values_videos,
            "labels": torch.zeros_like(input_ids),
        }
        return config, {name: value.to(torch_device) for name, value in inputs.items()}


class OneVisionCommonTests(ModelTesterMixin):
    """The common tests with the overrides transformers' own LLaVA-OneVision test makes."""

    config_class = None
    vqtoken_mode = None
    test_pruning = False
    test_head_masking = False
    test_cpu_offload = False
    test_disk_offload_safetensors = False
    test_disk_offload_bin = False
    _is_composite = True
    # Fails for stock LlavaOnevision too: the anyres image patches and the video frames go through the tower as one
    # batch each, so the tower's `last_hidden_state` leads with patches / frames, not prompts. The rest of
    # `test_get_{image,video}_features_output` (output type, fields, tuple) still runs.
    skip_test_image_features_output_shape = True
    skip_test_video_features_output_shape = True
    # Fails for stock LlavaOnevision too: OneVision reads the tower's hidden states before its post_layernorm and
    # pooling head, which get no gradient. The gradient-checkpointing tests still check that checkpointing is active
    # and that the same parameters get gradients with and without it.
    test_all_params_have_gradient = False

    def setUp(self):
        self.model_tester = OneVisionTester(self, self.config_class, self.vqtoken_mode)
        self.config_tester = configuration_common.ConfigTester(
            self,
            config_class=self.config_class,
            has_text_modality=False,
            common_properties=["image_token_index", "video_token_index", "vision_feature_layer"],
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(
        "fails for stock LlavaOnevision too: GenerationTesterMixin (tests/generation/test_utils.py) is not in the "
        "transformers sdist, so no tester can inherit it"
    )
    def test_generation_tester_mixin_inheritance(self):
        pass


def _mark_mixin_tests(names, mark: pytest.MarkDecorator):
    """Gives the common tests `names` of `ModelTesterMixin` (those this transformers version has) `mark`."""
    for name in names:
        if not hasattr(ModelTesterMixin, name):
            continue

        def test(self, name=name):
            getattr(ModelTesterMixin, name)(self)

        test.__name__ = test.__qualname__ = name
        setattr(OneVisionCommonTests, name, mark(test))


# tests that load checkpoints missing weights on purpose and check the loading report themselves (the first is not in
# transformers 5.18)
_mark_mixin_tests(
    (
        "test_base_model_prefix_loads_base_weights",
        "test_can_init_all_missing_weights",
        "test_correct_missing_keys",
        "test_model_weights_reload_no_missing_tied_weights",
    ),
    pytest.mark.loads_incomplete_weights,
)
# sweeps over dtypes and attention implementations: two thirds of the run time of a class (CI runs them)
_mark_mixin_tests(
    [name for name in dir(ModelTesterMixin) if name.startswith("test_eager_matches_sdpa_inference_")]
    + ["test_bc_torch_dtype"],
    pytest.mark.slow,
)


@pytest.mark.slow
class TestStockOneVision(OneVisionCommonTests, unittest.TestCase):
    """Baseline: stock LLaVA-OneVision under the same tester (videos at the stock placeholder count)."""

    config_class = LlavaOnevisionConfig
    all_model_classes = (LlavaOnevisionModel, LlavaOnevisionForConditionalGeneration)


@pytest.mark.usefixtures("vqtoken_in_auto_name_tables")
class TestVQTokenOff(OneVisionCommonTests, unittest.TestCase):
    config_class = VQTokenLlavaOnevisionConfig
    vqtoken_mode = "off"
    all_model_classes = (VQTokenLlavaOnevisionModel, VQTokenLlavaOnevisionForConditionalGeneration)


class TestVQTokenCentroids(TestVQTokenOff):
    vqtoken_mode = "centroids"


class TestVQTokenAttention(TestVQTokenOff):
    vqtoken_mode = "attention"
