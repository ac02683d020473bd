"""The server a user would write instead of this service, as the load bench's peer: FastAPI, a
pydantic body, one forward pass per request, no batching. Same artifact, same load generator.

    NAIVE_ARTIFACT=path/to/artifact uvicorn bench.naive_server:app --port 8001
"""
import os

import torch
from fastapi import FastAPI
from pydantic import BaseModel

from cube.artifacts import load_model

model, _ = load_model(os.environ["NAIVE_ARTIFACT"])
model.eval()
app = FastAPI()


class Body(BaseModel):
    model: str
    input: list[list[float]]


@app.post("/v1/transform")
def transform(body: Body) -> dict:
    with torch.no_grad():
        y = model(torch.tensor(body.input, dtype=torch.float32))
    return {"data": [{"index": i, "embedding": row} for i, row in enumerate(y.tolist())]}
