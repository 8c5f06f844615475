"""CoDT training: data preparation, the model, the two-stage training loop and ONNX export."""
