"""Exports of a model of the volume to ONNX or OpenVINO, run by the orchestrator."""
