"""Inference beyond the PyTorch predictor: the ONNX Runtime backend and archive-scale batch prediction."""
