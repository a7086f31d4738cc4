"""ONNX exports are content-addressed: the same model gives the same bytes, whatever the source lines."""
from __future__ import annotations

import onnx
import torch

from workbench.export.onnx import SOURCE_KEYS, export_onnx


class _Tiny(torch.nn.Module):
    """A conv + linear classifier small enough to export in a second."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def test_export_has_no_source_locations_and_is_byte_identical(tmp_path):
    x = torch.randn(2, 1, 8, 8).numpy()
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    export_onnx(_Tiny().eval(), x[:1], a, check_inputs=x)
    export_onnx(_Tiny().eval(), x[:1], b, check_inputs=x)
    model = onnx.load(str(a))
    keys = {p.key for n in model.graph.node for p in n.metadata_props}
    assert not keys & set(SOURCE_KEYS) and len(model.graph.node) > 0
    assert a.read_bytes() == b.read_bytes()
