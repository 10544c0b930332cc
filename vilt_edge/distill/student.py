"""The student: the teacher's own architecture with fewer encoder layers."""

from __future__ import annotations

import re


def build_student(teacher, layer_map: list[int]):
    """The teacher's class and config with len(layer_map) layers, initialised from the teacher."""
    import copy

    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layer_map)
    student = type(teacher)(config)
    pattern = re.compile(r"^vilt\.encoder\.layer\.(\d+)\.(.+)$")
    source_of = {teacher_index: i for i, teacher_index in enumerate(layer_map)}
    state = {}
    for key, value in teacher.state_dict().items():
        match = pattern.match(key)
        if match is None:
            state[key] = value.clone()
        elif int(match[1]) in source_of:
            state[f"vilt.encoder.layer.{source_of[int(match[1])]}.{match[2]}"] = value.clone()
    student.load_state_dict(state, strict=True)
    return student
