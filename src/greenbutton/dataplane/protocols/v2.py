"""Open Inference Protocol v2 (KServe, Triton, Seldon clients): health, metadata and infer.

``POST /v2/models/{name}[/versions/{version}]/infer`` takes named input tensors and answers
named output tensors, typed by the MLflow signature (see :mod:`..tensors`). A model with a
column signature takes one tensor per column, or one ``[rows, columns]`` tensor holding
every column in signature order. The response's ``id`` echoes the request's (else the
request id); ``parameters`` carry ``request_id`` and each row annotator's values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from mlflow.types.schema import ColSpec, DataType, Schema, TensorSpec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...errors import ModelNotFound, ModelNotReady, PayloadTooLarge, SchemaMismatch, VersionNotFound
from ..context import serving
from ..core import DataPlane, PredictionResult
from ..encoding import JSON, media_type_of, parse_json, read_body
from ..responses import json_response
from ..tensors import V2_OF_MLFLOW, column, decode_tensor, encode_tensor, v2_datatype

PLATFORM = "mlflow_pyfunc"
RESERVED_PARAMETERS = frozenset({"content_type", "headers"})
INFER_PATHS = frozenset({"/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"})


def routes() -> list[BaseRoute]:
    """Every v2 route."""
    model, versioned = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
    return [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        *(Route(base, model_metadata, methods=["GET"]) for base in (model, versioned)),
        *(Route(f"{base}/ready", model_ready, methods=["GET"]) for base in (model, versioned)),
        *(Route(f"{base}/infer", infer, methods=["POST"]) for base in (model, versioned)),
    ]


async def server_metadata(request: Request) -> Response:
    """``GET /v2``: server name, version and extensions."""
    from importlib.metadata import version

    return json_response({"name": "greenbutton", "version": version("greenbutton"),
                          "extensions": []})


async def live(request: Request) -> Response:
    """``GET /v2/health/live``."""
    return json_response({"live": True})


async def ready(request: Request) -> Response:
    """``GET /v2/health/ready``: 200 once loaded and warmed up, 503 before and when draining."""
    dataplane = serving(request).dataplane
    if not dataplane.is_ready or dataplane.is_draining:
        raise ModelNotReady(dataplane.status_message())
    return json_response({"ready": True})


async def model_ready(request: Request) -> Response:
    """``GET /v2/models/{name}[/versions/{version}]/ready``."""
    dataplane = _dataplane_for(request)
    if not dataplane.is_ready or dataplane.is_draining:
        raise ModelNotReady(dataplane.status_message())
    return json_response({"name": dataplane.name, "ready": True})


async def model_metadata(request: Request) -> Response:
    """``GET /v2/models/{name}[/versions/{version}]``: inputs and outputs as v2 tensors."""
    dataplane = _dataplane_for(request)
    metadata = dataplane.model.pyfunc.metadata
    return json_response({
        "name": dataplane.name,
        "versions": [dataplane.version] if dataplane.version else [],
        "platform": PLATFORM,
        "inputs": describe(metadata.get_input_schema()),  # type: ignore[no-untyped-call]
        "outputs": describe(metadata.get_output_schema()),  # type: ignore[no-untyped-call]
    })


async def infer(request: Request) -> Response:
    """``POST /v2/models/{name}[/versions/{version}]/infer``."""
    dataplane = _dataplane_for(request)
    media_type_of(request, frozenset({JSON}))
    payload = parse_json(await read_body(request, dataplane.settings.max_body_bytes))
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise SchemaMismatch("body: expected an object with a list of 'inputs'", field="inputs")
    metadata = dataplane.model.pyfunc.metadata
    data = to_model_input(payload["inputs"], metadata.get_input_schema())  # type: ignore[no-untyped-call]
    rows = len(data) if isinstance(data, pd.DataFrame | np.ndarray) else 1
    if rows > dataplane.settings.max_rows:
        raise PayloadTooLarge(f"{rows} rows, at most {dataplane.settings.max_rows} accepted",
                              field="rows")
    params = _params(payload.get("parameters"), metadata.get_params_schema())  # type: ignore[no-untyped-call]
    result = await dataplane.predict(data, params, request_id=request.state.request_id,
                                     endpoint="/v2/infer")
    output_schema = metadata.get_output_schema()  # type: ignore[no-untyped-call]
    return json_response(render(result, payload.get("id"), output_schema))


def describe(schema: Schema | None) -> list[dict[str, Any]]:
    """A signature as v2 tensor metadata (``-1``: any number of rows)."""
    if schema is None:
        return []
    described: list[dict[str, Any]] = []
    for index, spec in enumerate(schema.inputs):
        name = spec.name or f"{'input' if index == 0 else 'output'}-{index}"
        if isinstance(spec, TensorSpec):
            described.append({"name": name, "datatype": v2_datatype(spec.type),
                              "shape": list(spec.shape)})
        elif isinstance(spec, ColSpec) and _v2_type(spec) is not None:
            described.append({"name": name, "datatype": _v2_type(spec), "shape": [-1]})
    return described


def to_model_input(inputs: list[Any], schema: Schema | None) -> Any:
    """v2 input tensors as what the pyfunc model takes: DataFrame, ndarray or dict of them."""
    if not inputs or not all(isinstance(t, dict) for t in inputs):
        raise SchemaMismatch("inputs: expected at least one tensor object", field="inputs")
    for index, tensor in enumerate(inputs):
        if not isinstance(tensor.get("name", ""), str):
            raise SchemaMismatch(f"inputs.{index}.name: a tensor's name is a string",
                                 field=f"inputs.{index}.name")
    if schema is not None and not schema.is_tensor_spec():
        return _frame(inputs, [s for s in schema.inputs if isinstance(s, ColSpec)])
    specs = {s.name: s for s in schema.inputs} if schema is not None else {}
    arrays = {}
    for index, tensor in enumerate(inputs):
        name = str(tensor.get("name", f"input-{index}"))
        spec = specs.get(name) or (schema.inputs[0] if schema and len(inputs) == 1 else None)
        expected = v2_datatype(spec.type) if isinstance(spec, TensorSpec) else None
        arrays[name] = decode_tensor(tensor, expected, f"inputs.{name}")
    if len(arrays) == 1 and (schema is None or not schema.has_input_names()):
        return next(iter(arrays.values()))
    return arrays


def _frame(inputs: list[dict[str, Any]], columns: list[ColSpec]) -> pd.DataFrame:
    by_name = {spec.name: spec for spec in columns if spec.name}
    first = inputs[0]
    if len(inputs) == 1 and first.get("name") not in by_name and len(columns) > 1:
        return _frame_from_matrix(first, columns)
    data: dict[str, Any] = {}
    for index, tensor in enumerate(inputs):
        name = tensor.get("name")
        spec = by_name.get(name) if name else (columns[index] if index < len(columns) else None)
        if spec is None:
            raise SchemaMismatch(f"inputs: the model has no input {name!r}", field="inputs")
        key = spec.name or index
        array = decode_tensor(tensor, _v2_type(spec), f"inputs.{key}")
        if array.ndim > 2 or (array.ndim == 2 and array.shape[1] != 1):
            raise SchemaMismatch(f"inputs.{key}: a column needs shape [rows] or [rows, 1]",
                                 field=f"inputs.{key}")
        mlflow_type = spec.type if isinstance(spec.type, DataType) else None
        data[str(key)] = column(array, mlflow_type, f"inputs.{key}")
    missing = [s.name for s in columns if s.name and s.name not in data and s.required]
    if missing:
        raise SchemaMismatch(f"inputs: missing {', '.join(missing)}", field="inputs")
    lengths = {len(v) for v in data.values()}
    if len(lengths) != 1:
        raise SchemaMismatch("inputs: columns have different numbers of rows", field="inputs")
    return pd.DataFrame(data)


def _frame_from_matrix(tensor: dict[str, Any], columns: list[ColSpec]) -> pd.DataFrame:
    types = {_v2_type(spec) for spec in columns}
    expected = types.pop() if len(types) == 1 else None
    array = decode_tensor(tensor, expected, "inputs.0")
    if array.ndim != 2 or array.shape[1] != len(columns):
        raise SchemaMismatch(
            f"inputs.0: one tensor needs shape [rows, {len(columns)}] (one per column)",
            field="inputs.0",
        )
    names = [spec.name or str(i) for i, spec in enumerate(columns)]
    return pd.DataFrame(array, columns=names)


def render(result: PredictionResult, request_id: Any, output_schema: Schema | None
           ) -> dict[str, Any]:
    """The v2 infer response: outputs typed by the output signature where it has one."""
    predictions = result.predictions
    if isinstance(predictions, pd.DataFrame):
        outputs = [encode_tensor(str(c), predictions[c].to_numpy()) for c in predictions.columns]
    elif isinstance(predictions, dict):
        outputs = [encode_tensor(str(k), v) for k, v in predictions.items()]
    else:
        outputs = [encode_tensor("predictions", predictions, _single_output_type(output_schema))]
    return {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "id": request_id if isinstance(request_id, str) else result.request_id,
        "parameters": {"request_id": result.request_id, **result.annotations},
        "outputs": outputs,
    }


def _single_output_type(schema: Schema | None) -> str | None:
    if schema is None or len(schema.inputs) != 1:
        return None
    spec = schema.inputs[0]
    if isinstance(spec, ColSpec):
        return _v2_type(spec)
    return v2_datatype(spec.type)


def _v2_type(spec: ColSpec) -> str | None:
    # arrays, objects and maps have no v2 tensor type
    return V2_OF_MLFLOW.get(spec.type) if isinstance(spec.type, DataType) else None


def _params(parameters: Any, schema: Any) -> dict[str, Any] | None:
    if not isinstance(parameters, dict) or schema is None:
        return None
    names = {spec.name for spec in schema.params}
    return {k: v for k, v in parameters.items() if k in names and k not in RESERVED_PARAMETERS}


def _dataplane_for(request: Request) -> DataPlane:
    dataplane = serving(request).dataplane
    name, version = request.path_params["name"], request.path_params.get("version")
    if name != dataplane.name:
        raise ModelNotFound(f"this server serves {dataplane.name!r}, not {name!r}", field="name")
    if version is not None and version != dataplane.version:
        raise VersionNotFound(
            f"this server serves version {dataplane.version}, not {version!r}", field="version"
        )
    return dataplane
