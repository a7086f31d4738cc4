import pytest

from workbench.errors import RecipeError
from workbench.recipe import load_recipe, recipe_from_dict

STUDENTS = [{"name": "s", "arch": "cnn", "width": 4, "depth": 1}]


def test_builtin_demo_recipe_loads_and_round_trips(tmp_path):
    r = load_recipe()
    assert r.name == "digits-demo" and len(r.students) == 2
    assert r.measure.resolved_threads()[0] == 1
    p = tmp_path / "copy.toml"
    p.write_text(r.to_toml())
    again = load_recipe(p)
    assert again.to_dict() == r.to_dict()


def test_quick_shrinks_budget():
    r = load_recipe().quick()
    assert len(r.distill.seeds) == 2 and r.measure.threads == (1,)
    assert r.distill.steps <= 150 and set(r.distill.regimes) <= {"full", "few-5"}


@pytest.mark.parametrize("data, message", [
    ({"studnets": STUDENTS}, "unknown recipe key 'studnets'; valid keys: schema_version, name, students"),
    ({"students": STUDENTS, "distill": {"temprature": 2}}, "unknown key 'temprature' in [distill]; valid keys: temperature"),
    ({"students": STUDENTS, "distill": {"steps": "many"}}, "[distill] steps must be an integer"),
    ({"students": STUDENTS, "distill": {"seeds": 3}}, "[distill] seeds must be a list"),
    ({"students": STUDENTS, "distill": {"regimes": ["full", "few"]}}, "regime 'few' is not valid"),
    ({"students": STUDENTS, "measure": {"runtimes": ["ort-gpu"]}}, "unknown runtime 'ort-gpu'; available: executorch, litert, ort, ort-mobile"),
    ({"students": STUDENTS, "quantize": {"teacher": ["int3"]}}, "unknown quantization method 'int3'"),
    ({"students": [{"name": "s", "widht": 4}]}, "unknown key 'widht' in student 's'; valid keys: name, arch, width"),
    ({"students": [{"name": "s", "arch": "vit"}]}, "unknown architecture 'vit'; available: cnn, mlp, resnet"),
    ({}, "needs at least one [[students]]"),
    ({"schema_version": 9, "students": STUDENTS}, "schema_version 9 is not supported"),
    ({"students": STUDENTS, "measure": {"threads": [0]}}, "threads must be positive integers"),
    ({"students": STUDENTS, "quantize": {"teacher": ["static?calibraton=entropy"]}},
     "quantization method static has no option calibraton"),
    ({"students": STUDENTS, "quantize": {"teacher": ["static?calibration=magic"]}}, "calibration='magic' is not valid"),
    ({"students": STUDENTS, "quantize": {"teacher": ["static", "static?calibration=minmax"]}},
     "which are the same method; list it once"),
    ({"students": STUDENTS, "quantize": {"teacher": ["auto", "auto"]}}, "which are the same method"),
    ({"students": STUDENTS, "quantize": {"teacher": [3]}}, "must list method specs as strings"),
    ({"students": STUDENTS, "quantize": {"max_drop": -1}}, "[quantize] max_drop = -1.0 is not allowed; use a number in [0, 100] (accuracy points"),
])
def test_invalid_recipes_name_the_problem(data, message):
    with pytest.raises(RecipeError) as e:
        recipe_from_dict(data)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad)


def test_quantize_specs_and_artifact_ids():
    from workbench.quantize import parse_method
    from workbench.quantize.auto import quantized_suffix

    r = recipe_from_dict({"students": STUDENTS, "quantize": {
        "teacher": ["static", "dynamic", "fp16", "int4", "static?calibration=entropy&reduce_range=false", "auto"],
        "max_drop": 1.0}})
    assert r.quantize.max_drop == 1.0 and "auto" in r.quantize.teacher
    ids = [quantized_suffix(parse_method(s)) for s in r.quantize.teacher[:-1]]
    # the plain names keep the ids every earlier run used
    assert ids[:4] == ["int8-static", "int8-dynamic", "fp16", "int4"]
    assert ids[4] == "int8-static-calibration_entropy-reduce_range_false"
    long = parse_method("static?exclude_nodes=" + ",".join(f"node_Conv_{i}" for i in range(20)))
    assert len(quantized_suffix(long)) < 80 and quantized_suffix(long) == quantized_suffix(long)
    assert load_recipe().quantize.teacher[-1] == "auto"  # the demo runs auto beside the fixed methods
