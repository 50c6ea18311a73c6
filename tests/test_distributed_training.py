"""
Multi-process training on 2 CPU processes over gloo, launched with the repository's own accelerate configs
(`examples/accelerate/ddp.yaml`, `fsdp.yaml`, `deepspeed_zero2.yaml`; only the process count and the precision are
overridden): each run equals one process with the same global batch (losses, evaluation, final weights), its
checkpoint resumes exactly, and its final folder loads with `from_pretrained` without missing or unexpected keys.

DeepSpeed runs only where it is installed (`bash scripts/test_deepspeed.sh`).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import vqtoken
from vqtoken.training import load_config, train
from vqtoken.training.config import ModelArgs
from vqtoken.training.synthetic_data import generate_synthetic_dataset
from vqtoken.training.trainable import load_starting_model, select_trainable_parameters
from vqtoken.training.trainer import check_sharding


REPO = Path(__file__).resolve().parents[1]
RUN = [
    "data.num_frames=4",
    "model.name_or_path=tiny",
    "model.vqtoken={vqtoken_mode: attention, vqtoken_max_clusters: 6, vqtoken_attention_dropout: 0.0}",
    "train.parts={vq_attention: 3.0e-3, projector: 3.0e-3, vision_tower: 1.0e-3, language_model: 3.0e-3}",
    "train.gradient_accumulation_steps=2",  # = gradient_accumulation_steps of deepspeed_zero2.yaml
    "train.max_steps=8",  # 6 steps per epoch: the resumed part crosses an epoch boundary
    "train.warmup_steps=1",
    "train.eval_every=4",
    "logging.log_every=1",
    "logging.tensorboard=false",
]
RESUME_STEP = 6
BACKENDS = {
    # the distributed type the run logs, and files of its checkpoint that show how the state was split: whole (DDP),
    # one model and optimizer shard per process (FSDP), one optimizer partition per process (ZeRO-2)
    "ddp": ("MULTI_CPU", ["model.safetensors", "optimizer.bin"]),
    "fsdp": ("FSDP", ["pytorch_model_fsdp_0/__0_0.distcp", "pytorch_model_fsdp_0/__1_0.distcp"]),
    "deepspeed_zero2": (
        "DEEPSPEED",
        [
            "pytorch_model/zero_pp_rank_0_mp_rank_00_optim_states.pt",
            "pytorch_model/zero_pp_rank_1_mp_rank_00_optim_states.pt",
        ],
    ),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distributed-data")
    train_file = generate_synthetic_dataset(folder, 24, num_frames=4, size=32, seed=0, split="train")
    eval_file = generate_synthetic_dataset(folder, 8, num_frames=4, size=32, seed=1, split="eval")
    return [f"data.train_files=[{train_file}]", f"data.eval_files=[{eval_file}]"]


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory):
    """The reference: one process, 2 samples per step x 2 accumulation steps."""
    output_dir = tmp_path_factory.mktemp("one-process")
    train(load_config(None, [*data, *RUN, "train.per_device_batch_size=2", f"logging.output_dir={output_dir}"]))
    return read_run(output_dir)


def launch(backend: str, output_dir: Path, data: list[str], *overrides: str) -> dict:
    """`accelerate launch --config_file examples/accelerate/<backend>.yaml` on 2 CPU processes, 1 sample per
    micro-batch each."""
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "examples" / "accelerate" / f"{backend}.yaml"),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
        "--main_process_port",
        "0",
        "-m",
        "vqtoken",
        "train",
        *data,
        *RUN,
        "train.per_device_batch_size=1",
        f"logging.output_dir={output_dir}",
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "DS_ACCELERATOR": "cpu"}
    output = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=output_dir.parent)
    assert output.returncode == 0, output.stderr[-4000:]
    return read_run(output_dir)


def read_run(output_dir: Path) -> dict:
    log = [json.loads(line) for line in (output_dir / "log.jsonl").read_text().splitlines()]
    return {
        "dir": output_dir,
        "data": next(entry for entry in log if entry["kind"] == "data"),
        "train": [(entry["step"], entry["loss"]) for entry in log if entry["kind"] == "train"],
        "eval": [(entry["step"], entry["loss"]) for entry in log if entry["kind"] == "eval"],
        "weights": load_file(str(output_dir / "final" / "model.safetensors")),
    }


@pytest.fixture(scope="module", params=list(BACKENDS))
def launched(request, data, tmp_path_factory):
    backend = request.param
    if backend.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed (bash scripts/test_deepspeed.sh runs these tests)")
    run = launch(backend, tmp_path_factory.mktemp(backend) / "run", data, f"train.save_every={RESUME_STEP // 2}")
    return backend, run


def test_two_processes_match_one(launched, one_process):
    backend, run = launched
    distributed, shard_files = BACKENDS[backend]
    assert run["data"]["distributed"] == distributed and run["data"]["processes"] == 2
    for name in shard_files:
        assert (run["dir"] / f"checkpoint-{RESUME_STEP}" / name).is_file(), name
    assert run["data"]["train_records"] == 24

    assert [step for step, _ in run["train"]] == list(range(1, 9))
    assert [loss for _, loss in run["train"]] == pytest.approx(
        [loss for _, loss in one_process["train"]], rel=1e-5, abs=1e-6
    )
    assert [step for step, _ in run["eval"]] == [4, 8]
    assert [loss for _, loss in run["eval"]] == pytest.approx(
        [loss for _, loss in one_process["eval"]], rel=1e-5, abs=1e-6
    )
    assert run["weights"].keys() == one_process["weights"].keys()
    for name, tensor in one_process["weights"].items():
        assert torch.allclose(tensor, run["weights"][name], atol=1e-5, rtol=1e-4), name


def test_final_model_loads_with_from_pretrained(launched):
    _, run = launched
    model, info = vqtoken.VQTokenLlavaOnevisionForConditionalGeneration.from_pretrained(
        run["dir"] / "final", output_loading_info=True
    )
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set(), info
    assert not info["mismatched_keys"] and not info["error_msgs"], info
    state = model.state_dict()
    for name, tensor in run["weights"].items():
        assert torch.equal(tensor, state[name]), name
    assert model.lm_head.weight is model.model.language_model.embed_tokens.weight


def test_checkpoint_resumes_exactly(launched, data):
    backend, full = launched
    checkpoint = full["dir"] / f"checkpoint-{RESUME_STEP}"
    resumed = launch(backend, full["dir"].parent / "resumed", data, f"train.resume_from={checkpoint}")
    assert resumed["train"] == full["train"][RESUME_STEP:]
    assert resumed["eval"] == full["eval"][1:]
    assert resumed["weights"].keys() == full["weights"].keys()
    for name, tensor in full["weights"].items():
        assert torch.equal(tensor, resumed["weights"][name]), name


def test_parts_that_do_not_run_stay_frozen():
    model, _ = load_starting_model(ModelArgs(vqtoken={"vqtoken_mode": "centroids", "vqtoken_max_clusters": 6}))
    groups = select_trainable_parameters(model, {"vq_attention": 1e-3, "vision_tower": 1e-3})
    assert [group["name"] for group in groups] == ["vision_tower"]
    trained = {id(parameter) for parameter in groups[0]["params"]}
    tower = model.model.vision_tower
    assert all(id(parameter) in trained for parameter in tower.encoder.parameters())
    assert not any(parameter.requires_grad for parameter in tower.post_layernorm.parameters())
    assert not any(parameter.requires_grad for parameter in model.model.vq_attention.parameters())
    with pytest.raises(ValueError, match="nothing would train"):
        select_trainable_parameters(model, {"vq_attention": 1e-3})


def test_sharded_setups_the_trainer_cannot_follow_are_refused_by_name():
    from accelerate.utils import DistributedType

    def fsdp(fsdp_version, use_orig_params):
        plugin = SimpleNamespace(fsdp_version=fsdp_version, use_orig_params=use_orig_params)
        return SimpleNamespace(distributed_type=DistributedType.FSDP, state=SimpleNamespace(fsdp_plugin=plugin))

    def deepspeed(**deepspeed_config):
        plugin = SimpleNamespace(deepspeed_config=deepspeed_config)
        state = SimpleNamespace(deepspeed_plugin=plugin)
        return SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, state=state)

    config = load_config(
        None, ["data.train_files=[x.jsonl]", "lora.enabled=true", "train.parts={language_model: 1e-4}"]
    )
    with pytest.raises(ValueError, match="lora.enabled is not supported with FSDP"):
        check_sharding(fsdp(2, None), config)
    config.lora.enabled = False
    with pytest.raises(ValueError, match="fsdp_use_orig_params: true"):
        check_sharding(fsdp(1, False), config)
    check_sharding(fsdp(1, True), config)
    check_sharding(fsdp(2, None), config)

    config.train.gradient_accumulation_steps, config.train.max_grad_norm = 2, 0.5
    with pytest.raises(ValueError, match="gradient_accumulation_steps: 4 but .* train.gradient_accumulation_steps=2"):
        check_sharding(deepspeed(gradient_accumulation_steps=4, gradient_clipping=0.5), config)
    with pytest.raises(ValueError, match="gradient_clipping: 1.0 but .* train.max_grad_norm=0.5"):
        check_sharding(deepspeed(gradient_accumulation_steps=2, gradient_clipping=1.0), config)
    accelerator = deepspeed(gradient_accumulation_steps="auto")
    check_sharding(accelerator, config)
    assert accelerator.state.deepspeed_plugin.deepspeed_config == {
        "gradient_accumulation_steps": 2,
        "gradient_clipping": 0.5,
    }
