"""Optional stage-2 distillation objective (beyond the paper): the answering pass with the generated LoRA (student)
learns the next-token distribution of the frozen base model that reads the context in its prompt (teacher, the
`ICL_TEMPLATE` chat built by `InstructDataset(..., teacher=True)`), on the answer tokens both sequences share."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..padding import IGNORE_INDEX


def answer_token_kl(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor,
    teacher_labels: torch.Tensor,
    num_items_in_batch: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """KL(teacher || student) at temperature 1 over the positions that predict labelled tokens.

    student_logits (B, L, V) with labels (B, L), teacher_logits (B, L_t, V) with teacher_labels (B, L_t); labels are
    -100 outside the answers. The predicting positions are logits[:, :-1] where labels[:, 1:] != -100 (the shift of a
    causal LM loss); row b of both sequences must label the same tokens in the same order, so the k-th predicting
    position of the student row is matched with the k-th of the teacher row. Returns a 0-dim float32 tensor: the KL
    summed over the N matched positions divided by `num_items_in_batch` when given (the token count the Trainer also
    passes to the base model's cross-entropy under gradient accumulation), else by N. Raises ValueError when a row of
    the two sequences labels a different number of tokens or different tokens.
    """
    student_mask = labels[:, 1:] != IGNORE_INDEX
    teacher_mask = teacher_labels[:, 1:] != IGNORE_INDEX
    student_counts, teacher_counts = student_mask.sum(-1), teacher_mask.sum(-1)
    if not torch.equal(student_counts, teacher_counts):
        rows = (student_counts != teacher_counts).nonzero().flatten().tolist()
        raise ValueError(
            f"The student and teacher sequences label different numbers of answer tokens in rows {rows} (student "
            f"{student_counts[rows].tolist()}, teacher {teacher_counts[rows].tolist()}); build both from the same "
            "answers (InstructDataset(..., teacher=True))."
        )
    if not torch.equal(labels[:, 1:][student_mask], teacher_labels[:, 1:][teacher_mask]):
        raise ValueError("The student and teacher sequences label different answer tokens; they must be the same.")
    student_log_probs = F.log_softmax(student_logits[:, :-1][student_mask].float(), dim=-1)
    teacher_log_probs = F.log_softmax(teacher_logits[:, :-1][teacher_mask].float(), dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="sum", log_target=True)
    return kl / (student_mask.sum() if num_items_in_batch is None else num_items_in_batch)
