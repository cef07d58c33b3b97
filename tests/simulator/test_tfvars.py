"""The HCL reader: the literal forms the settings files use, and a loud refusal of the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.tfvars import REQUIRED, TfvarsError, VarType, read_tfvars, read_variables


def _tfvars(tmp_path: Path, text: str) -> dict[str, object]:
    path = tmp_path / "x.tfvars"
    path.write_text(text)
    return read_tfvars(path)


def test_literals_comments_and_layouts(tmp_path: Path) -> None:
    values = _tfvars(tmp_path, '''
# a comment
name = "a \\"quoted\\" name\\n"   // another
/* a block
   comment */
count = -3
ratio = 0.5
big   = 1e3
on    = true
none  = null
list  = ["a",
  "b",   # trailing comma next
]
obj = {
  a = 1, "b" = { c = [] }
  d: false
}
''')
    assert values == {"name": 'a "quoted" name\n', "count": -3, "ratio": 0.5, "big": 1000.0,
                      "on": True, "none": None, "list": ["a", "b"],
                      "obj": {"a": 1, "b": {"c": []}, "d": False}}


@pytest.mark.parametrize(("text", "message"), [
    ("a = 1 + 2", "unexpected '\\+'"),
    ("a = var.x", "not a literal value: 'var'"),
    ('a = "${var.x}"', "templates"),
    ('a = "\\u00e9"', "escapes"),
    ("a = <<EOT\nx\nEOT", "cannot read"),
    ("a = {\n  b = 1\n", "end of file"),
    ('terraform {\n  x = 1\n}', "no blocks"),
    ("a = [1 2]", "expected ',' or ']'"),
    ("a = { b = 1 c = 2 }", "expected ',' or '}'"),
    ("= 1", "expected a name"),
    ("a = `x`", "cannot read"),
])
def test_anything_else_is_refused_with_its_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(TfvarsError, match=message) as caught:
        _tfvars(tmp_path, "\n" + text)
    assert "x.tfvars:" in str(caught.value)


def test_variable_blocks_keep_type_and_default_and_skip_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "variables.tf"
    path.write_text('''
variable "scaling" {
  description = "thresholds (%)"
  type = object({
    out  = optional(number, 70)
    tags = optional(map(string))
    mode = string
  })
  default = {}
  validation {
    condition     = var.scaling.out > 0 && (var.scaling.out <= 100 || !true)
    error_message = "out must be 0-100."
  }
}
variable "name" { type = string }
variable "anything" {}
''')
    declared = read_variables(path)
    scaling = declared["scaling"]
    assert scaling.default == {}
    assert scaling.type.name == "object"
    out, tags, mode = (scaling.type.attributes[k] for k in ("out", "tags", "mode"))
    assert (out.optional, out.default, out.type) == (True, 70, VarType("number"))
    assert (tags.optional, tags.default, tags.type) == (True, None,
                                                        VarType("map", VarType("string")))
    assert not mode.optional
    assert declared["name"].default is REQUIRED
    assert declared["anything"].type == VarType("any")


def test_unsupported_type_constraints_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "variables.tf"
    path.write_text('variable "t" {\n  type = tuple([string, number])\n}\n')
    with pytest.raises(TfvarsError, match=r"variables\.tf:2: unsupported type constraint 'tuple'"):
        read_variables(path)
