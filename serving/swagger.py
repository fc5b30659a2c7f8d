"""Swagger (OpenAPI) documents of ``/swagger.json``, as azureml-inference-server-http 1.5 generates them.

Versions ``2`` (alias ``2.0``), ``3`` (alias ``3.0``) and ``3.1``. Each comes from a user file in the app root
when present (``swagger.json`` or ``swagger2.json``; ``swagger3.json``; ``swagger3.1.json``), else from the
inference-schema decorators of ``run()`` (an undecorated ``run`` gets ``{"type": "object", "example": {}}``), else
is absent when the decorators' parameter types do not support that version. The document skeletons below equal
azmlinfsrv's templates (the golden-file test in ``tests/serving`` holds them to it).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable
from typing import Any

from contract.serving import ScoringSettings
from serving.errors import NotFound

logger = logging.getLogger("serving.swagger")

# version -> aliases, in azmlinfsrv's builder order
VERSIONS: dict[str, tuple[str, ...]] = {"2": ("2", "2.0"), "3": ("3", "3.0"), "3.1": ("3.1",)}
VALID_VERSIONS = frozenset(alias for aliases in VERSIONS.values() for alias in aliases)

_ERROR_SCHEMA = {"type": "object", "properties": {"message": {"type": "string"}}}
_DEFAULT_INPUT = {
    "type": "object",
    "properties": {"param": {"type": "object", "additionalProperties": {"type": "object"}}},
}
_DEFAULT_OUTPUT = {"type": "object", "additionalProperties": {"type": "object"}}
_BEARER = {
    "type": "apiKey",
    "name": "Authorization",
    "in": "header",
    "description": "For example: Bearer abc123",
}
_HEALTH_DESCRIPTION = "Simple health check endpoint to ensure the service is up at any given point."
_HEALTHY = "If service is up and running, this response will be returned with the content 'Healthy'"
_FAILED = "The service failed to execute due to an error."
_SCORE_DESCRIPTION = "Run web service's model and get the prediction output"
_INPUT_DESCRIPTION = "The input payload for executing the real-time machine learning service."
_OUTPUT_DESCRIPTION = "The service processed the input correctly and provided a result prediction, if applicable."


def _swagger2(title: str, version: str, prefix: str) -> dict[str, Any]:
    error_ref = {"description": _FAILED, "schema": {"$ref": "#/definitions/ErrorResponse"}}
    return {
        "swagger": "2.0",
        "info": {
            "title": title,
            "description": f"API specification for the Azure Machine Learning service {title}",
            "version": version,
        },
        "schemes": ["https"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "securityDefinitions": {"Bearer": dict(_BEARER)},
        "paths": {
            f"{prefix}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": _HEALTH_DESCRIPTION,
                    "responses": {
                        "200": {
                            "description": _HEALTHY,
                            "schema": {"type": "string"},
                            "examples": {"application/json": "Healthy"},
                        },
                        "default": copy.deepcopy(error_ref),
                    },
                }
            },
            f"{prefix}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": _SCORE_DESCRIPTION,
                    "security": [{"Bearer": []}],
                    "parameters": [
                        {
                            "name": "serviceInputPayload",
                            "in": "body",
                            "description": _INPUT_DESCRIPTION,
                            "schema": {"$ref": "#/definitions/ServiceInput"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": _OUTPUT_DESCRIPTION,
                            "schema": {"$ref": "#/definitions/ServiceOutput"},
                        },
                        "default": copy.deepcopy(error_ref),
                    },
                }
            },
            f"{prefix}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "Get the Swagger specification.",
                    "parameters": [
                        {"name": "version", "in": "query", "required": False, "type": "integer", "enum": [2, 3]}
                    ],
                    "responses": {
                        "200": {"description": "The Swagger specification.", "schema": {"type": "string"}},
                        "default": copy.deepcopy(error_ref),
                    },
                }
            },
        },
        "definitions": {
            "ServiceInput": copy.deepcopy(_DEFAULT_INPUT),
            "ServiceOutput": copy.deepcopy(_DEFAULT_OUTPUT),
            "ErrorResponse": copy.deepcopy(_ERROR_SCHEMA),
        },
    }


def _swagger3(title: str, version: str, prefix: str) -> dict[str, Any]:
    def error_ref() -> dict[str, Any]:
        return {
            "description": _FAILED,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
        }

    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "description": f"API specification for the Azure Machine Learning service {title}",
            "version": version,
        },
        "security": [{"Bearer": []}],
        "paths": {
            f"{prefix}/": {
                "get": {
                    "operationId": "ServiceHealthCheck",
                    "description": _HEALTH_DESCRIPTION,
                    "responses": {
                        "200": {
                            "description": _HEALTHY,
                            "content": {"text/plain": {"schema": {"type": "string", "example": "Healthy"}}},
                        },
                        "default": error_ref(),
                    },
                }
            },
            f"{prefix}/score": {
                "post": {
                    "operationId": "RunMLService",
                    "description": _SCORE_DESCRIPTION,
                    "security": [{"Bearer": []}],
                    "requestBody": {
                        "description": _INPUT_DESCRIPTION,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceInput"}}},
                    },
                    "responses": {
                        "200": {
                            "description": _OUTPUT_DESCRIPTION,
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceOutput"}}},
                        },
                        "default": error_ref(),
                    },
                }
            },
            f"{prefix}/swagger.json": {
                "get": {
                    "operationId": "GetSwaggerSpec",
                    "description": "Get the Swagger specification.",
                    "parameters": [
                        {
                            "name": "version",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "enum": [2, 3]},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The Swagger specification.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "default": error_ref(),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "ServiceInput": copy.deepcopy(_DEFAULT_INPUT),
                "ServiceOutput": copy.deepcopy(_DEFAULT_OUTPUT),
                "ErrorResponse": copy.deepcopy(_ERROR_SCHEMA),
            },
            "securitySchemes": {"Bearer": dict(_BEARER)},
        },
    }


def build_document(version: str, settings: ScoringSettings, input_schema: Any, output_schema: Any) -> dict[str, Any]:
    """Build the swagger document of ``version`` ("2", "3" or "3.1") around the given schemas.

    Args:
        version: canonical version (not an alias).
        settings: ``service_name``, ``service_version`` and ``service_path_prefix`` are used.
        input_schema: JSON schema of the request body (``ServiceInput``).
        output_schema: JSON schema of the response body (``ServiceOutput``).
    """
    prefix = f"/{settings.service_path_prefix.strip('/')}" if settings.service_path_prefix else ""
    if version == "2":
        doc = _swagger2(settings.service_name, settings.service_version, prefix)
        doc["definitions"]["ServiceInput"] = input_schema
        doc["definitions"]["ServiceOutput"] = output_schema
        return doc
    doc = _swagger3(settings.service_name, settings.service_version, prefix)
    doc["components"]["schemas"]["ServiceInput"] = input_schema
    doc["components"]["schemas"]["ServiceOutput"] = output_schema
    if version == "3.1":
        doc["openapi"] = "3.1.0"
    return doc


def _user_file(app_root: str, version: str) -> dict[str, Any] | None:
    names = {"2": ("swagger.json", "swagger2.json"), "3": ("swagger3.json",), "3.1": ("swagger3.1.json",)}[version]
    for name in names:
        path = os.path.join(app_root, name)
        try:
            with open(path, encoding="utf-8") as file:
                data: dict[str, Any] = json.load(file)
        except FileNotFoundError:
            continue
        except ValueError as ex:
            raise ValueError(f"{path}: not valid JSON: {ex}") from ex
        logger.info("loaded the user's swagger file for version %s from %s", version, path)
        return data
    return None


class SwaggerSet:
    """The swagger documents of one scorer, by version alias, computed once at load time."""

    def __init__(self, documents: dict[str, dict[str, Any] | None]) -> None:
        """Keep ``documents``: canonical version -> document, or None where that version is not supported."""
        self.supported = sorted(v for v, doc in documents.items() if doc is not None)
        self._by_alias: dict[str, bytes] = {}
        for version, doc in documents.items():
            if doc is not None:
                encoded = json.dumps(doc).encode()
                for alias in VERSIONS[version]:
                    self._by_alias[alias] = encoded
        self._documents = documents

    def get(self, version: str) -> dict[str, Any]:
        """Return the document of ``version`` (an alias such as ``2.0`` works).

        Raises:
            NotFound: unknown version, or one the scoring script does not support; the message names the supported.
        """
        supported = ", ".join(self.supported)
        if version not in VALID_VERSIONS:
            raise NotFound(f"Swagger version [{version}] is not valid. Supported versions: [{supported}].")
        for canonical, aliases in VERSIONS.items():
            if version in aliases:
                doc = self._documents.get(canonical)
                if doc is not None:
                    return doc
        raise NotFound(
            f"Swagger version [{version}] is not supported for the scoring script. "
            f"Supported swagger versions: [{supported}]."
        )

    def encoded(self, version: str) -> bytes:
        """The document of ``version`` as JSON bytes (same errors as :meth:`get`)."""
        cached = self._by_alias.get(version)
        if cached is not None:
            return cached
        self.get(version)  # raises NotFound with the right message
        raise NotFound(f"Swagger version [{version}] is not supported")  # pragma: no cover


def script_swagger(settings: ScoringSettings, run_function: Callable[..., Any]) -> SwaggerSet:
    """The swagger set of an entry script's ``run`` (user files first, then the inference-schema decorators)."""
    from inference_schema.schema_util import (
        get_input_schema,
        get_output_schema,
        get_supported_versions,
        is_schema_decorated,
    )

    supported = set(get_supported_versions(run_function))
    documents: dict[str, dict[str, Any] | None] = {}
    for version, aliases in VERSIONS.items():
        user = _user_file(settings.app_root, version)
        if user is not None:
            documents[version] = user
            continue
        if not supported.intersection(aliases):
            documents[version] = None
            continue
        if is_schema_decorated(run_function):
            input_schema, output_schema = get_input_schema(run_function), get_output_schema(run_function)
        else:
            input_schema = {"type": "object", "example": {}}
            output_schema = {"type": "object", "example": {}}
        documents[version] = build_document(version, settings, input_schema, output_schema)
    return SwaggerSet(documents)


def schema_swagger(settings: ScoringSettings, input_schema: Any, output_schema: Any) -> SwaggerSet:
    """The swagger set for fixed schemas (MLflow models), with the user's override files applied."""
    documents: dict[str, dict[str, Any] | None] = {}
    for version in VERSIONS:
        user = _user_file(settings.app_root, version)
        documents[version] = user or build_document(version, settings, input_schema, output_schema)
    return SwaggerSet(documents)
