"""The back ends of the evidence tools: EXIF, OCR (gazetteer, scripts), segmentation and scene
composition, reverse geocoding, geographic clustering."""
