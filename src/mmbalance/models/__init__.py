"""Models: encoders, fusions and the multimodal model that holds them."""
