"""The OpenAPI v2 document in gnostic's protobuf form, which kubectl's and helm's client-side
validation download (`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) and
cannot read as JSON.

Only what validation reads is encoded: `Document {swagger = 1, info = 2, definitions = 9}`, each
definition a `Schema` (gnostic's openapiv2/OpenAPIv2.proto field numbers below); vendor
extensions such as `x-kubernetes-group-version-kind` and values such as `default` and `enum`
travel as YAML text, as kube-apiserver sends them.
"""

from __future__ import annotations

import struct
from typing import Any

import yaml

# What clients ask for; the answer is labelled application/octet-stream, as kube-apiserver's
# is: Go's mime parser rejects the '@' of the name above.
MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
RESPONSE_TYPE = "application/octet-stream"
Obj = dict[str, Any]

# Schema's fields: JSON key -> (field number, how it is written).
_SCHEMA_FIELDS: dict[str, tuple[int, str]] = {
    "$ref": (1, "string"),
    "format": (2, "string"),
    "title": (3, "string"),
    "description": (4, "string"),
    "default": (5, "any"),
    "multipleOf": (6, "double"),
    "maximum": (7, "double"),
    "exclusiveMaximum": (8, "bool"),
    "minimum": (9, "double"),
    "exclusiveMinimum": (10, "bool"),
    "maxLength": (11, "int"),
    "minLength": (12, "int"),
    "pattern": (13, "string"),
    "maxItems": (14, "int"),
    "minItems": (15, "int"),
    "uniqueItems": (16, "bool"),
    "maxProperties": (17, "int"),
    "minProperties": (18, "int"),
    "required": (19, "strings"),
    "enum": (20, "anys"),
    "additionalProperties": (21, "additional"),
    "type": (22, "type"),
    "items": (23, "items"),
    "allOf": (24, "schemas"),
    "properties": (25, "properties"),
    "readOnly": (27, "bool"),
    "example": (30, "any"),
}
_VENDOR_EXTENSION = 31


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _bytes(number: int, data: bytes) -> bytes:
    return _key(number, 2) + _varint(len(data)) + data


def _string(number: int, text: str) -> bytes:
    return _bytes(number, text.encode())


def _any(number: int, value: Any) -> bytes:
    """gnostic's Any {yaml = 2}: the value as YAML text."""
    return _bytes(number, _string(2, yaml.safe_dump(value, default_flow_style=False)))


def _named(number: int, name: str, value: bytes) -> bytes:
    return _bytes(number, _string(1, name) + _bytes(2, value))


def schema(node: Obj) -> bytes:
    """One Schema message."""
    out = bytearray()
    for key, value in node.items():
        if key.startswith("x-"):
            out += _bytes(
                _VENDOR_EXTENSION,
                _string(1, key) + _bytes(2, _string(2, yaml.safe_dump(value))),
            )
            continue
        if key not in _SCHEMA_FIELDS:
            continue  # not in Swagger 2.0 (nullable, oneOf...): kube-apiserver drops them too
        number, how = _SCHEMA_FIELDS[key]
        if how == "string":
            out += _string(number, str(value))
        elif how == "bool":
            out += _key(number, 0) + _varint(int(bool(value)))
        elif how == "int":
            out += _key(number, 0) + _varint(int(value))
        elif how == "double":
            out += _key(number, 1) + struct.pack("<d", float(value))
        elif how == "any":
            out += _any(number, value)
        elif how == "anys":
            for item in value:
                out += _any(number, item)
        elif how == "strings":
            for item in value:
                out += _string(number, str(item))
        elif how == "type":  # TypeItem {repeated string value = 1}
            types = value if isinstance(value, list) else [value]
            out += _bytes(number, b"".join(_string(1, t) for t in types))
        elif how == "items":  # ItemsItem {repeated Schema schema = 1}
            items = value if isinstance(value, list) else [value]
            out += _bytes(number, b"".join(_bytes(1, schema(i)) for i in items))
        elif how == "schemas":
            for item in value:
                out += _bytes(number, schema(item))
        elif how == "additional":  # AdditionalPropertiesItem {schema = 1 | boolean = 2}
            inner = (
                _key(2, 0) + _varint(int(value))
                if isinstance(value, bool)
                else _bytes(1, schema(value))
            )
            out += _bytes(number, inner)
        elif how == "properties":  # Properties {repeated NamedSchema additional_properties = 1}
            out += _bytes(number, b"".join(_named(1, k, schema(v)) for k, v in value.items()))
    return bytes(out)


def document(doc: Obj) -> bytes:
    """Document {swagger = 1, info = 2 {title = 1, version = 2}, definitions = 9}."""
    info = doc.get("info") or {}
    out = _string(1, doc.get("swagger", "2.0"))
    out += _bytes(2, _string(1, info.get("title", "")) + _string(2, info.get("version", "")))
    definitions = b"".join(
        _named(1, name, schema(value)) for name, value in (doc.get("definitions") or {}).items()
    )
    return out + _bytes(9, definitions)
