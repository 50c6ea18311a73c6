"""
The lmms-eval plugin `vqtoken_hf`, run by lmms-eval itself (`simple_evaluate`, and `python -m lmms_eval` in a
subprocess), offline, on tiny tasks over synthetic clips that the tests write, with the built-in default model.

References: lmms-eval's own `llava_hf` model on the same weights saved as stock LLaVA-OneVision (videos in mode "off",
images), the stock model called by hand (loglikelihood, text-only prompts), and the same requests at batch size 1.
These tests need the `eval` extra (`scripts/setup_eval.sh`); they are skipped where lmms-eval is not installed.
"""

import json
import os
import subprocess
import sys

import pytest


pytest.importorskip("lmms_eval", reason="lmms-eval is not installed (the `eval` extra: scripts/setup_eval.sh)")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from lmms_eval_fixtures import CLIP_FRAMES, NUM_FRAMES, save_model_folders, write_task  # noqa: E402
from PIL import Image  # noqa: E402

from vqtoken.video_io import load_video  # noqa: E402


OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
TASKS = {
    "tiny_video": {},
    "tiny_image": {"visual": "image"},
    "tiny_text": {"visual": "text", "num_docs": 4},
    "tiny_choice": {"output_type": "multiple_choice", "num_docs": 4},
    "tiny_rounds": {"output_type": "generate_until_multi_round", "num_docs": 4},
    "tiny_sources": {"num_docs": 3},
}


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """The two model folders, the task folder and lmms-eval's task manager, with the dataset cache in a temp folder."""
    from lmms_eval.tasks import TaskManager

    root = tmp_path_factory.mktemp("lmms_eval")
    previous = {key: os.environ.get(key) for key in [*OFFLINE, "LMMS_EVAL_DATASETS_CACHE"]}
    os.environ.update(OFFLINE, LMMS_EVAL_DATASETS_CACHE=str(root / "datasets"))
    vqtoken_dir, stock_dir = save_model_folders(root / "models")
    tasks = root / "tasks"
    for name, options in TASKS.items():
        write_task(tasks, name, **options)
    # tiny_sources: clip 1 is not a video, clip 2 is a folder of frame images
    videos = tasks / "tiny_sources" / "videos"
    (videos / "clip1.mp4").write_bytes(b"this is not a video")
    frames = load_video(videos / "clip2.mp4", num_frames=CLIP_FRAMES).frames
    (videos / "clip2.mp4").unlink()
    (videos / "clip2.mp4").mkdir()
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(videos / "clip2.mp4" / f"frame{index:03d}.png")
    yield {
        "vqtoken": vqtoken_dir,
        "stock": stock_dir,
        "tasks": tasks,
        "manager": TaskManager(include_path=str(tasks), include_defaults=False),
        "root": root,
    }
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def evaluate(material, model: str, model_args: str, task: str, **options) -> tuple[dict, dict[int, dict]]:
    """lmms-eval's `simple_evaluate` on one task: its results and its logged samples by doc id."""
    from lmms_eval.evaluator import simple_evaluate

    results = simple_evaluate(
        model=model, model_args=model_args, tasks=[task], task_manager=material["manager"], log_samples=True, **options
    )
    return results["results"][task], {sample["doc_id"]: sample for sample in results["samples"][task]}


def vqtoken_args(material, extra: str = "") -> str:
    return f"pretrained={material['vqtoken']}" + (f",{extra}" if extra else "")


def llava_hf_args(material) -> str:
    return f"pretrained={material['stock']},device=cpu,device_map=cpu,dtype=float32,max_frames_num={NUM_FRAMES}"


def answers(samples: dict[int, dict]) -> dict[int, str]:
    return {doc_id: sample["filtered_resps"][0].strip() for doc_id, sample in samples.items()}


def records(samples: dict[int, dict]) -> dict[int, dict]:
    return {doc_id: sample["token_counts"][0] for doc_id, sample in samples.items()}


def docs(material, task: str) -> list[dict]:
    lines = (material["tasks"] / task / "docs.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_entry_point_registers_vqtoken_hf_without_importing_torch():
    script = (
        "import sys\n"
        "from vqtoken.evaluation import lmms_eval_plugin\n"
        "manifest = lmms_eval_plugin.manifest()\n"
        "assert 'torch' not in sys.modules, 'the entry-point module imported torch'\n"
        "from lmms_eval.models import get_model_manifest\n"
        "registered = get_model_manifest('vqtoken_hf')\n"
        "builtin = get_model_manifest('vqtoken')\n"
        "print(registered.chat_class_path, registered.simple_class_path, builtin.simple_class_path)"
    )
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert output.split() == [
        "vqtoken.evaluation.lmms_eval_model.VQTokenChat",
        "vqtoken.evaluation.lmms_eval_model.VQTokenSimple",
        "lmms_eval.models.simple.vqtoken.VQToken",  # lmms-eval's own model keeps its id
    ]


def test_mode_off_answers_as_lmms_eval_llava_hf_on_the_stock_weights(material):
    import decord

    from vqtoken.video_io import load_video

    # both decoders give these clips' frames identically, so the comparison is about the models
    for doc in docs(material, "tiny_video"):
        reader = decord.VideoReader(doc["video"])
        indices = np.linspace(0, len(reader) - 1, NUM_FRAMES, dtype=int).tolist()
        pyav_frames = load_video(doc["video"], num_frames=NUM_FRAMES).frames
        assert np.array_equal(reader.get_batch(indices).asnumpy(), pyav_frames)

    ours, our_samples = evaluate(material, "vqtoken_hf", vqtoken_args(material, "vqtoken_mode=off"), "tiny_video")
    stock, stock_samples = evaluate(material, "llava_hf", llava_hf_args(material), "tiny_video", force_simple=True)
    assert answers(our_samples) == answers(stock_samples)
    assert len(set(answers(our_samples).values())) > 2  # the answers depend on the clip
    assert ours["accuracy,none"] == stock["accuracy,none"]
    for record in records(our_samples).values():
        assert record["visual_tokens"] == record["visual_tokens_stock"] == 8 * 16 + 1


def test_images_answer_as_lmms_eval_llava_hf_on_the_stock_weights(material):
    _, our_samples = evaluate(material, "vqtoken_hf", vqtoken_args(material), "tiny_image", batch_size=3)
    _, stock_samples = evaluate(material, "llava_hf", llava_hf_args(material), "tiny_image", force_simple=True)
    assert answers(our_samples) == answers(stock_samples)
    assert {record["modality"] for record in records(our_samples).values()} == {"image"}


@torch.no_grad()
def test_text_only_prompts_answer_as_the_stock_model(material):
    from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration

    _, samples = evaluate(material, "vqtoken_hf", vqtoken_args(material), "tiny_text", batch_size=4)
    stock = LlavaOnevisionForConditionalGeneration.from_pretrained(material["stock"]).eval()
    processor = AutoProcessor.from_pretrained(material["stock"])
    for doc_id, doc in enumerate(docs(material, "tiny_text")):
        messages = [{"role": "user", "content": [{"type": "text", "text": doc["question"]}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(text=[prompt], return_tensors="pt")
        output = stock.generate(**inputs, max_new_tokens=4, do_sample=False)
        expected = processor.decode(output[0, inputs.input_ids.shape[1] :], skip_special_tokens=True).strip()
        assert answers(samples)[doc_id] == expected
        assert records(samples)[doc_id]["modality"] == "text"


def test_batch_size_3_answers_as_batch_size_1_with_a_k_per_video(material):
    adaptive = vqtoken_args(material, "vqtoken_selection_method=silhouette,vqtoken_min_clusters=6")
    _, one = evaluate(material, "vqtoken_hf", adaptive, "tiny_video", batch_size=1)
    _, three = evaluate(material, "vqtoken_hf", adaptive, "tiny_video", batch_size=3)
    _, three_simple = evaluate(material, "vqtoken_hf", adaptive, "tiny_video", batch_size=3, force_simple=True)
    clusters = [record["num_clusters"] for record in records(one).values()]
    assert len(set(clusters)) > 2, "the clips should get different K, or the batch is not ragged"
    # attention mode: max(T, K) tokens and the newline
    assert [record["visual_tokens"] for record in records(one).values()] == [max(NUM_FRAMES, k) + 1 for k in clusters]
    assert answers(three) == answers(one) == answers(three_simple)
    assert records(three) == records(one) == records(three_simple)
    assert len(set(answers(one).values())) > 2


@torch.no_grad()
def test_loglikelihood_scores_choices_as_the_stock_model_by_hand(material):
    from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration

    from vqtoken.loading import load_model_and_processor
    from vqtoken.video_io import load_video

    results, samples = evaluate(
        material, "vqtoken_hf", vqtoken_args(material, "vqtoken_mode=off"), "tiny_choice", force_simple=True
    )
    attention_results, attention_samples = evaluate(
        material, "vqtoken_hf", vqtoken_args(material), "tiny_choice", force_simple=True
    )
    stock = LlavaOnevisionForConditionalGeneration.from_pretrained(material["stock"]).eval()
    processor = AutoProcessor.from_pretrained(material["stock"])
    vqtoken_model, _ = load_model_and_processor(material["vqtoken"])
    expected_accuracy = {"off": [], "attention": []}
    for doc_id, doc in enumerate(docs(material, "tiny_choice")):
        frames = load_video(doc["video"], num_frames=NUM_FRAMES).frames
        user = {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": doc["question"]}]}
        prompt = processor.apply_chat_template([user], add_generation_prompt=True)
        losses = {"off": [], "attention": []}
        for choice in doc["choices"]:
            answer = {"role": "assistant", "content": [{"type": "text", "text": choice}]}
            text = processor.apply_chat_template([user, answer])
            scored = len(processor.tokenizer(text).input_ids) - len(processor.tokenizer(prompt).input_ids)
            inputs = processor(text=[text], videos=[frames], return_tensors="pt")
            targets = inputs.input_ids[0, -scored:]
            losses["off"].append(nll(stock(**inputs).logits[0, -scored - 1 : -1], targets))
            # attention mode: the stock model reading the VQToken tokens of the video in place of its own
            tokens = vqtoken_model.model.get_video_features(inputs.pixel_values_videos).pooler_output[0]
            ids = vqtoken_ids(inputs.input_ids[0], vqtoken_model.config.video_token_id, tokens.shape[0])
            embeds = stock.get_input_embeddings()(ids[None]).clone()
            embeds[0, ids == vqtoken_model.config.video_token_id] = tokens
            losses["attention"].append(nll(stock(inputs_embeds=embeds).logits[0, -scored - 1 : -1], targets))
        for mode, logged in (("off", samples), ("attention", attention_samples)):
            got = [response[0][0] for response in logged[doc_id]["resps"]]  # [(loss, is_greedy)] per choice
            np.testing.assert_allclose(got, losses[mode], rtol=1e-4, atol=1e-4)
            expected_accuracy[mode].append(float(doc["choices"][int(np.argmin(losses[mode]))] == doc["answer"]))
    assert results["acc,none"] == pytest.approx(np.mean(expected_accuracy["off"]))
    assert attention_results["acc,none"] == pytest.approx(np.mean(expected_accuracy["attention"]))
    assert attention_results["acc,none"] > 0.5  # the default model knows these clips
    assert records(attention_samples)[0]["visual_tokens"] == 16 and records(attention_samples)[0]["num_clusters"] == 15


def nll(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean negative log-likelihood of `targets` under `logits` (one row per target)."""
    return float(-torch.log_softmax(logits.double(), dim=-1).gather(1, targets[:, None]).mean())


def vqtoken_ids(input_ids: torch.Tensor, video_token_id: int, count: int) -> torch.Tensor:
    """`input_ids` with its run of video placeholders rewritten to `count` placeholders."""
    positions = torch.nonzero(input_ids == video_token_id).flatten()
    start, end = int(positions[0]), int(positions[-1]) + 1
    return torch.cat([input_ids[:start], input_ids.new_full((count,), video_token_id), input_ids[end:]])


def test_multi_round_answers_each_round_as_a_single_question(material):
    from vqtoken.inference import ask_videos
    from vqtoken.loading import load_model_and_processor

    _, samples = evaluate(material, "vqtoken_hf", vqtoken_args(material), "tiny_rounds", batch_size=3)
    model, processor = load_model_and_processor(material["vqtoken"])
    task_docs = docs(material, "tiny_rounds")
    for question, round_index in (("question", 0), ("second_question", 1)):
        expected = ask_videos(
            model,
            processor,
            [doc["video"] for doc in task_docs],
            [doc[question] for doc in task_docs],
            num_frames=NUM_FRAMES,
            max_new_tokens=4,
        )
        for doc_id, answer in enumerate(expected):
            assert samples[doc_id]["filtered_resps"][0][round_index] == answer.answer
            assert samples[doc_id]["token_counts"][0]["visual_tokens"] == [16, 16]


def test_generation_settings_until_and_max_new_tokens(material):
    _, plain = evaluate(material, "vqtoken_hf", vqtoken_args(material), "tiny_video", batch_size=4)
    _, cut = evaluate(material, "vqtoken_hf", vqtoken_args(material), "tiny_video", batch_size=4, gen_kwargs="until=e")
    assert any("e" in answer for answer in answers(plain).values())
    assert answers(cut) == {doc_id: answer.split("e")[0] for doc_id, answer in answers(plain).items()}


def test_generation_settings_follow_lmms_eval_conventions():
    from vqtoken.evaluation.lmms_eval_model import generation_settings

    assert generation_settings({"temperature": 0, "do_sample": True, "top_p": 0.9}) == (1024, [], {"do_sample": False})
    assert generation_settings({"temperature": 0.7, "top_p": None, "until": "\n\n", "max_new_tokens": "16"}) == (
        16,
        ["\n\n"],
        {"do_sample": True, "temperature": 0.7},
    )
    assert generation_settings({"do_sample": True, "num_beams": 1, "image_aspect_ratio": ["pad"]}) == (
        1024,
        [],
        {"do_sample": True, "num_beams": 1},
    )
    with pytest.raises(ValueError, match="max_new_tokens"):
        generation_settings({"max_new_tokens": 0})


def test_a_folder_of_frames_is_a_video_and_a_broken_video_gets_an_empty_answer(material):
    from vqtoken.inference import ask_videos
    from vqtoken.loading import load_model_and_processor

    _, samples = evaluate(material, "vqtoken_hf", vqtoken_args(material), "tiny_sources", batch_size=3)
    assert answers(samples)[1] == ""
    assert "clip1.mp4" in records(samples)[1]["error"]
    assert answers(samples)[0] and "error" not in records(samples)[0]
    # the folder answers as its frames would: sampled uniformly, 8 of 29
    model, processor = load_model_and_processor(material["vqtoken"])
    folder = sorted((material["tasks"] / "tiny_sources" / "videos" / "clip2.mp4").iterdir())
    frames = np.stack([np.asarray(Image.open(path)) for path in folder])
    question = docs(material, "tiny_sources")[2]["question"]
    [expected] = ask_videos(model, processor, [frames], [question], num_frames=NUM_FRAMES, max_new_tokens=4)
    assert answers(samples)[2] == expected.answer and records(samples)[2]["visual_tokens"] == 16


@pytest.mark.parametrize(
    "model_args, named",
    [
        ("vqtoken_max_clusters=0", "vqtoken_max_clusters"),
        ("vqtoken_mode=fast", "vqtoken_mode"),
        ("vqtoken_max_cluster=8", "vqtoken_max_cluster"),
        ("frames=8", "frames"),
        ("max_frames_num=-1", "max_frames_num"),
        ("dtype=float8", "float8"),
        ("attn_implementation=nope", "nope"),
    ],
)
def test_a_bad_model_argument_is_an_error_naming_it(material, model_args, named):
    with pytest.raises(ValueError, match=named):
        evaluate(material, "vqtoken_hf", vqtoken_args(material, model_args), "tiny_video")


def test_model_arguments_reach_the_model(material):
    from vqtoken.evaluation.lmms_eval_model import VQTokenSimple

    model = VQTokenSimple(
        pretrained=str(material["vqtoken"]),
        device="cpu",
        dtype="bfloat16",
        batch_size="4",
        max_frames_num=6,
        attn_implementation="eager",
        vqtoken_mode="centroids",
        vqtoken_selection_method="elbow",
        vqtoken_min_clusters=4,
        vqtoken_max_clusters=9,
        vqtoken_seed=3,
    )
    config = model.model.config
    assert (model.batch_size, model.max_frames_num, model.model.dtype) == (4, 6, torch.bfloat16)
    assert config._attn_implementation == config.text_config._attn_implementation == "eager"
    assert (config.vqtoken_mode, config.vqtoken_selection_method) == ("centroids", "elbow")
    assert (config.vqtoken_min_clusters, config.vqtoken_max_clusters, config.vqtoken_seed) == (4, 9, 3)
    assert model.processor.vqtoken_mode == "centroids"  # the placeholder count follows the mode


def run_cli(material, module: str, model_args: str, output: str, *extra: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        module,
        "--model",
        "vqtoken_hf",
        "--model_args",
        model_args,
        "--tasks",
        "tiny_video",
        "--include_path",
        str(material["tasks"]),
        "--output_path",
        str(material["root"] / output),
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=600)


def test_cli_run_writes_results_samples_and_tokdense(material):
    module = "vqtoken.evaluation.lmms_eval_run"
    run = run_cli(material, module, vqtoken_args(material), "cli", "--log_samples", "--batch_size", "4")
    [results_file] = (material["root"] / "cli").rglob("*_results.json")
    accuracy = json.loads(results_file.read_text())["results"]["tiny_video"]["accuracy,none"]
    [samples_file] = results_file.parent.glob("*_samples_tiny_video.jsonl")
    logged = [json.loads(line) for line in samples_file.read_text().splitlines()]
    assert [sample["token_counts"][0]["visual_tokens"] for sample in logged] == [16] * 8
    [summary_file] = results_file.parent.glob("*_tokdense.json")
    summary = json.loads(summary_file.read_text())["tiny_video"]
    assert (summary["videos"], summary["mean_visual_tokens"], summary["mean_visual_tokens_stock"]) == (8, 16, 129)
    assert summary["metrics"]["accuracy,none"] == {"value": accuracy, "tokdense": accuracy / 16}
    assert accuracy > 0.5
    assert "TokDense" in run.stdout and "tiny_video" in run.stdout


def test_cli_run_with_a_bad_value_fails_naming_it(material):
    run = run_cli(material, "lmms_eval", vqtoken_args(material, "vqtoken_min_clusters=0"), "cli_bad", "--log_samples")
    assert "vqtoken_min_clusters" in run.stdout + run.stderr
    assert not list((material["root"] / "cli_bad").rglob("*_results.json"))  # lmms-eval exits 0 all the same
