"""Inputs for any ONNX model: shapes from --shape or defaults, arrays per dtype, tasks, .npz checks."""
import numpy as np
import pytest

from workbench.errors import ArtifactError, RecipeError
from workbench.measure.inputs import (DEFAULT_VOCAB, SOURCE_KEY, parse_shapes, read_model_inputs, resolve_inputs,
                                      write_npz)
from workbench.measure.worker import make_feeds, read_inputs

VOCAB = 500


def _save(graph, path):
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def transformer_like(path, gather=True):
    """input_ids [batch, sequence] -> Gather(emb [500, 8]) * mask -> ReduceMean over the sequence -> [batch, 8]."""
    from onnx import TensorProto, helper, numpy_helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])
    out = helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 8])
    inits = [numpy_helper.from_array(np.random.default_rng(0).standard_normal((VOCAB, 8)).astype(np.float32),
                                     "emb.weight"),
             numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "seq_axis")]
    nodes = [helper.make_node("Gather", ["emb.weight", "input_ids"], ["tok"]) if gather else
             helper.make_node("Cast", ["input_ids"], ["idsf"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
             helper.make_node("Mul", ["tok" if gather else "idsf", "mask3" if gather else "maskf"], ["masked"]),
             helper.make_node("ReduceMean", ["masked", "seq_axis"], ["pooled"], keepdims=0)]
    return _save(helper.make_graph(nodes, "tiny_transformer", [ids, mask], [out], inits), path)


def float_model(path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    return _save(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y]), path)


@pytest.fixture(scope="module")
def tx(tmp_path_factory):
    return read_model_inputs(transformer_like(tmp_path_factory.mktemp("tx") / "tx.onnx"))


def test_token_ids_within_vocab_mask_ones_default_dims(tx):
    assert tx.vocab == {"input_ids": (VOCAB, "emb.weight")}
    r = resolve_inputs(tx, {})
    ids, mask = r.feeds["input_ids"], r.feeds["attention_mask"]
    assert ids.shape == mask.shape == (1, 128) and ids.dtype == mask.dtype == np.int64
    assert ids.min() >= 0 and ids.max() < VOCAB and len(np.unique(ids)) > 50
    assert (mask == 1).all()
    assert r.sources["input_ids"] == ("generated: input_ids int64 token ids in [0, 500) "
                                      "(vocab from Gather 'emb.weight')")
    assert any("'batch' -> 1" in n and "--shape batch=N" in n for n in r.notes)
    assert any("'sequence' -> 128" in n for n in r.notes) and r.defaulted
    again = resolve_inputs(tx, {})  # fixed seed
    assert np.array_equal(again.feeds["input_ids"], ids)


def test_generated_inputs_run_in_onnxruntime(tx):
    import onnxruntime as ort

    r = resolve_inputs(tx, parse_shapes(["batch=2", "sequence=16"]))
    out = ort.InferenceSession(tx.path, providers=["CPUExecutionProvider"]).run(None, r.feeds)[0]
    assert out.shape == (2, 8) and np.isfinite(out).all()


def test_shape_overrides_named_dims_and_whole_inputs(tx):
    r = resolve_inputs(tx, parse_shapes(["batch=2", "sequence=16"]))
    assert r.feeds["input_ids"].shape == (2, 16) and r.notes == () and not r.defaulted
    r = resolve_inputs(tx, parse_shapes(["input_ids=3x7"]))  # shared dims follow to attention_mask
    assert r.feeds["attention_mask"].shape == (3, 7) and r.used == {"input_ids"}
    with pytest.raises(RecipeError, match="has 3 dims but input 'input_ids'.*has 2"):
        resolve_inputs(tx, parse_shapes(["input_ids=1x2x3"]))
    with pytest.raises(RecipeError, match="sets dim 'sequence' to 9 but it is 7"):
        resolve_inputs(tx, parse_shapes(["input_ids=1x7", "attention_mask=1x9"]))
    with pytest.raises(RecipeError, match="give one value"):
        resolve_inputs(tx, parse_shapes(["sequence=1x2"]))


@pytest.mark.parametrize("bad", ["input=1xAx3", "input", "=1x2", "input=", "input=1x", "input=0x3", "a b=1"])
def test_bad_shape_syntax(bad):
    with pytest.raises(RecipeError) as e:
        parse_shapes([bad])
    msg = str(e.value)
    assert "\n" not in msg and ("--shape expects NAME=DIMxDIM..., got" in msg or ">= 1" in msg)


def test_shape_given_twice_differently():
    assert parse_shapes(["batch=2", "batch=2"]) == {"batch": (2,)}
    with pytest.raises(RecipeError, match="given twice"):
        parse_shapes(["batch=2", "batch=3"])
    assert parse_shapes({"x": [1, 3], "batch": 4}) == {"x": (1, 3), "batch": (4,)}


def test_float_inputs_are_standard_normal(tmp_path):
    m = read_model_inputs(float_model(tmp_path / "relu.onnx"))
    r = resolve_inputs(m, parse_shapes(["batch=2000"]))
    x = r.feeds["x"]
    assert x.dtype == np.float32 and x.shape == (2000, 4)
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05
    assert r.sources["x"] == "generated: x float32 standard normal (seed 0)"


def test_no_embedding_falls_back_to_default_vocab_and_says_so(tmp_path):
    m = read_model_inputs(transformer_like(tmp_path / "nogather.onnx", gather=False))
    assert m.vocab == {}
    r = resolve_inputs(m, {})
    assert r.feeds["input_ids"].max() < DEFAULT_VOCAB and "vocab assumed 1000" in r.sources["input_ids"]
    assert any("no embedding table" in n for n in r.notes)


def test_worker_feeds_carry_the_source(tmp_path, tx):
    r = resolve_inputs(tx, parse_shapes(["sequence=8"]))
    path = write_npz(str(tmp_path / "in.npz"), r.feeds, r.sources)
    raw = read_inputs(path)
    assert SOURCE_KEY in raw
    from workbench.runtimes import InputSpec

    feeds, info = make_feeds(list(tx.specs), raw, path)
    assert set(feeds) == {"input_ids", "attention_mask"}
    assert info["shapes"] == {"input_ids": [1, 8], "attention_mask": [1, 8]}
    assert info["source"].startswith("generated: input_ids int64 token ids in [0, 500)")
    assert info["source"].endswith("; attention_mask int64 ones")
    # no inputs file: generated with defaults in the worker
    feeds, info = make_feeds([InputSpec("token_type_ids", ("batch", "sequence"), "int64")], None, None)
    assert info["source"] == "generated" and feeds["token_type_ids"].shape == (1, 128)
    assert not feeds["token_type_ids"].any()


def test_npz_checks_name_shape_and_dtype(tmp_path, tx):
    good = {"input_ids": np.zeros((1, 5), np.int64), "attention_mask": np.ones((1, 5), np.int64)}
    np.savez(tmp_path / "good.npz", **good)
    r = resolve_inputs(tx, {}, npz=str(tmp_path / "good.npz"))
    assert r.feeds["input_ids"].shape == (1, 5) and r.sources["input_ids"] == "file good.npz: input_ids int64 [1, 5]"
    np.savez(tmp_path / "shape.npz", input_ids=np.zeros((1, 2, 3), np.int64), attention_mask=good["attention_mask"])
    with pytest.raises(ArtifactError) as e:
        resolve_inputs(tx, {}, npz=str(tmp_path / "shape.npz"))
    assert "'input_ids'" in str(e.value) and "[1, 2, 3]" in str(e.value) and "[batch, sequence]" in str(e.value)
    np.savez(tmp_path / "missing.npz", input_ids=good["input_ids"])
    with pytest.raises(ArtifactError, match="no array 'attention_mask'.*expected shape \\[batch, sequence\\]"):
        resolve_inputs(tx, {}, npz=str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "dtype.npz", input_ids=np.zeros((1, 5), np.float32), attention_mask=good["attention_mask"])
    with pytest.raises(ArtifactError, match="'input_ids' in dtype.npz is float32 but tx.onnx expects int64"):
        resolve_inputs(tx, {}, npz=str(tmp_path / "dtype.npz"))
    np.savez(tmp_path / "dims.npz", input_ids=good["input_ids"], attention_mask=np.ones((1, 6), np.int64))
    with pytest.raises(ArtifactError, match="disagree on dim 'sequence'"):
        resolve_inputs(tx, {}, npz=str(tmp_path / "dims.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="cannot read inputs file junk.npz"):
        resolve_inputs(tx, {}, npz=str(tmp_path / "junk.npz"))


def test_task_inputs(tmp_path, digits, tx):
    m = read_model_inputs(_conv_like(tmp_path / "conv.onnx"))
    r = resolve_inputs(m, {}, task=digits)
    assert r.feeds["input"].shape == (1, 1, 32, 32) and np.array_equal(r.feeds["input"], digits.x_test[:1])
    assert r.sources["input"].startswith("task digits: test split example 0")
    r = resolve_inputs(m, parse_shapes(["batch=4"]), task=digits)
    assert r.feeds["input"].shape == (4, 1, 32, 32) and r.used == {"batch"}
    with pytest.raises(RecipeError, match="gives one input .* but tx.onnx has 2 inputs"):
        resolve_inputs(tx, {}, task=digits)
    with pytest.raises(RecipeError, match="only the batch can change"):
        resolve_inputs(m, parse_shapes(["input=2x1x16x16"]), task=digits)


def _conv_like(path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 32, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 32, 32])
    return _save(helper.make_graph([helper.make_node("Relu", ["input"], ["y"])], "conv", [x], [y]), path)


def test_corrupt_and_empty_models(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ArtifactError, match="cannot read corrupt.onnx"):
        read_model_inputs(str(bad))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ArtifactError, match="no ONNX graph"):
        read_model_inputs(str(empty))


def test_contiguous_keeps_0d_and_sequence_guess_is_flagged(tx):
    from workbench.measure.inputs import contiguous

    assert contiguous(np.array(16000)).shape == () and contiguous(np.arange(6).reshape(2, 3)[:, 1]).flags.c_contiguous
    guessed = resolve_inputs(tx, {}).guessed  # the batch default is no guess; the sequence length is
    assert [(g.input, g.shape, g.axes) for g in guessed] == [("input_ids", (1, 128), (1,)),
                                                            ("attention_mask", (1, 128), (1,))]
    assert resolve_inputs(tx, parse_shapes(["sequence=16"])).guessed == ()
