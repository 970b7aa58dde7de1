"""Experience replay with hardness-based sample selection (docs/methods.md, section 2).

After task t the importance step scores every training sample of the task with the
trained model (eval mode, softmax probabilities ``p`` of the task's logits, the
unaugmented images) and adds the chosen ones to the buffer:

- ``el2n``: ``||p - onehot(y)||_2``;
- ``entropy``: ``-sum_i p_i ln p_i`` (``0 ln 0 = 0``: finite when a probability is 0);
- ``margin``: ``p_y - max_{i != y} p_i``;
- ``random``: a seeded uniform number.

``keep: hardest`` takes the highest EL2N or entropy, the lowest margin; ``easiest`` the
opposite end (for ``random`` both are a random subset). The budget is either
``fraction`` of each task (the source: ``int(f * n)`` samples per task, the buffer only
grows) or class-balanced: ``per_class`` samples of every class seen, or a ``memory`` of
that many samples in all shared equally by the classes seen so far, old classes' least
wanted entries evicted to make room.

The buffer file holds no images: for each entry its task, its row in that task's
training split (``tasks.pt``), its index in the source dataset, its label and its
score. Training the next task either concatenates buffer and new data and shuffles
them together (``mode: concat``, the source) or draws a separate replay batch per step
whose loss is added with weight ``replay_weight`` (``mode: batch``).
"""

from __future__ import annotations

from clpipe.methods.traits import MethodTraits

# The method as the workflow reads it, without importing what follows (clpipe.methods)
METHOD = MethodTraits(
    name="replay",
    implementation=f"{__name__}:ExperienceReplay",
    description=(
        "experience replay: after each task its hardest (or easiest) training samples "
        "by EL2N, entropy or margin (or random ones) join a buffer trained on with later tasks"
    ),
    settings={
        "score": {
            "enum": ["el2n", "entropy", "margin", "random"],
            "default": "random",
            "description": (
                "hardness of a training sample under the trained model's softmax p: "
                "el2n ||p - onehot(y)||, entropy -sum p ln p, margin p_y - max other p, or a random number"
            ),
        },
        "keep": {
            "enum": ["hardest", "easiest"],
            "default": "hardest",
            "description": "keep the hardest (highest EL2N / entropy, lowest margin) or the easiest",
        },
        "budget": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                "per_class": {"type": "integer", "minimum": 0},
                "memory": {"type": "integer", "minimum": 0},
            },
            "default": {"fraction": 0.01},
            "description": (
                "one of: fraction (int(f * n) samples of each task join the buffer, which only "
                "grows: the source), per_class (that many samples of every class seen), memory "
                "(that many samples in all, shared equally by the classes seen so far; old "
                "entries are evicted to make room)"
            ),
        },
        "mode": {
            "enum": ["concat", "batch"],
            "default": "concat",
            "description": (
                "concat: buffer and new data shuffled together (the source); batch: a separate "
                "replay batch each step, its loss added with replay_weight"
            ),
        },
        "replay_batch_size": {
            "type": ["integer", "null"],
            "minimum": 1,
            "default": None,
            "description": "mode batch; samples per replay batch (null = the training batch size)",
        },
        "replay_weight": {
            "type": "number",
            "minimum": 0,
            "default": 1.0,
            "description": "mode batch; weight of the replay batch's loss",
        },
    },
    importance=True,
    importance_settings=("score", "keep", "budget"),
    chained_importance=True,
    mixes_tasks=True,
    palette="Greens",
)

# --- the implementation ------------------------------------------------------------

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clpipe.methods.base import Batch, ContinualMethod, TaskContext, training_samples
from clpipe.scenarios import apply_mask

SCORES = ("el2n", "entropy", "margin", "random")
BUFFER_KEYS = ("task", "position", "source_index", "label", "score")


def hardness(
    probs: torch.Tensor, targets: torch.Tensor, score: str, generator: torch.Generator
) -> torch.Tensor:
    """Per-sample score of a batch of probability rows (N x C) and targets (N)."""
    if score == "el2n":
        return (probs - F.one_hot(targets, probs.shape[1]).to(probs.dtype)).norm(dim=1)
    if score == "entropy":
        return -torch.special.xlogy(probs, probs).sum(dim=1)
    if score == "margin":
        true = probs.gather(1, targets[:, None]).squeeze(1)
        others = probs.scatter(1, targets[:, None], float("-inf")).amax(dim=1)
        return true - others
    if score == "random":
        return torch.rand(len(targets), generator=generator, dtype=torch.float64).to(probs)
    raise ValueError(f"score: unknown {score!r} (known: {', '.join(SCORES)})")


def preference(scores: torch.Tensor, score: str, keep: str) -> torch.Tensor:
    """Indices of ``scores`` from the most to the least wanted sample.

    Hardest = highest EL2N, entropy (or random number), lowest margin; easiest is the
    exact reverse order. Ties keep the earlier sample first (a stable sort), so the
    choice is deterministic.
    """
    if keep not in ("hardest", "easiest"):
        raise ValueError(f"keep: {keep!r} (known: hardest, easiest)")
    descending = (score != "margin") == (keep == "hardest")
    key = -scores if descending else scores
    return torch.sort(key.double(), stable=True).indices


def empty_buffer() -> dict[str, torch.Tensor]:
    return {
        "task": torch.zeros(0, dtype=torch.int64),
        "position": torch.zeros(0, dtype=torch.int64),
        "source_index": torch.zeros(0, dtype=torch.int64),
        "label": torch.zeros(0, dtype=torch.int64),
        "score": torch.zeros(0, dtype=torch.float32),
    }


def _take(buffer: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: buffer[k][idx] for k in BUFFER_KEYS}


def _cat(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([a[k], b[k].to(a[k].dtype)]) for k in BUFFER_KEYS}


def fraction_quota(budget: dict[str, Any], n_task: int) -> int:
    """Samples of a task of ``n_task`` training samples that join a ``fraction`` budget's buffer."""
    return int(float(budget["fraction"]) * n_task)  # int(f * |task|), as the source


def class_quotas(budget: dict[str, Any], classes: list[int]) -> dict[int, int]:
    """Entries each class seen so far may keep in a class-balanced (``per_class`` or
    ``memory``) buffer: ``{label: quota}`` for the labels ``classes``."""
    if "per_class" in budget:
        return {int(c): int(budget["per_class"]) for c in classes}
    share, extra = divmod(int(budget["memory"]), max(1, len(classes)))
    # the remainder goes to the lowest class labels, so the total is exactly `memory`
    return {int(c): share + (i < extra) for i, c in enumerate(sorted(classes))}


def select(
    buffer: dict[str, torch.Tensor],
    candidates: dict[str, torch.Tensor],
    budget: dict[str, Any],
    score: str,
    keep: str,
) -> dict[str, torch.Tensor]:
    """The buffer after a task: the old one plus the chosen candidates (the task's
    scored training samples), within the budget."""
    order = preference(candidates["score"], score, keep)
    if "fraction" in budget:
        n = fraction_quota(budget, len(order))
        return _cat(buffer, _take(candidates, order[:n]))
    # class-balanced: every class seen so far gets the same quota
    merged = _cat(buffer, _take(candidates, order))
    classes = torch.unique(merged["label"])
    quota = class_quotas(budget, classes.tolist())
    kept = []
    for c in classes.tolist():
        members = torch.nonzero(merged["label"] == c).flatten()
        # rank this class's entries, old and new alike, by the same preference
        ranked = members[preference(merged["score"][members], score, keep)]
        kept.append(ranked[: quota[c]])
    idx = torch.cat(kept).sort().values if kept else torch.zeros(0, dtype=torch.int64)
    return _take(merged, idx)


class ExperienceReplay(ContinualMethod):
    """Replay of a buffer of earlier tasks' training samples (chosen by hardness)."""

    # -- after a task ------------------------------------------------------------------
    @torch.inference_mode()
    def compute_importance(
        self,
        model: nn.Module,
        ctx: TaskContext,
        previous: dict[str, Any] | None,
        progress: dict[str, Any] | None,
    ) -> dict[str, Any]:
        score, keep = self.settings["score"], self.settings["keep"]
        task = ctx.task
        was_training = model.training
        model.eval()
        targets = ctx.scenario.targets(task.index, task.train.y)
        mask = ctx.scenario.logit_mask(task.index, ctx.device)
        scores = []
        for start in range(0, len(targets), ctx.eval_batch_size):
            x = ctx.pipeline(task.train.x[start : start + ctx.eval_batch_size])
            logits = apply_mask(model(x), mask).float()
            probs = torch.softmax(logits, dim=1)
            scores.append(hardness(probs, targets[start : start + ctx.eval_batch_size], score, ctx.generator))
        model.train(was_training)
        n = len(targets)
        candidates = {
            "task": torch.full((n,), task.index, dtype=torch.int64),
            "position": torch.arange(n),
            "source_index": task.train.index.cpu(),
            "label": task.train.y.cpu(),
            "score": torch.cat(scores).float().cpu() if scores else torch.zeros(0),
        }
        old = {k: previous[k] for k in BUFFER_KEYS} if previous else empty_buffer()
        buffer = select(old, candidates, self.settings["budget"], score, keep)
        # the dataset of each task, so the source indices can be read without tasks.pt
        datasets = [t.dataset for t in ctx.all_tasks] if ctx.all_tasks is not None else []
        out = {**buffer, "task_datasets": datasets}
        buckets = [t.bucket for t in ctx.all_tasks] if ctx.all_tasks is not None else []
        if any(b is not None for b in buckets):  # CLEAR-10: source_index is into the bucket's files
            out["task_buckets"] = buckets
        return out

    # -- training a task ---------------------------------------------------------------
    def begin_task(
        self,
        model: nn.Module,
        importance: dict[str, Any] | None,
        task_settings: dict[str, Any],
        ctx: TaskContext,
    ) -> None:
        self.ctx = ctx
        self.x = self.targets = self.task_ids = None
        if not importance or len(importance["task"]) == 0:
            return
        if ctx.all_tasks is None:
            raise ValueError("replay needs every task's data to fetch the buffer's images")
        rows = {}
        for t in torch.unique(importance["task"]).tolist():
            mine = importance["task"] == t
            rows[t] = importance["position"][mine]
            split = ctx.all_tasks[t - 1].train
            if not torch.equal(
                split.index[rows[t]].cpu(), importance["source_index"][mine]
            ) or not torch.equal(split.y[rows[t]].cpu(), importance["label"][mine]):
                raise ValueError(
                    f"the replay buffer's entries of task {t} do not match that task's training "
                    "split (the buffer was made from other data)"
                )
        self.x, self.targets, self.task_ids = training_samples(ctx, rows, "replay")

    def extra_training_samples(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        if self.settings["mode"] != "concat" or self.x is None:
            return None
        return self.x, self.targets, self.task_ids

    def batch_loss(self, model: nn.Module, batch: Batch) -> torch.Tensor | None:
        """mode batch: the loss of a separate replay batch drawn for this step, weighted."""
        if self.settings["mode"] != "batch" or self.x is None:
            return None
        size = self.settings["replay_batch_size"] or self.ctx.train_batch_size
        idx = torch.randint(len(self.targets), (size,), generator=self.ctx.generator).to(self.ctx.device)
        logits = model(self.ctx.pipeline.train_batch(self.x[idx], self.ctx.generator))
        masks = self.ctx.scenario.mask_table(self.ctx.device)
        if masks is not None:
            logits = apply_mask(logits, masks[self.task_ids[idx] - 1])
        return float(self.settings["replay_weight"]) * F.cross_entropy(logits, self.targets[idx])
