"""The trained fusion retriever (DualGeo's image+segmentation fusion with token-level bidirectional
cross-attention, GeoCLIP/G3 multi-scale RFF and TransGeoCLIP location-attention GPS encoders):
model, losses, precomputed features, resumable training, and the encoder the ``Retriever`` uses for
``GEOAGENT_ENCODER=fusion:PATH``. Heavy modules are imported where used."""
