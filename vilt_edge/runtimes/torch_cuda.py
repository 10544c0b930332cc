"""The torch-cuda runner: the exact ViLT in FP16 on a CUDA GPU, replayed from CUDA graphs.

For GPUs without TensorRT. The bundle (`vilt-edge compile BUNDLE --target cuda-gpu`) holds the
model as a Hugging Face ViLT directory (`config.json`, `model.safetensors`); the runner builds
vilt-edge's exact ViLT from it (no sampling, no data-dependent Python, mask built on the GPU),
swaps attention for `scaled_dot_product_attention`, casts to FP16 and, per input shape, captures
one CUDA graph with static input and output buffers on first use and replays it after that: a
batch-1 call is then one graph launch plus two small copies. Optional `torch.compile` before
capture (`settings["compile"]`).

Settings (manifest `runtime_settings`): `device` ("cuda", or "cpu" to check the bundle on a
machine without a GPU: FP32, no graphs), `dtype` ("float16" | "bfloat16" | "float32"),
`cuda_graphs` (default true), `compile` (a torch.compile mode or null).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vilt_edge.errors import BundleError, InputError
from vilt_edge.runtimes.base import RunnerBase

OUTPUT = "logits"
INPUTS = ("input_ids", "attention_mask", "pixel_values")
# NLVR2 bundles run the encoder of one image per row (its pooled vector); the runtime applies
# the pair head.
PAIR_INPUTS = INPUTS + ("image_token_type_ids",)


class TorchCudaRunner(RunnerBase):
    name = "torch-cuda"

    def __init__(
        self,
        model_path: str | os.PathLike,
        threads: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        settings = dict(settings or {})
        try:
            import torch
        except ImportError:
            raise BundleError(
                "this bundle runs on torch-cuda, which needs torch (pip install torch)"
            ) from None
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise BundleError(f"{self.model_path}: model file not found")
        device = settings.get("device", "cuda")
        if device == "cuda" and not torch.cuda.is_available():
            raise BundleError("this bundle runs on a CUDA GPU (torch-cuda); none is visible here")
        self.device = torch.device(device)
        dtype_name = settings.get("dtype", "float16" if device == "cuda" else "float32")
        self.dtype = getattr(torch, dtype_name)
        self.use_graphs = bool(settings.get("cuda_graphs", True)) and device == "cuda"
        self.compile_mode = settings.get("compile")
        self.threads = threads
        if threads is not None and device == "cpu":
            torch.set_num_threads(threads)
        self.input_names = list(INPUTS)
        self.last_inference_time_ms: float | None = None
        self._torch = torch
        self._exported = False
        self._pair = False
        self._model = self._build(torch)
        self._graphs: dict[tuple, tuple[Any, dict[str, Any], Any]] = {}

    def _build(self, torch):
        if self.model_path.suffix == ".ep":  # compiled by torch-tensorrt (`--compiler`)
            return self._load_exported(torch)
        from safetensors.torch import load_file
        from transformers import ViltConfig

        from vilt_edge.model.modeling import (
            EXACT_CLASS_FOR_TASK,
            PooledEncoderWrapper,
            use_sdpa_attention,
        )

        directory = self.model_path.parent
        try:
            config = ViltConfig.from_pretrained(directory)
            task = "nlvr2" if getattr(config, "num_images", 1) == 2 else "vqa"
            model = EXACT_CLASS_FOR_TASK[task](config)
            missing, unexpected = model.load_state_dict(load_file(self.model_path), strict=False)
        except Exception as error:  # noqa: BLE001 - config and weight errors share no base
            raise BundleError(f"{self.model_path}: cannot build the model ({error})") from None
        if [m for m in missing if "position_ids" not in m] or unexpected:
            raise BundleError(f"{self.model_path}: weights do not match config.json")
        use_sdpa_attention(model)
        model = model.eval().to(device=self.device, dtype=self.dtype)
        if task == "nlvr2":  # one image per row -> its pooled vector (the runtime runs the head)
            model, self._pair = PooledEncoderWrapper(model), True
            self.input_names = list(PAIR_INPUTS)
        if self.compile_mode:
            model = torch.compile(model, mode=self.compile_mode, dynamic=False)
        return model

    def _load_exported(self, torch):
        try:
            import torch_tensorrt  # noqa: F401 - registers the TensorRT engine ops
        except ImportError:
            raise BundleError(
                "this bundle was compiled by torch-tensorrt, which is not installed here"
            ) from None
        try:
            program = torch.export.load(str(self.model_path))
            module = program.module()
        except Exception as error:  # noqa: BLE001 - deserialization errors share no base
            raise BundleError(f"{self.model_path}: cannot load ({type(error).__name__})") from None
        self._exported = True
        self.use_graphs = False  # TensorRT engines run their own launches
        if len(program.graph_signature.user_inputs) == len(PAIR_INPUTS):  # an NLVR2 encoder
            self._pair = True
            self.input_names = list(PAIR_INPUTS)
        return module

    def _forward(self, inputs: dict[str, Any]):
        if self._exported or self._pair:  # the wrappers' positional signature
            return self._model(*(inputs[name] for name in self.input_names))
        return self._model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=inputs["pixel_values"],
        ).logits

    def _to_device(self, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
        torch = self._torch
        tensors = {
            "input_ids": torch.as_tensor(feeds["input_ids"], dtype=torch.long),
            "attention_mask": torch.as_tensor(feeds["attention_mask"], dtype=torch.long),
            "pixel_values": torch.as_tensor(feeds["pixel_values"]).to(self.dtype),
        }
        if self._pair:
            tensors["image_token_type_ids"] = torch.as_tensor(
                feeds["image_token_type_ids"], dtype=torch.long
            )
        return tensors

    def _capture(self, key: tuple, inputs: dict[str, Any]):
        """One CUDA graph for this input shape: warm up on a side stream, capture, keep the
        static buffers (the documented torch.cuda.graphs recipe)."""
        torch = self._torch
        static = {name: tensor.to(self.device) for name, tensor in inputs.items()}
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):
                self._forward(static)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            output = self._forward(static)
        self._graphs[key] = (graph, static, output)
        return self._graphs[key]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("this runner is closed")
        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise BundleError(f"the model wants input(s) {', '.join(missing)}")
        torch = self._torch
        inputs = self._to_device(feeds)
        if inputs["input_ids"].shape != inputs["attention_mask"].shape:
            raise InputError("input_ids and attention_mask must have the same shape")
        started = time.perf_counter()
        if self.use_graphs:
            key = tuple((name, tuple(t.shape)) for name, t in inputs.items())
            graph, static, output = self._graphs.get(key) or self._capture(key, inputs)
            for name, tensor in inputs.items():
                static[name].copy_(tensor, non_blocking=True)
            graph.replay()
            logits = output.float().cpu().numpy()
        else:
            with torch.inference_mode():
                logits = self._forward({k: v.to(self.device) for k, v in inputs.items()})
            logits = logits.float().cpu().numpy()
        self.last_inference_time_ms = (time.perf_counter() - started) * 1000
        return logits

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        gpu = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None
        return {
            "runtime": self.name,
            "version": torch.__version__,
            "providers": [f"{self.device.type}:{str(self.dtype).removeprefix('torch.')}"]
            + (["cuda-graphs"] if self.use_graphs else []),
            "threads": self.threads,
            "gpu": gpu,
            "model": str(self.model_path),
        }

    def close(self) -> None:
        self._graphs.clear()
        self._model = None
