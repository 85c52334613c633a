"""Write llama-architecture GGUF files with random weights.

Random weights cost llama.cpp exactly what trained ones of the same shape cost, so a
synthetic file shaped like TinyLlama-1.1B benchmarks like the real one, and a 2-layer,
64-wide file (0.5 MB) exercises the whole engine in milliseconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CHATML_TEMPLATE",
    "LLAMA2_7B_SHAPE",
    "QWEN25_TOOLS_TEMPLATE",
    "THINKING_TEMPLATE",
    "TINYLLAMA_SHAPE",
    "TINY_SHAPE",
    "ModelShape",
    "quantize_gguf",
    "write_synthetic_gguf",
    "write_tiny_gguf",
]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen 2.5 Instruct's chat template (Hermes-style tool calls in <tool_call> tags), as its
# tokenizer_config.json ships it: tests write it into tiny models to exercise tool calling.
_QWEN_TOOLS_HEAD = (
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user "
    "query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:"
    "\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function "
    "name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    "{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n"
    "</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba "
    "Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first)"
    " or (message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + "
    "'\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n"
    "{%- endfor %}\n"
)
QWEN25_TOOLS_TEMPLATE = (
    _QWEN_TOOLS_HEAD
    + "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)
# Qwen3-Thinking-2507 style: the generation prompt opens <think> itself, and (like Qwen3's
# hybrid template) enable_thinking=false writes an empty thinking block instead.
THINKING_TEMPLATE = (
    _QWEN_TOOLS_HEAD
    + "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n"
    "    {%- if enable_thinking is defined and enable_thinking is false %}\n"
    "        {{- '<think>\\n\\n</think>\\n\\n' }}\n    {%- else %}\n"
    "        {{- '<think>\\n' }}\n    {%- endif %}\n{%- endif %}\n"
)

# Printable pieces after the 3 control and 256 byte tokens; "▁" is SentencePiece's space.
_WORD_PIECES = [
    "▁", "▁the", "▁a", "▁of", "▁and", "▁to", "▁in", "▁is", "▁it", "▁that",
    "e", "t", "a", "o", "i", "n", "s", "r", "h", "l", "d", "c", "u", "m",
    "f", "p", "g", "w", "y", "b", "v", "k", ".", ",", "!", "?", ":", ";",
    "▁LocalLoom", "▁model", "▁text", "▁summary", "▁question", "▁local", "▁hello",
    "▁world", "▁yes", "▁no", "▁one", "▁two", "▁three", "▁data", "▁cat", "▁dog",
    "er", "in", "on", "an", "re", "at", "en", "es", "or", "ed",
]


@dataclass(frozen=True)
class ModelShape:
    """Hyperparameters of a llama-architecture model."""

    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx: int = 2048
    name: str = "synthetic"


TINY_SHAPE = ModelShape(n_vocab=323, n_embd=64, n_layer=2, n_head=4, n_head_kv=4, n_ff=128,
                        n_ctx=2048, name="tiny-test")
TINYLLAMA_SHAPE = ModelShape(n_vocab=32000, n_embd=2048, n_layer=22, n_head=32, n_head_kv=4,
                             n_ff=5632, n_ctx=2048, name="tinyllama-1.1b-shape")
LLAMA2_7B_SHAPE = ModelShape(n_vocab=32000, n_embd=4096, n_layer=32, n_head=32, n_head_kv=32,
                             n_ff=11008, n_ctx=4096, name="llama-2-7b-shape")


def _vocab(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """SentencePiece vocabulary with byte fallback: any text tokenizes."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [2, 3, 3]  # UNKNOWN, CONTROL, CONTROL
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256  # BYTE
    extra = n_vocab - len(tokens)
    pieces = list(_WORD_PIECES)
    i = 0
    while len(pieces) < extra:  # big vocabularies: unique filler pieces
        pieces.append(f"▁w{i}")
        i += 1
    tokens += pieces[:extra]
    types += [1] * extra  # NORMAL
    scores = [0.0] * 259 + [-float(i) for i in range(extra)]
    return tokens, scores, types


def _tensor_shapes(s: ModelShape) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names and numpy shapes (numpy order is ggml's reversed)."""
    head_dim = s.n_embd // s.n_head
    kv = head_dim * s.n_head_kv
    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (s.n_vocab, s.n_embd))]
    for i in range(s.n_layer):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", (s.n_embd,)),
            (p + "attn_q.weight", (s.n_embd, s.n_embd)),
            (p + "attn_k.weight", (kv, s.n_embd)),
            (p + "attn_v.weight", (kv, s.n_embd)),
            (p + "attn_output.weight", (s.n_embd, s.n_embd)),
            (p + "ffn_norm.weight", (s.n_embd,)),
            (p + "ffn_gate.weight", (s.n_ff, s.n_embd)),
            (p + "ffn_up.weight", (s.n_ff, s.n_embd)),
            (p + "ffn_down.weight", (s.n_embd, s.n_ff)),
        ]
    out += [("output_norm.weight", (s.n_embd,)), ("output.weight", (s.n_vocab, s.n_embd))]
    return out


def _random_tensor(rng: np.random.Generator, shape: tuple[int, ...], dtype: type,
                   block: np.ndarray) -> np.ndarray:
    if len(shape) == 1:
        return np.ones(shape, dtype=np.float32)  # norms: unit weights keep activations sane
    size = int(np.prod(shape))
    reps = -(-size // block.size)
    # Tiling one random block is far faster than drawing gigabytes of numbers and
    # costs llama.cpp the same to run.
    flat = np.tile(block, reps)[:size] if reps > 1 else rng.standard_normal(size) * 0.05
    return flat.reshape(shape).astype(dtype)


def write_synthetic_gguf(
    path: str | os.PathLike[str],
    shape: ModelShape = TINY_SHAPE,
    *,
    seed: int = 0,
    chat_template: str | None = CHATML_TEMPLATE,
    float_type: str = "f32",
    pooling_type: int | None = None,
) -> Path:
    """Write a llama-architecture GGUF with random weights; returns the path.

    `float_type` is "f32" or "f16" (quantize afterwards with :func:`quantize_gguf`).
    `pooling_type` (llama.cpp's: 1 mean, 2 cls, 3 last) makes an embedding model.
    """
    import gguf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype: type = np.float16 if float_type == "f16" else np.float32
    rng = np.random.default_rng(seed)
    block = (rng.standard_normal(1 << 20) * 0.05).astype(np.float32)
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name(shape.name)
    w.add_context_length(shape.n_ctx)
    w.add_embedding_length(shape.n_embd)
    w.add_block_count(shape.n_layer)
    w.add_feed_forward_length(shape.n_ff)
    w.add_head_count(shape.n_head)
    w.add_head_count_kv(shape.n_head_kv)
    w.add_rope_dimension_count(shape.n_embd // shape.n_head)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(1 if float_type == "f16" else 0)
    if pooling_type is not None:
        w.add_pooling_type(gguf.PoolingType(pooling_type))
    tokens, scores, types = _vocab(shape.n_vocab)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    for name, tshape in _tensor_shapes(shape):
        w.add_tensor(name, _random_tensor(rng, tshape, dtype, block))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_tiny_gguf(path: str | os.PathLike[str], *, seed: int = 0,
                    chat_template: str | None = CHATML_TEMPLATE,
                    pooling_type: int | None = None) -> Path:
    """The 0.5 MB test model: 2 layers, 64 wide, 323-token byte-fallback vocabulary
    (an embedding model with ``pooling_type``)."""
    return write_synthetic_gguf(path, TINY_SHAPE, seed=seed, chat_template=chat_template,
                                pooling_type=pooling_type)


def quantize_gguf(src: str | os.PathLike[str], dst: str | os.PathLike[str],
                  ftype: str = "Q4_0", n_threads: int = 0) -> Path:
    """Quantize with llama.cpp's own quantizer (what `llama-quantize` runs)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.nthread = n_threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize failed with code {rc}")
    return Path(dst)
