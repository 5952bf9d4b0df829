"""Raw data, feature extraction and the packed feature store."""
