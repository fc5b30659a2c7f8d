"""A multi-type array sample: swagger 2 cannot describe it, so only versions 3 and 3.1 exist."""

from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("values", StandardPythonParameterType([1, "two", 3.0]))
@output_schema(StandardPythonParameterType({"count": 3}))
def run(values):
    return {"count": len(values)}
