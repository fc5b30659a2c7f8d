"""@rawhttp run(request): a multipart image upload answered with a transformed PNG (AMLResponse)."""

import io

from PIL import Image

from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request: AMLRequest):
    if request.method == "GET":
        return {"args": request.args.to_dict(flat=False), "method": request.method}
    if request.method != "POST":
        return AMLResponse("bad method", 405)
    if "image" not in request.files:
        return AMLResponse({"error": "no file named image", "form": request.form.to_dict()}, 400, json_str=True)
    upload = request.files["image"]
    image = Image.open(io.BytesIO(upload.read()))
    gray = image.convert("L").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = io.BytesIO()
    gray.save(out, format="PNG")
    return AMLResponse(
        out.getvalue(),
        200,
        {"Content-Type": "image/png", "X-Upload": f"{upload.filename};{request.form.get('label', '')}"},
    )
