"""Copy a trained SHINE adapter into `peft_shine/assets/default/` (the shipped default hypernetwork) with its loss
curves, and set the absorb-time policy to chunk long documents (chunk deltas averaged).

    python examples/default_model/package.py --stage1 runs/default/stage1 --stage2 runs/default/stage2/checkpoint-800
    # a second stage-2 run started from that checkpoint (plotted after it) is shipped instead:
    python examples/default_model/package.py --stage1 runs/default/stage1 --stage2 runs/default/stage2/checkpoint-700 \
        --continued runs/default/stage2b/checkpoint-600
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


def plot_losses(stage1: list[dict], stage2: list[dict], continued: list[dict], path: Path) -> None:
    """Training loss against optimizer step: stage 1 (left), stage 2 and its continuation after its last step
    (right)."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    offset = max((e["step"] for e in stage2), default=0)
    curves = (
        (axes[0], stage1, 0, "stage 1: RECON / COMP", None),
        (axes[1], stage2, 0, "stage 2: QA", "from the stage-1 adapter"),
        (axes[1], continued, offset, "stage 2: QA", "continued run"),
    )
    for axis, history, start, title, label in curves:
        points = [(start + e["step"], e["loss"]) for e in history if "loss" in e]
        if points:
            axis.plot(*zip(*points), linewidth=0.8, label=label)
        axis.set_title(title)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("training loss (token-mean CE)")
        axis.grid(alpha=0.3)
    if continued:
        axes[1].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage1", required=True, type=Path)
    parser.add_argument("--stage2", required=True, type=Path, help="the stage-2 checkpoint folder to ship")
    parser.add_argument(
        "--continued", type=Path, help="checkpoint of a stage-2 run started from --stage2: shipped instead of it"
    )
    args = parser.parse_args()
    shipped = args.continued or args.stage2
    ASSETS.mkdir(parents=True, exist_ok=True)
    for name in ADAPTER_FILES:
        if (shipped / name).exists():
            shutil.copy2(shipped / name, ASSETS / name)
    config_path = ASSETS / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config.update(context_overflow="chunk", chunk_combination="mean", base_model_name_or_path=None, inference_mode=True)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
    logs = {"stage1": log_history(args.stage1), "stage2": log_history(args.stage2)}
    if args.continued:
        logs["stage2_continued"] = log_history(args.continued)
    plot_losses(logs["stage1"], logs["stage2"], logs.get("stage2_continued", []), ASSETS / "loss_curve.png")
    (ASSETS / "trainer_log.json").write_text(json.dumps(logs, indent=1))
    print(f"packaged {shipped} into {ASSETS}")


if __name__ == "__main__":
    main()
