"""The Functions host's gRPC messages that the Python worker library uses, built at run time.

Written from the published wire contract (`FunctionRpc.proto` and `shared/NullableTypes.proto` of
Azure/azure-functions-language-worker-protobuf): message names, field names, numbers and types are the
contract, so only the messages and fields the worker library touches on init, indexing, load and an HTTP
invocation are declared. Fields left out are unknown fields on the wire, as for any older peer.

Runs inside the worker's own Python (3.13) with the `protobuf` package; nothing here is Microsoft's code.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, duration_pb2, message_factory, timestamp_pb2

PACKAGE = "AzureFunctionsRpcMessages"

# (field name, number, type); type is a scalar name, a message/enum name of this package, "google.X",
# "repeated T", "map<K,V>", or ("oneof", name) as a fourth element.
MESSAGES: dict[str, list[tuple[Any, ...]]] = {
    "StreamingMessage": [
        ("request_id", 1, "string"),
        ("start_stream", 20, "StartStream", "content"),
        ("worker_init_request", 17, "WorkerInitRequest", "content"),
        ("worker_init_response", 16, "WorkerInitResponse", "content"),
        ("function_load_request", 8, "FunctionLoadRequest", "content"),
        ("function_load_response", 9, "FunctionLoadResponse", "content"),
        ("invocation_request", 4, "InvocationRequest", "content"),
        ("invocation_response", 5, "InvocationResponse", "content"),
        ("rpc_log", 2, "RpcLog", "content"),
        ("functions_metadata_request", 29, "FunctionsMetadataRequest", "content"),
        ("function_metadata_response", 30, "FunctionMetadataResponse", "content"),
    ],
    "StartStream": [("worker_id", 2, "string")],
    "WorkerInitRequest": [
        ("host_version", 1, "string"),
        ("capabilities", 2, "map<string,string>"),
        ("worker_directory", 4, "string"),
        ("function_app_directory", 5, "string"),
    ],
    "WorkerInitResponse": [
        ("worker_version", 1, "string"),
        ("capabilities", 2, "map<string,string>"),
        ("result", 3, "StatusResult"),
        ("worker_metadata", 4, "WorkerMetadata"),
    ],
    "WorkerMetadata": [
        ("runtime_name", 1, "string"),
        ("runtime_version", 2, "string"),
        ("worker_version", 3, "string"),
        ("worker_bitness", 4, "string"),
        ("custom_properties", 5, "map<string,string>"),
    ],
    "StatusResult": [
        ("status", 4, "StatusResult.Status"),
        ("result", 1, "string"),
        ("exception", 2, "RpcException"),
        ("logs", 3, "repeated RpcLog"),
    ],
    "RpcException": [
        ("source", 3, "string"),
        ("stack_trace", 1, "string"),
        ("message", 2, "string"),
        ("is_user_exception", 4, "bool"),
        ("type", 5, "string"),
    ],
    "RpcLog": [
        ("invocation_id", 1, "string"),
        ("category", 2, "string"),
        ("level", 3, "RpcLog.Level"),
        ("message", 4, "string"),
        ("event_id", 5, "string"),
        ("exception", 6, "RpcException"),
        ("properties", 7, "string"),
        ("log_category", 8, "RpcLog.RpcLogCategory"),
    ],
    "FunctionsMetadataRequest": [("function_app_directory", 1, "string")],
    "FunctionMetadataResponse": [
        ("function_metadata_results", 1, "repeated RpcFunctionMetadata"),
        ("result", 2, "StatusResult"),
        ("use_default_metadata_indexing", 3, "bool"),
    ],
    "RpcFunctionMetadata": [
        ("name", 4, "string"),
        ("directory", 1, "string"),
        ("script_file", 2, "string"),
        ("entry_point", 3, "string"),
        ("bindings", 6, "map<string,BindingInfo>"),
        ("is_proxy", 7, "bool"),
        ("status", 8, "StatusResult"),
        ("language", 9, "string"),
        ("raw_bindings", 10, "repeated string"),
        ("function_id", 13, "string"),
        ("managed_dependency_enabled", 14, "bool"),
        ("retry_options", 15, "RpcRetryOptions"),
        ("properties", 16, "map<string,string>"),
    ],
    "BindingInfo": [
        ("type", 2, "string"),
        ("direction", 3, "BindingInfo.Direction"),
        ("data_type", 4, "BindingInfo.DataType"),
        ("properties", 5, "map<string,string>"),
    ],
    "RpcRetryOptions": [
        ("max_retry_count", 2, "int32"),
        ("delay_interval", 3, "google.protobuf.Duration"),
        ("minimum_interval", 4, "google.protobuf.Duration"),
        ("maximum_interval", 5, "google.protobuf.Duration"),
        ("retry_strategy", 6, "RpcRetryOptions.RetryStrategy"),
    ],
    "FunctionLoadRequest": [
        ("function_id", 1, "string"),
        ("metadata", 2, "RpcFunctionMetadata"),
        ("managed_dependency_enabled", 3, "bool"),
    ],
    "FunctionLoadResponse": [
        ("function_id", 1, "string"),
        ("result", 2, "StatusResult"),
        ("is_dependency_downloaded", 3, "bool"),
    ],
    "InvocationRequest": [
        ("invocation_id", 1, "string"),
        ("function_id", 2, "string"),
        ("input_data", 3, "repeated ParameterBinding"),
        ("trigger_metadata", 4, "map<string,TypedData>"),
        ("trace_context", 5, "RpcTraceContext"),
        ("retry_context", 6, "RetryContext"),
    ],
    "RpcTraceContext": [
        ("trace_parent", 1, "string"),
        ("trace_state", 2, "string"),
        ("attributes", 3, "map<string,string>"),
    ],
    "RetryContext": [
        ("retry_count", 1, "int32"),
        ("max_retry_count", 2, "int32"),
        ("exception", 3, "RpcException"),
    ],
    "InvocationResponse": [
        ("invocation_id", 1, "string"),
        ("output_data", 2, "repeated ParameterBinding"),
        ("return_value", 4, "TypedData"),
        ("result", 3, "StatusResult"),
    ],
    "TypedData": [
        ("string", 1, "string", "data"),
        ("json", 2, "string", "data"),
        ("bytes", 3, "bytes", "data"),
        ("stream", 4, "bytes", "data"),
        ("http", 5, "RpcHttp", "data"),
        ("int", 6, "sint64", "data"),
        ("double", 7, "double", "data"),
    ],
    "ParameterBinding": [("name", 1, "string"), ("data", 2, "TypedData", "rpc_data")],
    "RpcHttpCookie": [
        ("name", 1, "string"),
        ("value", 2, "string"),
        ("domain", 3, "NullableString"),
        ("path", 4, "NullableString"),
        ("expires", 5, "NullableTimestamp"),
        ("secure", 6, "NullableBool"),
        ("http_only", 7, "NullableBool"),
        ("same_site", 8, "RpcHttpCookie.SameSite"),
        ("max_age", 9, "NullableDouble"),
    ],
    "RpcHttp": [
        ("method", 1, "string"),
        ("url", 2, "string"),
        ("headers", 3, "map<string,string>"),
        ("body", 4, "TypedData"),
        ("params", 10, "map<string,string>"),
        ("status_code", 12, "string"),
        ("query", 15, "map<string,string>"),
        ("enable_content_negotiation", 16, "bool"),
        ("rawBody", 17, "TypedData"),
        ("cookies", 19, "repeated RpcHttpCookie"),
        ("nullable_headers", 20, "map<string,NullableString>"),
        ("nullable_params", 21, "map<string,NullableString>"),
        ("nullable_query", 22, "map<string,NullableString>"),
    ],
    "NullableString": [("value", 1, "string", "string")],
    "NullableDouble": [("value", 1, "double", "double")],
    "NullableBool": [("value", 1, "bool", "bool")],
    "NullableTimestamp": [("value", 1, "google.protobuf.Timestamp", "timestamp")],
}

ENUMS: dict[str, list[tuple[str, int]]] = {
    "StatusResult.Status": [("Failure", 0), ("Success", 1), ("Cancelled", 2)],
    "RpcLog.Level": [("Trace", 0), ("Debug", 1), ("Information", 2), ("Warning", 3), ("Error", 4),
                     ("Critical", 5), ("None", 6)],
    "RpcLog.RpcLogCategory": [("User", 0), ("System", 1), ("CustomMetric", 2)],
    "BindingInfo.Direction": [("in", 0), ("out", 1), ("inout", 2)],
    "BindingInfo.DataType": [("undefined", 0), ("string", 1), ("binary", 2), ("stream", 3)],
    "RpcRetryOptions.RetryStrategy": [("exponential_backoff", 0), ("fixed_delay", 1)],
    "RpcHttpCookie.SameSite": [("None", 0), ("Lax", 1), ("Strict", 2), ("ExplicitNone", 3)],
}

_SCALARS = {
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bytes": descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    "sint64": descriptor_pb2.FieldDescriptorProto.TYPE_SINT64,
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
}


def _set_type(field: descriptor_pb2.FieldDescriptorProto, type_name: str) -> None:
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]  # type: ignore[assignment]
    elif type_name in ENUMS:
        field.type = descriptor_pb2.FieldDescriptorProto.TYPE_ENUM
        field.type_name = f".{PACKAGE}.{type_name}"
    elif type_name.startswith("google."):
        field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
        field.type_name = f".{type_name}"
    else:
        field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{type_name}"


def _message(name: str, fields: list[tuple[Any, ...]]) -> descriptor_pb2.DescriptorProto:
    message = descriptor_pb2.DescriptorProto(name=name)
    oneofs: list[str] = []
    for spec in fields:
        field_name, number, type_name = spec[:3]
        field = message.field.add(name=field_name, number=number, json_name=field_name)
        field.label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
        if type_name.startswith("map<"):
            key, value = type_name[4:-1].split(",")
            entry = message.nested_type.add(name=_camel(field_name) + "Entry")
            entry.options.map_entry = True
            for entry_name, entry_number, entry_type in (("key", 1, key), ("value", 2, value)):
                entry_field = entry.field.add(name=entry_name, number=entry_number, json_name=entry_name)
                entry_field.label = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
                _set_type(entry_field, entry_type)
            field.label = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
            field.type_name = f".{PACKAGE}.{name}.{entry.name}"
            continue
        if type_name.startswith("repeated "):
            field.label = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
            type_name = type_name.removeprefix("repeated ")
        _set_type(field, type_name)
        if len(spec) > 3:
            if spec[3] not in oneofs:
                oneofs.append(spec[3])
                message.oneof_decl.add(name=spec[3])
            field.oneof_index = oneofs.index(spec[3])
    for enum_name, values in ENUMS.items():
        owner, _, short = enum_name.partition(".")
        if owner == name:
            enum = message.enum_type.add(name=short)
            for value_name, number in values:
                enum.value.add(name=value_name, number=number)
    return message


def _camel(snake: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_"))


def build() -> SimpleNamespace:
    """The `protos` namespace the worker library is handed (`protos.StatusResult`, ...)."""
    pool = descriptor_pool.DescriptorPool()
    for dependency in (duration_pb2, timestamp_pb2):
        pool.AddSerializedFile(dependency.DESCRIPTOR.serialized_pb)
    rpc = descriptor_pb2.FileDescriptorProto(name="FunctionRpc.proto", package=PACKAGE, syntax="proto3",
                                             dependency=["google/protobuf/duration.proto",
                                                         "google/protobuf/timestamp.proto"])
    for name, fields in MESSAGES.items():
        rpc.message_type.append(_message(name, fields))
    pool.Add(rpc)
    classes = {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
               for name in MESSAGES}
    return SimpleNamespace(**classes)
