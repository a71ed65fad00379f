"""How one clip goes through the stages (`rq.pipeline.stages`): its nodes, their cache keys, the plan
of what is cached, and `process_clip`, the pure per-clip function an executor runs. `rq preprocess`
and `rq predict` both run clips through it."""
import time
from dataclasses import dataclass, field
from pathlib import Path

from rq.pipeline.cache import Cache, Head, stage_key
from rq.pipeline.clips import Clip, fingerprint
from rq.pipeline.errors import ClipError, TransientClipError
from rq.pipeline.ffmpeg import FfmpegMissing
from rq.pipeline.stages import STAGES, Stage, decode_together
from rq.pipeline.stages.settings import canonical


@dataclass(frozen=True)
class Node:
    """A stage applied to one file of a clip. Usually one node per stage; a clip with a separate audio
    file (CREMA-D) also gets "probe@audio", because a stage that needs the probe needs that of its own file."""
    id: str
    stage: Stage
    path: Path | None
    needs: tuple[str, ...]   # node ids, in the order of stage.needs


def clip_nodes(clip: Clip, stages: tuple[Stage, ...] = STAGES) -> list[Node]:
    """The clip's nodes in dependency order, for the recipe's stage set."""
    nodes: dict[str, Node] = {}
    by_name = {s.name: s for s in stages}

    def add(st: Stage, path: Path | None) -> str:
        node_id = st.name if path == clip.input_path(st.reads) else f"{st.name}@audio"
        if node_id not in nodes:
            # A stage needed by a stage of another file reads that file (CREMA-D's wav gets its own probe,
            # probe@audio); a stage reading a part of a shared file (a segment) always reads its own file.
            needs = tuple(add(by_name[n], path if by_name[n].reads and path and not by_name[n].part else
                              clip.input_path(by_name[n].reads)) for n in st.needs)
            nodes[node_id] = Node(node_id, st, path, needs)
        return node_id

    for st in stages:
        add(st, clip.input_path(st.reads))
    return list(nodes.values())


@dataclass(frozen=True)
class Job:
    """Everything the per-clip function needs besides the clip; small and picklable for any executor."""
    cache_root: Path
    settings: dict = field(hash=False)   # stage name -> its frozen settings (None for probe)
    force: frozenset[str] = frozenset()
    timeout: float = 120.0
    hash_content: bool = False
    stages: tuple[Stage, ...] = STAGES       # the recipe's stage set


@dataclass(frozen=True)
class ClipResult:
    clip: Clip
    states: dict[str, tuple[str, float]]     # node id -> ("computed" | "cached" | "failed", seconds)
    keys: dict[str, str]                     # node id -> cache key
    heads: dict[str, Head]                   # shard stage -> its entry (member names, sizes, hashes)
    probe: dict | None = None
    failure: tuple[str, str] | None = None   # (stage, one-line reason)


def clip_keys(clip: Clip, nodes: list[Node], job: Job) -> dict[str, str]:
    """Each node's cache key; raises OSError when an input file cannot be read."""
    keys: dict[str, str] = {}
    prints: dict[Path | None, str] = {}
    for node in nodes:
        if node.path not in prints:
            # a clip that is one part of a shared file (a segment) keys on which part, too
            part = f"#{clip.part}" if clip.part and node.path else ""
            prints[node.path] = fingerprint(node.path, job.hash_content) + part
        settings = job.settings.get(node.stage.name)
        keys[node.id] = stage_key(node.stage.name, node.stage.version, canonical(settings) if settings else "null",
                                  prints[node.path], [keys[n] for n in node.needs])
    return keys


@dataclass(frozen=True)
class Plan:
    """What a run of one clip finds in the cache before running anything."""
    nodes: list[Node]
    keys: dict[str, str]
    heads: dict[str, Head]                   # node id -> cached entry (forced nodes left out)
    failure: tuple[str, str] | None = None   # a cached failure, or an unreadable input file

    @property
    def settled(self) -> bool:
        """Nothing to compute: every stage is cached, or the clip is known to fail."""
        return self.failure is not None or len(self.heads) == len(self.nodes)


def plan_clip(clip: Clip, job: Job, cache: Cache) -> Plan:
    nodes = clip_nodes(clip, job.stages)
    try:
        keys = clip_keys(clip, nodes, job)
    except OSError as e:
        return Plan(nodes, {}, {}, (nodes[0].stage.name, f"cannot read the file: {e.strerror}"))
    heads: dict[str, Head] = {}
    for node in nodes:
        head = None if node.stage.name in job.force else cache.head(node.stage.name, keys[node.id])
        if head is not None and head.error is not None:
            return Plan(nodes, keys, heads, (node.stage.name, head.error))
        if head is not None:
            heads[node.id] = head
    return Plan(nodes, keys, heads)


def _guarded(stage: str, run):
    """run(); a bug (not a bad clip) becomes a ClipError so the run still finishes, one that is not
    cached (the clip is not at fault)."""
    try:
        return run()
    except (ClipError, FfmpegMissing):   # FfmpegMissing: a set-up problem, stops the run with one line
        raise
    except Exception as e:
        raise _InternalError(stage, f"internal error {type(e).__name__}: {e}") from e


class _InternalError(TransientClipError):
    """A bug in rq, not a fault of the clip: recorded, not cached."""


def process_clip(planned: tuple[Clip, Plan], job: Job) -> ClipResult:
    """Run one clip through every stage, given its plan (plan_clip): cached nodes are read only when a
    computed node needs their output, missing ones computed and stored. A ClipError anywhere is this
    clip's failure, never the run's."""
    clip, plan = planned
    cache = Cache(job.cache_root)
    keys, heads = plan.keys, dict(plan.heads)
    states = {node_id: ("cached", 0.0) for node_id in heads}
    if plan.failure:
        states[plan.failure[0]] = ("failed", 0.0)
        return ClipResult(clip, states, keys, {}, failure=plan.failure)
    by_id = {node.id: node for node in plan.nodes}
    outputs: dict[str, dict[str, bytes]] = {}

    def output(node: Node) -> dict[str, bytes]:
        if node.id not in outputs:
            got = cache.read(node.stage.name, keys[node.id]) if node.id in heads else None
            if got is not None:
                outputs[node.id] = got
            elif node.stage.decodes:
                decode_file(node)
            else:
                compute(node)
        return outputs[node.id]

    def store(node: Node, result, seconds: float) -> None:
        members, meta = result if isinstance(result, tuple) else (result, None)
        heads[node.id] = cache.put(node.stage.name, keys[node.id], members, meta)
        states[node.id] = ("computed", seconds)
        outputs[node.id] = members

    def failed(node: Node, error: ClipError, seconds: float) -> None:
        states[node.id] = ("failed", seconds)
        if not isinstance(error, TransientClipError):   # a timeout, a kill, a permission may pass next time
            cache.put_error(node.stage.name, keys[node.id], error.reason)

    def compute(node: Node) -> None:
        st = node.stage
        inputs = {need: output(by_id[node_id]) for need, node_id in zip(st.needs, node.needs)}
        start = time.perf_counter()
        try:
            part = (clip.part,) if st.part else ()
            result = _guarded(st.name, lambda: st.fn(node.path, inputs, job.settings.get(st.name), job.timeout, *part))
        except ClipError as e:
            failed(node, e, time.perf_counter() - start)
            raise
        store(node, result, time.perf_counter() - start)

    def decode_file(asked: Node) -> None:
        """`asked` and every other missing decoding stage of its file from one ffmpeg run (its time
        split between them)."""
        group = [n for n in plan.nodes if n.stage.decodes and n.path == asked.path and n.id not in outputs
                 and (n.id not in heads or n is asked)]
        start = time.perf_counter()
        try:
            results = _guarded(asked.stage.name, lambda: decode_together(
                asked.path, {n.stage.name: job.settings.get(n.stage.name) for n in group}, job.timeout))
        except ClipError as e:
            results = {asked.stage.name: e}
        share = (time.perf_counter() - start) / len(group)
        errors = []
        for node in group:
            result = results.get(node.stage.name)
            if isinstance(result, ClipError):
                failed(node, result, share)
                errors.append(result)
            elif result is not None:
                store(node, result, share)
        if errors:
            raise errors[0]

    try:
        for node in plan.nodes:
            if node.id not in heads:
                output(node)
        info = heads["probe"].meta if "probe" in heads else None   # recipes of their own stages have no probe
    except ClipError as e:
        return ClipResult(clip, states, keys, {}, failure=(e.stage, e.reason))
    shard_heads = {st.name: heads[st.name] for st in job.stages if st.in_shard}
    return ClipResult(clip, states, keys, shard_heads, probe=info)


def lost_clip(planned: tuple[Clip, Plan], reason: str) -> ClipResult:
    """The result of a clip whose run never finished (its Ray worker or node died on every try): failed
    at its first stage to compute, a transient failure that is not cached, so the next run computes it."""
    clip, plan = planned
    node = next(n for n in plan.nodes if n.id not in plan.heads)   # a clip with work has one
    states = {node_id: ("cached", 0.0) for node_id in plan.heads} | {node.id: ("failed", 0.0)}
    return ClipResult(clip, states, plan.keys, {}, failure=(node.stage.name, reason))
