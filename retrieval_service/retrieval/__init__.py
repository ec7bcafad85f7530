"""Retrieval proper: photo -> GPS candidates (image encoder, GeoCLIP heads, gallery, stores, ingest,
the back ends of each encoder family in ``backends``, and the ``Retriever`` written against them)."""
