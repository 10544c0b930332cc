"""Losses: the teacher's answers (soft targets), its hidden states, and the ground truth."""

from __future__ import annotations


class _LayerTap:
    """Collects the outputs of chosen encoder layers on every forward call (NLVR2 calls the
    encoder once per image, so a list per layer)."""

    def __init__(self, layers, indices: list[int]) -> None:
        self.outputs: dict[int, list] = {i: [] for i in indices}
        self.handles = [layers[i].register_forward_hook(self._hook(i)) for i in indices]

    def _hook(self, index: int):
        def hook(_module, _inputs, output):
            self.outputs[index].append(output[0] if isinstance(output, tuple) else output)

        return hook

    def take(self) -> dict[int, list]:
        outputs, self.outputs = self.outputs, {i: [] for i in self.outputs}
        return outputs

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _align_tokens(teacher_states, text_len: int, student_grid, teacher_grid):
    """Teacher states (B, T, C) brought to the student's token layout: text and image [CLS]
    as they are, the patch grid average-pooled to the student's grid when it is smaller."""
    import torch

    if tuple(student_grid) == tuple(teacher_grid):
        return teacher_states
    head = teacher_states[:, : text_len + 1]
    patches = teacher_states[:, text_len + 1 :]
    batch, _, channels = patches.shape
    grid = patches.transpose(1, 2).reshape(batch, channels, *teacher_grid)
    pooled = torch.nn.functional.adaptive_avg_pool2d(grid, tuple(student_grid))
    return torch.cat([head, pooled.flatten(2).transpose(1, 2)], dim=1)


def _hidden_loss(student_states, teacher_states, token_mask):
    """Masked MSE divided by the teacher state's masked mean square."""
    weight = token_mask[..., None].to(student_states.dtype)
    count = weight.sum() * student_states.shape[-1]
    error = ((student_states - teacher_states) ** 2 * weight).sum() / count
    scale = ((teacher_states**2) * weight).sum() / count
    return error / scale.clamp_min(1e-12)


def _soft_loss(task: str, student_logits, teacher_logits, temperature: float):
    import torch.nn.functional as F

    t = temperature
    if task == "nlvr2":
        return (
            F.kl_div(
                F.log_softmax(student_logits / t, -1),
                F.softmax(teacher_logits / t, -1),
                reduction="batchmean",
            )
            * t
            * t
        )
    # Summed over the answers and averaged over the batch, as the head was trained. The
    # teacher's own entropy is subtracted (it has no gradient), so the value is the binary KL
    # divergence: 0 when the student's scores equal the teacher's.
    targets = (teacher_logits / t).sigmoid()
    bce = F.binary_cross_entropy_with_logits(student_logits / t, targets)
    entropy = F.binary_cross_entropy_with_logits(teacher_logits / t, targets)
    return (bce - entropy) * student_logits.shape[-1] * t * t


def _label_loss(task: str, logits, targets, labeled):
    import torch.nn.functional as F

    if not labeled.any():
        return None
    logits, targets = logits[labeled], targets[labeled]
    if task == "nlvr2":
        return F.cross_entropy(logits, targets.long())
    return F.binary_cross_entropy_with_logits(logits, targets) * logits.shape[-1]
