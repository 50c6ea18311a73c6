"""TokDense and visual tokens per video from hand-built lmms-eval results and samples (no lmms-eval needed)."""

import json

import pytest

from vqtoken.evaluation.token_density import format_table, main, summarize


def sample(modality="video", tokens=16, stock=129, clusters=15, error=None):
    record = {"modality": modality, "visual_tokens": tokens, "visual_tokens_stock": stock, "num_clusters": clusters}
    if error:
        record["error"] = error
    return {"doc_id": 0, "token_counts": [record]}


RESULTS = {
    "results": {
        "group": {"alias": "group", "acc,none": 0.5, "acc_stderr,none": 0.1},
        "a": {"alias": "a", "acc,none": 0.6, "acc_stderr,none": 0.1, "score,none": 60.0, "flag,none": "N/A"},
        "b": {"alias": "b", "acc,none": 0.4},
        "text_only": {"alias": "text_only", "exact_match,none": 1.0},
    },
    "group_subtasks": {"group": ["a", "b"]},
}
SAMPLES = {
    "a": [sample(tokens=10, clusters=9), sample(tokens=20, clusters=19), sample(error="cannot decode")],
    "b": [  # one multi-round request
        {
            "doc_id": 0,
            "token_counts": [
                {
                    "modality": "video",
                    "visual_tokens": [30, 12],
                    "visual_tokens_stock": [129, 129],
                    "num_clusters": [29, 11],
                }
            ],
        }
    ],
    "text_only": [sample(modality="text", tokens=0, stock=0, clusters=None), {"doc_id": 1, "token_counts": [None]}],
}


def test_summary_of_tasks_and_groups():
    summary = summarize(RESULTS, SAMPLES)
    assert set(summary) == {"a", "b", "group"}  # no video, no TokDense
    assert summary["a"]["videos"] == 2 and summary["a"]["mean_visual_tokens"] == 15  # the failed video is left out
    assert summary["a"]["mean_num_clusters"] == 14
    assert summary["a"]["metrics"] == {
        "acc,none": {"value": 0.6, "tokdense": 0.6 / 15},
        "score,none": {"value": 60.0, "tokdense": 4.0},
    }
    assert summary["b"]["videos"] == 2 and summary["b"]["mean_visual_tokens"] == 21  # one per round
    group = summary["group"]
    assert group["videos"] == 4 and group["mean_visual_tokens"] == (10 + 20 + 30 + 12) / 4
    assert group["mean_visual_tokens_stock"] == 129
    assert group["metrics"]["acc,none"]["tokdense"] == pytest.approx(0.5 / 18)
    assert "| a | acc,none | 0.6000 | 2 | 15.00 | 129.0 | 14.00 | 0.0400 |" in format_table(summary)


def test_command_summarises_a_run_folder_and_refuses_a_run_without_samples(tmp_path, capsys):
    run = tmp_path / "out" / "model"
    run.mkdir(parents=True)
    (run / "2026-12-01T10-00-00_results.json").write_text(json.dumps(RESULTS))
    for task, task_samples in SAMPLES.items():
        lines = "\n".join(json.dumps(item) for item in task_samples)
        (run / f"2026-12-01T10-00-00_samples_{task}.jsonl").write_text(lines + "\n")
    assert main([str(tmp_path / "out")]) == 0
    written = json.loads((run / "2026-12-01T10-00-00_tokdense.json").read_text())
    assert written == json.loads(json.dumps(summarize(RESULTS, SAMPLES)))
    assert "TokDense" in capsys.readouterr().out

    for path in run.glob("*_samples_*.jsonl"):
        path.unlink()
    assert main([str(tmp_path / "out")]) == 1
    assert "--log_samples" in capsys.readouterr().err
