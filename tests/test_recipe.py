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
    ({"students": STUDENTS, "measure": {"runtimes": ["ort-gpu"]}}, "unknown runtime 'ort-gpu'; available: ort"),
    ({"students": STUDENTS, "quantize": {"teacher": ["int3"]}}, "unknown quantization method 'int3'"),
    ({"students": [{"name": "s", "widht": 4}]}, "unknown key 'widht' in student 's'; valid keys: name, arch, width"),
    ({"students": [{"name": "s", "arch": "vit"}]}, "unknown architecture 'vit'; available: cnn, resnet"),
    ({}, "needs at least one [[students]]"),
    ({"schema_version": 9, "students": STUDENTS}, "schema_version 9 is not supported"),
    ({"students": STUDENTS, "measure": {"threads": [0]}}, "threads must be positive integers"),
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
