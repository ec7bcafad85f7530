"""Retrieval proper: photo -> GPS candidates (image encoder, GeoCLIP heads, gallery, stores, ingest,
``Retriever``)."""
