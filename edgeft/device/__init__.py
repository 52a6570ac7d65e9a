"""The device side of remote targets: what runs on a board that has only numpy and a runtime
(onnxruntime or openvino) — no torch, transformers or pydantic. The host (targets/remote.py) copies
these files over, sends the artifacts and the encoded inputs, runs a job, and reads back logits and
raw latency samples; accuracy is computed on the host.

PROTOCOL is bumped whenever the job or result layout changes; both sides check it.
"""

PROTOCOL = 2
