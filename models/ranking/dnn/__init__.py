"""The multi-task deep ranker: its settings, inputs, network, training, ranker and ONNX export."""
