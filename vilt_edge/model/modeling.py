"""An exact, deterministic, exportable ViLT built from transformers' own modules.

transformers' `ViltEmbeddings.visual_embed` keeps patches by sampling them with
`torch.multinomial` and loops over per-image shapes. At inference with `max_image_length=-1`
and unpadded images the sampling only permutes the patches, and a transformer whose image
tokens carry their own position embeddings is equivariant to that permutation, so the logits
do not depend on it. This module keeps every patch in raster order instead: same logits (to
float rounding), no sampling, no data-dependent Python loop, so both torch ONNX exporters
can trace it.

Images inside one batch must share one size (every patch valid); callers with mixed sizes
group them by size first, as `vilt_edge.runtime` does.

    from vilt_edge.model.modeling import ExactViltForQuestionAnswering
    model = ExactViltForQuestionAnswering.from_pretrained("path/to/hf-vilt-dir")
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import ViltConfig
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.models.vilt.modeling_vilt import (
    ViltEmbeddings,
    ViltForImagesAndTextClassification,
    ViltForQuestionAnswering,
    ViltModel,
)


class ExactViltEmbeddings(ViltEmbeddings):
    """`ViltEmbeddings` with a deterministic visual embedding: every patch, in raster order."""

    def patch_tokens(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """The patch projection as one matrix product: (batch, grid_h * grid_w, hidden) in
        raster order, and the grid.

        transformers runs a Conv2d whose stride equals its kernel, so its patches do not
        overlap and it is a linear layer over each flattened 3 x P x P patch. Written that way
        (Reshape, Transpose, MatMul) the exported graph gives ONNX Runtime's dynamic quantizer a
        MatMul it runs in INT8 (DynamicQuantizeMatMul); it would leave a Conv float, since its
        ConvInteger is four times slower than the float Conv (NOTES-cpu-speed.md, step 13).
        Rows past the last whole patch are dropped, as the Conv drops them.
        """
        projection = self.patch_embeddings.projection
        patch = projection.kernel_size[0]
        batch_size, channels, height, width = pixel_values.shape
        grid_h, grid_w = height // patch, width // patch
        pixels = pixel_values[:, :, : grid_h * patch, : grid_w * patch]
        pixels = pixels.to(dtype=projection.weight.dtype)
        pixels = pixels.reshape(batch_size, channels, grid_h, patch, grid_w, patch)
        pixels = pixels.permute(0, 2, 4, 1, 3, 5).reshape(
            batch_size, grid_h * grid_w, channels * patch * patch
        )
        weight = projection.weight.reshape(projection.out_channels, -1)
        return nn.functional.linear(pixels, weight, projection.bias), grid_h, grid_w

    def visual_embed(self, pixel_values, pixel_mask=None, max_image_length=-1):
        patch_tokens, grid_h, grid_w = self.patch_tokens(pixel_values)
        batch_size, hidden = patch_tokens.shape[0], patch_tokens.shape[2]
        trained_grid = self.config.image_size // self.config.patch_size
        spatial_pos = (
            self.position_embeddings[:, 1:, :]
            .transpose(1, 2)
            .reshape(1, hidden, trained_grid, trained_grid)
        )
        # Same interpolation transformers applies per image: bilinear, corners aligned.
        pos_embed = nn.functional.interpolate(
            spatial_pos, size=(grid_h, grid_w), mode="bilinear", align_corners=True
        )
        pos_embed = pos_embed.flatten(2).transpose(1, 2)  # (1, grid_h*grid_w, hidden)
        tokens = patch_tokens + pos_embed

        cls_tokens = self.cls_token.expand(batch_size, -1, -1) + self.position_embeddings[:, :1, :]
        tokens = torch.cat((cls_tokens, tokens), dim=1)
        tokens = self.dropout(tokens)
        token_mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        return tokens, token_mask, None

    def forward(self, *args, image_token_type_idx=1):
        """transformers' embeddings (same positional arguments), except that
        `image_token_type_idx` may also be one id per row (a LongTensor of shape (batch,)): an
        NLVR2 batch can then hold left images (1) and right images (2) of one size together,
        each with its own modality-type embedding."""
        if not torch.is_tensor(image_token_type_idx):
            return super().forward(*args, image_token_type_idx=image_token_type_idx)
        (
            input_ids,
            attention_mask,
            token_type_ids,
            pixel_values,
            pixel_mask,
            inputs_embeds,
            *rest,
        ) = args
        if rest and rest[0] is not None:  # image_embeds
            raise ValueError("per-row image_token_type_idx needs pixel_values, not image_embeds")
        text_embeds = self.text_embeddings(
            input_ids=input_ids, token_type_ids=token_type_ids, inputs_embeds=inputs_embeds
        )
        image_embeds, image_masks, _ = self.visual_embed(pixel_values, pixel_mask)
        text_embeds = text_embeds + self.token_type_embeddings(torch.zeros_like(attention_mask))
        # One lookup per row, broadcast over its patches: the same sums as transformers'
        # full_like lookup of one id for every patch.
        image_embeds = image_embeds + self.token_type_embeddings(image_token_type_idx)[:, None, :]
        embeddings = torch.cat([text_embeds, image_embeds], dim=1)
        masks = torch.cat([attention_mask, image_masks], dim=1)
        return embeddings, masks


class ExactViltModel(ViltModel):
    """`ViltModel` whose embeddings are `ExactViltEmbeddings` and whose mask is built inline.

    The additive mask is built here (not by transformers' mask utilities) so the graph stays
    plain tensor arithmetic for export; eager attention adds it to the scores exactly as the
    transformers model does.
    """

    def __init__(self, config: ViltConfig, add_pooling_layer: bool = True):
        super().__init__(config, add_pooling_layer=add_pooling_layer)
        self.embeddings = ExactViltEmbeddings(config)
        # When True (set by `ExportWrapper`), the last layer computes only the [CLS] row the
        # pooler reads: see `first_token_layer`. Hidden states or attentions turn it off.
        self.pooled_only = False
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_mask: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        image_token_type_idx: int | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling:
        if input_ids is None or pixel_values is None:
            raise ValueError("ExactViltModel needs input_ids and pixel_values")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embedding_output, mask = self.embeddings(
            input_ids,
            attention_mask,
            token_type_ids,
            pixel_values,
            pixel_mask,
            None,
            None,
            image_token_type_idx=image_token_type_idx,
        )
        dtype = embedding_output.dtype
        additive_mask = (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        if (
            self.pooled_only
            and self.pooler is not None
            and not (output_attentions or output_hidden_states)
        ):
            hidden = embedding_output
            for layer in self.encoder.layer[:-1]:
                hidden = layer(hidden, additive_mask)[0]
            hidden = first_token_layer(self.encoder.layer[-1], hidden, additive_mask)
            encoder_outputs = BaseModelOutputWithPooling(last_hidden_state=hidden)
        else:
            encoder_outputs = self.encoder(
                embedding_output,
                attention_mask=additive_mask,
                output_attentions=bool(output_attentions),
                output_hidden_states=bool(output_hidden_states),
                return_dict=True,
            )
        sequence_output = self.layernorm(encoder_outputs.last_hidden_state)
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        return BaseModelOutputWithPooling(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=encoder_outputs.hidden_states,
            attentions=encoder_outputs.attentions,
        )


def first_token_layer(layer: nn.Module, hidden: torch.Tensor, additive_mask: torch.Tensor):
    """One `ViltLayer` for the first ([CLS]) row only: (batch, L, H) -> (batch, 1, H).

    Every row of a transformer layer's output depends on all rows only through the keys and
    values of self-attention; the query, the attention output, both residuals, the LayerNorms
    and the MLP are row by row. So when only the pooler's [CLS] row is read after the last
    layer, that layer needs keys and values for all L rows but a query, an output projection
    and an MLP for one row: the same arithmetic for that row as `ViltLayer.forward`, with the
    last layer's Q, output and MLP GEMMs about L times smaller (a twelfth of ViLT-B/32's work).
    """
    attention = layer.attention.attention
    heads, size = attention.num_attention_heads, attention.attention_head_size
    batch = hidden.shape[0]
    normed = layer.layernorm_before(hidden)
    query = attention.query(normed[:, :1]).view(batch, 1, heads, size).transpose(1, 2)
    key = attention.key(normed).view(batch, -1, heads, size).transpose(1, 2)
    value = attention.value(normed).view(batch, -1, heads, size).transpose(1, 2)
    if isinstance(attention, SdpaViltSelfAttention):
        context = nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=additive_mask
        )
    else:  # transformers' eager arithmetic, as in ViltSelfAttention.forward
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(size)
        context = torch.matmul(torch.softmax(scores + additive_mask, dim=-1), value)
    context = context.transpose(1, 2).reshape(batch, 1, heads * size)
    first = layer.attention.output(context, None) + hidden[:, :1]
    return layer.output(layer.intermediate(layer.layernorm_after(first)), first)


class ExactViltForQuestionAnswering(ViltForQuestionAnswering):
    """VQA head over `ExactViltModel`; weights and config are those of transformers' class."""

    def __init__(self, config: ViltConfig):
        super().__init__(config)
        self.vilt = ExactViltModel(config)
        self.post_init()


class ExactViltForImagesAndTextClassification(ViltForImagesAndTextClassification):
    """NLVR2 head over `ExactViltModel`.

    `pixel_values` is (batch, num_images, 3, H, W) as in transformers, or a sequence of
    `num_images` tensors (batch, 3, H_i, W_i), one per image position, each at its own size:
    what transformers computes for a pair of different sizes, where its processor pads both to
    one size and the pixel mask limits each image's patches and position grid to its own area.
    Each image is encoded in its own pass (modality type i + 1) and the head reads the pooled
    outputs side by side, as transformers does.
    """

    def __init__(self, config: ViltConfig):
        super().__init__(config)
        self.vilt = ExactViltModel(config)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, **kwargs):
        if not isinstance(pixel_values, (list, tuple)):
            return super().forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                pixel_values=pixel_values,
                **kwargs,
            )
        if len(pixel_values) != self.config.num_images:
            raise ValueError(
                f"got {len(pixel_values)} images per example; the model takes "
                f"{self.config.num_images}"
            )
        pooled = [
            self.vilt(
                input_ids,
                attention_mask=attention_mask,
                pixel_values=images,
                image_token_type_idx=index + 1,
            ).pooler_output
            for index, images in enumerate(pixel_values)
        ]
        return SequenceClassifierOutput(logits=self.classifier(torch.cat(pooled, dim=-1)))


EXACT_CLASS_FOR_TASK = {
    "vqa": ExactViltForQuestionAnswering,
    "nlvr2": ExactViltForImagesAndTextClassification,
}


class ExportWrapper(nn.Module):
    """Plain-tensor signature for export: (input_ids, attention_mask, pixel_values) -> logits.

    token_type_ids are always zero in ViLT's text embeddings, so they are not an input. The
    last layer runs for the [CLS] row only (`first_token_layer`): same logits, less work.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, pixel_values):
        vilt = getattr(self.model, "vilt", None)
        exact = isinstance(vilt, ExactViltModel)
        if exact:  # the logits read only the pooled [CLS] row: see `first_token_layer`
            before, vilt.pooled_only = vilt.pooled_only, True
        try:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values
            ).logits
        finally:
            if exact:
                vilt.pooled_only = before


class PooledEncoderWrapper(nn.Module):
    """The NLVR2 bundle's encoder: (input_ids, attention_mask, pixel_values,
    image_token_type_ids) -> the pooled [CLS] vector of each row, one image per row.

    transformers encodes each image of a pair in its own pass, so the encoder is exported once
    for one image of any size; `image_token_type_ids` (1 for the left image, 2 for the right;
    one per row, so a batch may mix them) picks the modality-type embedding. The pair head
    (`ExactViltForImagesAndTextClassification.classifier`) is a graph of its own over the two
    pooled vectors side by side. The last layer runs for the [CLS] row only.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, pixel_values, image_token_type_ids):
        vilt = self.model.vilt
        before, vilt.pooled_only = vilt.pooled_only, True
        try:
            return vilt(
                input_ids,
                attention_mask=attention_mask,
                pixel_values=pixel_values,
                image_token_type_idx=image_token_type_ids,
            ).pooler_output
        finally:
            vilt.pooled_only = before


class SdpaViltSelfAttention(nn.Module):
    """ViLT self-attention through `torch.nn.functional.scaled_dot_product_attention`.

    Same weights and the same arithmetic as transformers' `ViltSelfAttention` (softmax of
    Q·K^T / sqrt(d) plus the additive mask, times V), but one fused kernel on GPUs (flash or
    memory-efficient attention in FP16) instead of two matmuls and a softmax. Used by the
    torch-cuda runtime; eval only (no attention dropout, no attention probabilities out).
    """

    def __init__(self, original: nn.Module):
        super().__init__()
        self.query, self.key, self.value = original.query, original.key, original.value
        self.num_attention_heads = original.num_attention_heads
        self.attention_head_size = original.attention_head_size

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        if output_attentions:
            raise ValueError("SdpaViltSelfAttention does not return attention probabilities")
        batch, length = hidden_states.shape[:2]
        shape = (batch, length, self.num_attention_heads, self.attention_head_size)
        query = self.query(hidden_states).view(shape).transpose(1, 2)
        key = self.key(hidden_states).view(shape).transpose(1, 2)
        value = self.value(hidden_states).view(shape).transpose(1, 2)
        context = nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask
        )
        return (context.transpose(1, 2).reshape(batch, length, -1),)


def use_sdpa_attention(model: nn.Module) -> int:
    """Swap every ViLT self-attention in `model` for `SdpaViltSelfAttention`; returns how many."""
    from transformers.models.vilt.modeling_vilt import ViltSelfAttention

    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ViltSelfAttention):
                setattr(module, name, SdpaViltSelfAttention(child))
                swapped += 1
    return swapped
