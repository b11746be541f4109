"""Question-answering evaluation of SHINE against baselines (no context, context in the prompt, per-context LoRA
fine-tuning), with SQuAD v1.1 metrics, bootstrap confidence intervals and timing.

Records are dicts with `context` (str), `question` (str), `answers` (list of gold answer strings) and optionally `id`
and `options` (multiple choice: `answers` then holds the text of the correct option); they are validated by
`peft_shine.qa_records`, as training records are. Every method answers with greedy decoding and the user turn of the
chat template:

- `none`: the base model (`model.forget()`), question alone;
- `icl`: the base model with the context in the prompt (`ICL_TEMPLATE`);
- `icl_short`: the same with a prompt that asks for a short answer copied from the text (`ICL_SHORT_TEMPLATE`);
- `shine`: `model.absorb_context(contexts)` once per distinct context, then the question alone;
- `sft`: a rank-8 LoRA trained on each context as language-model text, then the question alone.

Modules: `metrics`, `records`, `timing`, `methods` (none / icl / icl_short / shine), `sft`, `likelihood`, `splits`,
`report`, `run` (`evaluate`).
"""

from ..generation import generate_answers
from ..qa_records import validate_qa_record as validate_record
from ..tokenization import icl_prompt
from .likelihood import likelihood_runs
from .methods import (
    EvalSettings,
    MethodRun,
    MethodRunner,
    absorbed_rounds,
    question_rounds,
    run_icl,
    run_icl_short,
    run_none,
    run_shine,
)
from .metrics import (
    PUNCTUATION,
    bootstrap_ci,
    chosen_option,
    exact_match,
    f1,
    mean_with_ci,
    normalize_answer,
    option_accuracy,
)
from .records import Record, group_by_context, load_eval_records
from .report import markdown_table, save_results, score_predictions, summarize_run
from .run import METHODS, evaluate
from .sft import SFT_LORA_ALPHA, SFT_LORA_RANK, build_sft_model, run_sft, sft_target_modules, train_on_context
from .splits import copied_share, gap_closure, is_open_vocabulary, question_splits, split_scores
from .timing import model_device, timed

__all__ = [
    "METHODS",
    "PUNCTUATION",
    "SFT_LORA_ALPHA",
    "SFT_LORA_RANK",
    "EvalSettings",
    "MethodRun",
    "MethodRunner",
    "Record",
    "absorbed_rounds",
    "bootstrap_ci",
    "build_sft_model",
    "chosen_option",
    "copied_share",
    "evaluate",
    "exact_match",
    "f1",
    "gap_closure",
    "generate_answers",
    "group_by_context",
    "icl_prompt",
    "is_open_vocabulary",
    "likelihood_runs",
    "load_eval_records",
    "markdown_table",
    "mean_with_ci",
    "model_device",
    "normalize_answer",
    "option_accuracy",
    "question_rounds",
    "question_splits",
    "run_icl",
    "run_icl_short",
    "run_none",
    "run_sft",
    "run_shine",
    "save_results",
    "score_predictions",
    "sft_target_modules",
    "split_scores",
    "summarize_run",
    "timed",
    "train_on_context",
    "validate_record",
]
