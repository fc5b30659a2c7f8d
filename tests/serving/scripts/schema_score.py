"""inference-schema decorated run(): numpy, pandas and standard-python parameter types."""

import numpy as np
import pandas as pd
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.pandas_parameter_type import PandasParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema

numpy_sample = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
pandas_sample = pd.DataFrame({"name": ["a", "b"], "age": [30, 40]})
scale_sample = 2.0


def init():
    pass


@input_schema("matrix", NumpyParameterType(numpy_sample))
@input_schema("frame", PandasParameterType(pandas_sample))
@input_schema("scale", StandardPythonParameterType(scale_sample))
@output_schema(StandardPythonParameterType({"row_sums": [6.0, 15.0], "mean_age": 35.0, "types": ["a", "b"]}))
def run(matrix, frame, scale=1.0):
    return {
        "row_sums": (matrix.sum(axis=1) * scale),
        "mean_age": frame["age"].mean(),
        "types": [type(matrix).__name__, type(frame).__name__],
    }
