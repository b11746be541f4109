"""Copy a trained SHINE adapter into `peft_shine/assets/default/` (the shipped default hypernetwork) with its loss
curves, and set the absorb-time policy to chunk long documents.

    python examples/default_model/package.py --stage1 runs/default/stage1 --stage2 runs/default/stage2/checkpoint-800
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ASSETS = Path(__file__).resolve().parents[2] / "peft_shine" / "assets" / "default"
ADAPTER_FILES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)


def log_history(run: Path) -> list[dict]:
    """The Trainer's log of a run folder or checkpoint (`trainer_state.json`, newest checkpoint if a run folder)."""
    states = (
        [run / "trainer_state.json"]
        if (run / "trainer_state.json").exists()
        else sorted(run.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    )
    return json.loads(states[-1].read_text())["log_history"]


def plot_losses(stage1: list[dict], stage2: list[dict], path: Path) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, history, title in ((axes[0], stage1, "stage 1: RECON / COMP"), (axes[1], stage2, "stage 2: QA")):
        points = [(e["step"], e["loss"]) for e in history if "loss" in e]
        axis.plot(*zip(*points), linewidth=0.8)
        axis.set_title(title)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("training loss (token-mean CE)")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1", required=True, type=Path)
    parser.add_argument("--stage2", required=True, type=Path, help="the stage-2 checkpoint folder to ship")
    args = parser.parse_args()
    ASSETS.mkdir(parents=True, exist_ok=True)
    for name in ADAPTER_FILES:
        if (args.stage2 / name).exists():
            shutil.copy2(args.stage2 / name, ASSETS / name)
    config_path = ASSETS / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config.update(context_overflow="chunk", base_model_name_or_path=None, inference_mode=True)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    stage1, stage2 = log_history(args.stage1), log_history(args.stage2)
    plot_losses(stage1, stage2, ASSETS / "loss_curve.png")
    (ASSETS / "trainer_log.json").write_text(json.dumps({"stage1": stage1, "stage2": stage2}, indent=1))
    print(f"packaged {args.stage2} into {ASSETS}")


if __name__ == "__main__":
    main()
