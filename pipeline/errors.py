"""The one error type a pipeline stage raises for a bad clip: recorded, skipped, counted."""


class ClipError(Exception):
    """A clip that cannot be processed. `reason` is one line, fit for failures.jsonl."""

    def __init__(self, stage: str, reason: str):
        self.stage = stage
        self.reason = " ".join(reason.split()) or "unknown error"
        super().__init__(f"{stage}: {self.reason}")


class NoAudioStream(ClipError):
    """The container has no audio stream (kept as silence only with --missing-audio silence)."""


class TransientClipError(ClipError):
    """A failure a rerun may not repeat (ffmpeg killed by a signal, e.g. the OOM killer): never cached."""


class ClipTimeout(TransientClipError):
    """An ffmpeg call ran past --timeout: a rerun on a less busy machine may succeed."""


class ExecutorError(RuntimeError):
    """The executor cannot run: a Ray cluster that cannot be joined, a node that does not see the shared
    storage. A set-up problem (one line, the run stops), never a clip's failure."""
