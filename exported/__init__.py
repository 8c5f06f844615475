"""Shipped ONNX models and their manifests.

A wheel installs this folder as ``codt_deploy/exported`` (package data of the runtime);
``codt_deploy.models`` finds it there, or here in a checkout.
"""
