"""Shipped ONNX models and their manifests (package data, found by codt_deploy.models)."""
