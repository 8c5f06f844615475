"""The Gradio web app: upload pose files, see skeletons, clusters and metrics.

From a checkout: ``python -m app``. An installed wheel carries this package as ``codt_app`` (with
the ``codt-app`` command), so the generic name ``app`` never reaches site-packages; the modules
import each other relatively and work under either name.
"""
