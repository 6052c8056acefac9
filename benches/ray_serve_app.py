"""The Ray Serve side of benches/compare_ray.sh: the same work as weft's
`normalize` stage (NFKC, lowercase, collapse whitespace) as a one-step
deployment, and normalize -> chunk (64-word chunks) as a two-step pipeline (deployment
composition through handles)."""
import json
import re
import sys
import time
import unicodedata

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

WS = re.compile(r"\s+")


def normalize(text: str) -> str:
    return WS.sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Normalize:
    async def __call__(self, request: Request) -> Response:
        doc = json.loads(await request.body())
        return Response(json.dumps({"text": normalize(doc["text"])}), media_type="application/json")

    def run(self, text: str) -> str:
        return normalize(text)


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Chunk:
    def run(self, text: str) -> list:
        words = text.split()
        return [{"index": i, "text": " ".join(words[s:s + 64])}
                for i, s in enumerate(range(0, len(words), 64))]


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Chain:
    def __init__(self, normalize, chunk):
        self.normalize = normalize
        self.chunk = chunk

    async def __call__(self, request: Request) -> Response:
        doc = json.loads(await request.body())
        text = await self.normalize.run.remote(doc["text"])
        out = await self.chunk.run.remote(text)
        return Response(json.dumps(out), media_type="application/json")


if __name__ == "__main__":
    port = int(sys.argv[1])
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Normalize.bind(), name="one", route_prefix="/one")
    serve.run(Chain.bind(Normalize.bind(), Chunk.bind()), name="two", route_prefix="/two")
    print("ready", flush=True)
    while True:
        time.sleep(3600)
