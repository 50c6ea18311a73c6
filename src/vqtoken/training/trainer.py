"""
The training loop, on `accelerate`: one process on a CPU up to many GPUs (DDP, DeepSpeed ZeRO-2, FSDP through
`accelerate launch --config_file ...`).

What one optimizer step does:
1. take `gradient_accumulation_steps` micro-batches from this process's shard of the data;
2. count the answer tokens of all of them, summed over processes: the loss is the mean over every answer token of
   the global batch, so any split of the same global batch over processes and micro-batches gives the same loss and
   gradient;
3. forward / backward each micro-batch (gradients synchronise on the last one), clip, AdamW step, scheduler step.

Randomness (dropout) is re-seeded from `(seed, step, process)` at every step and the data order from
`(seed, epoch)`, so a run resumed from a checkpoint continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import TrainingConfig, TrainingConfigError
from .data import VideoConversationCollator, VideoConversationDataset, load_conversation_records
from .trainable import VQTokenTrainingModule, load_starting_model, select_trainable_parameters


logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A random order that depends only on `(seed, epoch)`: the same on every process and after a resume."""

    def __init__(self, length: int, seed: int, shuffle: bool = True):
        self.length = length
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.length))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())


@dataclass
class TrainResult:
    """What a run did: the loss of every optimizer step, the evaluations, and where things were written."""

    history: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    output_dir: str = ""
    final_model_dir: str | None = None
    adapter_dir: str | None = None
    steps: int = 0
    seconds: float = 0.0

    @property
    def losses(self) -> list[float]:
        return [entry["loss"] for entry in self.history]


class _Sinks:
    """Console (logging), JSONL and TensorBoard, on the main process only."""

    def __init__(self, config: TrainingConfig, enabled: bool):
        self.enabled = enabled
        self.jsonl = None
        self.tensorboard = None
        if not enabled:
            return
        output_dir = Path(config.logging.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if config.logging.jsonl:
            self.jsonl = open(output_dir / "log.jsonl", "a")
        if config.logging.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(output_dir / "tensorboard"))
            except ImportError:
                logger.warning("tensorboard is not installed: no TensorBoard logs.")

    def write(self, kind: str, step: int, values: dict, console: bool = True):
        if not self.enabled:
            return
        if console:
            logger.info(
                "%s step %d: %s",
                kind,
                step,
                ", ".join(
                    f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                    for key, value in values.items()
                ),
            )
        if self.jsonl is not None:
            self.jsonl.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
            self.jsonl.flush()
        if self.tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(f"{kind}/{key}", value, step)

    def close(self):
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _make_accelerator(config: TrainingConfig):
    from accelerate import Accelerator, DistributedDataParallelKwargs, InitProcessGroupKwargs
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import GradientAccumulationPlugin

    # several runs in one process (tests, notebooks) each get their own precision and accumulation settings
    AcceleratorState._reset_state()
    GradientState._reset_state()

    # without a GPU, processes started by torchrun / accelerate launch talk over gloo
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    on_cpus = not torch.cuda.is_available() and world_size > 1
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    if on_cpus and deepspeed:
        # accelerate turns DeepSpeed off for `cpu=True`; DeepSpeed's own CPU accelerator runs over gloo
        handlers.append(InitProcessGroupKwargs(backend="gloo"))
    accelerator = Accelerator(
        cpu=on_cpus and not deepspeed,
        mixed_precision=config.train.mixed_precision,
        gradient_accumulation_plugin=GradientAccumulationPlugin(
            num_steps=config.train.gradient_accumulation_steps, sync_with_dataloader=False
        ),
        kwargs_handlers=handlers,
        step_scheduler_with_optimizer=False,
    )
    if on_cpus and os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        _shard_on_cpu(accelerator)
    return accelerator


def _shard_on_cpu(accelerator):
    """
    Turns a multi-CPU (gloo) accelerator into an FSDP one, with the plugin `accelerate launch` described in the
    environment. `accelerate` enables FSDP only on accelerator devices and otherwise silently runs plain data
    parallelism, while torch's FSDP 2 shards over gloo on CPUs: this runs the same sharded code path as on GPUs (used
    to test it without one).
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()
    if plugin.fsdp_version != 2:
        raise TrainingConfigError("Sharded training on CPUs needs FSDP 2 (fsdp_version: 2 in the accelerate config).")
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)
    accelerator.state.fsdp_plugin = plugin
    # as `AcceleratorState` does when it enables FSDP itself: both shared states say FSDP
    accelerator.state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    if accelerator.is_main_process:
        logger.info("FSDP 2 over gloo on %d CPU processes.", accelerator.num_processes)


def check_sharding(accelerator, config: TrainingConfig) -> None:
    """
    Refuses the FSDP and DeepSpeed setups that this trainer cannot run as configured, before anything is loaded, and
    fills the DeepSpeed settings left at "auto" that the training configuration also sets.
    """
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        plugin = accelerator.state.fsdp_plugin
        if config.lora.enabled:
            raise TrainingConfigError(
                "lora.enabled is not supported with FSDP (the adapter and the merged model would have to be gathered "
                "from shards): use DDP or DeepSpeed ZeRO-2 (examples/accelerate/ddp.yaml, deepspeed_zero2.yaml)."
            )
        if plugin.fsdp_version == 1 and not plugin.use_orig_params:
            raise TrainingConfigError(
                "FSDP 1 needs fsdp_use_orig_params: true in the accelerate config: train.parts freezes some "
                "parameters and gives each part its own learning rate."
            )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # DeepSpeed accumulates and clips by its own config; the loop and the loss scale follow the training config
        deepspeed_config = accelerator.state.deepspeed_plugin.deepspeed_config
        settings = config.train
        for key, name, ours in (
            ("gradient_accumulation_steps", "train.gradient_accumulation_steps", settings.gradient_accumulation_steps),
            ("gradient_clipping", "train.max_grad_norm", settings.max_grad_norm or 0.0),
        ):
            theirs = deepspeed_config.get(key, "auto")
            if theirs == "auto":
                deepspeed_config[key] = ours
            elif float(theirs) != float(ours):
                raise TrainingConfigError(
                    f"The DeepSpeed config has {key}: {theirs} but the training config has {name}={ours}: make them "
                    "equal (or set the DeepSpeed one to auto)."
                )


def _latest_checkpoint(output_dir: Path) -> Path | None:
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[-1]))
    checkpoints = [path for path in checkpoints if (path / STATE_FILE).is_file()]
    return checkpoints[-1] if checkpoints else None


def _build_datasets(config: TrainingConfig):
    data = config.data
    train_records, train_skipped = load_conversation_records(
        data.train_files or None,
        hub_dataset=data.hub_dataset if not data.train_files else None,
        hub_config=data.hub_config,
        split=data.train_split,
        video_root=data.video_root,
        check_videos_exist=data.check_videos_exist,
        max_samples=data.max_train_samples,
    )
    eval_records = None
    if data.eval_files or (data.hub_dataset and data.eval_split):
        eval_records, _ = load_conversation_records(
            data.eval_files or None,
            hub_dataset=data.hub_dataset if not data.eval_files else None,
            hub_config=data.hub_config,
            split=data.eval_split or "validation",
            video_root=data.video_root,
            check_videos_exist=data.check_videos_exist,
            max_samples=data.max_eval_samples,
        )
    train = VideoConversationDataset(train_records, num_frames=data.num_frames)
    evaluation = (
        VideoConversationDataset(eval_records, num_frames=data.num_frames) if eval_records is not None else None
    )
    return train, evaluation, train_skipped


def _step_seed(seed: int, step: int, process: int) -> int:
    return (seed * 1_000_003 + step * 1_009 + process) % (2**63 - 1)


@dataclass
class _Run:
    """Everything a run prepared: the wrapped module and its optimizer, schedule and data, and the step counts."""

    module: torch.nn.Module
    peft_model: object | None
    processor: object
    optimizer: torch.optim.Optimizer
    scheduler: object
    group_names: list[str]
    sampler: EpochShuffleSampler
    train_loader: object
    eval_loader: object | None
    train_records: int
    skipped: dict
    steps_per_epoch: int
    max_steps: int


def train(config: TrainingConfig) -> TrainResult:
    """Runs the training described by `config` (see [`~vqtoken.training.config.load_config`])."""
    config.validate()
    started = time.perf_counter()
    accelerator = _make_accelerator(config)
    check_sharding(accelerator, config)
    output_dir = Path(config.logging.output_dir)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "config.yaml").write_text(_yaml(config.to_dict()))
    torch.manual_seed(config.train.seed)
    run = _prepare(config, accelerator)
    step = _resume(config, accelerator, output_dir)
    sinks = _Sinks(config, accelerator.is_main_process)
    _log_start(config, accelerator, run, sinks, step)
    result = TrainResult(output_dir=str(output_dir))
    window = {"samples": 0, "start": time.perf_counter(), "visual": 0.0}

    accumulation = config.train.gradient_accumulation_steps
    while step < run.max_steps:
        epoch, within = divmod(step, run.steps_per_epoch)
        run.sampler.set_epoch(epoch)
        loader = (
            accelerator.skip_first_batches(run.train_loader, within * accumulation) if within else run.train_loader
        )
        batches = iter(loader)
        while within < run.steps_per_epoch and step < run.max_steps:
            entry, samples, visual = _optimizer_step(
                config, accelerator, run, [next(batches) for _ in range(accumulation)], step
            )
            step += 1
            within += 1
            entry["epoch"] = step / run.steps_per_epoch
            result.history.append({"step": step, **entry})
            window["samples"] += samples
            window["visual"] += visual
            if step % config.logging.log_every == 0 or step == run.max_steps:
                elapsed = time.perf_counter() - window["start"]
                entry["visual_tokens_per_sample"] = window["visual"] / max(window["samples"], 1)
                entry["samples_per_second"] = window["samples"] / max(elapsed, 1e-9)
                sinks.write("train", step, entry)
                window = {"samples": 0, "start": time.perf_counter(), "visual": 0.0}
            if (
                run.eval_loader is not None
                and config.train.eval_every
                and (step % config.train.eval_every == 0 or step == run.max_steps)
            ):
                evaluation = evaluate(run.module, run.eval_loader, accelerator)
                result.evaluations.append({"step": step, **evaluation})
                sinks.write("eval", step, evaluation)
            if config.train.save_every and step % config.train.save_every == 0 and step < run.max_steps:
                save_checkpoint(accelerator, output_dir, step, config.train.save_total_limit)

    result.steps = step
    accelerator.wait_for_everyone()
    if config.train.save_final_model:
        _save_final(config, accelerator, run, output_dir, result)
    accelerator.wait_for_everyone()
    result.seconds = time.perf_counter() - started
    sinks.write("done", step, {"seconds": result.seconds, "steps": step})
    sinks.close()
    accelerator.end_training()
    return result


def _prepare(config: TrainingConfig, accelerator) -> _Run:
    """Loads the model (LoRA, trainable parts, checkpointing), the data, the optimizer and schedule; wraps them."""
    from transformers import get_scheduler

    model, processor = load_starting_model(config.model)
    peft_model = None
    if config.lora.enabled:
        from .lora import apply_lora

        peft_model = apply_lora(model, config.lora)
    groups = select_trainable_parameters(
        model, config.train.parts, lora=config.lora.enabled, video_tokens=config.model.video_tokens
    )
    if config.train.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.24
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    pad_token_id = processor.tokenizer.pad_token_id if processor.tokenizer.pad_token_id is not None else 0
    module = VQTokenTrainingModule(model, pad_token_id, video_tokens=config.model.video_tokens)
    module.train()

    train_set, eval_set, skipped = _build_datasets(config)
    if len(train_set) == 0:
        raise TrainingConfigError("No usable training record (see the skipped counts in the log).")
    collator = VideoConversationCollator(processor)
    sampler = EpochShuffleSampler(len(train_set), config.train.seed)
    loader_kwargs = {
        "collate_fn": collator,
        "num_workers": config.data.num_workers,
        "persistent_workers": config.data.num_workers > 0,
    }
    train_loader = torch.utils.data.DataLoader(
        train_set, batch_size=config.train.per_device_batch_size, sampler=sampler, drop_last=True, **loader_kwargs
    )
    eval_loader = None
    if eval_set is not None and len(eval_set):
        eval_loader = torch.utils.data.DataLoader(
            eval_set, batch_size=config.train.per_device_batch_size, shuffle=False, **loader_kwargs
        )
    optimizer = torch.optim.AdamW(
        [{"params": group["params"], "lr": group["lr"]} for group in groups],
        betas=(config.train.adam_beta1, config.train.adam_beta2),
        eps=config.train.adam_epsilon,
        weight_decay=config.train.weight_decay,
    )
    prepared = accelerator.prepare(module, optimizer, train_loader, *([eval_loader] if eval_loader else []))
    module, optimizer, train_loader = prepared[:3]
    eval_loader = prepared[3] if eval_loader else None

    accumulation = config.train.gradient_accumulation_steps
    steps_per_epoch = len(train_loader) // accumulation
    if steps_per_epoch == 0:
        raise TrainingConfigError(
            f"An epoch has {len(train_loader)} micro-batches per process, fewer than gradient_accumulation_steps "
            f"({accumulation}): use more data or a smaller batch."
        )
    max_steps = config.train.max_steps or math.ceil(config.train.num_epochs * steps_per_epoch)
    warmup = config.train.warmup_steps or int(config.train.warmup_ratio * max_steps)
    scheduler = get_scheduler(
        config.train.lr_scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=max_steps
    )
    accelerator.register_for_checkpointing(scheduler)
    return _Run(
        module=module,
        peft_model=peft_model,
        processor=processor,
        optimizer=optimizer,
        scheduler=scheduler,
        group_names=[group["name"] for group in groups],
        sampler=sampler,
        train_loader=train_loader,
        eval_loader=eval_loader,
        train_records=len(train_set),
        skipped=skipped,
        steps_per_epoch=steps_per_epoch,
        max_steps=max_steps,
    )


def _resume(config: TrainingConfig, accelerator, output_dir: Path) -> int:
    """Restores the state of `train.resume_from` (a checkpoint folder, or `latest`); returns the step to go on from."""
    resume = config.train.resume_from
    if not resume:
        return 0
    checkpoint = _latest_checkpoint(output_dir) if resume == "latest" else Path(resume)
    if checkpoint is None:
        logger.info("resume_from=latest but %s holds no checkpoint: starting from scratch.", output_dir)
        return 0
    accelerator.load_state(str(checkpoint))
    step = json.loads((checkpoint / STATE_FILE).read_text())["step"]
    logger.info("Resumed from %s at step %d.", checkpoint, step)
    return step


def _log_start(config: TrainingConfig, accelerator, run: _Run, sinks: _Sinks, step: int):
    if not accelerator.is_main_process:
        return
    accumulation = config.train.gradient_accumulation_steps
    skipped = sum(run.skipped.values())
    logger.info(
        "Training %d steps (%d per epoch), global batch %d = %d per device x %d accumulation x %d processes; "
        "%d training records (%s skipped)",
        run.max_steps,
        run.steps_per_epoch,
        config.train.per_device_batch_size * accumulation * accelerator.num_processes,
        config.train.per_device_batch_size,
        accumulation,
        accelerator.num_processes,
        run.train_records,
        skipped,
    )
    sinks.write(
        "data",
        step,
        {
            "distributed": accelerator.distributed_type.value,
            "processes": accelerator.num_processes,
            "train_records": run.train_records,
            "skipped_records": skipped,
            **{f"skipped_{k.replace(' ', '_')}": v for k, v in run.skipped.items()},
        },
    )


def _optimizer_step(config: TrainingConfig, accelerator, run: _Run, micro_batches: list[dict], step: int):
    """
    One optimizer step over `micro_batches` (see the module docstring).

    Returns:
        `(entry, samples, visual_tokens)`: the step's log entry (loss, answer tokens, learning rates, gradient norm),
        and the samples and visual tokens of the global batch.
    """
    torch.manual_seed(_step_seed(config.train.seed, step, accelerator.process_index))
    local_tokens = sum(int((batch["labels"][:, 1:] != -100).sum()) for batch in micro_batches if "labels" in batch)
    tokens = accelerator.reduce(torch.tensor(float(local_tokens), device=accelerator.device), "sum")
    scale = accelerator.num_processes * len(micro_batches) / tokens.clamp_min(1.0)
    loss_total = torch.zeros((), device=accelerator.device)
    samples = torch.zeros((), device=accelerator.device)
    visual_total = torch.zeros((), device=accelerator.device)
    skipped_samples = 0
    grad_norm = None
    for batch in micro_batches:
        skipped_samples += int(batch.pop("num_skipped", 0))
        with accelerator.accumulate(run.module):
            if "input_ids" not in batch:
                logger.error("A whole micro-batch failed to decode; its processes skip it.")
            else:
                loss_sum, _, visual = run.module(**batch)
                accelerator.backward(loss_sum * scale)
                loss_total += loss_sum.detach().float()
                samples += visual.shape[0]
                visual_total += visual.sum().float()
            if accelerator.sync_gradients:
                if config.train.max_grad_norm:
                    # every parameter of the prepared module (the frozen ones have no gradient): accelerate's FSDP path
                    # clips the sharded gradients only when handed the model's whole parameter list
                    grad_norm = accelerator.clip_grad_norm_(list(run.module.parameters()), config.train.max_grad_norm)
                run.optimizer.step()
                run.optimizer.zero_grad(set_to_none=True)
    run.scheduler.step()
    loss_total, samples, visual_total = (
        accelerator.reduce(value, "sum") for value in (loss_total, samples, visual_total)
    )
    entry = {"loss": float(loss_total / tokens.clamp_min(1.0)), "answer_tokens": int(tokens)}
    entry.update({f"lr_{name}": float(lr) for name, lr in zip(run.group_names, run.scheduler.get_last_lr())})
    if grad_norm is not None:
        entry["grad_norm"] = float(grad_norm)
    if skipped_samples:
        logger.warning("Step %d: %d samples could not be decoded and were skipped.", step + 1, skipped_samples)
    return entry, int(samples), float(visual_total)


def _save_final(config: TrainingConfig, accelerator, run: _Run, output_dir: Path, result: TrainResult):
    """Writes the trained model (`final/`, merged when LoRA asks) and the LoRA adapter (`adapter/`)."""
    unwrapped = accelerator.unwrap_model(run.module).model
    if config.lora.enabled:
        adapter_dir = output_dir / "adapter"
        if accelerator.is_main_process:
            run.peft_model.save_pretrained(str(adapter_dir))
        result.adapter_dir = str(adapter_dir)
        if config.lora.merge_on_save:
            unwrapped = run.peft_model.merge_and_unload()
    if config.lora.enabled and not config.lora.merge_on_save:
        return
    final_dir = output_dir / "final"
    state_dict = accelerator.get_state_dict(unwrapped if config.lora.enabled else accelerator.unwrap_model(run.module))
    if accelerator.is_main_process:
        if not config.lora.enabled:
            state_dict = {key.removeprefix("model."): value for key, value in state_dict.items()}
        _retie_weights(state_dict, unwrapped)
        unwrapped.config.use_cache = True
        unwrapped.save_pretrained(str(final_dir), state_dict=state_dict)
        run.processor.save_pretrained(str(final_dir))
    result.final_model_dir = str(final_dir)


def _retie_weights(state_dict: dict, model) -> None:
    """
    Points each tied weight of `state_dict` (e.g. `lm_head.weight`) at the tensor of the weight it is tied to. A state
    dict gathered from shards (FSDP) holds a separate copy of each; aliased, `save_pretrained` stores one of them, as
    it does for an unsharded model.
    """
    for target, source in model.all_tied_weights_keys.items():
        if target in state_dict and source in state_dict:
            state_dict[target] = state_dict[source]


@torch.no_grad()
def evaluate(module, eval_loader, accelerator) -> dict:
    """Mean answer-token loss over the evaluation set (all processes), and visual tokens per sample."""
    was_training = module.training
    module.eval()
    loss_total = torch.zeros((), device=accelerator.device)
    tokens = torch.zeros((), device=accelerator.device)
    samples = torch.zeros((), device=accelerator.device)
    visual_total = torch.zeros((), device=accelerator.device)
    for batch in eval_loader:
        batch.pop("num_skipped", None)
        if "input_ids" not in batch:
            continue
        loss_sum, count, visual = module(**batch)
        loss_total += loss_sum.float()
        tokens += count.float()
        samples += visual.shape[0]
        visual_total += visual.sum().float()
    loss_total, tokens, samples, visual_total = (
        accelerator.reduce(value, "sum") for value in (loss_total, tokens, samples, visual_total)
    )
    module.train(was_training)
    return {
        "loss": float(loss_total / tokens.clamp_min(1.0)),
        "samples": int(samples),
        "visual_tokens_per_sample": float(visual_total / samples.clamp_min(1.0)),
    }


def save_checkpoint(accelerator, output_dir: Path, step: int, total_limit: int | None = None) -> Path:
    """`accelerator.save_state` (model, optimizer, scheduler, RNG) plus the step, in `output_dir/checkpoint-<step>`."""
    checkpoint = output_dir / f"checkpoint-{step}"
    accelerator.save_state(str(checkpoint))
    if accelerator.is_main_process:
        (checkpoint / STATE_FILE).write_text(json.dumps({"step": step}))
        logger.info("Saved checkpoint %s", checkpoint)
        if total_limit:
            checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[-1]))
            for old in checkpoints[:-total_limit]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return checkpoint


def _yaml(values: dict) -> str:
    import yaml

    return yaml.safe_dump(values, sort_keys=False)


__all__ = ["EpochShuffleSampler", "TrainResult", "check_sharding", "evaluate", "save_checkpoint", "train"]

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
