"""The baseline of the upload benchmark: a bare FastAPI endpoint that only streams the
request body to a file on disk, with no parsing, validation, database or fsync (so the
API's durability and validation costs are part of the gap it measures)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

DATA_DIR = Path(os.environ.get("BARE_DATA_DIR", "/tmp/bare-uploads"))  # noqa: S108
app = FastAPI()


@app.post("/v1/uploads")
async def upload(request: Request) -> JSONResponse:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"{uuid.uuid4().hex}.part"
    with path.open("wb") as fh:
        async for chunk in request.stream():
            fh.write(chunk)
    return JSONResponse({"stored": path.name}, status_code=202)
