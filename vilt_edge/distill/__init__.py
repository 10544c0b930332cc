"""Distill a ViLT teacher into a student with fewer layers (and, optionally, fewer image tokens).

    from vilt_edge.distill import DistillOptions, distill
    result = distill("default", "runs/student", DistillOptions(layers=2, data="easy-vqa:train"))
    result.student, result.held_out["agreement"], result.summary

The student is the teacher's own architecture with K encoder layers: embeddings, final
LayerNorm, pooler and head are copied, and student layer i starts as teacher layer map[i]
(evenly spaced by default, ending at the teacher's last layer, whose output the copied pooler
and head read). It is trained on the teacher's answers:

- soft targets: VQA, binary cross-entropy against the teacher's sigmoid scores at temperature T
  (the head is trained with BCE), less the teacher's own entropy so it reads as a divergence;
  NLVR2, KL divergence to the teacher's softmax at T; both scaled by T^2 so the gradient size
  does not depend on T;
- hidden states: student layer i's output against teacher layer map[i]'s, a mean squared error
  over real tokens divided by the teacher state's mean square (so the weight W does not depend
  on the model's activation scale); when the student reads a lower resolution, the teacher's
  patch grid is average-pooled to the student's;
- the ground truth, where the data has labels (VQA soft scores: the official VQA accuracy of each
  label against the human answers; NLVR2: cross-entropy). Unlabeled data (images and questions
  only, e.g. `frames:PATH`) trains on the first two alone.

The run directory holds `.distill/run.json` (the configuration and its fingerprint) and, while
training, `.distill/checkpoint.pt` (student, optimizer, schedule, step; written atomically every
`checkpoint_every` steps), so `resume=True` continues an interrupted run exactly: batches are a
function of (seed, epoch), not of the process. When training ends the directory becomes a
standard Hugging Face ViLT directory (config.json written last) with `distill_summary.json`.
"""

from __future__ import annotations

# The names written `x as x` are re-exports outside __all__ (as before the package split): the
# CLI, the pipeline and the tests import them from here.
from vilt_edge.distill.checkpoints import fingerprint as fingerprint
from vilt_edge.distill.checkpoints import prepare_out_dir as prepare_out_dir
from vilt_edge.distill.checkpoints import write_student as write_student
from vilt_edge.distill.data import _Examples as _Examples
from vilt_edge.distill.data import epoch_batches as epoch_batches
from vilt_edge.distill.loop import distill
from vilt_edge.distill.loop import evaluate as evaluate
from vilt_edge.distill.options import CHECKPOINT_FILE as CHECKPOINT_FILE
from vilt_edge.distill.options import DEFAULT_EPOCHS as DEFAULT_EPOCHS
from vilt_edge.distill.options import DEFAULT_LR as DEFAULT_LR
from vilt_edge.distill.options import RUN_FILE as RUN_FILE
from vilt_edge.distill.options import STATE_DIR as STATE_DIR
from vilt_edge.distill.options import SUMMARY_FILE as SUMMARY_FILE
from vilt_edge.distill.options import (
    DistillOptions,
    DistillResult,
    Progress,
    parse_layer_map,
    plan_layers,
)
from vilt_edge.distill.student import build_student
from vilt_edge.distill.workers import is_lead_worker as is_lead_worker

__all__ = [
    "DistillOptions",
    "DistillResult",
    "Progress",
    "build_student",
    "distill",
    "parse_layer_map",
    "plan_layers",
]
