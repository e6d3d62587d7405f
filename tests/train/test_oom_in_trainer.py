"""OOM backoff inside the Trainer: injected out-of-memory errors in generation, in the no-grad
log-probs and in a training micro-step's backward; the run keeps every sample and row and ends
with the same LoRA weights as a run that never hit an error."""

import torch

from gcpo_lite.config import from_dict
from gcpo_lite.rollout import backends as backends_mod
from gcpo_lite.train import update_phase as update_mod
from gcpo_lite.train.trainer import Trainer

STEPS = 2


def make(run_dir, gen_batch, micro, dequantized_base=False):
    cfg = from_dict(
        {
            # no dequantized layers by default: an OOM would give them back before halving a size
            "memory": {"dequantized_base": dequantized_base},
            "model": {"gradient_checkpointing": False},
            "gcpo": {"num_generations": 4, "max_completion_length": 5, "num_iterations": 2, "beta": 0.04},
            "data": {"eval_size": 4},
            "train": {
                "batch_size": 8,
                "output_dir": str(run_dir),
                "learning_rate": 1e-3,
                "eval_steps": 0,
                "num_threads": 1,
                "kernels": "reference",
                "seed": 3,
                "generation_batch_size": gen_batch,
                "micro_batch_size": micro,
                "length_buckets": 1,  # one forward per micro-batch: the fake OOM below keys on its size
            },
        }
    )
    return Trainer(cfg, progress=False)


def run(tr):
    samples = []
    for _ in range(STEPS):
        tr.backoff.step = tr.step + 1
        batch = tr.rollout(tr.next_examples(tr.cfg.prompts_per_step))
        upd = tr.update(batch)
        tr.step += 1
        samples.append((batch.completions, upd["trained_rows"]))
    return samples, [p.detach().clone() for p in tr.model.parameters() if p.requires_grad]


def _oom():
    return torch.OutOfMemoryError("CUDA out of memory (injected)")


def test_backoff_run_matches_a_clean_run(embedded_model_dir, tmp_path, monkeypatch):
    clean_samples, clean_params = run(make(tmp_path / "clean", gen_batch=4, micro=8))

    real_sample, real_logprobs = backends_mod.sample_completions, update_mod.completion_logprobs
    real_loss = update_mod.completion_loss
    failed = set()

    def sample(model, prompts, **kw):  # more than 4 sequences "do not fit", after drawing random numbers
        if len(prompts) > 4 and "gen" not in failed:
            failed.add("gen")
            torch.rand(100)
            raise _oom()
        return real_sample(model, prompts, **kw)

    def logprobs(model, rows, **kw):
        b = rows.prompt_ids.shape[0]
        if not torch.is_grad_enabled() and b > 4 and "nograd" not in failed:
            failed.add("nograd")  # the old-policy / reference pass runs out of memory
            raise _oom()
        return real_logprobs(model, rows, **kw)

    def loss_fn(model, rows, *a, **kw):  # the training micro-step (the fused op)
        loss, m = real_loss(model, rows, *a, **kw)
        if rows.prompt_ids.shape[0] > 2 and "backward" not in failed:
            failed.add("backward")  # the micro-step dies in its backward pass

            def boom(grad):
                raise _oom()

            loss.register_hook(boom)
        return loss, m

    monkeypatch.setattr(backends_mod, "sample_completions", sample)
    monkeypatch.setattr(update_mod, "completion_logprobs", logprobs)
    monkeypatch.setattr(update_mod, "completion_loss", loss_fn)
    tr = make(tmp_path / "backoff", gen_batch=8, micro=8)
    samples, params = run(tr)

    assert failed == {"gen", "nograd", "backward"}
    phases = [(e["phase"], e["from"], e["to"]) for e in tr.plan.backoffs]
    assert phases == [("generation", 8, 4), ("logprobs", 8, 4), ("training", 4, 2)]
    assert (tr.plan.generation_batch_size, tr.plan.micro_batch_size) == (4, 2)  # later steps: the new plan
    assert samples == clean_samples  # every completion generated, identical, every row trained
    # Summation order differs (micro-batches of 2 instead of 8) and Adam divides each gradient by its own
    # scale, so near-zero elements may move by ~1e-3 of the learning rate (1e-3 x 4 updates here).
    for p, q in zip(params, clean_params):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=4e-6)


def test_dequantized_layers_are_given_back_before_any_size_is_halved(
    embedded_model_dir, tmp_path, monkeypatch
):
    """With a dequantized base, the first out-of-memory error sends half its layers back to 4-bit on the fly
    and redoes the slice at the same size; the second takes the rest; only then is a size halved."""
    from gcpo_lite.models import dequantized_base

    tr = make(tmp_path / "run", gen_batch=8, micro=8, dequantized_base=True)
    layers = dequantized_base.attached_layers(tr.model)
    assert layers >= 2 and tr.plan.dequantized_layers == layers  # the plan had room for the copy
    chain = [layers]  # each release keeps half: layers, layers // 2, ..., 0
    while chain[-1]:
        chain.append(chain[-1] // 2)
    releases = [("generation", "dequantized_layers", a, b) for a, b in zip(chain, chain[1:])]
    real_sample, fails = backends_mod.sample_completions, [0]

    def sample(model, prompts, **kw):  # one failure per release, then one more
        if fails[0] <= len(releases):
            fails[0] += 1
            raise _oom()
        return real_sample(model, prompts, **kw)

    monkeypatch.setattr(backends_mod, "sample_completions", sample)
    samples, _ = run(tr)
    events = [(e["phase"], e.get("size"), e["from"], e["to"]) for e in tr.plan.backoffs]
    # nothing left to give back: only then is the generation batch halved
    assert events == releases + [("generation", None, 8, 4)]
    assert dequantized_base.attached_layers(tr.model) == tr.plan.dequantized_layers == 0
    assert all(len(c) == 8 for c, _ in samples)  # every sample of every step generated


def test_auto_group_size_in_the_trainer(embedded_model_dir, tmp_path):
    cfg = from_dict(
        {
            "model": {"gradient_checkpointing": False},
            "gcpo": {"num_generations": 2, "max_completion_length": 4},
            "data": {"eval_size": 4},
            "train": {"batch_size": 8, "output_dir": str(tmp_path), "eval_steps": 0, "num_threads": 1},
            "memory": {"auto_num_generations": True, "min_num_generations": 2, "max_num_generations": 4},
        }
    )
    tr = Trainer(cfg, progress=False)
    assert tr.plan.num_generations == 4 and tr.cfg.gcpo.num_generations == 4 and tr.cfg.prompts_per_step == 2
    assert cfg.gcpo.num_generations == 2  # the validated config is never mutated
    batch = tr.rollout(tr.next_examples(tr.cfg.prompts_per_step))
    assert len(batch.completions) == 8 and batch.advantages.view(-1, 4).shape == (2, 4)
