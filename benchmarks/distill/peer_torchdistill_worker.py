"""The torchdistill side of `peer_torchdistill.py`: Hinton KD with torchdistill's DistillationBox.

Run by the torchdistill venv's python (benchmarks/.venv-torchdistill), never by the project's venv:

    python peer_torchdistill_worker.py '<json config>'

It imports the project only for what must be identical on both sides: the digits task (data and
split), the committed teacher, the student architecture and the accuracy function. Everything that
trains goes through torchdistill as its users drive it: a dict config (what its YAML files hold)
with a `WeightedSumLoss` over one `KDLoss` term, `forward_batch_only` for teacher and student, its
data loader (a per-example `TensorDataset` wrapped in its `BaseDatasetWrapper`), its optimizer and
scheduler registries, and the documented epoch loop around the box: `pre_epoch_process`,
`forward_process`, `post_forward_process` (backward, optimizer and per-step scheduler step),
`post_epoch_process`.

With `select_best` it also does what torchdistill's example script does (and the workbench's
engine): evaluate on the validation split after every epoch and keep the best epoch's weights.

Prints one line `RESULT <json>` on stdout; everything else goes to stderr. `accuracy` and
`state_digest` are also used by the workbench side, so both sides measure alike.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import sys
import time


def accuracy(model, x, y, batch: int = 512) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on numpy images ``x`` and labels ``y``."""
    import numpy as np
    import torch

    model.eval()
    correct = 0
    with torch.inference_mode():
        for s in range(0, len(x), batch):
            pred = model(torch.from_numpy(np.ascontiguousarray(x[s:s + batch]))).argmax(1).numpy()
            correct += int((pred == y[s:s + batch]).sum())
    return correct / max(1, len(y))


def state_digest(model) -> str:
    """Short hash of a model's weights: shows both sides start from the same student."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def main() -> int:
    cfg = json.loads(sys.argv[1])
    sys.path.insert(0, cfg["repo"])  # the project's task / zoo / accuracy; the venv has no project install

    import torch

    torch.set_num_threads(cfg["threads"])
    import torchdistill
    from torch.utils.data import RandomSampler, Sampler, TensorDataset
    from torchdistill.core.distillation import get_distillation_box

    from workbench.tasks import get_task
    from workbench.zoo import build_arch, resolve_teacher

    logging.getLogger("torchdistill").setLevel(logging.WARNING)

    task = get_task("digits")
    teacher, _ = resolve_teacher("zoo:digits-resnet", None, 1, task.num_classes)
    teacher.eval()  # BN in inference mode, as the workbench's cache runs it (torchdistill leaves the mode to the caller)
    torch.manual_seed(cfg["seed"])  # same initial student weights as the workbench side
    student = build_arch(cfg["arch"], 1, task.num_classes, **cfg["arch_options"])
    init_digest = state_digest(student)

    n, batch = len(task.y_train), cfg["batch_size"]
    steps_per_epoch = n // batch if cfg["drop_last"] else math.ceil(n / batch)
    total, warmup = steps_per_epoch * cfg["epochs"], cfg["warmup_steps"]

    def lr_lambda(step: int) -> float:  # the schedule both sides use: linear warm-up, then cosine decay per step
        if step < warmup:
            return (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * t))

    sampler = {"class_or_func": RandomSampler, "kwargs": {"generator": torch.Generator().manual_seed(cfg["seed"])}}
    if cfg.get("same_order"):  # diagnostic: replay the workbench engine's example order (its per-epoch permutation)
        class EngineOrder(Sampler):
            def __init__(self, data):
                self.n, self.epoch = len(data), 0

            def __iter__(self):
                gen = torch.Generator().manual_seed(cfg["seed"] * 1_000_003 + self.epoch)
                self.epoch += 1
                return iter(torch.randperm(self.n, generator=gen).tolist())

            def __len__(self):
                return self.n

        sampler = {"class_or_func": EngineOrder}

    w = cfg["kd_weight"]
    train_config = {
        "num_epochs": cfg["epochs"],
        "train_data_loader": {
            "dataset_id": "train",
            "sampler": sampler,
            "kwargs": {"batch_size": batch, "num_workers": 0, "drop_last": cfg["drop_last"]},
        },
        "teacher": {"forward_proc": "forward_batch_only", "requires_grad": False},
        "student": {"forward_proc": "forward_batch_only", "requires_grad": True},
        "optimizer": {"key": "AdamW", "kwargs": {"lr": cfg["lr"], "weight_decay": cfg["weight_decay"]}},
        "scheduler": {"key": "LambdaLR", "kwargs": {"lr_lambda": lr_lambda}, "scheduling_step": 1},
        "criterion": {
            "key": "WeightedSumLoss",
            "kwargs": {"sub_terms": {"kd": {
                "criterion": {"key": "KDLoss", "kwargs": {
                    # '.' is the whole model's output (torchdistill's SELF_MODULE_PATH): no forward hooks needed
                    "student_module_path": ".", "student_module_io": "output",
                    "teacher_module_path": ".", "teacher_module_io": "output",
                    "temperature": cfg["temperature"],
                    "alpha": 1.0 - w,  # torchdistill's alpha weights the cross-entropy term
                    "beta": w,         # and beta the soft-target (KL) term
                    "reduction": "batchmean"}},
                "weight": 1.0}}},
        },
    }
    dataset = TensorDataset(torch.from_numpy(task.x_train), torch.from_numpy(task.y_train))

    t0 = time.perf_counter()
    box = get_distillation_box(teacher, student, {"train": dataset}, train_config, torch.device("cpu"),
                               None, False, 1)
    steps, last_loss, best, best_epoch, best_state = 0, float("nan"), -1.0, 0, None
    for epoch in range(box.num_epochs):
        box.pre_epoch_process(epoch=epoch)
        for sample_batch, targets, supp_dict in box.train_data_loader:
            loss = box.forward_process(sample_batch, targets, supp_dict)
            box.post_forward_process(loss=loss)
            steps += 1
            last_loss = loss.item()  # both sides read the loss back every step
        box.post_epoch_process()
        if cfg["select_best"]:
            val = accuracy(student, task.x_val, task.y_val)
            if val > best:
                best, best_epoch, best_state = val, epoch + 1, copy.deepcopy(student.state_dict())
    if best_state is not None:
        student.load_state_dict(best_state)
    seconds = time.perf_counter() - t0

    student.eval()
    out = {
        "side": "torchdistill",
        "train_s": seconds,
        "steps": steps,
        "init_digest": init_digest,
        "best_epoch": best_epoch or box.num_epochs,
        "final_loss": last_loss,
        "val_acc": accuracy(student, task.x_val, task.y_val),
        "test_acc": accuracy(student, task.x_test, task.y_test),
        "task_fingerprint": task.fingerprint(),
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "torchdistill": torchdistill.__version__,
                     "python": sys.version.split()[0]},
        "criterion": str(box.criterion),
    }
    print("RESULT " + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
