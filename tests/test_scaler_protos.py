"""The committed gRPC code is what `make protos` makes, and the contract equals KEDA's field for field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf.descriptor import FieldDescriptor as F

from external_scaler._proto import externalscaler_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("externalscaler_pb2.py", "externalscaler_pb2_grpc.py", "externalscaler_pb2.pyi")

# reference/keda-external-scaler.md §1: (message, field, type, number, repeated)
FIELDS = {
    ("ScaledObjectRef", "name", F.TYPE_STRING, 1, False),
    ("ScaledObjectRef", "namespace", F.TYPE_STRING, 2, False),
    ("ScaledObjectRef", "scalerMetadata", "map<string,string>", 3, True),
    ("IsActiveResponse", "result", F.TYPE_BOOL, 1, False),
    ("GetMetricSpecResponse", "metricSpecs", "MetricSpec", 1, True),
    ("MetricSpec", "metricName", F.TYPE_STRING, 1, False),
    ("MetricSpec", "targetSize", F.TYPE_INT64, 2, False),
    ("MetricSpec", "targetSizeFloat", F.TYPE_DOUBLE, 3, False),
    ("GetMetricsRequest", "scaledObjectRef", "ScaledObjectRef", 1, False),
    ("GetMetricsRequest", "metricName", F.TYPE_STRING, 2, False),
    ("GetMetricsResponse", "metricValues", "MetricValue", 1, True),
    ("MetricValue", "metricName", F.TYPE_STRING, 1, False),
    ("MetricValue", "metricValue", F.TYPE_INT64, 2, False),
    ("MetricValue", "metricValueFloat", F.TYPE_DOUBLE, 3, False),
}
# (method, request, response, server streaming)
METHODS = {
    ("IsActive", "ScaledObjectRef", "IsActiveResponse", False),
    ("StreamIsActive", "ScaledObjectRef", "IsActiveResponse", True),
    ("GetMetricSpec", "ScaledObjectRef", "GetMetricSpecResponse", False),
    ("GetMetrics", "GetMetricsRequest", "GetMetricsResponse", False),
    ("StreamMetricSpec", "ScaledObjectRef", "GetMetricSpecResponse", True),
}


def _type(field: F) -> object:
    if field.message_type is None:
        return field.type
    if field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        assert (key.type, value.type) == (F.TYPE_STRING, F.TYPE_STRING)
        return "map<string,string>"
    return field.message_type.name


def test_package_and_service_name_are_keda_s():
    assert pb.DESCRIPTOR.package == "externalscaler"
    assert pb.DESCRIPTOR.services_by_name["ExternalScaler"].full_name == "externalscaler.ExternalScaler"
    assert pb.DESCRIPTOR.GetOptions().go_package == ".;externalscaler"


def test_message_fields_equal_the_reference_table():
    actual = set()
    for message in pb.DESCRIPTOR.message_types_by_name.values():
        for field in message.fields:
            actual.add((message.name, field.name, _type(field), field.number, field.is_repeated))
    assert actual == FIELDS


def test_methods_equal_the_reference_table():
    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    actual = {
        (m.name, m.input_type.name, m.output_type.name, m.server_streaming)
        for m in service.methods
        if not m.client_streaming
    }
    assert actual == METHODS
    assert not any(m.client_streaming for m in service.methods)


def test_regenerating_changes_nothing(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-Iexternal_scaler/_proto=protos", f"--python_out={out}",
           f"--grpc_python_out={out}", f"--pyi_out={out}", "protos/externalscaler.proto"]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    for name in GENERATED:
        fresh = (out / "external_scaler" / "_proto" / name).read_bytes()
        committed = (ROOT / "external_scaler" / "_proto" / name).read_bytes()
        assert fresh == committed, f"external_scaler/_proto/{name} is out of date: run `make protos`"


def test_generated_grpc_module_imports_its_sibling_package_qualified():
    text = (ROOT / "external_scaler" / "_proto" / "externalscaler_pb2_grpc.py").read_text()
    assert "from external_scaler._proto import externalscaler_pb2" in text
