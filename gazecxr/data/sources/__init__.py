"""Dataset sources: each reads its own raw tables and yields records for the shared converter
(:func:`gazecxr.data.convert.convert_source`). A new dataset is one more module here."""
