"""The update half of a step (a part of Trainer): num_iterations optimizer steps on the step's batch, the rows
in micro-batches the plan sized, each cut into length buckets, with each distinct prompt run once."""

from __future__ import annotations

import contextlib
import logging
from functools import partial
from typing import Optional

import torch

from gcpo_lite.algorithm.batches import StepBatch
from gcpo_lite.algorithm.update_rows import UpdateRows, rows_to_train, stack_rows
from gcpo_lite.kernels import gcpo_loss
from gcpo_lite.models.loading import decoder_and_head
from gcpo_lite.policy.length_buckets import bucket_bounds
from gcpo_lite.policy.logprobs import completion_logprobs, completion_loss
from gcpo_lite.policy.prompt_sharing import NotRouted, SharedPrompts, distinct_count

log = logging.getLogger("gcpo_lite.train.trainer")  # one logger for the trainer's parts: users filter on it


class OldLogps:
    """The old policy's per-row log-probs for gcpo.num_iterations > 1, written by the first iteration's forward
    (rows in the update's order; an OOM retry of a micro-batch writes its rows again)."""

    def __init__(self, rows: int):
        self.values: list = [None] * rows  # [(len_i,)]
        self.ready = False  # True once an iteration's update was applied: later ones read values


class UpdatePhase:
    """Trainer's update methods; they read the trainer's model, optimizer, config, plan and OOM backoff."""

    def _logprob_kwargs(self) -> dict:
        """How every training-side log-prob is taken: sampling temperature, banned ids, the plan's chunk."""
        return dict(
            temperature=self.cfg.gcpo.temperature,
            suppress_ids=self.suppress_t,
            chunk_size=self.plan.logits_chunk_size,
        )

    def update(self, batch: StepBatch) -> dict:
        """num_iterations optimizer steps on the batch; returns loss metrics."""
        g = self.cfg.gcpo
        rows, skipped = self._rows_to_train(batch)
        work = UpdateRows(batch, rows, g.loss_type, self.world)  # the step's normalizer, every rank's rows
        skipped = int(self.world.all_sum([skipped])[0])
        out = dict(skipped_groups=skipped, loss=0.0, clip_ratio=0.0, kl=0.0, grad_norm=0.0, grad_norm_max=0.0)
        out["trained_rows"] = int(work.trained_rows)
        if not work.trained_rows:  # every group skipped: no update, but the LR schedule still steps
            self.lr_schedule.step()
            return out
        # Old-policy and reference log-probs are kept per row (no grad): the OOM backoff may re-slice the rows.
        # The old policy's are the first iteration's own forward (OldLogps), so that iteration is exactly on-policy
        # (ratio 1) in any dtype; a separate no-grad pass would differ by its other batch shapes (bf16 rounding).
        old = OldLogps(len(rows)) if g.num_iterations > 1 else None
        ref = self._per_row_logps(work, reference=True) if g.beta > 0 else None
        self.model.train()
        sums, norms = self._iterations(work, old, ref, out)
        self.lr_schedule.step()  # once per step: train.max_steps counts steps, whatever num_iterations is
        done = max(1, len(norms))  # the iterations whose update was applied; skipped ones are not averaged in
        loss, clip, kl = self.world.all_sum((sums / done).tolist())  # shares of the global step
        out.update(loss=loss, clip_ratio=clip, kl=kl)
        if (
            norms and self.cfg.train.max_grad_norm > 0
        ):  # before clipping: the mean and the largest of the step
            out.update(grad_norm=sum(norms) / len(norms), grad_norm_max=max(norms))
        return out

    def _iterations(self, work: UpdateRows, old, ref, out: dict) -> tuple[torch.Tensor, list]:
        """gcpo.num_iterations optimizer updates on the rows: (loss, clip_ratio, kl summed over the applied
        ones, their gradient norms before clipping); a non-finite gradient skips its update (counted in out)."""
        params = [q for q in self.model.parameters() if q.requires_grad]
        sums, norms = torch.zeros(3, dtype=torch.float64), []
        for _ in range(self.cfg.gcpo.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            step, parts = partial(self._micro_step, work, old, ref), torch.zeros(3, dtype=torch.float64)
            for part in self.backoff.accumulate(len(work.rows), step, params):  # none: this rank has no rows
                parts += torch.tensor(part, dtype=torch.float64)
            self.world.sum_gradients(params)  # torchrun: the global batch's gradient on every rank
            if not self._grads_finite(params):  # a NaN/inf never reaches the adapter weights
                out["nonfinite_skipped"] = out.get("nonfinite_skipped", 0) + 1
                self.optimizer.zero_grad(set_to_none=True)
                continue
            sums += parts
            if old is not None:
                old.ready = True  # the weights move now: later iterations compare against these log-probs
            if self.cfg.train.max_grad_norm > 0:
                norms.append(float(torch.nn.utils.clip_grad_norm_(params, self.cfg.train.max_grad_norm)))
            else:
                norms.append(0.0)
            self.optimizer.step()
        return sums, norms

    def _grads_finite(self, params) -> bool:
        """False (with one warning line) when any LoRA gradient is NaN or infinite: the update is skipped."""
        ok = all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params)
        if not ok:
            log.warning(
                "step %d: non-finite loss or gradient; this optimizer update is skipped (nonfinite_skipped)",
                self.step + 1,
            )
        return ok

    def _rows_to_train(self, batch: StepBatch) -> tuple[list[int], int]:
        """Rows whose group carries a gradient, and how many groups were skipped (algorithm/update_rows.py)."""
        return rows_to_train(batch, self.cfg.gcpo.num_generations, self.cfg.gcpo.beta)

    def _per_row_logps(self, work: UpdateRows, *, reference: bool = False) -> list:
        """[(len_i,)] no-grad log-probs of every trained row (old policy, or the base with reference=True)."""
        parts = self.backoff.map("logprobs", len(work.rows), partial(self._logps_part, work, reference))
        return [t for chunk in parts for t in chunk]

    def _logps_part(self, work: UpdateRows, reference: bool, s: int, e: int) -> list:
        """rows[s:e]'s log-probs without gradient: the old policy's, or with reference=True the adapter-free
        base's (its distinct prompts run once, as in the training forward)."""
        rows = work.padded(s, e, self.pad_id, self.device)
        adapter_off = self.model.disable_adapter() if reference else contextlib.nullcontext()
        with torch.no_grad(), adapter_off:
            shared = self._shared_prompts(work, s, e)
            prompts = None if shared is None else shared.for_rows(work.prompts(s, e))
            lp = completion_logprobs(self.model, rows, prompts=prompts, **self._logprob_kwargs())  # (b, T)
        return [lp[j, :n] for j, n in enumerate(work.lengths[s:e])]

    def _micro_step(self, work: UpdateRows, old, ref, s: int, e: int) -> tuple[float, float, float]:
        """Forward + backward of rows[s:e] (ordered by length) in up to train.length_buckets consecutive parts,
        each padded to its own longest row, cut where that pads least; with train.share_prompts the distinct
        prompts run once, before the parts. The gradients add up to the whole micro-batch's, with less
        computed. Returns (loss, clip_ratio share, kl share) summed over the parts."""
        bounds = [s + b for b in bucket_bounds(work.lengths[s:e], self._length_buckets())]  # least padding
        shared = self._shared_prompts(work, s, e)  # None: every row runs its own prompt
        sums = [self._bucket_step(work, old, ref, a, b, shared) for a, b in zip(bounds, bounds[1:]) if b > a]
        if shared is not None:  # the parts' gradients on the prompts' states, through the prompts' forward
            shared.backward()
        return tuple(sum(x) for x in zip(*sums))

    def _shared_prompts(self, work: UpdateRows, s: int, e: int) -> Optional[SharedPrompts]:
        """train.share_prompts: rows[s:e]'s distinct prompts run once (prompt_sharing.py), when there are
        fewer of them than rows."""
        prompts = work.prompts(s, e)
        if not self._share_prompts or distinct_count(prompts) == len(prompts):
            return None
        try:
            return SharedPrompts(decoder_and_head(self.model)[0], prompts, self.pad_id, self.device)
        except NotRouted as err:
            self._share_prompts = False
            log.warning("train.share_prompts is off for this run (%s): each row runs its own prompt", err)
            return None

    def _length_buckets(self) -> int:
        """train.length_buckets, or by default 4 on CPU (smaller matmuls cost the CPU little per token) and 1
        on CUDA (keep the GPU's matmuls large; not measured there yet)."""
        n = self.cfg.train.length_buckets
        return n if n is not None else (4 if self.device.type == "cpu" else 1)

    def _bucket_step(
        self, work: UpdateRows, old, ref, s: int, e: int, shared: Optional[SharedPrompts] = None
    ) -> tuple[float, float, float]:
        """Forward + backward of rows[s:e]; the loss is already divided by the whole step's normalizer."""
        g = self.cfg.gcpo
        rows = work.padded(s, e, self.pad_id, self.device)
        width = rows.completion_ids.shape[1]
        eps_low, eps_high = self.cfg.resolved_epsilons()
        capture = old is not None and not old.ready  # the first iteration: on-policy, and it records old
        old_lp = None if old is None or capture else stack_rows(old.values, s, e, width, self.device)
        advantages = work.batch.advantages[work.rows[s:e]].to(self.device)
        loss_kw = dict(
            ref_per_token_logps=None if ref is None else stack_rows(ref, s, e, width, self.device),
            importance_sampling_level=g.importance_sampling_level,
            epsilon_low=eps_low,
            epsilon_high=eps_high,
            beta=g.beta,
            loss_type=g.loss_type,
            max_completion_length=g.max_completion_length,
            normalizer=work.normalizer,
        )
        prompts = None if shared is None else shared.for_rows(work.prompts(s, e))  # (b rows') prompt states
        lp_kw = dict(self._logprob_kwargs(), prompts=prompts)
        if self.cfg.train.fused_loss:  # hidden states -> loss in one op (kernels.gcpo_loss_from_hidden)
            loss, m = completion_loss(self.model, rows, old_lp, advantages, **lp_kw, **loss_kw)
            lp = m["per_token_logps"]
        else:  # the composition: per-token log-probs, then the loss
            lp = completion_logprobs(self.model, rows, **lp_kw)  # (b, T)
            loss, m = gcpo_loss(
                lp, lp.detach() if old_lp is None else old_lp, advantages, rows.completion_mask, **loss_kw
            )
        if capture:
            old.values[s:e] = [lp[j, :n].detach() for j, n in enumerate(work.lengths[s:e])]
        loss.backward()
        share = work.share(s, e)  # this micro-batch's weight in the step's clip / KL means
        return loss.item(), m["clip_ratio"].item() * share, m["kl"].item() * share
