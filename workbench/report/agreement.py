"""Do two runs agree? Which records match, which differ (and in what), and whether the conclusions
(recommendation, best pick per approach, verdicts vs the fp32 teacher, distillation-study verdicts,
quantization diagnoses) are the same. Used by `workbench report BEFORE AFTER --compare`.

A record matches when both runs hold it (same variant, runtime, threads) with the same status, the
same artifact bytes (sha256) and the same quality value; latency is never part of "match" (two runs
are measured at different times), it is the before/after table's job. Pure Python.
"""
from __future__ import annotations

from dataclasses import dataclass

from workbench.pipeline.results import Result, ResultSet


@dataclass(frozen=True)
class Agreement:
    """The outcome of :func:`agreement`: matching / differing record ids, and per conclusion
    (name, before, after) whether it agrees."""

    matching: tuple  # record ids
    differing: tuple  # (record id, "what differs")
    conclusions: tuple  # (what, before, after, agrees)

    @property
    def conclusions_agree(self) -> bool:
        """Every conclusion is the same in both runs."""
        return all(c[3] for c in self.conclusions)

    def to_json(self) -> dict:
        """As written into compare.json."""
        return {"matching": list(self.matching), "differing": [list(d) for d in self.differing],
                "conclusions": [{"what": w, "before": b, "after": a, "agrees": ok} for w, b, a, ok in self.conclusions],
                "conclusions_agree": self.conclusions_agree}


def _differences(b: Result, a: Result) -> list[str]:
    """What differs between two records of the same key (status, artifact bytes, size, quality)."""
    out = []
    if b.status != a.status:
        out.append(f"status {b.status} -> {a.status}")
    if b.artifact.sha256 != a.artifact.sha256:
        out.append("artifact bytes (sha256)")
    if b.artifact.size_bytes != a.artifact.size_bytes:
        out.append(f"size {b.artifact.size_bytes} -> {a.artifact.size_bytes} bytes")
    qb, qa = (b.quality.value if b.quality else None), (a.quality.value if a.quality else None)
    if qb != qa:
        out.append(f"quality {qb} -> {qa}")
    return out


def _conclusions(rs: ResultSet) -> dict:
    """name -> conclusion text of one run (what the report concludes)."""
    from workbench.report.analysis import analyse

    rep = analyse(rs)
    out = {"recommendation": rep.recommended.id if rep.recommended else "none"}
    for p in rep.picks:
        out[f"best {p.approach}"] = p.row.id if p.row else "none"
    for r in rep.rows:
        if r.verdict and r.verdict != "reference":
            out[f"verdict vs teacher: {r.id}"] = r.verdict
    for s in rep.studies:
        out[f"distillation study: {s.student} on {s.regime}"] = s.verdict
    for d in rep.diagnostics:
        out[f"quantization diagnosis: {d.variant}@{d.runtime}"] = d.verdict or "none"
    return out


def agreement(before: ResultSet, after: ResultSet) -> Agreement:
    """Which records of two runs match / differ, and whether their conclusions agree (see the module doc)."""
    b = {r.key: r for r in before.results}
    a = {r.key: r for r in after.results}
    matching, differing = [], []
    for k in [k for k in a if k in b]:
        diff = _differences(b[k], a[k])
        if diff:
            differing.append((a[k].id, "; ".join(diff)))
        else:
            matching.append(a[k].id)
    cb, ca = _conclusions(before), _conclusions(after)
    conclusions = tuple((k, cb.get(k, "absent"), ca.get(k, "absent"), cb.get(k) == ca.get(k))
                        for k in list(dict.fromkeys([*cb, *ca])))
    return Agreement(tuple(matching), tuple(differing), conclusions)


def agreement_lines(ag: Agreement) -> list[str]:
    """Markdown lines: the record match summary with ids, then the conclusions, disagreements first."""
    lines = ["## Records", "",
             f"{len(ag.matching)} records match (same status, artifact sha256 and quality); "
             f"{len(ag.differing)} differ.", ""]
    if ag.matching:
        lines += ["Matching: " + ", ".join(ag.matching), ""]
    lines += [f"- DIFFERS {rid}: {what}" for rid, what in ag.differing] + ([""] if ag.differing else [])
    n_bad = sum(not c[3] for c in ag.conclusions)
    lines += ["## Conclusions", "",
              ("All conclusions agree" if not n_bad else f"{n_bad} of {len(ag.conclusions)} conclusions DIFFER")
              + f" ({len(ag.conclusions)} compared: recommendation, best pick per approach, verdicts vs the fp32 "
              "teacher, distillation-study verdicts, quantization diagnoses).", ""]
    for what, b, a, ok in sorted(ag.conclusions, key=lambda c: c[3]):
        lines.append(f"- {'agrees' if ok else 'DIFFERS'}: {what}: {b}" + ("" if ok else f" -> {a}"))
    return lines + [""]
