"""The `video-text-to-text` pipeline.

    python examples/pipeline.py [VIDEO] [--model ID_OR_DIR]

With a saved folder or Hub repository the pipeline also loads without the vqtoken package:
`pipeline("video-text-to-text", model=folder, trust_remote_code=True)`. Without --model the built-in default is used
through `import vqtoken`, which registers the task.
"""

import argparse
import tempfile

from transformers import pipeline

import vqtoken  # noqa: F401  (registers the "video-text-to-text" task)
from vqtoken.demo import demo_clip
from vqtoken.loading import load_model_and_processor
from vqtoken.synthetic import write_clip


parser = argparse.ArgumentParser()
parser.add_argument("video", nargs="?")
parser.add_argument("--model")
args = parser.parse_args()

if args.model:
    pipe = pipeline("video-text-to-text", model=args.model, trust_remote_code=True)
else:
    model, processor = load_model_and_processor(None)
    pipe = pipeline("video-text-to-text", model=model, processor=processor)
video = args.video or write_clip(tempfile.mkdtemp() + "/shape.mp4", demo_clip(16), fps=8)

# a video and a question
print(pipe(video, text="what colour is the shape ?", max_new_tokens=16)[0])

# chat messages, and a list of requests answered as one batch
chat = [{"role": "user", "content": [{"type": "video", "path": str(video)}, {"type": "text", "text": "Describe it."}]}]
for answers in pipe([chat, {"video": video, "text": "How many objects are there?"}], max_new_tokens=16):
    print(
        answers[0]["generated_text"], "| tokens:", answers[0]["visual_tokens_stock"], "->", answers[0]["visual_tokens"]
    )
