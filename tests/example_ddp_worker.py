"""Run under `torchrun` / `accelerate launch` by tests/test_training.py: examples/instruct.py with the arguments it
was given (the documented command), then each rank writes its trainable tensors and how the Trainer ran."""

import json
import os
import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import instruct  # noqa: E402


def main(argv: list[str]) -> None:
    trainer = instruct.main(argv)
    out = Path(trainer.args.output_dir).parent
    rank = int(os.environ.get("RANK", 0))
    tensors = {n: p.detach().contiguous() for n, p in trainer.model.named_parameters() if p.requires_grad}
    save_file(tensors, str(out / f"rank{rank}.safetensors"))
    run = {"parallel_mode": trainer.args.parallel_mode.value, "world_size": trainer.args.world_size}
    (out / f"rank{rank}.json").write_text(json.dumps(run))


if __name__ == "__main__":
    main(sys.argv[1:])
