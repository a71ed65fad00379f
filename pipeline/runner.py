"""How one clip goes through the stages (`rq.pipeline.stages`): its nodes, their cache keys, the plan
of what is cached, and `process_clip`, the pure per-clip function an executor runs. `rq preprocess`
and `rq predict` both run clips through it."""
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rq.pipeline.cache import Cache, Head, stage_key
from rq.pipeline.clips import Clip, fingerprint
from rq.pipeline.errors import ClipError, TransientClipError
from rq.pipeline.ffmpeg import FfmpegMissing
from rq.pipeline.stages import STAGES, Stage
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
            outputs[node.id] = got if got is not None else compute(node)
        return outputs[node.id]

    def compute(node: Node) -> dict[str, bytes]:
        st = node.stage
        inputs = {need: output(by_id[node_id]) for need, node_id in zip(st.needs, node.needs)}
        start = time.perf_counter()
        try:
            part = (clip.part,) if st.part else ()
            members = st.fn(node.path, inputs, job.settings.get(st.name), job.timeout, *part)
        except ClipError as e:
            states[node.id] = ("failed", time.perf_counter() - start)
            if not isinstance(e, TransientClipError):   # a timeout or a kill may pass next time
                cache.put_error(st.name, keys[node.id], e.reason)
            raise
        except FfmpegMissing:   # a set-up problem: stops the run with one line, no clip is blamed
            raise
        except Exception as e:  # a bug, not a bad clip: recorded (not cached) so the run still finishes
            states[node.id] = ("failed", time.perf_counter() - start)
            raise ClipError(st.name, f"internal error {type(e).__name__}: {e}") from e
        heads[node.id] = cache.put(st.name, keys[node.id], members)
        states[node.id] = ("computed", time.perf_counter() - start)
        return members

    try:
        for node in plan.nodes:
            if node.id not in heads:
                output(node)
        info = json.loads(output(by_id["probe"])["probe.json"]) if "probe" in by_id else None
    except ClipError as e:
        return ClipResult(clip, states, keys, {}, failure=(e.stage, e.reason))
    shard_heads = {st.name: heads[st.name] for st in job.stages if st.in_shard}
    return ClipResult(clip, states, keys, shard_heads, probe=info)

