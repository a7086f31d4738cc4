"""Transformers through `workbench run`: the text-classification and sentence-embedding families
(workbench.pipeline.families.text / text_kinds), member by member on tiny BERTs made here, then whole
runs of a text-classification recipe on a small real CSV (first docstring lines of standard-library
functions, labelled by their module) and of a tiny sentence-embedding recipe."""
from __future__ import annotations

import csv
import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from workbench.errors import RecipeError, SourceError  # noqa: E402

MODULES = ("json", "shutil", "random")  # the classes: which standard-library module a docstring line is from


def _docstring_rows() -> list[dict]:
    """Real text: the first line of the docstring of every public function / class of MODULES."""
    import importlib

    rows = []
    for mod in MODULES:
        m = importlib.import_module(mod)
        for name, obj in sorted(vars(m).items()):
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)):
                continue
            doc = (inspect.getdoc(obj) or "").strip().splitlines()
            line = doc[0].strip() if doc else ""
            if len(line.split()) >= 3:
                rows.append({"text": line, "label": mod})
    return rows


def _write_csv(path: Path) -> Path:
    rows = _docstring_rows()
    with open(path, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["text", "label"])
        wr.writeheader()
        wr.writerows(rows)
    return path


def _vocab(texts) -> list[str]:
    words: dict[str, int] = {}
    for t in texts:
        for w in re.findall(r"[a-z]+", t.lower()):
            words[w] = words.get(w, 0) + 1
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?\"'()-_*[]{}=<>/\\`#@%&+")
    top = [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:400]]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(top) - set(chars)) + chars + \
        ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]


def _tiny_bert(d: Path, texts, classes: int | None) -> Path:
    """A 4-layer BERT (hidden 32) with a WordPiece vocabulary of ``texts``, saved as an hf: folder; with
    ``classes`` a sequence classifier fine-tuned on (texts, labels) for a few steps (a trained head)."""
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    d.mkdir(parents=True, exist_ok=True)
    vocab = _vocab(texts)
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, num_labels=classes or 2)
    model = (BertForSequenceClassification if classes else BertModel)(cfg)
    tok.save_pretrained(str(d))
    model.eval().save_pretrained(str(d))
    return d


def _fine_tune(d: Path, texts, labels, steps: int = 60) -> None:
    """A few steps of cross-entropy on the labelled texts, saved back into ``d``."""
    from transformers import BertForSequenceClassification, BertTokenizerFast

    tok = BertTokenizerFast.from_pretrained(str(d))
    model = BertForSequenceClassification.from_pretrained(str(d))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    y = torch.tensor(labels)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(texts), (16,), generator=g)
        batch = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=32, return_tensors="pt")
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().save_pretrained(str(d))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The CSV task, a fine-tuned tiny classifier teacher and a tiny encoder teacher + a sentence corpus."""
    from workbench.tasks.text_classification import load_text_classification

    root = tmp_path_factory.mktemp("text-world")
    csv_path = _write_csv(root / "docstrings.csv")
    task = load_text_classification(csv_path)
    texts = list(task.train_texts)
    cls_dir = _tiny_bert(root / "tiny-cls", texts + list(task.test_texts), classes=task.num_classes)
    _fine_tune(cls_dir, texts, [int(v) for v in task.train_labels])
    enc_dir = _tiny_bert(root / "tiny-enc", texts + list(task.test_texts), classes=None)
    corpus = root / "corpus.txt"  # one document per module (paragraphs), split by document
    docs = [" ".join(r["text"].rstrip(".") + "." for r in _docstring_rows()[i::12]) for i in range(12)]
    corpus.write_text("\n\n".join(docs) + "\n")
    return {"root": root, "csv": csv_path, "task": task, "cls": cls_dir, "enc": enc_dir, "corpus": corpus}


def _recipe(world, kind: str, **over) -> str:
    """A tiny text recipe as TOML text: ``kind`` "classification" (text: CSV) or "embedding" (corpus:)."""
    if kind == "classification":
        task, teacher = f"text:{world['csv']}", f"hf:{world['cls']}?task=classification"
        regimes, seeds = '["full"]', "[0]"
    else:
        task, teacher = f"corpus:{world['corpus']}?min_words=3", f"hf:{world['enc']}"
        regimes, seeds = '["full"]', "[0]"
    students = over.pop("students", '[[students]]\nname = "L2"\narch = "drop:2"\n')
    quant = over.pop("quantize", '[quantize]\nteacher = ["dynamic"]\nstudents = ["dynamic"]\ncalib_samples = 16\n')
    runtimes = over.pop("runtimes", '["ort"]')
    mobile = over.pop("mobile", "")
    return f"""name = "text-{kind}"
[task]
name = "{task}"
[teacher]
source = "{teacher}"
{students}
[distill]
seeds = {seeds}
regimes = {over.pop('regimes', regimes)}
steps = {over.pop('steps', 6)}
few_steps = 4
batch_size = 8
lr = 0.001
{quant}{mobile}
[measure]
runtimes = {runtimes}
threads = [1]
warmup_runs = 1
warmup_s = 0.0
min_runs = 3
min_s = 0.0
max_s = 0.2
memory_runs = 2
rounds = 1
"""


def _ctx(world, kind: str, root: Path, toml_text: str):
    """A RunContext for ``toml_text`` with its family, teacher and task fingerprints (as the run makes it)."""
    import tomllib

    from workbench.pipeline.families import FAMILIES, family_of
    from workbench.pipeline.family import RunContext
    from workbench.recipe import recipe_from_dict
    from workbench.tasks import load_task

    recipe = recipe_from_dict(tomllib.loads(toml_text))
    task = load_task(recipe.task.name, None, command="run")
    fam = family_of(task)
    loaded = fam.load_teacher(recipe, task, None)
    root.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(str(root), toml_text, None, loaded.sha256, task.fingerprint(), fam.name)
    assert FAMILIES.get(ctx.family) is fam
    return ctx, fam, recipe, task, loaded


# --------------------------------------------------------------------------- the families, member by member

def test_the_csv_is_real_text_in_three_classes(world):
    task = world["task"]
    assert task.labels == tuple(sorted(MODULES)) and len(task.train_texts) >= 30 and len(task.test_texts) >= 8


def test_recipe_accepts_text_tasks_and_the_family_is_chosen_from_the_task(world, tmp_path):
    ctx, fam, recipe, task, loaded = _ctx(world, "classification", tmp_path / "c", _recipe(world, "classification"))
    assert fam.name == "text-classification" and fam.metric == "accuracy" and "labels only" in fam.twin
    assert loaded.hf.task == "classification" and loaded.module is loaded.hf.module
    ctx2, fam2, *_ = _ctx(world, "embedding", tmp_path / "e", _recipe(world, "embedding"))
    assert fam2.name == "sentence-embedding" and fam2.metric == "cosine"
    assert "hidden_mse = 0" in fam2.twin and "without the teacher's hidden states" in fam2.twin


def test_inputs_calibration_and_parity_inputs_are_token_feeds(world, tmp_path):
    ctx, fam, recipe, task, _ = _ctx(world, "classification", tmp_path / "c", _recipe(world, "classification"))
    one = fam.inputs(task, "test", 1)
    assert set(one) == {"input_ids", "attention_mask"} and one["input_ids"].shape[0] == 1
    assert one["input_ids"].dtype == np.int64 and one["attention_mask"].all()
    lengths = sorted(len(x) for x in fam.token_ids(task, "test"))
    assert one["input_ids"].shape[1] == lengths[len(lengths) // 2]  # the median-length test text
    four = fam.inputs(task, "train", 4)
    assert four["input_ids"].shape[0] == 4 and four["attention_mask"].sum(1).max() == four["input_ids"].shape[1]
    cal = fam.calibration(ctx, 5)
    assert cal["input_ids"].shape[0] == 5 and cal["input_ids"].shape == cal["attention_mask"].shape
    assert fam.calibration(ctx)["input_ids"].shape[0] == len(task.train_texts)
    assert fam.parity_inputs(ctx)["input_ids"].shape[0] == min(16, len(task.test_texts))


def test_teacher_and_students_are_checked_before_any_work(world, tmp_path):
    from workbench.pipeline.families import family_of

    ctx, fam, recipe, task, loaded = _ctx(world, "classification", tmp_path / "c", _recipe(world, "classification"))
    import tomllib

    from workbench.recipe import recipe_from_dict

    def recipe_of(text):
        return recipe_from_dict(tomllib.loads(text))

    too_deep = _recipe(world, "classification", students='[[students]]\nname = "x"\narch = "drop:0,7"\n')
    with pytest.raises(RecipeError, match="layer 7 does not exist; the teacher has layers 0..3"):
        fam.load_teacher(recipe_of(too_deep), task, None)
    bad_kind = _recipe(world, "classification", students='[[students]]\nname = "x"\narch = "cnn"\n')
    with pytest.raises(RecipeError, match="a transformer student is one of drop:, hf-config:"):
        fam.load_teacher(recipe_of(bad_kind), task, None)
    bad_cfg = _recipe(world, "classification", students='[[students]]\nname = "x"\narch = "hf-config:?heads=3"\n')
    with pytest.raises(RecipeError, match="not a multiple of the 3 attention heads"):
        fam.load_teacher(recipe_of(bad_cfg), task, None)
    few = _recipe(world, "classification", regimes='["full", "few-500"]')
    with pytest.raises(RecipeError, match="few-500.*use few-N with N <="):
        fam.load_teacher(recipe_of(few), task, None)
    zoo = _recipe(world, "classification").replace(f"hf:{world['cls']}?task=classification", "zoo:digits-resnet")
    with pytest.raises(RecipeError, match="needs a transformers teacher"):
        fam.load_teacher(recipe_of(zoo), task, None)
    missing = _recipe(world, "classification").replace(str(world["cls"]), str(tmp_path / "nowhere"))
    with pytest.raises(SourceError, match="no such folder"):
        fam.load_teacher(recipe_of(missing), task, None)
    untrained = _recipe(world, "classification").replace(str(world["cls"]), str(world["enc"]))
    with pytest.raises(RecipeError, match="classifier head was never trained"):
        fam.load_teacher(recipe_of(untrained), task, None)
    # a corpus: no labels, so no few-label regimes; an hf-config student keeps the teacher's embedding size
    emb_text = _recipe(world, "embedding", regimes='["full", "few-5"]')
    from workbench.tasks import load_task

    corpus = load_task(recipe_of(emb_text).task.name, None)
    efam = family_of(corpus)
    with pytest.raises(RecipeError, match="a corpus task has no labels"):
        efam.load_teacher(recipe_of(emb_text), corpus, None)
    wide = _recipe(world, "embedding", students='[[students]]\nname = "w"\narch = "hf-config:?hidden=16&heads=2"\n')
    with pytest.raises(RecipeError, match="keeps the teacher's embedding size"):
        efam.load_teacher(recipe_of(wide), corpus, None)


@pytest.mark.parametrize("kind", ["classification", "embedding"])
def test_train_export_evaluate_one_student(world, tmp_path, kind):
    """Every member a run calls, in the order the units call them, for a KD student and its twin."""
    from workbench.pipeline.family import StudentJob, teacher_of

    ctx, fam, recipe, task, _ = _ctx(world, kind, tmp_path / "run", _recipe(world, kind))
    rows = {}
    for method in ("labels", "kd"):
        job = StudentJob(recipe.students[0], "full", 0, method)
        assert json.dumps(fam.job_config(recipe, job))  # pure, JSON (part of the content key)
        weights = tmp_path / f"{job.name}.safetensors"
        rows[method] = fam.train(job, ctx, weights, None)
        assert weights.is_file() and not (tmp_path / "run" / "work" / "train" / f"{job.name}.ckpt").exists()
    assert fam.job_config(recipe, StudentJob(recipe.students[0], "full", 0, "labels")) != \
        fam.job_config(recipe, StudentJob(recipe.students[0], "full", 0, "kd"))
    row = rows["kd"]
    assert row["metric"] == fam.metric and row["steps"] == 6 and row["keep"] == [0, 3]
    assert 0 <= row["test_metric"] <= 1 and row["params"] < sum(p.numel() for p in teacher_of(ctx).parameters())
    if kind == "embedding":
        assert rows["labels"]["losses"]["hidden_mse"] == 0 and row["losses"]["hidden_mse"] == 1
    else:
        assert rows["labels"]["losses"]["kd"] == 0 and row["losses"]["kd"] == recipe.distill.alpha
    student = fam.load_student(job, ctx, weights)
    student.eval()
    assert fam.pytorch_metric(student, ctx) == pytest.approx(row["test_metric"], abs=1e-6)
    onnx = tmp_path / "student.onnx"
    assert fam.export(student, onnx, ctx) < 1e-4
    q = fam.evaluate(str(onnx), "ort", ctx)
    assert q["metric"] == fam.metric and q["n"] == len(fam.texts(task, "test"))
    assert q["ci95"][0] <= q["value"] <= q["ci95"][1]
    assert q["value"] == pytest.approx(row["test_metric"], abs=2e-3)  # the artifact matches its PyTorch model
    value, per_example = fam.eval_fn(ctx)(onnx)
    assert value == pytest.approx(q["value"]) and len(per_example) == q["n"]
    assert fam.parity(student, onnx, ctx) < 1e-4
    if kind == "embedding":
        assert 0 <= q["knn_agreement"] <= 1 and len(q["knn_agreement_ci95"]) == 2
        t_onnx = tmp_path / "teacher.onnx"
        fam.export(teacher_of(ctx), t_onnx, ctx)
        assert fam.evaluate(str(t_onnx), "ort", ctx)["value"] == pytest.approx(1.0, abs=1e-5)


def test_static_quantization_calibrates_on_token_feeds(world, tmp_path):
    from workbench.pipeline.family import teacher_of
    from workbench.quantize import parse_method

    ctx, fam, recipe, task, _ = _ctx(world, "classification", tmp_path / "run", _recipe(world, "classification"))
    src = tmp_path / "teacher.onnx"
    fam.export(teacher_of(ctx), src, ctx)
    method = parse_method("static").with_options(calib_samples=8)
    method.apply(src, tmp_path / "teacher.int8.onnx", fam.calibration(ctx), "input_ids")
    q = fam.evaluate(str(tmp_path / "teacher.int8.onnx"), "ort", ctx)
    assert q["metric"] == "accuracy" and 0 <= q["value"] <= 1
    assert fam.parity(teacher_of(ctx), tmp_path / "teacher.int8.onnx", ctx) < 5.0


# --------------------------------------------------------------------------- workbench run, end to end

def _write_recipe(world, tmp_path, kind: str, **over) -> Path:
    path = tmp_path / f"{kind}.toml"
    path.write_text(_recipe(world, kind, **over))
    return path


def test_dry_run_validates_the_teacher_students_and_task_before_planning(world, tmp_path, capsys):
    from workbench.cli import main

    ok = _write_recipe(world, tmp_path, "classification",
                       students='[[students]]\nname = "L2"\narch = "drop:2"\n\n[[students]]\nname = "L1"\narch = "drop:1"\n')
    assert main(["run", str(ok), "--dry-run", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "4 training runs" in out and not (tmp_path / "run").exists()
    bad = _write_recipe(world, tmp_path, "classification", students='[[students]]\nname = "x"\narch = "drop:9"\n')
    assert main(["run", str(bad), "--dry-run", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the student can have 1..4 layers" in err[0]
    corpus = _write_recipe(world, tmp_path, "embedding", regimes='["full", "few-5"]')
    assert main(["run", str(corpus), "--dry-run", "--out", str(tmp_path / "run")]) == 2
    assert "a corpus task has no labels" in capsys.readouterr().err and not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classification", "embedding"])
def test_workbench_run_end_to_end(world, tmp_path, kind):
    """`workbench run --quick` on a text recipe: results.json holds the teacher, both twins of the student
    and the int8 (dynamic) teacher and student, each with the task's own metric through ONNX Runtime."""
    from workbench.cli import main

    recipe = _write_recipe(world, tmp_path, kind)
    assert main(["run", str(recipe), "--quick", "--out", str(tmp_path / "run")]) == 0
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    records = doc["results"]
    assert {r["variant"] for r in records} == {"teacher.fp32", "teacher.int8-dynamic", "L2.kd.fp32", "L2.labels.fp32",
                                               "L2.kd.int8-dynamic"}
    metric = "accuracy" if kind == "classification" else "cosine"
    for r in records:
        q = r["quality"]
        assert r["status"] == "ok" and set(r["input"]["shapes"]) == {"input_ids", "attention_mask"}
        assert q["metric"] == metric and 0 <= q["value"] <= 1 + 1e-9 and q["ci95"][0] <= q["value"] + 1e-9
    teacher = next(r for r in records if r["variant"] == "teacher.fp32")
    if kind == "embedding":  # the fp32 teacher artifact against its own PyTorch embeddings
        assert teacher["quality"]["value"] == pytest.approx(1.0, abs=1e-5) and teacher["quality"]["knn_agreement"] == 1.0
    study = doc["studies"]["distillation"][0]
    assert study["student"] == "L2" and len(study["kd_acc"]) == len(study["labels_acc"]) == 1
    assert (tmp_path / "run" / "report.md").is_file()


def test_hf_config_student_is_smaller_random_and_trains(world, tmp_path):
    """An hf-config: student: the teacher's config with fewer layers / a smaller FFN, randomly initialised
    (its key does not name the teacher's weights: nothing is copied), trained, exported and evaluated."""
    from workbench.pipeline.family import StudentJob, teacher_of

    students = '[[students]]\nname = "c"\narch = "hf-config:?layers=2&intermediate=32"\n'
    ctx, fam, recipe, task, _ = _ctx(world, "classification", tmp_path / "run",
                                     _recipe(world, "classification", students=students))
    job = StudentJob(recipe.students[0], "full", 0, "kd")
    assert "init" not in fam.job_config(recipe, job)
    drop = _recipe(world, "classification")
    import tomllib

    from workbench.recipe import recipe_from_dict

    drop_recipe = recipe_from_dict(tomllib.loads(drop))
    assert fam.job_config(drop_recipe, StudentJob(drop_recipe.students[0], "full", 0, "labels"))["init"]["teacher"]
    model = fam.new_student(job, ctx)
    assert model.config.num_hidden_layers == 2 and model.config.intermediate_size == 32
    teacher = teacher_of(ctx)
    assert not torch.equal(model.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)
    row = fam.train(job, ctx, tmp_path / "c.safetensors", None)
    assert row["keep"] == [0, 3] and row["params"] < sum(p.numel() for p in teacher.parameters())
    student = fam.load_student(job, ctx, tmp_path / "c.safetensors")
    assert fam.export(student, tmp_path / "c.onnx", ctx) < 1e-4
    assert fam.evaluate(str(tmp_path / "c.onnx"), "ort", ctx)["value"] == pytest.approx(row["test_metric"], abs=2e-3)


# --------------------------------------------------------------------------- the mobile runtimes

@pytest.mark.slow
@pytest.mark.ort_mobile
@pytest.mark.executorch
@pytest.mark.litert
@pytest.mark.parametrize("kind", ["classification", "embedding"])
def test_text_run_on_the_mobile_runtimes(world, tmp_path, capsys, kind):
    """A text recipe naming every runtime: ORT and ORT mobile get the teacher, the KD student and the int8
    (static, `[mobile] int8`) ORT-format files, parity-checked through the .ort file with the family's
    token feeds and measured on the two-array inputs.npz; ExecuTorch and LiteRT get the fp32 .pte / .tflite
    at a fixed sequence length, with the quality of the .onnx through their own runtimes."""
    from workbench.cli import main

    quant = '[quantize]\nteacher = ["static"]\nstudents = []\ncalib_samples = 8\n'
    # every runtime for the classifier, fp32 on the mobile ones; the encoder on ORT and ORT mobile with `[mobile]
    # int8` (the int8 .ort below). The encoder's .pte / .tflite path is the same exporter code, covered by the
    # classifier here and by tests/test_text_mobile.py, which also makes a token model's int8 .pte and .tflite
    # (workbench export --int8 pt2e,litert-dynamic) on a 1-layer model: two PT2E .pte and two int8 .tflite of
    # the 4- and 2-layer BERTs fewer here (each exported, evaluated and measured in fresh processes)
    classification = kind == "classification"
    runtimes = ["ort", "ort-mobile", "executorch", "litert"] if classification else ["ort", "ort-mobile"]
    recipe = _write_recipe(world, tmp_path, kind, runtimes=json.dumps(runtimes), quantize=quant,
                           mobile=f"[mobile]\nint8 = {'false' if classification else 'true'}\n")
    assert main(["run", str(recipe), "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr()
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    rts = doc["run"]["runtimes"]
    assert rts["measured"] == runtimes and not rts["skipped"]
    metric = "accuracy" if kind == "classification" else "cosine"
    ort = {r["variant"]: r for r in doc["results"] if r["runtime"]["name"] == "ort"}
    for rt in runtimes[2:]:
        got = {r["variant"]: r for r in doc["results"] if r["runtime"]["name"] == rt}
        assert set(got) == {"teacher.fp32", "L2.kd.fp32"}  # `[mobile] int8 = false`: fp32 only
        for variant, r in got.items():
            assert r["status"] == "ok" and r["quality"]["metric"] == metric
            if variant.endswith("fp32"):
                assert r["quality"]["value"] == pytest.approx(ort[variant]["quality"]["value"], abs=2e-3)
        refused = [n for n in rts["notes"] if n.startswith("skipped ") and f" on {rt}: " in n]
        assert all("\n" not in n and n in " ".join((printed.out + printed.err).split()) for n in refused)
    mobile = {r["variant"]: r for r in doc["results"] if r["runtime"]["name"] == "ort-mobile"}
    assert {"teacher.fp32", "L2.kd.fp32"} <= set(mobile) <= {"teacher.fp32", "teacher.int8-static", "L2.kd.fp32"}
    # the int8 (QDQ) .ort: ORT 1.32 converts it but cannot replay its saved runtime optimisations on load; a
    # conversion that fails is skipped with one note (nothing of it left behind) and the run goes on
    refused = [n for n in rts["notes"] if n.startswith("skipped teacher.int8-static on ort-mobile: ")]
    if classification:  # `[mobile] int8 = false`: no int8 file was planned for ORT mobile
        assert not refused and "teacher.int8-static" not in mobile
    else:
        assert len(refused) == (0 if "teacher.int8-static" in mobile else 1)
    if refused:
        assert "cannot load the converted teacher.int8-static.with_runtime_opt.ort" in refused[0]
        assert refused[0] in " ".join((printed.out + printed.err).split())
        assert not list((tmp_path / "run" / "artifacts" / "ort-mobile").glob("teacher.int8-static*"))
        assert "teacher.int8-static" in {r["variant"] for r in doc["results"] if r["runtime"]["name"] == "ort"}
    inputs = np.load(tmp_path / "run" / "inputs.npz")
    assert sorted(inputs.files) == ["attention_mask", "input_ids"]
    for variant, r in mobile.items():
        assert r["status"] == "ok" and set(r["input"]["shapes"]) == {"input_ids", "attention_mask"}
        assert r["quality"]["metric"] == metric
        if variant.endswith("fp32"):  # the same model through the .ort file: the same quality as the .onnx
            assert r["quality"]["value"] == pytest.approx(ort[variant]["quality"]["value"], abs=2e-3)
    art = json.loads(next((tmp_path / "run" / "work" / "artifacts").glob("ort-mobile.teacher.fp32.*.json")).read_text())
    files = sorted(p.name for p in (tmp_path / "run" / "artifacts" / "ort-mobile").iterdir())
    assert "teacher.fp32.with_runtime_opt.ort" in files and "teacher.fp32.required_operators.with_runtime_opt.config" in files
    parity = art["extra"]["export"]["parity"]
    assert parity["inputs"] == ["input_ids", "attention_mask"] and parity["max_abs"] < 1e-3


def test_a_token_model_the_mobile_exporters_cannot_trace_fails_in_one_line(world, tmp_path):
    """ExecuTorch and LiteRT take token feeds (a dict) and call the model's forward with them in order; a model
    whose forward does not take them is a one-line ExportError naming the cause, nothing written. The text
    families fit every runtime at preflight (they give the fixed example those exporters need)."""
    from workbench.errors import ExportError
    from workbench.export import EXPORTERS
    from workbench.pipeline.mobile import fitting_runtimes, runtime_fits

    feeds = {"input_ids": np.ones((1, 4), np.int64), "attention_mask": np.ones((1, 4), np.int64)}
    for name, what in (("executorch", "ExecuTorch"), ("litert", "LiteRT")):
        exp = EXPORTERS.get(name)
        if exp.missing():
            continue
        with pytest.raises(ExportError, match=f"{what} export \\(fp32\\) failed for m{exp.suffix}: TypeError: "):
            exp.export(torch.nn.Identity(), feeds, tmp_path / f"m{exp.suffix}")
        assert not (tmp_path / f"m{exp.suffix}").exists()
    assert fitting_runtimes(feeds, "text-classification") == fitting_runtimes({"input": 1})
    assert runtime_fits(["ort", "litert"], [], "text-classification", feeds) == (["ort", "litert"], [])


def test_a_refused_conversion_leaves_the_graph_with_its_dependents_and_one_note():
    """Graph.settled after a conversion returned Skipped: its evaluation and memory nodes go, its measurement
    group keeps the other artifacts, the runtime's artifact list drops it, and one note says why (pure)."""
    from workbench.pipeline.family import ModelRef
    from workbench.pipeline.plan import Graph, Node
    from workbench.pipeline.units.convert import Skipped
    from workbench.pipeline.units.jobs import ConvertJob, EvalJob, MeasureJob, MemoryJob

    ref = ModelRef("teacher", "k")
    a, b = "convert:ort-mobile:teacher.fp32", "convert:ort-mobile:teacher.int8-static"
    nodes = (Node(a, "convert", ConvertJob("teacher.fp32", "ort-mobile", "export:teacher.fp32", ref), ("export:teacher.fp32",)),
             Node(b, "convert", ConvertJob("teacher.int8-static", "ort-mobile", "quantize:x", ref), ("quantize:x",)),
             Node("evaluate:teacher.int8-static@ort-mobile", "evaluate", EvalJob(b, "ort-mobile"), (b,)),
             Node("measure:ort-mobile/t1", "measure_group", MeasureJob("ort-mobile", 1, (a, b), "teacher.fp32"), (a, b)),
             Node("memory:teacher.int8-static@ort-mobile/t1", "memory_profile", MemoryJob(b, "ort-mobile", 1, False), (b,)))
    graph = Graph(nodes, (("ort-mobile", (a, b)),))
    assert graph.settled({a: object()}) == (graph, [])
    why = Skipped("skipped teacher.int8-static on ort-mobile: ONNX Runtime cannot load it")
    results = {b: why, "evaluate:teacher.int8-static@ort-mobile": Skipped("skipped evaluate", cause=b)}
    settled, notes = graph.settled(results)
    assert notes == [why.note] and settled.artifacts == (("ort-mobile", (a,)),)
    ids = [n.id for n in settled.nodes]
    assert ids == [a, "measure:ort-mobile/t1"]  # the memory node lost its only input: gone too
    group = settled.node("measure:ort-mobile/t1")
    assert group.job.arts == (a,) and group.deps == (a,)
    assert graph.node("measure:ort-mobile/t1").without({a, b}) is None  # nothing left to measure
