"""Memory model of a gcpo-lite run: bytes per component, for a given generation batch,
training micro-batch and logits chunk size.

A step has two phases that never overlap, so the peak is

    runtime + static + max(generation, training) + allocator slack (a fraction of the larger phase)

  static      4-bit base weights with their quant state, unquantized embeddings / lm_head / norms,
              the dequantized copy of the base layers the plan has room for, LoRA parameters and
              optimizer state (alive the whole run)
  generation  KV cache for g sequences of prompt + completion tokens, the prefill's logits or
              per-layer transient, the sampler's (g, V) working set, a dequantized weight tile
  training    saved activations of m sequences (all layers, or layer inputs with gradient
              checkpointing) + LoRA gradients + the larger of the log-prob working set (one chunk
              of (chunk, V) logits) and one layer's backward (recomputed tensors + gradients)

Counts follow the modules the trainer really runs (transformers Llama/Qwen2 blocks, peft LoRA
with fp32 adapters, bitsandbytes Linear4bit, gcpo_lite.kernels log-probs); the coefficients that
are not exact counts (transients, allocator slack) are calibrated by benchmarks/calibrate_memory.py
and the results are in docs/BENCHMARKS.md. No torch import here: `gcpo-lite plan` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gcpo_lite.memory.architectures import Architecture
from gcpo_lite.models.optimizers import OPTIMIZERS  # adamw | adamw_8bit | paged_adamw_8bit

GiB = 1024**3
MiB = 1024**2
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

NF4_BLOCK = 64  # bitsandbytes 4-bit blocksize: one absmax per 64 weights
NESTED_BLOCK = 256  # double quant: absmax quantized to 8 bit in blocks of 256
BNB_8BIT_BLOCK = 256  # 8-bit optimizer state blocksize (bitsandbytes 0.50 blockwise; measured)
BNB_8BIT_MIN_NUMEL = 4096  # smaller tensors keep 32-bit state

CUDA_RUNTIME_BYTES = (
    512 * MiB
)  # CUDA context + cuBLAS workspaces + kernel images (not in the torch allocator)
CPU_RUNTIME_BYTES = 480 * MiB  # python + torch + transformers + peft + bitsandbytes resident after import
# fraction of the larger phase lost to caching / fragmentation: CUDA's caching allocator rounds and splits
# blocks. On CPU, gcpo-lite's caching allocator (memory/cpu_allocator.py) keeps freed large blocks for reuse
# up to a cap, and the trainer sets that cap to this slack (1x the phase; a 0.5B-shaped update filled 256 of
# its 254 MiB), so the term is a bound the run enforces. With glibc's heap (memory.cpu_allocator=system)
# fragmentation is measured at 1x (the embedded demo) to 3.4x (the 0.5B-shaped update) the phase.
ALLOCATOR_SLACK = {"cuda": 0.10, "cpu": 1.0, "cpu_system": 2.5}


@dataclass(frozen=True)
class RunShape:
    """Everything besides the architecture and the three chosen sizes that decides memory."""

    prompt_tokens: int = 512  # longest prompt (data.max_prompt_length)
    completion_tokens: int = 256  # gcpo.max_completion_length
    lora_r: int = 16  # adapter rank
    lora_targets: tuple = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    lora_dropout: float = 0.0  # > 0 keeps a dropout mask and output per adapter input
    quantize: bool = True  # 4-bit base linear layers
    double_quant: bool = True  # bnb_4bit_use_double_quant
    compute_dtype: str = "bfloat16"  # bfloat16 | float16 | float32 (resolved, not auto)
    gradient_checkpointing: bool = True
    optimizer: str = "adamw"  # adamw (fp32 states) | paged_adamw_8bit
    top_p: float = 1.0  # < 1 adds a sort of the (g, V) logits to sampling
    device: str = "cuda"  # cuda | cpu
    grad_accumulation: bool = True  # OOM backoff keeps a second gradient buffer while accumulating
    prefill_all_logits: bool = (
        False  # prefill returns (g, P, V) logits (rollout.sample_completions asks logits_to_keep=1)
    )
    logprob_backend: str = (
        "reference"  # gcpo_lite.kernels backend: native (compiled ops) | reference (PyTorch chunked)
    )
    cpu_allocator: str = "caching"  # CPU runs: caching (memory/cpu_allocator.py) | system (glibc's heap)
    dequantized_layers: int = (
        0  # leading decoder layers with a resident dequantized base (dequantized_base.py)
    )
    merged_lora_sampling: bool = False  # rollout.merge_lora: a merged copy of those layers while sampling
    share_prompts: bool = False  # train.share_prompts: each row holds a copy of its prompt's keys and values

    @property
    def bytes(self) -> int:
        return DTYPE_BYTES[self.compute_dtype]

    @property
    def seq_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Estimate:
    """Predicted bytes per component, grouped by phase; `peak_bytes` is what must fit the budget."""

    components: dict = field(default_factory=dict)  # name -> bytes
    phase_totals: dict = field(default_factory=dict)  # static | generation | training -> bytes
    peak_bytes: int = 0  # runtime + static + max(generation, training) + allocator_overhead
    peak_phase: str = ""  # generation | training


# ---------------------------------------------------------------- static: weights and LoRA state


def quantized_linear_bytes(numel: int, double_quant: bool) -> tuple[int, int]:
    """(packed 4-bit data, quant state) bytes of one bnb Linear4bit weight with `numel` entries."""
    data = (numel + 1) // 2  # two 4-bit codes per byte
    blocks = -(-numel // NF4_BLOCK)
    if double_quant:  # uint8 absmax per block + fp32 absmax per 256 blocks + 256-entry fp32 code
        state = blocks + 4 * -(-blocks // NESTED_BLOCK) + 4 * 256
    else:  # fp32 absmax per block
        state = 4 * blocks
    return data, state + 16 * 4  # + the 16-entry NF4 code


def weight_bytes(arch: Architecture, shape: RunShape) -> dict[str, int]:
    """Base model weights: {'weights_4bit': packed data + quant state, 'weights_unquantized': embeddings,
    untied lm_head, norms, biases (compute dtype)}. Without quantization everything is in the second."""
    b = shape.bytes
    L, H = arch.num_layers, arch.hidden_size
    linear_q, linear_full = 0, 0
    for fin, fout in arch.linear_shapes().values():
        if shape.quantize:
            data, state = quantized_linear_bytes(fin * fout, shape.double_quant)
            linear_q += L * (data + state)
        else:
            linear_full += L * fin * fout * b
    embed = arch.vocab_size * H * b
    head = 0 if arch.tie_word_embeddings else arch.vocab_size * H * b
    norms = (2 * L + 1) * H * b
    bias = L * (arch.q_dim + 2 * arch.kv_dim) * b if arch.qkv_bias else 0
    dequantized = 0
    if shape.quantize:  # the resident compute-dtype copy of the first k layers' 4-bit projections
        k = min(shape.dequantized_layers, L)
        dequantized = k * sum(fin * fout for fin, fout in arch.linear_shapes().values()) * b
    return {
        "weights_4bit": linear_q,
        "weights_unquantized": embed + head + norms + bias + linear_full,
        "weights_dequantized": dequantized,
    }


def lora_numels(arch: Architecture, shape: RunShape) -> list[int]:
    """Element counts of every LoRA tensor (A: (r, in), B: (out, r)) over all layers."""
    out = []
    for name, (fin, fout) in arch.linear_shapes().items():
        if name in shape.lora_targets:
            out += [shape.lora_r * fin, fout * shape.lora_r] * arch.num_layers
    return out


def lora_state_bytes(arch: Architecture, shape: RunShape) -> dict[str, int]:
    """LoRA parameters (fp32: peft upcasts adapters) and optimizer state."""
    numels = lora_numels(arch, shape)
    params = 4 * sum(numels)
    if shape.optimizer == "adamw":
        opt = 8 * sum(numels)  # exp_avg + exp_avg_sq, fp32
    elif shape.optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        opt = 0
        for n in numels:  # two uint8 states + an fp32 absmax per 256-block each, small tensors stay fp32
            opt += 2 * (n + 4 * -(-n // BNB_8BIT_BLOCK)) if n >= BNB_8BIT_MIN_NUMEL else 8 * n
    else:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {shape.optimizer!r}")
    return {"lora_params": params, "optimizer_state": opt}


# ---------------------------------------------------------------- generation phase


def kv_cache_bytes(arch: Architecture, shape: RunShape, gen_batch: int, tokens: int | None = None) -> int:
    """layers x 2 (K, V) x kv_heads x head_dim x tokens x bytes, for gen_batch sequences."""
    tokens = shape.seq_tokens if tokens is None else tokens
    return arch.num_layers * 2 * arch.kv_dim * tokens * gen_batch * shape.bytes


def layer_transient_bytes(arch: Architecture, shape: RunShape, tokens: int) -> int:
    """No-grad forward of one decoder layer over `tokens` (batch x length): the live tensors at its
    widest point (the MLP: residual + normed input + gate, up, act(gate), gate*up) plus attention."""
    b = shape.bytes
    H, I = arch.hidden_size, arch.intermediate_size
    mlp = (2 * H + 4 * I) * b + 4 * H  # 4 * H: the RMSNorm's fp32 upcast
    attn = (2 * H + 3 * arch.q_dim + 2 * arch.kv_dim) * b
    return tokens * max(mlp, attn)


def dequant_tile_bytes(arch: Architecture, shape: RunShape) -> int:
    """bnb dequantizes a 4-bit weight to the compute dtype for matmuls with more than one row (not in the
    layers that keep a dequantized copy)."""
    if not shape.quantize or shape.dequantized_layers >= arch.num_layers:
        return 0
    return max(i * o for i, o in arch.linear_shapes().values()) * shape.bytes


def sampling_bytes(arch: Architecture, shape: RunShape, gen_batch: int) -> int:
    """Per decode step (rollout.sample_completions): last-position logits (g, V) in compute dtype, their
    fp32 copy, temperature-scaled scores, log-softmax, probs, and exp / entr for the entropy metric;
    top_p < 1 adds a sort (values fp32 + int64 indices) and a cumsum."""
    per_row = arch.vocab_size * (shape.bytes + 6 * 4)
    if shape.top_p < 1.0:
        per_row += arch.vocab_size * (4 + 8 + 4 + 1)
    return gen_batch * per_row


def generation_bytes(arch: Architecture, shape: RunShape, gen_batch: int) -> dict[str, int]:
    """Generation-phase components for gen_batch sequences per generate call.

    The peak is at the last decode step (full KV cache) or at prefill (the full KV cache too, which the
    sampler allocates for the whole rollout, plus the prompt-length layer transient), whichever is larger;
    the components returned describe that moment. With
    prefill_all_logits the prefill also holds (g, P, V) logits in compute dtype."""
    P, L = shape.prompt_tokens, arch.num_layers
    full_kv = kv_cache_bytes(arch, shape, gen_batch)
    kv_growth = full_kv // L  # dropping finished rows copies the cache a layer at a time: one layer's overlap
    sample = sampling_bytes(arch, shape, gen_batch) + dequant_tile_bytes(arch, shape)
    merged = weight_bytes(arch, shape)["weights_dequantized"] if shape.merged_lora_sampling else 0
    decode = {"kv_cache": full_kv + kv_growth, "generation_working": sample, "weights_merged": merged}
    prefill_logits = gen_batch * (P if shape.prefill_all_logits else 1) * arch.vocab_size * shape.bytes
    prefill = {
        "kv_cache": full_kv,  # the sampler's cache is allocated for the whole rollout at prefill (kv_cache.py)
        "generation_working": max(layer_transient_bytes(arch, shape, gen_batch * P), prefill_logits + sample),
        "weights_merged": merged,
    }
    return max(decode, prefill, key=lambda d: sum(d.values()))


# ---------------------------------------------------------------- training phase


def layer_activation_bytes_per_token(arch: Architecture, shape: RunShape) -> int:
    """Bytes autograd saves per token in one decoder layer, counted with saved_tensors_hooks on the
    modules the trainer runs (transformers Qwen2/Llama block, peft LoRA over frozen bnb Linear4bit,
    SDPA). The frozen 4-bit matmuls and norm weights save no activations; the LoRA adapters' tensors
    are lora_activation_bytes_per_token."""
    b, T = shape.bytes, shape.seq_tokens
    H, I, q = arch.hidden_size, arch.intermediate_size, arch.q_dim
    norms = 2 * (4 * H + 4)  # RMSNorm: fp32 input (or its fp32 copy) + rsqrt, before attention and MLP
    mask = T * b  # the (B, 1, T, T) padding mask SDPA gets, materialized per layer
    sdpa = (2 * q + 2 * q) * b + 4 * arch.num_heads  # q_rot, repeat_kv'd k and v, output; logsumexp
    mlp = 3 * I * b  # gate, up, silu(gate)
    return norms + mask + sdpa + mlp + lora_activation_bytes_per_token(arch, shape)


def lora_input_widths(arch: Architecture) -> dict[str, int]:
    """The input width of each projection a LoRA adapter can wrap."""
    H, I = arch.hidden_size, arch.intermediate_size
    return {
        "q_proj": H,
        "k_proj": H,
        "v_proj": H,
        "o_proj": arch.q_dim,
        "gate_proj": H,
        "up_proj": H,
        "down_proj": I,
    }


def lora_activation_bytes_per_token(arch: Architecture, shape: RunShape) -> int:
    """What the LoRA adapters of one layer save per token: each A output (fp32, saved by B), and each A
    matmul's input, which peft first casts to the adapters' fp32 when the compute dtype is 16-bit (in fp32
    the adapters read the block's own tensors); with dropout, its output and mask per adapter input."""
    t = set(shape.lora_targets)
    H, I = arch.hidden_size, arch.intermediate_size
    widths = [w for name, w in lora_input_widths(arch).items() if name in t]
    saved = 4 * shape.lora_r * len(t)
    if shape.bytes == 4:  # normed inputs and gate*up (o_proj's input is SDPA's output, already counted)
        saved += 4 * H * (bool(t & {"q_proj", "k_proj", "v_proj"}) + bool(t & {"gate_proj", "up_proj"}))
        saved += 4 * I * ("down_proj" in t)
    else:  # one fp32 copy of the input per adapter
        saved += sum(4 * w for w in widths)
    if shape.lora_dropout > 0:  # dropout output (fp32) + mask per adapter input
        saved += sum((4 + 1) * w for w in widths)
    return saved


def backward_transient_bytes_per_token(arch: Architecture, shape: RunShape) -> int:
    """Gradient tensors alive while a layer runs backward (widest at the MLP: one I-sized grad
    plus the fp32 residual-stream grads)."""
    return arch.intermediate_size * shape.bytes + 2 * arch.hidden_size * 4


def logits_bytes(arch: Architecture, shape: RunShape, micro_batch: int, chunk_tokens: int) -> int:
    """Log-prob working set over the completion tokens of micro_batch sequences (N = m x C rows).

    gcpo_lite.kernels computes log-probs chunk by chunk and recomputes each chunk in backward, so at
    most `chunk_tokens` rows of (chunk, V) logits exist. Bytes per logit, measured (benchmarks/
    calibrate_memory.py): native ops keep only the matmul output in compute dtype (4 fp32, 2 bf16);
    the PyTorch path (kernels/chunked.py) adds an fp32 copy and logsumexp's fp32 temporary (8 fp32,
    12 bf16). Besides the chunk: the (N, H) hidden-state gradient and the (N,) fp32 lse / log-probs."""
    N = micro_batch * shape.completion_tokens
    b = shape.bytes
    per_logit = b if shape.logprob_backend == "native" else 8 + (4 if b != 4 else 0)
    return min(N, chunk_tokens) * arch.vocab_size * per_logit + N * (arch.hidden_size * b + 8)


def training_bytes(
    arch: Architecture, shape: RunShape, micro_batch: int, chunk_tokens: int
) -> dict[str, int]:
    """Training-phase components for micro_batch sequences of prompt + completion tokens.

    activations     what the forward leaves saved: every layer's tensors, or with gradient
                    checkpointing each layer's input; plus the final norm and the completion
                    hidden states the log-prob kernel saves
    logits          log-prob working set (one chunk), alive during the log-prob forward / backward
    layer_backward  one layer's recomputed tensors (checkpointing) + its gradient transients,
                    alive during the decoder backward, i.e. never together with `logits`
    lora_grads      fp32 LoRA gradients (twice while OOM backoff keeps accumulated ones aside)
    prompt_states   train.share_prompts: every row's copy of its prompt's keys and values (all layers),
                    read by its completions. The rest is still counted for micro_batch full rows, an
                    upper bound: sharing runs only when a micro-batch has fewer distinct prompts than rows
    The phase needs activations + lora_grads + prompt_states + max(logits, layer_backward)."""
    tokens = micro_batch * shape.seq_tokens
    H, b = arch.hidden_size, shape.bytes
    per_layer = layer_activation_bytes_per_token(arch, shape)
    head = tokens * (4 * H + H * b) + micro_batch * shape.completion_tokens * H * b
    if shape.gradient_checkpointing:
        saved, backward = tokens * arch.num_layers * H * b, tokens * per_layer
    else:
        saved, backward = tokens * arch.num_layers * per_layer, 0
    backward += tokens * backward_transient_bytes_per_token(arch, shape)
    grads = 4 * sum(lora_numels(arch, shape)) * (2 if shape.grad_accumulation else 1)
    return {
        "activations": saved + head,
        "logits": logits_bytes(arch, shape, micro_batch, chunk_tokens),
        "layer_backward": backward,
        "lora_grads": grads,
        "prompt_states": prompt_states_bytes(arch, shape, micro_batch),
    }


def prompt_states_bytes(arch: Architecture, shape: RunShape, micro_batch: int) -> int:
    """train.share_prompts: (micro_batch, kv_heads, P, head_dim) keys and values per layer, one copy per row."""
    if not shape.share_prompts:
        return 0
    return micro_batch * shape.prompt_tokens * arch.num_layers * 2 * arch.kv_dim * shape.bytes


def training_phase_bytes(c: dict) -> int:
    shared = c.get("prompt_states", 0)  # absent from estimates saved before train.share_prompts
    return c["activations"] + c["lora_grads"] + shared + max(c["logits"], c["layer_backward"])


# ---------------------------------------------------------------- the whole run


def allocator_slack(shape: RunShape) -> float:
    if shape.device.startswith("cuda"):
        return ALLOCATOR_SLACK["cuda"]
    return ALLOCATOR_SLACK["cpu_system" if shape.cpu_allocator == "system" else "cpu"]


def runtime_bytes(shape: RunShape) -> int:
    return CUDA_RUNTIME_BYTES if shape.device.startswith("cuda") else CPU_RUNTIME_BYTES


def estimate(
    arch: Architecture, shape: RunShape, gen_batch: int, micro_batch: int, chunk_tokens: int
) -> Estimate:
    """Predicted peak for one step with these sizes; see the module docstring for the sum."""
    comps: dict[str, int] = {"runtime": runtime_bytes(shape)}
    comps.update(weight_bytes(arch, shape))
    comps.update(lora_state_bytes(arch, shape))
    comps.update(generation_bytes(arch, shape, gen_batch))
    comps.update(training_bytes(arch, shape, micro_batch, chunk_tokens))
    totals = {
        "static": comps["weights_4bit"]
        + comps["weights_unquantized"]
        + comps["weights_dequantized"]
        + comps["lora_params"]
        + comps["optimizer_state"],
        "generation": comps["kv_cache"] + comps["generation_working"] + comps["weights_merged"],
        "training": training_phase_bytes(comps),
    }
    peak_phase = "generation" if totals["generation"] >= totals["training"] else "training"
    dynamic = max(totals["generation"], totals["training"])
    comps["allocator_overhead"] = int(allocator_slack(shape) * dynamic)
    peak = comps["runtime"] + totals["static"] + dynamic + comps["allocator_overhead"]
    return Estimate(components=comps, phase_totals=totals, peak_bytes=int(peak), peak_phase=peak_phase)


def with_changes(shape: RunShape, **changes) -> RunShape:
    return replace(shape, **changes)
