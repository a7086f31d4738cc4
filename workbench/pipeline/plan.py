"""plan(recipe, ...) -> Graph: every unit a run will execute, its job, what it depends on and, where it
can be computed before anything runs, its content key. Pure: it loads, trains and writes nothing, so
``workbench run --dry-run`` prints exactly what a run would do.

Node ids name what a node makes: ``train:<student>.<regime>.<method>.s<seed>``, ``export:<artifact id>``,
``quantize:<artifact id>``, ``auto:<artifact id>``, ``convert:<runtime>:<artifact id>``,
``pytorch:<model>``, ``teacher_outputs:<teacher>.<entry>`` (a teacher-output cache entry, before the training
units reading it), ``evaluate:<artifact id>@<runtime>``, ``measure:<runtime>/t<threads>`` (with ``[measure]
group_size``: ``measure:<runtime>/t<threads>/g<i>``, sub-groups that each hold the reference artifacts),
``memory:<artifact id>@<runtime>/t<threads>``. Keys of units made from a file that does not exist yet
(quantize, convert, evaluate, measure) are known only once their inputs exist (``key`` None).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from .compare import BASELINE_RUNTIME  # the runtime every variant runs on; the others get the mobile models
from .family import FAMILIES, ModelRef, StudentJob
from .generations import lineage, train_methods
from .rundir import content_key
from .units.jobs import (AutoJob, ConvertJob, EvalJob, ExportJob, MeasureJob, MemoryJob, PyTorchMetricJob,
                         QuantizeJob, TrainJob)
from .units.teacher_outputs import TeacherOutputsJob, reads_teacher_outputs

REFERENCE = "teacher.fp32"  # every variant is compared with the fp32 teacher on the same runtime and threads


@dataclass(frozen=True)
class Node:
    """One unit of the graph: the registered unit function ``unit`` applied to ``job``, after ``deps``."""

    id: str
    unit: str
    job: object
    deps: tuple[str, ...] = ()
    key: str | None = None

    def without(self, gone) -> Node | None:
        """This node less the dependencies ``gone`` (skipped at run time): a measurement group measures the
        rest of its artifacts; any other node that lost an input is skipped too (None)."""
        lost = [d for d in self.deps if d in gone]
        if not lost:
            return self
        if not isinstance(self.job, MeasureJob) or len(lost) == len(self.job.arts):
            return None
        return replace(self, job=replace(self.job, arts=tuple(a for a in self.job.arts if a not in gone)),
                       deps=tuple(d for d in self.deps if d not in gone))


@dataclass(frozen=True)
class Graph:
    """The nodes of a run in a valid execution order (every node after its dependencies), plus the
    artifact nodes of each runtime in report order."""

    nodes: tuple[Node, ...]
    artifacts: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())  # (runtime, artifact node ids)

    def node(self, node_id: str) -> Node:
        """The node with id ``node_id``."""
        return next(n for n in self.nodes if n.id == node_id)

    def of_unit(self, unit: str) -> list[Node]:
        """The nodes running unit ``unit``, in order."""
        return [n for n in self.nodes if n.unit == unit]

    def settled(self, results: dict) -> tuple[Graph, list[str]]:
        """(the graph of what ran, one note per unit that made nothing) after an executor ran this graph:
        nodes whose result is a Skipped leave it, with their artifacts and their place in measurement groups."""
        from .units.convert import Skipped

        gone = {k for k, r in results.items() if isinstance(r, Skipped)}
        notes = [r.note for r in results.values() if isinstance(r, Skipped) and r.cause is None]
        if not gone:
            return self, notes
        nodes = tuple(n.without(gone) for n in self.nodes if n.id not in gone)
        return Graph(tuple(n for n in nodes if n is not None),
                     tuple((rt, tuple(i for i in ids if i not in gone)) for rt, ids in self.artifacts)), notes

    def summary(self) -> dict:
        """Counts for ``--dry-run``: training runs, teacher-output cache entries filled (each its own unit),
        artifacts per runtime, measurements, units by kind."""
        return {"training_runs": len(self.of_unit("train_student")),
                "teacher_output_caches": len(self.of_unit("teacher_outputs")),
                "artifacts": {rt: len(ids) for rt, ids in self.artifacts},
                "measurements": len(self.of_unit("memory_profile")),
                "units": dict(Counter(n.unit for n in self.nodes))}


def student_jobs(recipe) -> list[StudentJob]:
    """Every training run: each regime x student x seed, labels-only twin and KD (``[distill] mode = "self"``:
    and KD generations 2..N, each after the one that teaches it; see workbench.pipeline.generations)."""
    return [StudentJob(st, regime, seed, method, gen) for regime in recipe.distill.regimes for st in recipe.students
            for seed in recipe.distill.seeds for method, gen in train_methods(recipe)]


def _suffix(spec: str) -> str:
    from ..quantize import parse_method
    from ..quantize.auto import quantized_suffix

    return quantized_suffix(parse_method(spec))


def _conversions(recipe, runtime: str, refs: dict, nodes: dict, add, quantized: dict) -> list[str]:
    """The convert nodes of a mobile runtime (as workbench.pipeline.mobile.conversions makes them): for the
    teacher and each mobile KD student, its fp32 artifact and the int8 ones ``[mobile]`` asks for (from the
    .onnx variants quantized by those methods when the runtime's exporter converts ONNX)."""
    from ..export import exporter_for_runtime
    from ..quantize import parse_method
    from ..quantize.auto import AUTO
    from .mobile import pytorch_variants

    exp = exporter_for_runtime(runtime)
    int8 = exp.recipe_int8(recipe.mobile)
    out = []
    for model in ["teacher", *(f"{st.name}.kd" for st in recipe.mobile_students())]:
        ref, fp32 = refs[model], f"export:{model}.fp32"
        if exp.source == "onnx":
            names = {parse_method(s).name for s in int8}
            made = [(f"{model}.fp32", fp32, None)] + [
                (nodes[n].job.art_id, n, None) for n, spec in quantized.get(model, [])
                if spec.strip() != AUTO and parse_method(spec).name in names]
        else:
            made = [(art_id, fp32, spec) for art_id, spec in pytorch_variants(runtime, model, recipe.mobile)]
        out += [add(Node(f"convert:{runtime}:{art_id}", "convert", ConvertJob(art_id, runtime, src, ref, spec), (src,)))
                for art_id, src, spec in made]
    return out


def measure_groups(arts: list[str], nodes: dict, group_size: int | None) -> list[tuple[str, ...]]:
    """The measurement groups of one runtime's artifact nodes ``arts``: one group when ``group_size`` is
    None or not exceeded, else sub-groups of at most ``group_size`` that each hold the reference artifacts
    (the teacher's: fp32 and quantized, what every variant is compared with) plus a share of the others,
    in order. A RecipeError when ``group_size`` leaves no room beside the references."""
    if not group_size or len(arts) <= group_size:
        return [tuple(arts)]
    refs = [a for a in arts if nodes[a].job.model.name == "teacher"]
    rest = [a for a in arts if a not in refs]
    room = group_size - len(refs)
    if room < 1:
        from ..errors import RecipeError

        raise RecipeError(f"[measure] group_size = {group_size} leaves no room beside the {len(refs)} reference "
                          f"artifacts every sub-group holds (the teacher's); use at least {len(refs) + 1}, "
                          "or leave group_size out")
    return [tuple(refs + rest[i:i + room]) for i in range(0, len(rest), room)]


def teacher_outputs_node(fam, recipe, sj: StudentJob, teacher_sha: str, task_fp: str, caches: dict) -> Node | None:
    """The ``teacher_outputs`` node filling the cache entry training job ``sj`` reads (None when its family
    has no teacher-output cache or the job reads none: see units.teacher_outputs). One node per distinct
    entry (``caches``: plan key -> node id, updated): ``teacher_outputs:<teacher>.<label>``, the teacher being
    the run's (``teacher``) or the born-again generation whose trained student teaches (its node depends on
    that training)."""
    spec = reads_teacher_outputs(fam, recipe, sj)
    if spec is None:
        return None
    who, signal = ("teacher", teacher_sha) if sj.teacher is None else (sj.teacher.job.name, sj.teacher.key)
    key = content_key("teacher-outputs", spec.label, spec.parts, signal, task_fp)
    node_id = caches.get(key) or f"teacher_outputs:{who}.{spec.label}"
    if node_id in caches.values() and caches.get(key) != node_id:  # one label, two entries: the key tells them apart
        node_id += f".{key[:8]}"
    caches[key] = node_id
    deps = () if sj.teacher is None else (f"train:{sj.teacher.job.name}",)
    return Node(node_id, "teacher_outputs", TeacherOutputsJob(sj, key, spec.label), deps, key=key)


def plan(recipe, runtimes: list[str], *, teacher_sha: str, task_fp: str, family: str,
         isa: dict | None = None, profiled: frozenset = frozenset()) -> Graph:
    """The graph of a run of ``recipe`` on ``runtimes`` (those installed; see mobile.plan_runtimes) for the
    teacher with sha256 ``teacher_sha`` and the task with fingerprint ``task_fp``. ``isa``: the CPU
    features ``auto`` proposes candidates for; ``profiled``: runtimes with a per-operator profiler."""
    from ..quantize.auto import AUTO

    fam, ex, q = FAMILIES.get(family), recipe.export, recipe.quantize
    nodes: dict[str, Node] = {}
    arts: dict[str, list[str]] = {rt: [] for rt in runtimes}

    def add(node: Node) -> str:
        nodes.setdefault(node.id, node)
        return node.id

    teacher = ModelRef("teacher", content_key(teacher_sha, task_fp))
    key = content_key("export-onnx", teacher_sha, task_fp, ex.parity_atol, ex.parity_rtol)
    t_export = add(Node("export:teacher.fp32", "export_fp32", ExportJob("teacher.fp32", teacher, key), key=key))
    add(Node("pytorch:teacher", "pytorch_metric", PyTorchMetricJob(teacher),
             key=content_key("pytorch-accuracy", teacher_sha, task_fp)))
    refs: dict[str, ModelRef] = {"teacher": teacher}
    taught: dict[str, ModelRef] = {}  # every trained student by job name (born-again generations learn from them)
    caches: dict[str, str] = {}  # teacher-output cache entries: plan key -> node id
    for sj in student_jobs(recipe):
        sj, deps, signal = lineage(sj, taught, teacher_sha)  # standard mode: (sj, (), teacher sha for KD)
        cache = teacher_outputs_node(fam, recipe, sj, teacher_sha, task_fp, caches)
        if cache is not None:  # the job reads the teacher-output cache: after the unit that fills its entry
            deps = (*deps, add(cache))
        key = content_key("train", sj.student.to_toml(), sj.regime, fam.job_config(recipe, sj), task_fp, signal)
        weights = f"work/train/{sj.name}.{key}.safetensors"
        add(Node(f"train:{sj.name}", "train_student", TrainJob(sj, key, weights), deps, key=key))
        taught[sj.name] = ModelRef(f"{sj.student.name}.{sj.method}", key, sj, weights)
        if sj.regime == "full" and sj.seed == recipe.distill.seeds[0]:  # self mode: the last generation deploys
            refs[f"{sj.student.name}.{sj.method}"] = taught[sj.name]

    def quantize_all(src: str, base: str, model: ModelRef, specs) -> list[str]:
        fixed = [add(Node(f"quantize:{base}.{_suffix(s)}", "quantize", QuantizeJob(f"{base}.{_suffix(s)}", src, s, model),
                          (src,))) for s in specs if s.strip() != AUTO]
        threads = recipe.measure.resolved_threads()[0]
        out, it = [], iter(fixed)
        for s in specs:
            if s.strip() == AUTO:
                job = AutoJob(f"{base}.auto", src, model, tuple(fixed), tuple(sorted((isa or {}).items())), threads)
                out.append(add(Node(f"auto:{base}.auto", "auto_quantize", job, (src, *fixed))))
            else:
                out.append(next(it))
        return out

    onnx = [t_export, *quantize_all(t_export, "teacher", teacher, q.teacher)]
    quantized: dict[str, list[tuple[str, str]]] = {"teacher": list(zip(onnx[1:], q.teacher))}
    for st in recipe.students:
        for m in ("labels", "kd"):
            ref = refs[f"{st.name}.{m}"]
            key = content_key("export-onnx", ref.key, ex.parity_atol, ex.parity_rtol)
            exp = add(Node(f"export:{st.name}.{m}.fp32", "export_fp32",
                           ExportJob(f"{st.name}.{m}.fp32", ref, key, f"train:{ref.job.name}"),
                           (f"train:{ref.job.name}",), key))
            onnx.append(exp)
            if m == "kd":
                quant = quantize_all(exp, f"{st.name}.kd", ref, q.students)
                onnx += quant
                quantized[ref.name] = list(zip(quant, q.students))
    for rt in runtimes:
        if rt == BASELINE_RUNTIME:
            arts[rt] = list(onnx)
            continue
        arts[rt] = _conversions(recipe, rt, refs, nodes, add, quantized)
    for rt in runtimes:
        for a in arts[rt]:
            add(Node(f"evaluate:{nodes[a].job.art_id}@{rt}", "evaluate", EvalJob(a, rt), (a,)))
        for th in recipe.threads_for(rt):
            groups = measure_groups(arts[rt], nodes, recipe.measure.group_size)
            for i, group in enumerate(groups):  # one group (the default), or sub-groups with the references
                add(Node(f"measure:{rt}/t{th}" + (f"/g{i}" if len(groups) > 1 else ""), "measure_group",
                         MeasureJob(rt, th, group, REFERENCE), group))
            for a in arts[rt]:
                add(Node(f"memory:{nodes[a].job.art_id}@{rt}/t{th}", "memory_profile",
                         MemoryJob(a, rt, th, rt in profiled and th == recipe.threads_for(rt)[0]), (a,)))
    return Graph(tuple(nodes.values()), tuple((rt, tuple(ids)) for rt, ids in arts.items()))
