"""
Evaluation of VQToken models with lmms-eval: the model `vqtoken_hf` (`lmms_eval_plugin`, `lmms_eval_model`),
TokDense (`token_density`), a run that reports it (`lmms_eval_run`), and a synthetic-clip task for smoke runs
(`synthetic_task`).

Nothing is imported here: lmms-eval imports `lmms_eval_plugin` for every run and it must stay light.
"""
