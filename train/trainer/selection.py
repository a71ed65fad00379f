"""Which epoch becomes best.pt. On the val split by default: the test split then stays unseen until the
end, and the run reports test accuracy at the best-val epoch and at the last epoch. `--select-on test`
is the released code's protocol (best epoch by TEST accuracy: optimistic, and every table says so).
Shards without a val split (made before rq had one, or --val-fraction 0) fall back to the last epoch
— never silently to test — with a warning."""
from dataclasses import dataclass

SELECT_ON = ("val", "test")


def effective_selection(select_on: str, val_samples: int) -> tuple[str, str | None]:
    """("val" | "test" | "last", a warning to print or None)."""
    if select_on == "test":
        return "test", ("note: --select-on test: best.pt is the epoch with the highest TEST accuracy (the released "
                        "code's protocol); its test numbers are selected on test, optimistic, and marked so")
    if val_samples:
        return "val", None
    return "last", ("warning: the shards have no val split (made before rq wrote one, or --val-fraction 0): "
                    "best.pt is the LAST epoch, not selected on anything; rerun rq preprocess for a val split, or "
                    "pass --select-on test for the released code's protocol")


@dataclass
class Selection:
    on: str                      # "val" | "test" | "last"
    best_epoch: int = -1
    best_value: float = -1.0     # the selecting split's accuracy at best_epoch (-1: none yet)

    def update(self, epoch: int, val: dict | None, test: dict | None) -> bool:
        """Record an epoch's results; True when it is the new best (ties keep the earlier epoch)."""
        if self.on == "last":
            self.best_epoch = epoch
            return True
        metrics = val if self.on == "val" else test
        acc = (metrics or {}).get("acc")
        value = -1.0 if acc is None else acc
        if value > self.best_value or self.best_epoch < 0:
            self.best_epoch, self.best_value = epoch, value
            return True
        return False

    def state_dict(self) -> dict:
        return {"on": self.on, "best_epoch": self.best_epoch, "best_value": self.best_value}

    @classmethod
    def from_state(cls, state: dict | None, on: str) -> "Selection":
        """A resumed run's selection; a checkpoint from before selection was recorded starts afresh."""
        if not state or state.get("on") != on:
            return cls(on)
        return cls(on, int(state["best_epoch"]), float(state["best_value"]))


def selection_summary(history: list[dict], on: str) -> dict:
    """What the run reports: the selected epoch, the selecting accuracy there, and test accuracy at the
    selected epoch and at the last one."""
    selection = Selection(on)
    for line in history:
        selection.update(line["epoch"], line.get("val"), line.get("test"))
    at = {line["epoch"]: line for line in history}
    best, last = at.get(selection.best_epoch, {}), history[-1] if history else {}
    return {"on": on, "best_epoch": selection.best_epoch,
            "val_acc_at_best": (best.get("val") or {}).get("acc"),
            "test_acc_at_best": (best.get("test") or {}).get("acc"),
            "last_epoch": last.get("epoch"), "test_acc_at_last": (last.get("test") or {}).get("acc")}


def selection_line(summary: dict) -> str:
    """One sentence: which epoch best.pt is, chosen how, and test accuracy there and at the last epoch."""
    def acc(v):
        return "–" if v is None else f"{v:.3f}"
    last = f"{acc(summary['test_acc_at_last'])} at the last epoch ({summary['last_epoch']})"
    if summary["on"] == "last":
        return f"best.pt = the last epoch ({summary['last_epoch']}): no val split to select on; test acc {last}"
    if summary["on"] == "test":
        return (f"best.pt = epoch {summary['best_epoch']}, selected on TEST (the released code's protocol: "
                f"optimistic); test acc {acc(summary['test_acc_at_best'])} there (selected on test), {last}")
    return (f"best.pt = epoch {summary['best_epoch']}, selected on val (val acc {acc(summary['val_acc_at_best'])}); "
            f"test acc {acc(summary['test_acc_at_best'])} at that epoch, {last}")
