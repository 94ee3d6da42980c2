"""Serving many robots through NVIDIA Triton Inference Server.

* ``server``: ``cifrenet-edge serve MODEL``, a real Triton (PyTriton's bundled tritonserver)
  whose model is the toolkit's own ``Segmenter``: uint8 frames in, uint8 class maps out,
  Triton's dynamic batcher forming the batches;
* ``triton_repo``: a Triton model repository (``config.pbtxt`` + ``1/model.onnx|plan``) for
  NVIDIA's ``tritonserver`` containers, written by ``cifrenet-edge export --format triton``;
* ``sweep``: the concurrency benchmark (1, 2, 4, 8 clients) behind
  ``cifrenet-edge bench --model grpc://...``.

The client side lives in the runtime (``runtime/remote.py``): robots import it without torch.
"""
