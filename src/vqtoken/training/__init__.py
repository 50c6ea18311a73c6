"""
Fine-tuning VQToken with `accelerate`, `datasets` and `peft`.

```python
from vqtoken.training import load_config, train

config = load_config("examples/training/synthetic_smoke.yaml", ["train.max_steps=20"])
result = train(config)
print(result.losses[-1], result.final_model_dir)
```
"""

from .config import TrainingConfig, load_config
from .trainer import TrainResult, train


__all__ = ["TrainResult", "TrainingConfig", "load_config", "train"]
